"""`tome solve`, `tome resume` and `tome replay`.

Headless use (`--json`): JSONL events on stdout, then one result object; no colour, no prompts
(destructive commands are denied). Exit codes: 0 solved with a passing check, 1 finished
without one, 2 usage or config error, 3 a limit was reached, 4 a model or API error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.prompt import Confirm

from agent.cli import add_settings_options, settings_from_args
from agent.errors import ConfigError
from agent.records import Result, Task

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    """Options of solve / resume / replay."""
    if name == "solve":
        parser.add_argument("task", nargs="?", help="what to do, in plain words")
        parser.add_argument("--issue-file", type=Path, help="read the task from this file")
        parser.add_argument("--test-command", help="the command that checks the fix")
        parser.add_argument("--repo", type=Path, default=Path("."), help="repository (default: .)")
        parser.add_argument("--worktree", action="store_true",
                            help="work in a new git worktree on branch tome/<run id>")
        add_settings_options(parser)
    elif name == "resume":
        parser.add_argument("run", help="run id or run directory")
        add_settings_options(parser)
    else:
        parser.add_argument("run", help="run id or run directory")
        parser.add_argument("--json", action="store_true", help="print the events as JSONL")


def _run_dir(settings, ref: str) -> Path:
    p = Path(ref)
    if (p / "trajectory.jsonl").is_file():
        return p
    candidate = settings.state_dir / "runs" / ref
    if (candidate / "trajectory.jsonl").is_file():
        return candidate
    raise ConfigError(f"no run {ref!r} (looked in {p} and {candidate})")


def _task(args: argparse.Namespace) -> Task:
    if args.issue_file is not None:
        try:
            text = args.issue_file.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read --issue-file {args.issue_file}: {e.strerror}") from None
    elif args.task:
        text = args.task
    else:
        raise ConfigError("give a task: tome solve \"what to do\" or --issue-file FILE")
    return Task(statement=text, test_command=args.test_command)


def run(args: argparse.Namespace) -> int:
    """Dispatch solve / resume / replay."""
    if args.command == "replay":
        return _replay(args)
    from agent.solve import finish_run, resume_run, start_run
    from agent.view import JsonStream, LiveView, result_table

    project = args.repo if args.command == "solve" else None
    settings = settings_from_args(args, project)
    headless = args.json or not sys.stdin.isatty()
    approve = None if headless else Confirm.ask  # each question says what it asks
    stream = JsonStream() if args.json else None
    view = None if args.json else LiveView()
    hooks = {
        "on_event": stream.on_event if stream else view.on_event,
        "on_delta": None if stream else view.on_delta,
    }
    if args.command == "solve":
        run_ = start_run(_task(args), settings, repo=args.repo, worktree=args.worktree,
                         interactive=not headless, approve=approve,
                         on_stage=None if stream else (lambda m: Console(stderr=True).print(f"[dim]{m}[/]")),
                         **hooks)
    else:
        run_ = resume_run(_run_dir(settings, args.run), settings, interactive=not headless,
                          approve=approve, **hooks)
    if view is not None:
        with view:
            outcome = run_.agent.run()
    else:
        outcome = run_.agent.run()
    result: Result = finish_run(run_, outcome)
    if stream is not None:
        stream.result(result)
    else:
        Console().print(result_table(result))
        if result.exit_code != 0:
            Console(stderr=True).print(f"resume with: tome resume {result.run_id}")
    return result.exit_code


def _replay(args: argparse.Namespace) -> int:
    from agent.settings import load_settings
    from agent.trajectory import Trajectory
    from agent.view import JsonStream, LiveView

    settings = load_settings().settings
    traj = Trajectory.load(_run_dir(settings, args.run) / "trajectory.jsonl", repair=False)
    sink = JsonStream().on_event if args.json else LiveView(Console()).on_event
    for event in traj.events:
        sink(event)
    return 0
