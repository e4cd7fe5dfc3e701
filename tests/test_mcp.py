"""MCP tools from real SDK servers (tests/mcp_fixture_server.py) over stdio and streamable HTTP,
called by a model scripted over the real openai SDK, through the same Toolbox path."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.records import Task, ToolFinished
from agent.run import RunHooks, RunSpec, finish_run, start_run
from agent.settings import HookCommand, HookSettings, McpServer, McpSettings, SafetySettings
from agent.testing.server import Turn
from loop_helpers import PLAN, TEST_CMD, call, fixing_turns, settings_for
from test_cli_solve import env_for, lines_of, tome

FIXTURE = Path(__file__).resolve().parent / "mcp_fixture_server.py"


def stdio_server(**over) -> McpServer:
    return McpServer(**{"command": sys.executable, "args": [str(FIXTURE), "stdio"], "timeout": 20.0,
                        "approval": "allow", **over})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_url() -> Iterator[str]:
    """The fixture server over streamable HTTP on 127.0.0.1, stopped at teardown."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(FIXTURE), "http", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60  # readiness wait, not an assertion on speed
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the HTTP fixture server exited")
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    proc.wait(10)


def start(server, repo, tmp_path, model_for, servers: dict[str, McpServer], *, interactive=False,
          approve=None, stages=None, **over):
    over.setdefault("safety", SafetySettings(sandbox="off", approval="ask"))
    settings = settings_for(server, tmp_path, mcp=McpSettings(servers=servers), **over)
    return start_run(RunSpec(
        task=Task(statement="median is wrong for even counts", test_command=TEST_CMD), settings=settings,
        repo=repo, interactive=interactive, approve=approve, model=model_for(server, idle_timeout=10.0, timeout=60.0),
        hooks=RunHooks(on_stage=(stages if stages is not None else []).append)))


def run_to_end(server, repo, tmp_path, model_for, servers, **kw):
    run = start(server, repo, tmp_path, model_for, servers, **kw)
    return run, finish_run(run, run.agent.run())


def observations(run) -> list[ToolFinished]:
    return list(run.trajectory.of_type(ToolFinished))


def turns_calling(*calls) -> list[Turn]:
    """A plan turn with the MCP calls, then the scripted fix."""
    return [Turn(content=PLAN, tool_calls=list(calls)), *fixing_turns()]


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_solve_calls_an_mcp_tool(transport, scripted, repo, tmp_path, model_for, request):
    entry = stdio_server() if transport == "stdio" else McpServer(url=request.getfixturevalue("http_url"),
                                                                  approval="allow", timeout=20.0)
    server = scripted(turns_calling(call("mcp__fx__add", a=2, b=40)))
    run, result = run_to_end(server, repo, tmp_path, model_for, {"fx": entry})
    added = observations(run)[0]
    assert added.name == "mcp__fx__add" and added.ok and added.content == "42"
    sent = server.chat_requests[0].body["tools"]
    names = [t["function"]["name"] for t in sent]
    assert names[-7:] == ["mcp__fx__add", "mcp__fx__crash", "mcp__fx__echo", "mcp__fx__fail", "mcp__fx__grow",
                          "mcp__fx__shout", "mcp__fx__slow"]
    add = sent[names.index("mcp__fx__add")]["function"]
    assert add["parameters"]["required"] == ["a", "b"] and add["parameters"]["properties"]["a"]["type"] == "integer"
    answered = [m for m in server.chat_requests[1].body["messages"] if m.get("role") == "tool"]
    assert answered[0]["content"] == "42"
    assert result.status == "solved"


def test_arguments_are_checked_against_the_servers_schema(scripted, repo, tmp_path, model_for):
    server = scripted(turns_calling(call("mcp__fx__add", a="two"), call("mcp__fx__fail")))
    run, result = run_to_end(server, repo, tmp_path, model_for, {"fx": stdio_server()})
    bad, failed = observations(run)[:2]
    assert not bad.ok and bad.error_kind == "invalid_arguments"
    assert "'b' is a required property" in bad.content and "a: 'two' is not of type 'integer'" in bad.content
    assert not failed.ok and failed.error_kind == "mcp_tool_error"
    assert result.status == "solved"


def test_results_are_redacted_and_bounded_like_any_tools(scripted, repo, tmp_path, model_for):
    key = "sk-" + "0123456789abcdef" * 2  # the deepseek-api-key rule's shape (agent/secrets.py)
    server = scripted(turns_calling(call("mcp__fx__echo", text=f"token {key}\n"),
                                    call("mcp__fx__echo", text="a line of output\n", times=20_000)))
    run, _ = run_to_end(server, repo, tmp_path, model_for, {"fx": stdio_server()})
    secret, long = observations(run)[:2]
    assert key not in secret.content and "[REDACTED:" in secret.content
    assert "cut" in long.content and len(long.content) < 20_000 * len("a line of output\n") / 2


