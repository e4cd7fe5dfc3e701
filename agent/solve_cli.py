"""`tome solve`, `tome resume` and `tome replay`.

Headless use (`--json`, or no terminal on stdin): JSONL events on stdout, then one result object;
no colour, no prompts (destructive commands are denied). Exit codes: 0 solved with a passing
check, 1 finished without one, 2 usage or config error, 3 a limit was reached, 4 a model or API
error (see `tome --help`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.prompt import Confirm

from agent.cli import add_output_options, add_settings_options, settings_from_args
from agent.errors import ConfigError
from agent.records import Event, Result, RunStarted, Task

__all__ = ["configure", "run", "run_dir_of"]


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    """Options of solve / resume / replay."""
    if name == "solve":
        parser.add_argument("task", nargs="?", help="what to do, in plain words; - reads it from stdin")
        parser.add_argument("--issue-file", type=Path, help="read the task from this file (- for stdin)")
        parser.add_argument("--test-command", help="the command that checks the fix")
        parser.add_argument("--repo", type=Path, default=Path("."), help="repository (default: .)")
        parser.add_argument("--worktree", action="store_true",
                            help="work in a new git worktree on branch tome/<run id>")
        parser.add_argument("--dry-run", dest="dry_run", action="store_true",
                            help="print what the model would be sent (chunks, tokens, tools, mode) and stop")
    if name in ("resume", "replay"):
        parser.add_argument("run", nargs="?", help="run id or run directory")
        parser.add_argument("--last", action="store_true", help="the most recent run")
    if name in ("solve", "resume"):
        parser.add_argument("--yes", "--approve", dest="yes", action="store_true",
                            help="interactive: run destructive commands without asking (headless still denies)")
        parser.add_argument("--patch-out", dest="patch_out", type=Path, help="write the final patch here")
        parser.add_argument("--output-last-message", dest="last_message", type=Path,
                            help="write the model's final summary here")
        parser.add_argument("--view", action="store_true",
                            help="serve the run's page live on 127.0.0.1 while it runs (see tome view)")
        add_settings_options(parser)
    else:
        add_output_options(parser)


def run_dir_of(settings, ref: str | None, *, last: bool = False) -> Path:
    """The directory of run `ref` (an id or a path), or of the most recent run with `last`."""
    from agent.runs_cli import list_runs

    if last or ref is None:
        runs = list_runs(settings.state_dir)
        if not last:
            raise ConfigError("name a run (an id from tome runs, or a run directory) or use --last")
        if not runs:
            raise ConfigError(f"no runs in {settings.state_dir / 'runs'}")
        return runs[0].path
    p = Path(ref)
    if (p / "trajectory.jsonl").is_file():
        return p
    candidate = settings.state_dir / "runs" / ref
    if (candidate / "trajectory.jsonl").is_file():
        return candidate
    raise ConfigError(f"no run {ref!r} (looked in {p} and {candidate}; tome runs lists them)")


def _read_text(source: str | Path, what: str) -> str:
    if str(source) == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {what} {source}: {e.strerror}") from None


def _task(args: argparse.Namespace) -> Task:
    if args.issue_file is not None:
        text = _read_text(args.issue_file, "--issue-file")
    elif args.task == "-":
        text = _read_text("-", "the task from")
    elif args.task:
        text = args.task
    else:
        raise ConfigError('give a task: tome solve "what to do", --issue-file FILE, or - to read stdin')
    if not text.strip():
        raise ConfigError("the task is empty")
    return Task(statement=text, test_command=args.test_command)


def run(args: argparse.Namespace) -> int:
    """Dispatch solve / resume / replay."""
    if args.command == "replay":
        return _replay(args)
    from agent.run import RunSpec, complete, resume_run, solve

    project = args.repo if args.command == "solve" else None
    settings = settings_from_args(args, project)
    if args.command == "solve" and args.dry_run:
        return _dry_run(_task(args), settings, args)
    headless = args.json or not sys.stdin.isatty()
    # Each question says what it asks (a destructive command, running without a sandbox).
    approve = None if headless else ((lambda _question: True) if args.yes else Confirm.ask)
    show = _Output(args)
    run_dir = None if args.command == "solve" else run_dir_of(settings, args.run, last=args.last)
    with _live_page(args, settings, run_dir) as follow:
        hooks = show.hooks if follow is None else replace(show.hooks, on_event=_both(show.hooks.on_event, follow))
        if args.command == "solve":
            spec = RunSpec(task=_task(args), settings=settings, repo=args.repo, worktree=args.worktree,
                           interactive=not headless, approve=approve, hooks=hooks)
            result: Result = solve(spec)
        else:
            result = complete(resume_run(run_dir, settings, interactive=not headless, approve=approve,
                                         hooks=hooks))
    _write_outputs(args, result)
    show.result(result)
    return result.exit_code


@contextmanager
def _live_page(args: argparse.Namespace, settings, run_dir: Path | None) -> Iterator[Callable[[Event], None] | None]:
    """With --view: the run's live page on 127.0.0.1 for as long as the run goes; yields the
    listener that points the page at the run once its first event names it."""
    if not args.view:
        yield None
        return
    from agent.webview.pages import FollowRun
    from agent.webview.server import LiveServer, open_browser

    page = FollowRun(run_dir=run_dir)

    def follow(event: Event) -> None:
        if isinstance(event, RunStarted):
            page.run_dir = settings.state_dir / "runs" / event.run_id

    with LiveServer(page) as server:
        Console(stderr=True).print(f"view: {server.url}  (live while the run goes)")
        open_browser(server.url)
        yield follow


def _both(first: Callable[[Event], None] | None, second: Callable[[Event], None]) -> Callable[[Event], None]:
    def both(event: Event) -> None:
        if first is not None:
            first(event)
        second(event)

    return both


class _Output:
    """Where a run's events, stages and result go: JSONL, a live view, or (quiet) the result alone."""

    def __init__(self, args: argparse.Namespace) -> None:
        from agent.run import RunHooks
        from agent.view import JsonStream, LiveView

        self.stream = JsonStream() if args.json else None
        self.quiet = bool(args.quiet) and not args.json
        view = None if (args.json or self.quiet) else LiveView(verbose=args.verbose)
        if self.stream is not None:
            self.hooks = RunHooks(on_event=self.stream.on_event)
        elif view is not None:
            self.hooks = RunHooks(on_event=view.on_event, on_delta=view.on_delta, on_stage=_stage,
                                  live=lambda: view)
        else:
            self.hooks = RunHooks()

    def result(self, result: Result) -> None:
        """The result object (JSON) or table, and how to go on."""
        from agent.view import result_table

        if self.stream is not None:
            self.stream.result(result)
            return
        Console().print(result_table(result))
        if result.exit_code != 0 and not self.quiet:
            Console(stderr=True).print(f"resume with: tome resume {result.run_id}")


