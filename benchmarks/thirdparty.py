"""Agreement with the official SWE-bench verdicts on a third party's real patches (not a unit test).

Scores CodeR's Lite predictions (../shared/swe/thirdparty/coder_lite_preds.jsonl) with
`tome eval --predictions` on every instance that runs here (RUNNABLE.md), compares each verdict
with the official one (coder_lite_official.json, `resolved_ids`) and prints the agreement table:
per repository, instances, agree, disagree; then each disagreement with its reason from the logs.

    python benchmarks/thirdparty.py --repos-dir ../scratch/eval/repos --workers 2 \\
        [--repos pallets/flask pytest-dev/pytest] [--instance-ids ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _swe import CHECKOUT, SWE, failing_tests, run_eval, runnable_rows, write_tasks  # noqa: E402


def reason(score: dict, official: bool) -> str:
    """Why tome's verdict differs, from its score and logs."""
    if score["status"] == "error":
        return f"tome: error: {score['error'][:200]}"
    if score["status"] == "resolved":
        left = score.get("excluded") or {}
        return (f"tome resolved, official did not{f'; {len(left)} known failure(s) left out' if left else ''}"
                f"; see {score['log_dir']}")
    bad = failing_tests(score)
    note = f" ({score['note']})" if score.get("note") else ""
    return f"tome unresolved{note}, official resolved: {'; '.join(bad[:4])}{' ...' if len(bad) > 4 else ''}"


def main() -> int:
    """Run the predictions, print the agreement table; exit 0 iff every verdict agrees."""
    from rich.console import Console
    from rich.table import Table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repos-dir", type=Path, required=True)
    p.add_argument("--swe", type=Path, default=SWE, help="the SWE-bench data folder (default ../shared/swe)")
    p.add_argument("--predictions", type=Path, help="default <swe>/thirdparty/coder_lite_preds.jsonl")
    p.add_argument("--official", type=Path, help="default <swe>/thirdparty/coder_lite_official.json")
    p.add_argument("--work", type=Path, default=CHECKOUT / "tome-eval" / "thirdparty",
                   help="tasks file, envs/ and runs/ go here")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--repos", nargs="+", help="only these repositories (owner/name)")
    p.add_argument("--instance-ids", nargs="+")
    p.add_argument("--resume", action="store_true", help="keep earlier results instead of a clean run")
    args = p.parse_args()
    preds = args.predictions or args.swe / "thirdparty" / "coder_lite_preds.jsonl"
    official_file = args.official or args.swe / "thirdparty" / "coder_lite_official.json"
    official = set(json.loads(official_file.read_text())["resolved_ids"])
    predicted = {json.loads(line)["instance_id"] for line in preds.read_text().splitlines() if line.strip()}
    rows = [r for r in runnable_rows(args.swe, repos=args.repos, ids=args.instance_ids)
            if r["instance_id"] in predicted]
    tasks = args.work / "tasks.jsonl"
    write_tasks(rows, tasks)
    t0 = time.monotonic()
    report, _ = run_eval(tasks, "thirdparty", ["--predictions", str(preds)], repos_dir=args.repos_dir,
                         work=args.work, workers=args.workers, timeout=args.timeout, clean=not args.resume)
    wall = time.monotonic() - t0
    per_repo: dict[str, dict[str, int]] = {}
    disagreements: list[tuple[str, str]] = []
    for s in report["scores"]:
        r = per_repo.setdefault(s["repo"], {"n": 0, "agree": 0, "disagree": 0, "official": 0, "tome": 0})
        want = s["instance_id"] in official
        got = s["status"] == "resolved"
        r["n"] += 1
        r["official"] += want
        r["tome"] += got
        if got == want:
            r["agree"] += 1
        else:
            r["disagree"] += 1
            disagreements.append((s["instance_id"], reason(s, want)))
    table = Table(title=f"tome eval vs the official verdicts: {report['model']} on {len(rows)} runnable Lite instances")
    for col in ["repository", "instances", "official resolved", "tome resolved", "agree", "disagree"]:
        table.add_column(col, justify="left" if col == "repository" else "right")
    total = {"n": 0, "agree": 0, "disagree": 0, "official": 0, "tome": 0}
    for repo in sorted(per_repo):
        r = per_repo[repo]
        for k in total:
            total[k] += r[k]
        table.add_row(repo, str(r["n"]), str(r["official"]), str(r["tome"]), str(r["agree"]), str(r["disagree"]))
    table.add_section()
    table.add_row("all", str(total["n"]), str(total["official"]), str(total["tome"]), str(total["agree"]),
                  str(total["disagree"]))
    console = Console(width=160)
    console.print(table)
    for iid, why in disagreements:
        console.print(f"disagree {iid}: {why}", highlight=False)
    for iid, tests in report.get("excluded_tests", {}).items():
        console.print(f"excluded (known failures) {iid}: {sorted(tests)}", highlight=False)
    console.print(f"wall time {wall:.0f}s with --workers {args.workers}"
                  f"{' (resumed)' if args.resume else ' (clean run)'}")
    return 0 if not disagreements else 1


if __name__ == "__main__":
    sys.exit(main())