def test_a_hanging_tool_times_out_and_a_crashing_server_is_an_observation(scripted, repo, tmp_path, model_for):
    server = scripted(turns_calling(call("mcp__fx__slow"), call("mcp__fx__crash"), call("mcp__fx__add", a=1, b=1)))
    run, result = run_to_end(server, repo, tmp_path, model_for, {"fx": stdio_server(timeout=3.0)})
    slow, crash, after = observations(run)[:3]
    assert slow.error_kind == "mcp_timeout" and "did not answer slow within 3s" in slow.content
    assert crash.error_kind == "mcp_error" and "failed on crash" in crash.content
    assert after.error_kind == "mcp_error"  # the server is gone; the run goes on without it
    assert result.status == "solved"


def test_a_tool_added_mid_run_is_reported_not_offered(scripted, repo, tmp_path, model_for):
    server = scripted(turns_calling(call("mcp__fx__grow"), call("mcp__fx__add", a=1, b=1), call("mcp__fx__late")))
    run, _ = run_to_end(server, repo, tmp_path, model_for, {"fx": stdio_server()})
    grow, add, late = observations(run)[:3]
    assert "MCP server fx changed its tool list during the run" in grow.content + add.content
    assert late.error_kind == "unknown_tool"
    tools = [r.body["tools"] for r in server.chat_requests]
    assert all(t == tools[0] for t in tools) and "mcp__fx__late" not in json.dumps(tools[0])


def test_a_server_that_fails_to_start_is_a_warning_and_the_run_goes_on(scripted, repo, tmp_path, model_for):
    stages: list[str] = []
    broken = stdio_server(env={"TOME_FIXTURE_CRASH_AT_START": "1"}, timeout=20.0)
    missing = McpServer(command=str(tmp_path / "no-such-server"), approval="allow")
    server = scripted(fixing_turns())
    run, result = run_to_end(server, repo, tmp_path, model_for, {"broken": broken, "missing": missing,
                                                                   "fx": stdio_server(tools=["shout"])},
                             stages=stages)
    assert sum(s.startswith("MCP server broken is not used in this run") for s in stages) == 1
    assert sum(s.startswith("MCP server missing is not used in this run") for s in stages) == 1
    names = [t["function"]["name"] for t in server.chat_requests[0].body["tools"]]
    assert [n for n in names if n.startswith("mcp__")] == ["mcp__fx__shout"]  # the allow-list
    assert result.status == "solved"


def test_headless_refuses_a_server_the_user_did_not_allow(scripted, repo, tmp_path, model_for):
    server = scripted(turns_calling(call("mcp__fx__shout", text="hi")))
    run, result = run_to_end(server, repo, tmp_path, model_for, {"fx": stdio_server(approval="ask")})
    refused = observations(run)[0]
    assert refused.error_kind == "refused" and "headless" in refused.content
    assert 'approval = "allow" under [mcp.servers.fx]' in refused.content
    assert result.status == "solved"


def test_safety_approval_deny_refuses_even_an_allowed_server(scripted, repo, tmp_path, model_for):
    server = scripted(turns_calling(call("mcp__fx__shout", text="hi")))
    run, _ = run_to_end(server, repo, tmp_path, model_for, {"fx": stdio_server(approval="allow")},
                        safety=SafetySettings(sandbox="off", approval="deny"))
    assert observations(run)[0].error_kind == "refused"


@pytest.mark.parametrize(("answer", "ok"), [(True, True), (False, False)])
def test_interactive_asks_the_user(answer, ok, scripted, repo, tmp_path, model_for):
    asked: list[str] = []
    server = scripted(turns_calling(call("mcp__fx__shout", text="hi")))
    run, _ = run_to_end(server, repo, tmp_path, model_for, {"fx": stdio_server(approval="ask")},
                        interactive=True, approve=lambda q: asked.append(q) or answer)
    shout = observations(run)[0]
    assert asked == ['The agent wants to call the MCP tool mcp__fx__shout with {"text": "hi"}\nAllow it?']
    assert shout.ok is ok and (shout.content == "HI" if ok else "declined" in shout.content)


def test_the_tools_chunk_is_identical_across_two_runs(scripted, repo, tmp_path, model_for):
    prefixes = []
    for _ in range(2):  # runs that change nothing, so both pack the same commit
        server = scripted([Turn(content=PLAN, tool_calls=[call("view", path="stats.py")]),
                           Turn(tool_calls=[call("submit", summary="s")]), Turn(tool_calls=[call("submit", summary="s")])])
        run, _ = run_to_end(server, repo, tmp_path, model_for, {"fx": stdio_server(), "fy": stdio_server()})
        prefixes.append((run.trajectory.started.prefix_sha256, server.chat_requests[0].body["tools"]))
    (sha_a, tools_a), (sha_b, tools_b) = prefixes
    assert sha_a == sha_b and tools_a == tools_b
    names = [t["function"]["name"] for t in tools_a if t["function"]["name"].startswith("mcp__")]
    assert names == sorted(names) and len(names) == 14


