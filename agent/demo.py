"""`tome demo`: the whole loop, offline and without a key.

A copy of the demo repository shipped in the package (agent/demo_files/repo: a tiny package with a
failing test) becomes a real git repository in a temporary directory; the scripted server replays
agent/demo_files/script.json (a recorded session) over real HTTP; the real loop packs the repo,
chooses a mode, plans, calls tools, runs the tests, submits; the harness re-runs the check and
shows the patch.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from rich.console import Console

from agent.errors import ConfigError
from tools.gitcmd import git as run_git

__all__ = ["configure", "run", "demo_dir", "prepare_repo"]

TEST_COMMAND = "python -m pytest -q tests"


def demo_dir() -> Path:
    """The demo's files, shipped inside the package (package data), so a wheel install has them."""
    path = Path(__file__).resolve().parent / "demo_files"
    if not (path / "script.json").is_file():
        raise ConfigError(f"the demo files are missing ({path}); reinstall tome")
    return path


def prepare_repo(dest: Path) -> Path:
    """Copy the demo repository to `dest` and commit it, so the patch is a real git diff."""
    shutil.copytree(demo_dir() / "repo", dest)
    env_args = ["-c", "user.name=tome demo", "-c", "user.email=demo@tome.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], [*env_args, "commit", "-q", "-m", "demo repository"]):
        run_git(*args, cwd=dest)
    return dest


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    """Options of the demo."""
    parser.add_argument("--json", action="store_true", help="JSONL events and a result object")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repository")


def run(args: argparse.Namespace) -> int:
    """Run the recorded session through the real loop; exit like `tome solve`."""
    from agent.records import Task
    from agent.settings import SafetySettings, Settings
    from agent.run import RunHooks, RunSpec, solve
    from agent.testing.server import Script, ScriptedServer
    from agent.view import JsonStream, LiveView, result_table

    console = Console(stderr=True)
    work = Path(tempfile.mkdtemp(prefix="tome-demo-"))
    try:
        repo = prepare_repo(work / "repo")
        task = Task(statement=(repo / "ISSUE.md").read_text(encoding="utf-8"), test_command=TEST_COMMAND)
        with ScriptedServer(Script.from_json(demo_dir() / "script.json")) as server:
            settings = Settings(
                model="deepseek-v4-pro",
                base_url=server.base_url,
                api_key="demo-key-not-secret",
                state_dir=work / "state",
                cache_dir=work / "cache",
                max_steps=12,
                safety=SafetySettings(sandbox="off", approval="deny"),
            )
            stream = JsonStream() if args.json else None
            view = None if args.json else LiveView(console)
            if view:
                console.print(f"[bold]tome demo[/]: scripted model at {server.base_url}, repo {repo}")
            hooks = RunHooks(on_event=stream.on_event) if stream else RunHooks(
                on_event=view.on_event, on_delta=view.on_delta,
                on_stage=lambda m: console.print(f"[dim]{m}[/]"), live=lambda: view)
            result = solve(RunSpec(task=task, settings=settings, repo=repo, hooks=hooks))
            server.assert_done()
        if stream:
            stream.result(result)
        else:
            Console().print(result_table(result))
        return result.exit_code
    finally:
        if args.keep:
            console.print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
