"""tome chat's session: multi-turn over the scripted server, slash commands, asking before
destructive commands."""

from __future__ import annotations

from loop_helpers import FIX_NEW, FIX_OLD, call, settings_for

from agent.chat import SESSION_TASK, ChatSession
from agent.records import Mode, Task, UserNote
from agent.run import RunSpec, start_run
from agent.testing.server import Turn


def session_for(server, repo, tmp_path, model_for, asked):
    def approve(command: str) -> bool:
        asked.append(command)
        return False

    run = start_run(RunSpec(task=Task(statement=SESSION_TASK),
                            settings=settings_for(server, tmp_path, safety={"sandbox": "off"}), repo=repo,
                            model=model_for(server, idle_timeout=10.0, timeout=60.0), chat=True,
                            interactive=True, approve=approve))
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


def test_a_bad_mode_or_unknown_command_keeps_the_session(scripted, model_for, repo, tmp_path):
    server = scripted([])
    session, printed = session_for(server, repo, tmp_path, model_for, [])
    assert session.command("/mode turbo") is True  # ended the whole session before
    assert "unknown mode 'turbo'" in printed[-1] and session.run.agent.mode == Mode.NON_THINK
    assert session.command("/help") is True
    assert all(cmd in printed[-1] for cmd in ("/undo", "/diff", "/cost", "/mode", "/pack", "/quit"))
    assert session.command("/frobnicate") is True and "/help" in printed[-1]
    assert not server.chat_requests


def test_chat_in_a_terminal_banner_and_replay_show_what_the_user_typed(scripted, repo, tmp_path):
    """A real pseudo-terminal: the banner keeps its [non-think|high|max], a chat turn runs, and
    `tome replay` of the session shows what the user typed."""
    import os
    import pty
    import select
    import subprocess
    import sys
    import time

    from test_cli_solve import env_for

    server = scripted([Turn(content="The median of [1, 2] is 1.5 once fixed.")])
    env = {**env_for(tmp_path), "TERM": "dumb", "COLUMNS": "200"}
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "chat", "--repo", str(repo), "--base-url",
                             server.base_url, "--mode", "non-think"], stdin=follower, stdout=follower,
                            stderr=follower, env=env, cwd=repo, close_fds=True)
    os.close(follower)
    seen = b""

    def read_until(needle: bytes, seconds: float = 60) -> None:
        nonlocal seen
        deadline = time.monotonic() + seconds
        while needle not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(leader, 65536)
                except OSError:
                    break
        assert needle in seen, seen.decode(errors="replace")[-2000:]

    try:
        read_until(b"you")
        assert b"/mode [non-think|low|high|max]" in seen
        os.write(leader, b"what is the median of 1 and 2?\r")
        read_until(b"1.5")
        os.write(leader, b"/mode turbo\r")
        read_until(b"unknown mode")
        os.write(leader, b"/quit\r")
        read_until(b"tome replay")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    run_id = seen.decode(errors="replace").split("tome replay", 1)[1].split()[0]
    replay = subprocess.run([sys.executable, "-m", "agent.cli", "replay", run_id], env=env, cwd=repo,
                            capture_output=True, text=True, timeout=60)
    assert replay.returncode == 0, replay.stderr
    assert "what is the median of 1 and 2?" in replay.stdout + replay.stderr