def _stage(message: str) -> None:
    """A preparation step (packing, mode) on stderr."""
    Console(stderr=True).print(f"[dim]{message}[/]")


def _write_outputs(args: argparse.Namespace, result: Result) -> None:
    if args.patch_out is not None:
        args.patch_out.write_text(result.patch, encoding="utf-8")
    if args.last_message is not None:
        args.last_message.write_text((result.summary or result.reason) + "\n", encoding="utf-8")


def _dry_run(task: Task, settings, args: argparse.Namespace) -> int:
    """What the first request would hold, counted with the model's tokenizer; nothing is sent."""
    import json

    from agent.run import plan_run
    from agent.view import dry_run_table

    from agent.mcp_client import connect_servers
    from agent.run import with_mcp_tools

    plan = plan_run(task, settings, repo=args.repo)
    hub = connect_servers(settings, cwd=Path(args.repo).resolve(), warn=_stage)
    if hub is not None:
        plan = with_mcp_tools(plan, hub)
        hub.close()
    report = dry_run_report(plan, settings)
    if args.json:
        print(json.dumps({"result": {"status": "dry-run", "exit_code": 0, **report}}))
    else:
        Console().print(dry_run_table(report))
    return 0


def dry_run_report(plan, settings) -> dict:
    """The first request's chunks with exact token counts, the tools, and the mode with its reason
    (with `triage`, the first request is the triage turn and the mode is the fallback's)."""
    import json

    from tools import default_tools

    from agent.tokens import get_tokenizer

    profile = settings.profile()
    counter = get_tokenizer(profile.tokenizer)
    schemas = [*(t.schema() for t in default_tools()), *plan.prefix.mcp_tools]
    from agent.triage import TRIAGE_PROMPT

    chunks = [("system", plan.prefix.system), ("instructions", plan.prefix.instructions),
              ("tools", json.dumps(schemas, sort_keys=True)), ("pack", plan.prefix.pack),
              ("task", plan.prefix.task), ("triage request", TRIAGE_PROMPT if plan.triage else "")]
    return {
        "model": profile.name,
        "endpoint": settings.base_url or profile.base_url,
        "mode": plan.mode.value,
        "mode_label": plan.mode.label,
        "mode_reason": plan.mode_reason,
        "triage": plan.triage,
        "chunks": [{"name": n, "tokens": counter.count(text), "chars": len(text)} for n, text in chunks if text],
        "tools": [s["function"]["name"] for s in schemas],
        "pack_files": {"full": plan.pack.totals.full, "outline": plan.pack.totals.outline,
                       "path": plan.pack.totals.path_only},
    }


def _replay(args: argparse.Namespace) -> int:
    from agent.settings import load_settings
    from agent.trajectory import Trajectory
    from agent.view import JsonStream, LiveView

    settings = load_settings().settings
    traj = Trajectory.load(run_dir_of(settings, args.run, last=args.last) / "trajectory.jsonl", repair=False)
    sink = JsonStream().on_event if args.json else LiveView(Console(), verbose=args.verbose).on_event
    for event in traj.events:
        sink(event)
    return 0
