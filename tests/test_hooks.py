"""User hooks on tool and run events, driven by the scripted server through a real run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agent.records import Task, ToolFinished
from agent.run import RunSpec, complete, start_run
from agent.settings import HookCommand, HookSettings
from agent.testing.server import Turn
from loop_helpers import PLAN, TEST_CMD, call, fixing_turns, run_once, settings_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "hooks"


def recorder(path: Path, *, exit_code: int = 0, say: str = "") -> HookCommand:
    """A hook that appends the event it got to `path` (one JSON line) and exits with `exit_code`."""
    script = (f"import sys; data = sys.stdin.read(); open({str(path)!r}, 'a').write(data + '\\n'); "
              f"print({say!r}); sys.exit({exit_code})")
    return HookCommand(command=[sys.executable, "-c", script])


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def finished(run) -> list[ToolFinished]:
    return list(run.trajectory.of_type(ToolFinished))


def test_before_tool_blocks_git_push_and_allows_the_rest(scripted, repo, tmp_path, model_for):
    block = HookCommand(command=[sys.executable, str(EXAMPLES / "block_git_push.py")], tools=["bash"])
    turns = [Turn(content=PLAN, tool_calls=[call("bash", command="git push origin main")]),
             Turn(tool_calls=[call("bash", command="echo hello-from-bash")]), *fixing_turns()[1:]]
    server = scripted(turns)
    run, result = run_once(server, repo, tmp_path, model_for, hooks=HookSettings(before_tool=[block]))
    pushed, echoed = finished(run)[:2]
    assert not pushed.ok and pushed.error_kind == "blocked_by_hook"
    assert "before_tool hook blocked this call: pushing is not allowed" in pushed.content
    assert echoed.ok and "hello-from-bash" in echoed.content
    # the model saw the reason in its next request
    assert "pushing is not allowed" in json.dumps(server.chat_requests[1].body["messages"])
    assert result.status == "solved"


def test_a_hook_that_hangs_blocks_after_its_timeout(scripted, repo, tmp_path, model_for):
    hang = HookCommand(command=[sys.executable, "-c", "import time; time.sleep(60)"], timeout=0.5)
    server = scripted([Turn(content=PLAN, tool_calls=[call("view", path="stats.py")]), *fixing_turns()[1:]])
    run, _ = run_once(server, repo, tmp_path, model_for, hooks=HookSettings(before_tool=[hang]))
    first = finished(run)[0]
    assert not first.ok and "timed out after 0.5s" in first.content


def test_a_hook_that_cannot_start_blocks(scripted, repo, tmp_path, model_for):
    missing = HookCommand(command=[str(tmp_path / "no-such-hook")])
    server = scripted([Turn(content=PLAN, tool_calls=[call("view", path="stats.py")]), *fixing_turns()[1:]])
    run, _ = run_once(server, repo, tmp_path, model_for, hooks=HookSettings(before_tool=[missing]))
    assert "could not start" in finished(run)[0].content


def test_after_tool_gets_the_result_and_its_complaint_reaches_the_model(scripted, repo, tmp_path, model_for):
    log = tmp_path / "after.jsonl"
    hooks = HookSettings(after_tool=[recorder(log, exit_code=1, say="lint: line too long")])
    server = scripted(fixing_turns())
    run, result = run_once(server, repo, tmp_path, model_for, hooks=hooks)
    got = events(log)
    assert [e["tool"] for e in got] == ["view", "str_replace", "run_tests", "submit"]
    assert got[0]["event"] == "after_tool" and "def median" in got[0]["output"] and got[0]["ok"]
    assert got[0]["arguments"]["path"] == "stats.py" and got[0]["run_id"] == run.run_id
    viewed = finished(run)[0]
    assert viewed.ok and "[an after_tool hook reported: lint: line too long]" in viewed.content
    assert result.status == "solved"


def test_before_submit_rejects_like_a_failed_check_then_allows(scripted, repo, tmp_path, model_for):
    seen = tmp_path / "submits.jsonl"
    # Rejects the first submission, allows the second.
    script = (f"import sys, os; p = {str(seen)!r}; first = not os.path.exists(p); "
              "open(p, 'a').write(sys.stdin.read() + '\\n'); "
              "print('changelog entry missing') if first else None; sys.exit(1 if first else 0)")
    hooks = HookSettings(before_submit=[HookCommand(command=[sys.executable, "-c", script])])
    turns = [*fixing_turns(), Turn(tool_calls=[call("submit", summary="again, with the changelog")])]
    server = scripted(turns)
    run, result = run_once(server, repo, tmp_path, model_for, hooks=hooks)
    first, second = events(seen)
    assert first["event"] == "before_submit" and first["summary"] == "median averages the middle two"
    assert "+    return (ordered[mid - 1] + ordered[mid]) / 2" in first["patch"]
    rejected = [e for e in finished(run) if e.name == "submit"][0]
    assert not rejected.ok and rejected.error_kind == "rejected_by_hook"
    assert "changelog entry missing" in rejected.content
    assert result.status == "solved" and result.summary == "again, with the changelog"


def test_run_end_is_told_how_the_run_ended(scripted, repo, tmp_path, model_for, monkeypatch):
    log = tmp_path / "notify.log"
    monkeypatch.setenv("TOME_NOTIFY_LOG", str(log))  # the example hook's own switch
    notify = HookCommand(command=[sys.executable, str(EXAMPLES / "notify_run_end.py")])
    server = scripted(fixing_turns())
    settings = settings_for(server, tmp_path, hooks=HookSettings(run_end=[notify]))
    run = start_run(RunSpec(task=Task(statement="median is wrong", test_command=TEST_CMD), settings=settings,
                            repo=repo, model=model_for(server, idle_timeout=10.0, timeout=60.0)))
    result = complete(run)
    assert result.status == "solved"
    assert log.read_text() == f"tome run {run.run_id}: solved (submitted; the check passed), ${result.cost:.4f}\n"


def test_without_hooks_the_tools_are_the_built_in_ones(scripted, repo, tmp_path, model_for):
    from tools import default_tools

    server = scripted(fixing_turns())
    run, _ = run_once(server, repo, tmp_path, model_for)
    assert list(run.agent.toolbox.tools.values()) == default_tools()
