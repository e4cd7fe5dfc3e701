"""Every way a run can stop: pathological arguments are observations, every tool call gets its
answer on every exit, and run_ended is written whatever escapes (real SDK, server, git, tools)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import openai
import pytest
from loop_helpers import PLAN, TEST_CMD, call, run_once, settings_for

from agent.records import ModelCalled, RunEnded, Task, ToolFinished
from agent.run import RunSpec, finish_run, resume_run, start_run
from agent.testing.server import TOOL_ANSWER_MESSAGE, ScriptedToolCall, Turn
from tools.base import Tool, Toolbox, ToolContext, tool

NESTED = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        # json.loads recurses once per level: RecursionError
        ("view", '{"path": ' + NESTED + "}", "nested too deeply"),
        # Python refuses to convert more than 4,300 digits (sys.get_int_max_str_digits): ValueError
        ("view", '{"path": "stats.py", "view_range": [1, ' + "9" * 5000 + "]}", "5,000 digits"),
        # a lone surrogate cannot be encoded as UTF-8 for the file or the command: UnicodeEncodeError
        ("create", '{"path": "s.py", "file_text": "x = \'\\ud800\'"}', "lone UTF-16 surrogate"),
        ("bash", '{"command": "echo \\ud800"}', "lone UTF-16 surrogate"),
        # Linux NAME_MAX is 255 bytes per component: OSError ENAMETOOLONG
        ("create", json.dumps({"path": "a" * 300 + ".py", "file_text": "x = 1\n"}), "ENAMETOOLONG"),
        ("view", json.dumps({"path": "b" * 300}), "ENAMETOOLONG"),
    ],
    ids=["nested-json", "5000-digit-int", "surrogate-in-file", "surrogate-in-command",
         "300-char-create", "300-char-view"],
)
def test_pathological_arguments_are_observations(scripted, model_for, repo, tmp_path, name, arguments, expected):
    server = scripted([
        Turn(content=PLAN, tool_calls=[ScriptedToolCall(name=name, arguments=arguments, id="bad")]),
        Turn(tool_calls=[call("view", path="stats.py")]),
    ])
    run, result = run_once(server, repo, tmp_path, model_for, max_steps=2)
    server.assert_done()
    answer = next(e for e in run.trajectory.events if isinstance(e, ToolFinished) and e.call_id == "bad")
    assert not answer.ok and expected in answer.content and "Error:" in answer.content
    # the model read the observation in its next request, and the run ended on record
    sent = [m for m in server.chat_requests[1].body["messages"] if m.get("tool_call_id") == "bad"]
    assert len(sent) == 1 and expected in sent[0]["content"]
    assert result.status == "limit" and isinstance(run.trajectory.events[-1], RunEnded)
    assert not (repo / "s.py").exists()


@tool
def broken(ctx: ToolContext) -> str:
    """A tool with a bug of ours: it returns no text."""
    return None  # type: ignore[return-value]


def test_an_internal_bug_still_ends_the_run_on_record(scripted, model_for, repo, tmp_path):
    server = scripted([Turn(content=PLAN, tool_calls=[call("broken"), call("view", path="stats.py")])])
    settings = settings_for(server, tmp_path)
    run = start_run(RunSpec(task=Task(statement="median is wrong", test_command=TEST_CMD), settings=settings,
                            repo=repo, model=model_for(server, idle_timeout=10.0, timeout=60.0)))
    tools: list[Tool] = [*run.agent.toolbox.tools.values(), broken]
    run.agent.toolbox = Toolbox(tools, run.agent.toolbox.ctx, tokenizer=run.agent.toolbox.counter)
    with pytest.raises(TypeError, match="returned NoneType"):  # our bug is raised, not swallowed
        run.agent.run()
    events = [json.loads(line) for line in Path(run.trajectory.path).read_text().splitlines()]
    assert events[-1]["type"] == "run_ended" and events[-1]["status"] == "error"
    assert "internal error: TypeError" in events[-1]["reason"]
    answers = {e["call_id"]: e for e in events if e["type"] == "tool"}
    assert sorted(answers) == ["call_00_0", "call_00_1"]
    assert "not run" in answers["call_00_1"]["content"]


def _loop_turns() -> list[Turn]:
    same = call("view", path="missing.py")
    return [
        Turn(content=PLAN, tool_calls=[same]),
        Turn(tool_calls=[same]),
        # the detector fires on the first call of this turn: the other two are never run
        Turn(tool_calls=[same, call("create", path="late.py", file_text="x = 1\n"), call("find_files", pattern="*.py")]),
    ]


def test_loop_detection_mid_turn_answers_every_call(scripted, model_for, repo, tmp_path):
    server = scripted([*_loop_turns(), Turn(tool_calls=[call("view", path="stats.py")])])
    run, result = run_once(server, repo, tmp_path, model_for)
    assert result.status == "limit" and "repeated 3 times" in result.reason
    last_turn = list(run.trajectory.of_type(ModelCalled))[-1].response.message.tool_calls
    answers = {e.call_id: e for e in run.trajectory.events if isinstance(e, ToolFinished)}
    assert all(c.id in answers for c in last_turn) and len(last_turn) == 3
    assert [answers[c.id].content.startswith("[not run:") for c in last_turn] == [False, True, True]
    assert "repeated 3 times" in answers[last_turn[1].id].content
    assert not (repo / "late.py").exists()
    assert isinstance(run.trajectory.events[-1], RunEnded)
    # a continued run (chat does this) sends the history back: the strict server accepts it
    run.agent.add_user_message("try another way")
    run.agent.limits = dataclasses.replace(run.agent.limits, max_steps=4)
    outcome = run.agent.run()
    assert server.chat_requests[-1].status == 200, server.chat_requests[-1].raw[-300:]
    assert outcome.status == "limit" and "step limit" in outcome.reason


def test_resumed_run_after_loop_detection_is_a_valid_request(scripted, model_for, repo, tmp_path):
    server = scripted([*_loop_turns(), Turn(tool_calls=[call("view", path="stats.py")])])
    run, _ = run_once(server, repo, tmp_path, model_for)
    resumed = resume_run(run.run_dir, settings_for(server, tmp_path, max_steps=4),
                         model=model_for(server, idle_timeout=10.0, timeout=60.0))
    result = finish_run(resumed, resumed.agent.run())
    server.assert_done()
    assert server.chat_requests[-1].status == 200 and result.status == "limit"
    sent = server.chat_requests[-1].body["messages"]
    asked = [c["id"] for m in sent if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    assert sorted(asked) == sorted(m["tool_call_id"] for m in sent if m["role"] == "tool")


def test_calls_after_submit_in_the_same_turn_are_answered_not_run(scripted, model_for, repo, tmp_path):
    server = scripted([Turn(content=PLAN, tool_calls=[
        call("submit", summary="nothing to change"), call("create", path="after.py", file_text="x = 1\n"),
    ]), Turn(tool_calls=[call("submit", summary="nothing to change, no test to run")])])
    run, result = run_once(server, repo, tmp_path, model_for, task=Task(statement="look around"))
    assert result.status == "unchecked"
    answers = [e for e in run.trajectory.events if isinstance(e, ToolFinished)]
    assert [a.name for a in answers] == ["submit", "create", "submit"]
    assert answers[1].content.startswith("[not run:") and "submit" in answers[1].content
    assert not (repo / "after.py").exists()


def test_the_server_refuses_tool_calls_without_answers(scripted):
    # OpenAI and DeepSeek both answer 400 when a tool_call id has no tool message after its turn.
    server = scripted([Turn(content="ok")])
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    turn = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "view", "arguments": "{}"}},
        {"id": "b", "type": "function", "function": {"name": "view", "arguments": "{}"}},
    ]}
    messages = [{"role": "user", "content": "hi"}, turn, {"role": "tool", "tool_call_id": "a", "content": "x"},
                {"role": "user", "content": "go on"}]
    with pytest.raises(openai.BadRequestError, match="insufficient tool messages") as err:
        client.chat.completions.create(model="deepseek-v4-pro", messages=messages,
                                       extra_body={"thinking": {"type": "disabled"}})
    assert TOOL_ANSWER_MESSAGE in str(err.value) and "Missing: b" in str(err.value)
    messages.insert(3, {"role": "tool", "tool_call_id": "b", "content": "y"})
    reply = client.chat.completions.create(model="deepseek-v4-pro", messages=messages,
                                           extra_body={"thinking": {"type": "disabled"}})
    assert reply.choices[0].message.content == "ok"
