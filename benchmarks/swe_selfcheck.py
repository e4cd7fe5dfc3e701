"""Self-validation of `tome eval` on the real runnable SWE-bench instances (not a unit test).

Runs `tome eval --model gold` and `--model empty` in one clean run (fresh run folders) on the
instances ../shared/swe/RUNNABLE.md lists as runnable; tome eval's built-in known-failures table
leaves out the PASS_TO_PASS tests broken on Python 3.11 (and report.json lists them). Gold must
resolve 100%, empty 0%. Prints a table per repository and the wall time.

    python benchmarks/swe_selfcheck.py --repos-dir ../scratch/eval/repos --workers 2 \
        [--repos pallets/flask pytest-dev/pytest] [--instance-ids ...]

The repositories are clones named <owner>__<name> (django/django from a fork that has every
base commit); environments are cached under <work>/envs and reused between runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _swe import CHECKOUT, SWE, run_eval, runnable_rows, write_tasks  # noqa: E402


def env_build_times(envs: Path) -> dict[str, float]:
    """Seconds each cached environment took to build, summed per repository."""
    out: dict[str, float] = {}
    for marker in envs.glob("*/ready.json"):
        repo = marker.parent.name.rsplit("-", 1)[0].replace("__", "/", 1)
        out[repo] = out.get(repo, 0.0) + json.loads(marker.read_text()).get("setup_time", 0.0)
    return out


def main() -> int:
    """Run gold and empty, print the per-repository table; exit 0 iff gold 100% and empty 0%."""
    from rich.console import Console
    from rich.table import Table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repos-dir", type=Path, required=True)
    p.add_argument("--work", type=Path, default=CHECKOUT / "tome-eval" / "selfcheck",
                   help="tasks file, envs/ and runs/ go here")
    p.add_argument("--swe", type=Path, default=SWE, help="the SWE-bench data folder (default ../shared/swe)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--repos", nargs="+", help="only these repositories (owner/name)")
    p.add_argument("--instance-ids", nargs="+")
    p.add_argument("--only", choices=["gold", "empty"], help="run one of the two")
    p.add_argument("--resume", action="store_true", help="keep earlier results instead of a clean run")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    tasks = args.work / "runnable.jsonl"
    rows = runnable_rows(args.swe, repos=args.repos, ids=args.instance_ids)
    write_tasks(rows, tasks)
    n = len(rows)
    wall: dict[str, float] = {}
    reports: dict[str, dict] = {}
    t0 = time.monotonic()
    for model in [args.only] if args.only else ["gold", "empty"]:
        reports[model], wall[model] = run_eval(
            tasks, f"selfcheck-{model}", ["--model", model], repos_dir=args.repos_dir, work=args.work,
            workers=args.workers, timeout=args.timeout, clean=not args.resume)
    total_wall = time.monotonic() - t0
    builds = env_build_times(args.work / "envs")
    table = Table(title=f"tome eval self-check on {n} runnable SWE-bench instances")
    for col in ["repository", "instances", "gold resolved", "empty resolved", "empty: F2P fail, P2P pass",
                "errors", "env build s", "task setup s", "test s"]:
        table.add_column(col, justify="left" if col == "repository" else "right")
    rows: dict[str, dict[str, float]] = {}
    for model, report in reports.items():
        for s in report["scores"]:
            r = rows.setdefault(s["repo"], {"n": 0, "gold": 0, "empty": 0, "why": 0, "err": 0,
                                            "setup": 0.0, "test": 0.0})
            r["n"] += model == next(iter(reports))
            r[model] += s["status"] == "resolved"
            # unresolved for the right reason: a FAIL_TO_PASS test really fails, PASS_TO_PASS all pass
            r["why"] += model == "empty" and s["status"] == "unresolved" and all(
                v in ("PASSED", "XFAIL", "SKIPPED") for v in s["pass_to_pass"].values()) and any(
                v in ("FAILED", "ERROR") for v in s["fail_to_pass"].values())
            r["err"] += s["status"] == "error"
            r["setup"] += s["setup_time"]
            r["test"] += s["test_time"]
    total = {"n": 0, "gold": 0, "empty": 0, "why": 0, "err": 0, "setup": 0.0, "test": 0.0}
    for repo in sorted(rows):
        r = rows[repo]
        for k in total:
            total[k] += r[k]
        table.add_row(repo, str(r["n"]), str(r["gold"]) if "gold" in reports else "-",
                      str(r["empty"]) if "empty" in reports else "-", str(r["why"]), str(r["err"]),
                      f"{builds.get(repo, 0):.0f}", f"{r['setup']:.0f}", f"{r['test']:.0f}")
    table.add_section()
    table.add_row("all", str(total["n"]), str(total["gold"]), str(total["empty"]), str(total["why"]),
                  str(total["err"]),
                  f"{sum(builds.values()):.0f}", f"{total['setup']:.0f}", f"{total['test']:.0f}")
    console = Console(width=150)
    console.print(table)
    for model, report in reports.items():
        bad = report["unresolved_ids"] + report["error_ids"] if model == "gold" else report["resolved_ids"]
        console.print(f"{model}: resolved {report['resolved_instances']}/{report['total_instances']}, "
                      f"errors {report['error_instances']}, wall {wall[model]:.0f}s; wrong: {bad}")
    for iid, tests in reports[next(iter(reports))].get("excluded_tests", {}).items():
        console.print(f"excluded (known failures) {iid}: {sorted(tests)}")
    console.print(f"whole run wall time: {total_wall:.0f}s with --workers {args.workers}"
                  f"{' (resumed)' if args.resume else ' (clean run)'}")
    gold_ok = "gold" not in reports or reports["gold"]["resolved_instances"] == n
    empty_ok = "empty" not in reports or reports["empty"]["resolved_instances"] == 0
    return 0 if gold_ok and empty_ok else 1


if __name__ == "__main__":
    sys.exit(main())
