"""Shared by the SWE-bench benchmarks: the runnable instances and one `tome eval` run.

Not a unit test and not part of the package: run from a checkout, next to ../shared/swe.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
SWE = CHECKOUT.parent / "shared" / "swe"


def runnable_rows(swe: Path, *, repos: list[str] | None, ids: list[str] | None) -> list[dict]:
    """The Lite rows RUNNABLE.md lists as runnable (verdict OK or OK_ENV), optionally filtered."""
    results = {r["instance_id"]: r for r in json.loads((swe / "runnable_results.json").read_text())}
    out = []
    for line in (swe / "lite.jsonl").read_text().splitlines():
        row = json.loads(line)
        r = results.get(row["instance_id"])
        if not r or not r["verdict"].startswith("OK"):
            continue
        if (repos and row["repo"] not in repos) or (ids and row["instance_id"] not in ids):
            continue
        out.append(row)
    return out


def write_tasks(rows: list[dict], path: Path) -> None:
    """The rows as a tasks file, unchanged: tome eval itself leaves out the known failures."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_eval(tasks: Path, run_id: str, source: list[str], *, repos_dir: Path, work: Path, workers: int,
             timeout: float, clean: bool) -> tuple[dict, float]:
    """One `tome eval` through the real command line; its report.json and wall seconds."""
    run_dir = work / "runs" / run_id
    if clean and run_dir.exists():
        shutil.rmtree(run_dir)
    cmd = [sys.executable, "-m", "agent.cli", "eval", str(tasks), *source, "--repos-dir", str(repos_dir),
           "--env-cache", str(work / "envs"), "--output-dir", str(work / "runs"), "--workers", str(workers),
           "--run-id", run_id, "--timeout", str(timeout), "--rescore"]
    t0 = time.monotonic()
    subprocess.run(cmd, check=False, cwd=CHECKOUT)
    return json.loads((run_dir / "report.json").read_text()), time.monotonic() - t0


def failing_tests(score: dict) -> list[str]:
    """The dataset tests that did not count as passing in a score, with their statuses."""
    bad = [f"F2P {t}: {s}" for t, s in score["fail_to_pass"].items() if s not in ("PASSED", "XFAIL")]
    bad += [f"P2P {t}: {s}" for t, s in score["pass_to_pass"].items() if s not in ("PASSED", "XFAIL", "SKIPPED")]
    return bad