def test_a_before_tool_hook_sees_and_can_block_an_mcp_call(scripted, repo, tmp_path, model_for):
    script = ("import json, sys; e = json.load(sys.stdin); "
              "sys.exit(print('no shouting') or 1) if e['tool'] == 'mcp__fx__shout' else None")
    hooks = HookSettings(before_tool=[HookCommand(command=[sys.executable, "-c", script])])
    server = scripted(turns_calling(call("mcp__fx__shout", text="hi"), call("mcp__fx__add", a=1, b=2)))
    run, result = run_to_end(server, repo, tmp_path, model_for, {"fx": stdio_server()}, hooks=hooks)
    shout, add = observations(run)[:2]
    assert shout.error_kind == "blocked_by_hook" and "no shouting" in shout.content
    assert add.ok and add.content == "3"
    assert result.status == "solved"


def test_a_project_may_name_servers_but_not_add_them(tmp_path):
    from agent.settings import load_settings

    user = tmp_path / "config.toml"
    user.write_text(f'[mcp.servers.fx]\ncommand = "{sys.executable}"\n[mcp.servers.fy]\ncommand = "x"\n')
    project = tmp_path / "p"
    project.mkdir()
    (project / "tome.toml").write_text('[mcp]\nuse = ["fx", "nope"]\n[mcp.servers.evil]\ncommand = "rm"\n')
    loaded = load_settings(project, user_file=user, environ={})
    assert sorted(loaded.settings.mcp.servers) == ["fx", "fy"] and loaded.settings.mcp.use == ["fx", "nope"]
    assert any("ignored mcp.servers" in w for w in loaded.warnings)
    from agent.mcp_client import connect_servers

    said: list[str] = []
    hub = connect_servers(loaded.settings.model_copy(update={"mcp": McpSettings(
        servers={"fx": stdio_server()}, use=["fx", "nope"])}), cwd=tmp_path, warn=said.append)
    try:
        assert len(said) == 1 and "'nope'" in said[0] and "does not define" in said[0]
        assert [s.name for s in hub.statuses] == ["fx"]
    finally:
        hub.close()


def test_doctor_and_dry_run_list_the_servers_and_their_tools(scripted, repo, tmp_path):
    env = env_for(tmp_path)
    config = Path(env["XDG_CONFIG_HOME"]) / "tome" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[mcp.servers.fx]\ncommand = {json.dumps(sys.executable)}\n'
                      f'args = [{json.dumps(str(FIXTURE))}, "stdio"]\ntools = ["add", "shout"]\ntimeout = 30\n'
                      '[mcp.servers.gone]\ncommand = "/nonexistent/mcp-server"\n')
    doctor = tome(["doctor", "--json"], env=env, cwd=repo)
    rows = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert rows["mcp fx"]["ok"] and "mcp__fx__add, mcp__fx__shout" in rows["mcp fx"]["detail"]
    assert "crash" in rows["mcp fx"]["detail"]  # named as left out by the allow-list
    assert not rows["mcp gone"]["ok"] and rows["mcp gone"]["fix"]
    server = scripted([])
    dry = tome(["solve", "fix median", "--repo", str(repo), "--base-url", server.base_url, "--dry-run", "--json"],
               env=env, cwd=repo)
    report = lines_of(dry.stdout)[-1]["result"]
    assert report["tools"][-2:] == ["mcp__fx__add", "mcp__fx__shout"] and not server.requests


def test_a_resumed_run_offers_the_tools_it_started_with(scripted, repo, tmp_path, model_for):
    from agent.run import resume_run

    first = scripted([Turn(content=PLAN, tool_calls=[call("mcp__fx__shout", text="a")])])
    run, stopped = run_to_end(first, repo, tmp_path, model_for, {"fx": stdio_server(tools=["add", "shout"])},
                              max_steps=1)
    assert stopped.status == "limit"
    second = scripted([Turn(tool_calls=[call("mcp__fx__add", a=1, b=2)]), *fixing_turns()[1:]])
    # The user widened the allow-list since: the resumed run still offers what it started with.
    settings = settings_for(second, tmp_path, mcp=McpSettings(servers={"fx": stdio_server()}),
                            safety=SafetySettings(sandbox="off", approval="ask"))
    resumed = resume_run(run.run_dir, settings, model=model_for(second, idle_timeout=10.0, timeout=60.0))
    result = finish_run(resumed, resumed.go())
    assert second.chat_requests[0].body["tools"] == first.chat_requests[0].body["tools"]
    added = [e for e in observations(resumed) if e.name == "mcp__fx__add"][0]
    assert added.ok and added.content == "3" and result.status == "solved"
