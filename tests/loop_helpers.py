"""Shared pieces of the loop and CLI tests: a tiny repo with a failing test and a scripted fix."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from agent.records import Task
from agent.settings import SafetySettings, Settings
from agent.run import RunSpec, finish_run, start_run
from agent.testing.server import ScriptedToolCall, Turn

STATS = '''"""Summary statistics."""


def median(values):
    """The middle value."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return ordered[mid]
'''
FIX_OLD = "        return ordered[mid]\n    return ordered[mid]\n"
FIX_NEW = "        return ordered[mid]\n    return (ordered[mid - 1] + ordered[mid]) / 2\n"
# No plugin autoload in the repo's own pytest: the plugins installed here (ray, hypothesis, ...)
# cost over a second per run, and the fixture repo's two tests need none of them.
TEST_CMD = "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q tests"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout


def make_repo(tmp_path: Path) -> Path:
    """A real git repo with a failing test."""
    root = tmp_path / "repo"
    (root / "tests").mkdir(parents=True)
    (root / "stats.py").write_text(STATS)
    (root / "tests" / "test_stats.py").write_text(
        "from stats import median\n\n\ndef test_odd():\n    assert median([3, 1, 2]) == 2\n\n\n"
        "def test_even():\n    assert median([4, 1, 3, 2]) == 2.5\n"
    )
    (root / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    return root


def settings_for(server: Any, tmp_path: Path, **over: Any) -> Settings:
    values: dict[str, Any] = {
        "model": "deepseek-v4-pro",
        "base_url": server.base_url,
        "api_key": "sk-loop-test",
        "state_dir": tmp_path / "state",
        "cache_dir": tmp_path / "cache",
        "mode": "non-think",
        "safety": SafetySettings(sandbox="off", approval="deny"),
    }
    values.update(over)
    return Settings(**values)


def call(name: str, **arguments: Any) -> ScriptedToolCall:
    return ScriptedToolCall(name=name, arguments=arguments)


PLAN = "Goal: median of an even count averages the middle two.\nFiles: stats.py\nVerify: " + TEST_CMD


def fixing_turns() -> list[Turn]:
    return [
        Turn(content=PLAN, reasoning_content="look first", tool_calls=[call("view", path="stats.py")]),
        Turn(reasoning_content="fix it", tool_calls=[call("str_replace", path="stats.py", old_str=FIX_OLD, new_str=FIX_NEW)]),
        Turn(reasoning_content="prove it", tool_calls=[call("run_tests", command=TEST_CMD)]),
        Turn(reasoning_content="done", tool_calls=[call("submit", summary="median averages the middle two")]),
    ]


def run_once(server: Any, repo: Path, tmp_path: Path, model_for: Any, *, task: Task | None = None, **over: Any):
    settings = settings_for(server, tmp_path, **over)
    run = start_run(RunSpec(task=task or Task(statement="median is wrong for even counts", test_command=TEST_CMD),
                            settings=settings, repo=repo, model=model_for(server, idle_timeout=10.0, timeout=60.0)))
    return run, finish_run(run, run.agent.run())
