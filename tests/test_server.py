"""The scripted server, driven by the real openai SDK (and raw HTTP where the SDK hides things)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import openai
import pytest

from agent.testing.server import (
    REASONING_ECHO_MESSAGE,
    Fault,
    Script,
    ScriptedServer,
    ScriptedToolCall,
    Turn,
    render_prompt,
)
from agent.tokens import get_tokenizer

ROOT = Path(__file__).resolve().parents[1]
USER = [{"role": "user", "content": "hi"}]
THINK = {"thinking": {"type": "enabled"}}
NO_THINK = {"thinking": {"type": "disabled"}}


def sdk(server: ScriptedServer, key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=10)


def test_plain_answer_has_deepseek_fields(scripted):
    server = scripted([Turn(content="4", reasoning_content="2+2 is 4")])
    r = sdk(server).chat.completions.create(model="deepseek-v4-pro", messages=USER, extra_body=THINK)
    msg = r.choices[0].message
    assert (msg.content, msg.reasoning_content, r.choices[0].finish_reason) == ("4", "2+2 is 4", "stop")
    count = get_tokenizer("deepseek-v4").count
    assert r.usage.completion_tokens_details.reasoning_tokens == count("2+2 is 4")
    assert r.usage.completion_tokens == count("2+2 is 4") + count("4")
    assert r.usage.prompt_cache_hit_tokens + r.usage.prompt_cache_miss_tokens == r.usage.prompt_tokens
    server.assert_done()


def test_stream_sends_chunks_then_done(scripted):
    turn = Turn(reasoning_content="look at the file", tool_calls=[ScriptedToolCall(name="view", arguments={"path": "a.py"})])
    server = scripted([turn], chunk_chars=4)
    chunks = list(
        sdk(server).chat.completions.create(model="deepseek-v4-pro", messages=USER, stream=True, extra_body=THINK)
    )
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks)
    args = "".join(
        tc.function.arguments or "" for c in chunks for tc in (c.choices[0].delta.tool_calls or [])
    )
    assert reasoning == "look at the file"
    assert json.loads(args) == {"path": "a.py"}
    assert [c.choices[0].finish_reason for c in chunks].count("tool_calls") == 1
    assert chunks[-1].choices[0].finish_reason == "tool_calls" and chunks[-1].usage.prompt_tokens > 0
    raw = server.requests[0].raw
    assert json.loads(raw)["stream"] is True


def test_records_every_request_with_headers_and_body(scripted):
    server = scripted([Turn(content="a")])
    sdk(server, key="sk-abc").chat.completions.create(model="deepseek-v4-pro", messages=USER, max_tokens=7)
    (rec,) = server.requests
    assert rec.method == "POST" and rec.path == "/v1/chat/completions"
    assert rec.headers["authorization"] == "Bearer sk-abc"
    assert rec.body["max_tokens"] == 7 and rec.body["messages"] == USER
    assert (rec.status, rec.turn, rec.fault) == (200, 0, None)


def test_extra_call_fails_loudly_and_assert_done_raises(scripted):
    server = scripted([Turn(content="only one")])
    client = sdk(server)
    client.chat.completions.create(model="deepseek-v4-pro", messages=USER)
    with pytest.raises(openai.InternalServerError, match="extra call #2"):
        client.chat.completions.create(model="deepseek-v4-pro", messages=USER)
    with pytest.raises(AssertionError, match="extra call #2"):
        server.assert_done()


def test_unused_turn_makes_assert_done_raise(scripted):
    server = scripted([Turn(content="one"), Turn(content="two")])
    sdk(server).chat.completions.create(model="deepseek-v4-pro", messages=USER)
    with pytest.raises(AssertionError, match="1 scripted turn"):
        server.assert_done()


def test_callable_turn_sees_the_request(scripted):
    server = scripted([lambda body: Turn(content=f"you said {body['messages'][-1]['content']}")])
    r = sdk(server).chat.completions.create(model="deepseek-v4-pro", messages=USER)
    assert r.choices[0].message.content == "you said hi"
    server.assert_done()


def test_a_turn_that_raises_is_an_error_not_a_hang(scripted):
    server = scripted([lambda body: 1 / 0])
    with pytest.raises(openai.InternalServerError, match="ZeroDivisionError"):
        sdk(server).chat.completions.create(model="deepseek-v4-pro", messages=USER)
    with pytest.raises(AssertionError, match="ZeroDivisionError"):
        server.assert_done()


def test_script_from_json(tmp_path):
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"turns": [
        {"reasoning_content": "r", "tool_calls": [{"name": "view", "arguments": {"path": "x"}}],
         "faults": [{"kind": "status", "status": 429, "retry_after": 1}]},
        {"content": "done"},
    ]}))
    script = Script.from_json(path)
    assert len(script) == 2
    first = script.turns[0]
    assert first.final_reason() == "tool_calls"
    assert first.faults[0].retry_after == "1"
    assert first.tool_calls[0].arguments_text() == '{"path": "x"}'


def _assistant_with_call(reasoning: str | None) -> dict:
    msg = {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "view", "arguments": "{}"}}],
    }
    if reasoning is not None:
        msg["reasoning_content"] = reasoning
    return msg


def test_dropped_reasoning_content_gets_deepseeks_400(scripted):
    server = scripted([Turn(content="ok"), Turn(content="ok")])
    history = [*USER, _assistant_with_call(None), {"role": "tool", "tool_call_id": "c1", "content": "x"}]
    client = sdk(server)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="deepseek-v4-pro", messages=history, extra_body=THINK)
    assert info.value.body["message"] == REASONING_ECHO_MESSAGE
    # Thinking is DeepSeek-V4's default, so leaving the field out is no escape.
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="deepseek-v4-pro", messages=history)
    # An empty one is rejected too: reported of V4-Pro by litellm and hermes-agent users.
    history[1] = _assistant_with_call("")
    with pytest.raises(openai.BadRequestError, match="must be passed back"):
        client.chat.completions.create(model="deepseek-v4-pro", messages=history, extra_body=THINK)
    # With the reasoning, or with thinking off, the request passes.
    history[1] = _assistant_with_call("because")
    client.chat.completions.create(model="deepseek-v4-pro", messages=history, extra_body=THINK)
    history[1] = _assistant_with_call(None)
    client.chat.completions.create(model="deepseek-v4-pro", messages=history, extra_body=NO_THINK)
    server.assert_done()


def test_context_length_400_has_deepseeks_wording(scripted):
    server = scripted([Turn(content="never")], context_window=50)
    with pytest.raises(openai.BadRequestError) as info:
        sdk(server).chat.completions.create(model="deepseek-v4-pro", messages=USER, max_tokens=100)
    message = info.value.body["message"]
    assert message.startswith("This model's maximum context length is 50 tokens. However, you requested ")
    assert "100 in the completion" in message
    assert server.turns_left == 1


# api-docs.deepseek.com/guides/thinking_mode: low/high/max, and minimal, medium, xhigh, ultra mapped.
@pytest.mark.parametrize("effort", ["low", "high", "max", "minimal", "medium", "xhigh", "ultra"])
def test_every_documented_reasoning_effort_is_accepted(scripted, effort):
    server = scripted([Turn(content="ok")])
    reply = sdk(server).chat.completions.create(model="deepseek-v4-pro", messages=USER, reasoning_effort=effort)
    assert reply.choices[0].message.content == "ok"


@pytest.mark.parametrize("effort", ["none", "HIGH", "extreme", ""])
def test_an_undocumented_reasoning_effort_is_a_400(scripted, effort):
    server = scripted([Turn(content="ok")])
    with pytest.raises(openai.BadRequestError, match="reasoning_effort"):
        sdk(server).chat.completions.create(model="deepseek-v4-pro", messages=USER, reasoning_effort=effort)
    assert server.turns_left == 1


def test_prompt_tokens_are_counted_with_the_real_tokenizer(scripted):
    server = scripted([Turn(content="ok")])
    tools = [{"type": "function", "function": {"name": "view", "parameters": {"type": "object"}}}]
    msgs = [{"role": "system", "content": "You are terse."}, *USER]
    sdk(server).chat.completions.create(model="deepseek-v4-pro", messages=msgs, tools=tools)
    rec = server.requests[0]
    assert rec.usage["prompt_tokens"] == get_tokenizer("deepseek-v4").count(render_prompt(rec.body))


class Words:
    """One token per whitespace-separated word: counts a test can do in its head."""

    name = "words"

    def count(self, text: str) -> int:
        return len(text.split())


def _ask(server, messages, **extra):
    return sdk(server).chat.completions.create(model="deepseek-v4-pro", messages=messages, **extra).usage


# DeepSeek's KV-cache guide (api-docs.deepseek.com/guides/kv_cache): units at the end of each
# input and output, at detected common prefixes and at fixed intervals; a hit needs a whole unit.


def test_cache_guide_example_1_a_growing_conversation_hits_the_last_output_unit(scripted):
    server = scripted([Turn(content="Beijing is the capital."), Turn(content="Washington.")], tokenizer=Words())
    first_msgs = [{"role": "system", "content": "You are a helpful assistant"},
                  {"role": "user", "content": "What is the capital of China?"}]
    first = _ask(server, first_msgs)
    assert first.prompt_cache_hit_tokens == 0
    answered = [*first_msgs, {"role": "assistant", "content": "Beijing is the capital."}]
    second = _ask(server, [*answered, {"role": "user", "content": "And of the United States?"}])
    # The whole first request plus its answer, as the second one renders it: one unit.
    assert second.prompt_cache_hit_tokens == Words().count(render_prompt({"messages": answered})) == 15
    assert second.prompt_cache_hit_tokens + second.prompt_cache_miss_tokens == second.prompt_tokens


def test_cache_guide_example_2_a_common_prefix_is_stored_for_later_requests(scripted):
    server = scripted([Turn(content="x")] * 3, tokenizer=Words())
    system = {"role": "system", "content": "You are an experienced financial report analyst " + "report " * 30}
    a = _ask(server, [system, {"role": "user", "content": "summarize it"}])
    b = _ask(server, [system, {"role": "user", "content": "analyze profitability"}])
    c = _ask(server, [system, {"role": "user", "content": "list the risks"}])
    # A+C cannot hit A+B (not a whole unit); it reveals the common prefix A, which A+D then hits.
    assert a.prompt_cache_hit_tokens == b.prompt_cache_hit_tokens == 0
    assert c.prompt_cache_hit_tokens == Words().count(render_prompt({"messages": [system]}) + "<|user|>") == 38


def test_fixed_interval_units_let_a_long_prefix_hit_without_an_end_position(scripted):
    server = scripted([Turn(content="x")] * 2, tokenizer=Words(), cache_interval=10)
    pack = "\n".join(f"line {i} of the pack" for i in range(40))  # 5 words a line, 200 in all
    first = _ask(server, [{"role": "system", "content": pack}, {"role": "user", "content": "task one"}])
    second = _ask(server, [{"role": "system", "content": pack + "\nchanged tail"}, {"role": "user", "content": "two"}])
    units = [t for _, t in server.cache.units()]
    assert first.prompt_cache_hit_tokens == 0
    # The last interval unit inside the shared 200 words: cut at a line end at or past 190.
    assert second.prompt_cache_hit_tokens in units and 190 <= second.prompt_cache_hit_tokens <= 200
    assert [t for t in units if t < 200][:3] == [10, 20, 30]


def test_an_identical_request_hits_its_whole_input_unit(scripted):
    server = scripted([Turn(content="a b c"), Turn(content="d")], tokenizer=Words())
    msgs = [{"role": "user", "content": "one two three four five six seven eight nine ten"}]
    first = _ask(server, msgs)
    again = _ask(server, msgs)
    assert first.prompt_tokens == again.prompt_tokens == 10 and first.completion_tokens == 3
    assert again.prompt_cache_hit_tokens == 10


def test_think_max_starts_the_prompt_with_a_marker_so_switching_misses_the_cache(scripted):
    server = scripted([Turn(content="x")] * 3, tokenizer=Words())
    msgs = [{"role": "system", "content": "rules " * 50}, *USER]
    _ask(server, msgs, reasoning_effort="high")
    switched = _ask(server, msgs, reasoning_effort="max")
    again = _ask(server, msgs, reasoning_effort="ultra")  # mapped to max: the same prefix
    assert switched.prompt_cache_hit_tokens == 0
    assert again.prompt_cache_hit_tokens == again.prompt_tokens


def test_models_endpoint_and_key_check(scripted):
    server = scripted([], api_key="sk-right", models=["deepseek-v4-pro"])
    assert [m.id for m in sdk(server, key="sk-right").models.list()] == ["deepseek-v4-pro"]
    with pytest.raises(openai.AuthenticationError):
        sdk(server, key="sk-wrong").models.list()
    server.assert_done()


def test_unknown_route_is_recorded_as_an_error(scripted):
    server = scripted([])
    assert httpx2.get(server.base_url + "/nope").status_code == 404
    with pytest.raises(AssertionError, match="unexpected GET"):
        server.assert_done()


# ---- faults, seen at the wire ----------------------------------------------------------------


def test_status_fault_then_served(scripted):
    server = scripted([Turn(content="ok", faults=[Fault(kind="status", status=429, retry_after=2)])])
    client = sdk(server)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="deepseek-v4-pro", messages=USER)
    assert info.value.response.headers["retry-after"] == "2"
    assert client.chat.completions.create(model="deepseek-v4-pro", messages=USER).choices[0].message.content == "ok"
    assert [r.fault for r in server.requests] == ["status", None]
    server.assert_done()


@pytest.mark.parametrize("stream", [True, False])
def test_keepalive_fault_sends_only_keepalive_lines(scripted, stream):
    server = scripted([Turn(content="ok", faults=[Fault(kind="keepalive", seconds=0.3)])], keepalive_interval=0.05)
    body = {"model": "deepseek-v4-pro", "messages": USER, "stream": stream}
    with httpx2.stream("POST", server.base_url + "/chat/completions", json=body, timeout=5) as r:
        assert r.status_code == 200
        lines: list[str] = []
        with pytest.raises(httpx2.RemoteProtocolError):  # closed without a payload
            for line in r.iter_lines():
                lines.append(line)
    payload = [ln for ln in lines if ln.strip()]
    assert len(lines) >= 3
    assert all(ln == ": keep-alive" for ln in payload) if stream else payload == []
    assert server.turns_left == 1


def test_delay_fault_sends_keepalives_then_the_answer(scripted):
    server = scripted([Turn(content="late", faults=[Fault(kind="delay", seconds=0.2)])])
    body = {"model": "deepseek-v4-pro", "messages": USER, "stream": True}
    with httpx2.stream("POST", server.base_url + "/chat/completions", json=body, timeout=5) as r:
        lines = [ln for ln in r.iter_lines() if ln]
    assert lines[0] == ": keep-alive" and lines[-1] == "data: [DONE]"
    server.assert_done()


@pytest.mark.parametrize("stream", [True, False])
def test_stall_fault_sends_nothing_after_the_headers(scripted, stream):
    server = scripted([Turn(content="ok", faults=[Fault(kind="stall", seconds=0.5)])])
    body = {"model": "deepseek-v4-pro", "messages": USER, "stream": stream}
    with httpx2.stream("POST", server.base_url + "/chat/completions", json=body, timeout=5) as r:
        assert r.status_code == 200
        with pytest.raises(httpx2.RemoteProtocolError):
            b"".join(r.iter_raw())
    assert server.turns_left == 1


@pytest.mark.parametrize("stream", [True, False])
def test_insufficient_fault_serves_a_partial_answer_with_deepseeks_finish_reason(scripted, stream):
    turn = Turn(content="a complete sentence", tool_calls=[ScriptedToolCall(name="view", arguments={"path": "a"})],
                faults=[Fault(kind="insufficient")])
    server = scripted([turn])
    client = sdk(server)
    if stream:
        chunks = list(client.chat.completions.create(model="deepseek-v4-pro", messages=USER, stream=True))
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        calls = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    else:
        reply = client.chat.completions.create(model="deepseek-v4-pro", messages=USER)
        finish, text, calls = [reply.choices[0].finish_reason], reply.choices[0].message.content, reply.choices[0].message.tool_calls or []
    assert finish == ["insufficient_system_resource"] and text == "a complet"  # the first half
    assert not calls and server.turns_left == 1


def test_cut_fault_breaks_the_stream(scripted):
    server = scripted([Turn(content="a long answer", faults=[Fault(kind="cut")])])
    stream = sdk(server).chat.completions.create(model="deepseek-v4-pro", messages=USER, stream=True)
    with pytest.raises(openai.APIConnectionError):
        for _ in stream:
            pass
    assert server.turns_left == 1


def test_no_finish_fault_and_malformed_args(scripted):
    call = ScriptedToolCall(name="view", arguments={"path": "a.py"})
    server = scripted([Turn(reasoning_content="r", tool_calls=[call],
                            faults=[Fault(kind="no_finish"), Fault(kind="malformed_args")])])
    client = sdk(server)
    chunks = list(client.chat.completions.create(model="deepseek-v4-pro", messages=USER, stream=True))
    assert all(c.choices[0].finish_reason is None for c in chunks)
    r = client.chat.completions.create(model="deepseek-v4-pro", messages=USER)
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.choices[0].message.tool_calls[0].function.arguments)
    assert r.choices[0].finish_reason == "tool_calls"
    server.assert_done()


# ---- packaging and the CLI -------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_importing_starts_nothing():
    code = (
        "import threading, agent.testing, agent.testing.server, agent.model\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "print(sorted(agent.testing.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ScriptedServer" in out.stdout and out.stderr == ""


def test_cli_serves_a_json_script(tmp_path):
    path = tmp_path / "script.json"
    path.write_text(json.dumps([{"content": "from the CLI"}]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.testing.server", str(path)],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        client = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0, timeout=10)
        r = client.chat.completions.create(model="deepseek-v4-pro", messages=USER)
        assert r.choices[0].message.content == "from the CLI"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def test_cli_exits_1_when_turns_are_left(tmp_path):
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"turns": [{"content": "unused"}]}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.testing.server", str(path)],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout.readline().startswith("http://127.0.0.1:")
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and "never used" in err
