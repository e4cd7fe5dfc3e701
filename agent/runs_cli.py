"""`tome runs`: the recorded runs (id, when, repo, status, cost), and `tome runs clean`.

    tome runs [--json] [--limit N]
    tome runs clean --older-than 30d [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agent.cli import add_output_options
from agent.errors import ConfigError

__all__ = ["configure", "run", "RunSummary", "list_runs", "parse_age"]

_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class RunSummary:
    """One run as `tome runs` lists it, read from its trajectory without loading every event."""

    run_id: str
    path: Path
    started: float
    repo: str
    model: str
    status: str  # the run_ended status, or "unfinished"
    cost: float
    steps: int

    def as_json(self) -> dict:
        """The row as `--json` prints it."""
        return {"run_id": self.run_id, "path": str(self.path), "started": self.started, "repo": self.repo,
                "model": self.model, "status": self.status, "cost": self.cost, "steps": self.steps}


def _summary(run_dir: Path) -> RunSummary | None:
    """A run's summary, or None when its trajectory is missing or does not start a run."""
    path = run_dir / "trajectory.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    started: dict | None = None
    status, cost, steps = "unfinished", 0.0, 0
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line
        kind = event.get("type")
        if kind == "run_started":
            started = event
        elif kind == "model":
            steps += 1
            cost += float(event.get("response", {}).get("cost", 0.0))
        elif kind == "run_ended":
            status = str(event.get("status"))
        elif kind is not None and status != "unfinished":
            status = "unfinished"  # events after an end: a resumed run going on
    if started is None:
        return None
    return RunSummary(run_id=str(started.get("run_id", run_dir.name)), path=run_dir,
                      started=float(started.get("t") or path.stat().st_mtime), repo=str(started.get("repo", "")),
                      model=str(started.get("model", "")), status=status, cost=cost, steps=steps)


def list_runs(state_dir: Path) -> list[RunSummary]:
    """Every run under `state_dir/runs`, newest first."""
    root = state_dir / "runs"
    if not root.is_dir():
        return []
    found = [s for d in root.iterdir() if d.is_dir() and (s := _summary(d)) is not None]
    return sorted(found, key=lambda s: s.started, reverse=True)


def parse_age(text: str) -> float:
    """Seconds in an age such as 30d, 12h, 2w, 90m (a bare number is days)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m:
        raise ConfigError(f"not an age: {text!r} (say e.g. 30d, 12h, 2w)")
    return float(m.group(1)) * _AGE_UNITS[m.group(2) or "d"]


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    """Options of runs."""
    parser.add_argument("action", nargs="?", choices=["list", "clean"], default="list")
    parser.add_argument("--older-than", dest="older_than", help="clean: runs started before this age, e.g. 30d")
    parser.add_argument("--limit", type=int, default=50, help="list at most this many (newest first)")
    parser.add_argument("--dry-run", dest="dry_run", action="store_true", help="clean: only say what would go")
    add_output_options(parser)


def run(args: argparse.Namespace) -> int:
    """List or clean runs."""
    from agent.settings import load_settings

    settings = load_settings().settings
    runs = list_runs(settings.state_dir)
    if args.action == "clean":
        return _clean(runs, args)
    shown = runs[: max(args.limit, 0)]
    if args.json:
        for r in shown:
            print(json.dumps(r.as_json()))
        print(json.dumps({"result": {"status": "ok", "exit_code": 0, "runs": len(shown), "total": len(runs)}}))
        return 0
    t = Table(title=f"{len(runs)} runs in {settings.state_dir / 'runs'}")
    for col in ("run", "started", "repo", "model", "status", "steps", "cost"):
        t.add_column(col, justify="right" if col in ("steps", "cost") else "left",
                     no_wrap=col != "repo", overflow="fold")
    for r in shown:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started))
        t.add_row(r.run_id, when, escape(r.repo), r.model, r.status, str(r.steps), f"${r.cost:.4f}")
    console = Console()
    if not console.is_terminal:  # a pipe or a file: whole rows, not cut at 80 columns
        console = Console(width=240)
    console.print(t)
    return 0


def _clean(runs: list[RunSummary], args: argparse.Namespace) -> int:
    if not args.older_than:
        raise ConfigError("tome runs clean needs --older-than AGE (e.g. 30d)")
    cutoff = time.time() - parse_age(args.older_than)
    # A run resumed recently stays, whenever it started: its trajectory was written since.
    old = [r for r in runs if max(r.started, (r.path / "trajectory.jsonl").stat().st_mtime) < cutoff]
    for r in old:
        if not args.dry_run:
            shutil.rmtree(r.path)
    verb = "would remove" if args.dry_run else "removed"
    if args.json:
        print(json.dumps({"result": {"status": "ok", "exit_code": 0, "removed": [r.run_id for r in old],
                                     "dry_run": bool(args.dry_run)}}))
    else:
        Console().print(f"{verb} {len(old)} of {len(runs)} runs older than {args.older_than}")
    return 0
