"""tome chat's session: multi-turn over the scripted server, slash commands, asking before
destructive commands."""

from __future__ import annotations

from loop_helpers import FIX_NEW, FIX_OLD, call, settings_for

from agent.chat import SESSION_TASK, ChatSession
from agent.records import Mode, Task, UserNote
from agent.run import start_run
from agent.testing.server import Turn


def session_for(server, repo, tmp_path, model_for, asked):
    def approve(command: str) -> bool:
        asked.append(command)
        return False

    run = start_run(Task(statement=SESSION_TASK), settings_for(server, tmp_path, safety={"sandbox": "off"}),
                    repo=repo, model=model_for(server, idle_timeout=10.0, timeout=60.0), chat=True,
                    interactive=True, approve=approve)
    printed: list[str] = []
    return ChatSession(run, print_=printed.append), printed


def test_turns_slash_commands_and_undo(scripted, model_for, repo, tmp_path):
    server = scripted([
        Turn(tool_calls=[call("str_replace", path="stats.py", old_str=FIX_OLD, new_str=FIX_NEW)]),
        Turn(content="Fixed median for even counts."),
        Turn(content="It averages the two middle values."),
    ])
    asked: list[str] = []
    session, printed = session_for(server, repo, tmp_path, model_for, asked)
    assert session.send("fix median for even counts") == "turn"
    assert FIX_NEW in (repo / "stats.py").read_text()
    session.command("/diff")
    assert "+    return (ordered[mid - 1] + ordered[mid]) / 2" in printed[-1]
    session.command("/mode high")
    assert session.run.agent.mode == Mode.HIGH
    assert session.send("what did you change?") == "turn"
    body = server.chat_requests[-1].body
    assert body["reasoning_effort"] == "high"
    # the user's messages are in the history, in order, after the fixed prefix
    users = [m["content"] for m in body["messages"] if m["role"] == "user"]
    assert users[-2:] == ["fix median for even counts", "what did you change?"]
    session.command("/cost")
    assert "cache hit" in printed[-1]
    session.command("/undo")  # undoes the last turn (no file changes), then the one before
    session.command("/undo")
    assert FIX_NEW not in (repo / "stats.py").read_text()
    assert session.command("/quit") is False
    server.assert_done()
    notes = [e for e in session.run.trajectory.events if isinstance(e, UserNote) and e.source == "user"]
    assert len(notes) == 2


def test_destructive_command_asks_and_a_no_refuses(scripted, model_for, repo, tmp_path):
    marker = repo / "keep.txt"
    marker.write_text("precious")
    server = scripted([
        Turn(tool_calls=[call("bash", command="git clean -fdx")]),
        Turn(content="I did not clean the tree."),
    ])
    asked: list[str] = []
    session, _ = session_for(server, repo, tmp_path, model_for, asked)
    session.send("clean up the untracked files")
    assert asked and "git clean" in asked[0]
    assert marker.read_text() == "precious"
    server.assert_done()
