"""The model client against the scripted server: real openai SDK, real HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from agent.errors import (
    AuthError,
    BadRequest,
    BalanceError,
    ContextOverflow,
    RateLimited,
    ServerError,
    StreamError,
)
from agent.model import REASONING_PLACEHOLDER, OpenAIModel, TimeLimitReached, to_wire
from agent.profiles import get_profile
from agent.records import AssistantMessage, Delta, Mode, ToolCall, ToolMessage, UserMessage
from agent.testing.server import REASONING_ECHO_MESSAGE, Fault, ScriptedToolCall, Turn
from agent.tokens import get_tokenizer

ASK = [UserMessage(content="fix the bug")]
TOOLS = [{"type": "function", "function": {"name": "view", "description": "show a file",
                                           "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}]


def call(name: str = "view", **args: str) -> ScriptedToolCall:
    return ScriptedToolCall(name=name, arguments=args or {"path": "a.py"})


# ---- modes and the wire format -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "thinking", "effort"),
    [(Mode.NON_THINK, "disabled", None), (Mode.HIGH, "enabled", "high"), (Mode.MAX, "enabled", "max")],
)
@pytest.mark.parametrize("stream", [True, False])
def test_each_mode_sends_its_literal_fields(scripted, model_for, mode, thinking, effort, stream):
    server = scripted([Turn(content="ok", reasoning_content="hmm")])
    model = model_for(server, stream=stream)
    reply = model.query(ASK, mode=mode, tools=TOOLS, max_tokens=64)
    body = server.requests[0].body
    assert body["thinking"] == {"type": thinking}
    assert body.get("reasoning_effort") == effort
    assert "reasoning_effort" in body if effort else "reasoning_effort" not in body
    assert body["tools"] == TOOLS and body["max_tokens"] == 64 and body["model"] == "deepseek-v4-pro"
    assert body.get("stream", False) is stream
    # DeepSeek does not reason in Non-think mode, so neither does the scripted server.
    assert reply.message.reasoning_content == ("hmm" if thinking == "enabled" else None)
    server.assert_done()


def test_openai_profile_sends_no_deepseek_fields(scripted, model_for):
    server = scripted([Turn(content="ok")], models=["gpt-4.1"])
    model_for(server, model="gpt-4.1").query(ASK, mode=Mode.NON_THINK)
    body = server.requests[0].body
    assert "thinking" not in body and "reasoning_effort" not in body
    from agent.errors import ConfigError

    with pytest.raises(ConfigError, match="no mode 'max'"):
        model_for(server, model="gpt-4.1").query(ASK, mode=Mode.MAX)


def test_every_built_in_profile_is_valid():
    # The table is built without validation (see agent.profiles): check each entry strictly.
    from agent.profiles import GENERIC, PROFILES, ModelProfile

    for profile in [*PROFILES.values(), GENERIC]:
        assert ModelProfile.model_validate(profile.model_dump(), strict=True) == profile
    assert PROFILES["deepseek-v4-pro"].peak_prices.output == 2 * PROFILES["deepseek-v4-pro"].prices.output


def test_to_wire_echoes_reasoning_only_for_tool_call_turns():
    profile = get_profile("deepseek-v4-pro")
    history = [
        UserMessage(content="q"),
        AssistantMessage(content="thinking aloud", reasoning_content="private"),
        AssistantMessage(reasoning_content="why view", tool_calls=[ToolCall(id="c1", name="view", arguments="{}")]),
        ToolMessage(tool_call_id="c1", content="file text"),
        AssistantMessage(tool_calls=[ToolCall(id="c2", name="view", arguments="{}")]),  # made in Non-think
    ]
    wire = to_wire(history, profile)
    assert "reasoning_content" not in wire[1]
    assert wire[2]["reasoning_content"] == "why view"
    assert wire[2]["tool_calls"] == [{"id": "c1", "type": "function", "function": {"name": "view", "arguments": "{}"}}]
    assert wire[3] == {"role": "tool", "tool_call_id": "c1", "content": "file text"}
    # Present and never empty: V4-Pro is reported to reject "" (see REASONING_PLACEHOLDER).
    assert wire[4]["reasoning_content"] == REASONING_PLACEHOLDER != ""
    assert all("reasoning_content" not in m for m in to_wire(history, get_profile("gpt-4.1")))


@pytest.mark.parametrize("stream", [True, False])
def test_reasoning_round_trip_in_a_multi_turn_tool_session(scripted, model_for, stream):
    server = scripted([
        Turn(reasoning_content="first I look at a.py", tool_calls=[call(path="a.py")]),
        Turn(reasoning_content="then b.py", tool_calls=[call(path="b.py"), call(path="c.py")]),
        Turn(reasoning_content="now I know", content="The bug is in b.py."),
    ])
    model = model_for(server, stream=stream)
    messages: list = [*ASK]
    for _ in range(3):
        reply = model.query(messages, mode=Mode.HIGH, tools=TOOLS)
        messages.append(reply.message)
        messages += [ToolMessage(tool_call_id=c.id, content=f"contents of {c.arguments}") for c in reply.message.tool_calls]
    assert reply.message.content == "The bug is in b.py." and reply.finish_reason == "stop"
    server.assert_done()
    sent = [[m for m in r.body["messages"] if m["role"] == "assistant"] for r in server.chat_requests]
    assert sent[0] == []
    assert [m["reasoning_content"] for m in sent[1]] == ["first I look at a.py"]
    assert [m["reasoning_content"] for m in sent[2]] == ["first I look at a.py", "then b.py"]
    assert [len(m["tool_calls"]) for m in sent[2]] == [1, 2]


def test_dropping_reasoning_content_gets_the_servers_400_unretried(scripted, model_for):
    server = scripted([Turn(content="never")])
    forgetful = get_profile("deepseek-v4-pro", requires_reasoning_echo=False)
    model = model_for(server, profile=forgetful)
    history = [
        *ASK,
        AssistantMessage(reasoning_content="r", tool_calls=[ToolCall(id="c1", name="view", arguments="{}")]),
        ToolMessage(tool_call_id="c1", content="x"),
    ]
    with pytest.raises(BadRequest, match="must be passed back") as info:
        model.query(history, mode=Mode.HIGH)
    assert info.value.status == 400 and REASONING_ECHO_MESSAGE in str(info.value)
    assert len(server.requests) == 1


# ---- assembly, usage and cost ----------------------------------------------------------------


def test_streamed_and_plain_answers_assemble_to_the_same_message(scripted, model_for):
    turn = Turn(
        reasoning_content="The failing test calls parse() with an empty string; look at both files.",
        content="Let me look at two files.",
        tool_calls=[call(path="src/parse.py"), call(name="grep", pattern="def parse")],
    )
    for i, c in enumerate(turn.tool_calls):
        c.id = f"call_{i}"  # the server numbers calls by turn otherwise
    server = scripted([turn, turn], chunk_chars=3)
    deltas: list[Delta] = []
    streamed = model_for(server, stream=True).query(ASK, mode=Mode.HIGH, tools=TOOLS, on_delta=deltas.append)
    plain = model_for(server, stream=False).query(ASK, mode=Mode.HIGH, tools=TOOLS)
    assert streamed.message == plain.message
    assert streamed.message.tool_calls[1] == ToolCall(id="call_1", name="grep", arguments='{"pattern": "def parse"}')
    assert streamed.finish_reason == plain.finish_reason == "tool_calls"
    assert streamed.usage.completion_tokens == plain.usage.completion_tokens
    assert streamed.usage.reasoning_tokens == plain.usage.reasoning_tokens > 0
    assert len(deltas) > 10  # really streamed, piece by piece
    assert "".join(d.text for d in deltas if d.kind == "reasoning") == turn.reasoning_content
    assert "".join(d.text for d in deltas if d.kind == "content") == turn.content
    assert "".join(d.text for d in deltas if d.kind == "tool_call").startswith("view{")
    server.assert_done()


def test_usage_and_cost_with_cache_hits_on_a_shared_prefix(scripted, model_for):
    server = scripted([Turn(content="first", reasoning_content="think"), Turn(content="second")])
    model = model_for(server)
    profile = model.profile
    from agent.records import SystemMessage

    system = SystemMessage(content="You are tome. Follow the rules below.\n" + "Rule: keep edits small.\n" * 120)
    first = model.query([system, *ASK], mode=Mode.HIGH)
    second = model.query([system, *ASK, first.message, UserMessage(content="go on")], mode=Mode.HIGH)

    count = get_tokenizer("deepseek-v4").count
    assert first.usage.cache_hit_tokens == 0
    assert first.usage.cache_miss_tokens == first.usage.prompt_tokens > 500
    assert first.usage.reasoning_tokens == count("think")
    assert first.usage.completion_tokens == count("think") + count("first")
    # The unit stored at the end of the first answer: the whole first prompt and more.
    assert first.usage.prompt_tokens < second.usage.cache_hit_tokens < second.usage.prompt_tokens
    assert second.usage.cache_hit_tokens + second.usage.cache_miss_tokens == second.usage.prompt_tokens
    for r in (first, second):
        p = profile.prices_at()
        expected = (r.usage.cache_hit_tokens * p.cache_hit + r.usage.cache_miss_tokens * p.cache_miss
                    + r.usage.completion_tokens * p.output) / 1e6
        assert r.cost == pytest.approx(expected)
    # The cache makes the longer second prompt cheaper per prompt token.
    assert second.cost / second.usage.prompt_tokens < first.cost / first.usage.prompt_tokens
    assert first.model == "deepseek-v4-pro" and first.request_id and first.elapsed > 0


# ---- faults: retried, or the right typed error -----------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=429),
        Fault(kind="status", status=500),
        Fault(kind="status", status=502),
        Fault(kind="status", status=503),
        Fault(kind="status", status=408),
        Fault(kind="status", status=409),
        Fault(kind="cut"),
        Fault(kind="no_finish"),
    ],
    ids=lambda f: f"{f.kind}-{f.status}" if f.kind == "status" else f.kind,
)
def test_transient_faults_are_retried(scripted, model_for, sleeps, fault, stream):
    server = scripted([Turn(content="recovered", faults=[fault, fault])])
    reply = model_for(server, stream=stream).query(ASK, mode=Mode.HIGH)
    assert reply.message.content == "recovered"
    assert [r.fault for r in server.requests] == [fault.kind, fault.kind, None]
    assert sleeps == [0.25, 0.5]  # full jitter with random()=0.5: 0.5 * 0.5 * 2**attempt
    server.assert_done()


@pytest.mark.parametrize("stream", [True, False])
def test_a_silent_answer_is_abandoned_by_the_watchdog_and_retried(scripted, model_for, stream):
    # No byte at all (not even a keep-alive) for the idle limit: the attempt is given up.
    server = scripted([Turn(content="finally", faults=[Fault(kind="stall")])])
    reply = model_for(server, stream=stream, idle_timeout=0.5).query(ASK, mode=Mode.HIGH)
    assert reply.message.content == "finally"
    assert [r.fault for r in server.requests] == ["stall", None]
    # The abandoned attempt's reader thread ends too (its response was closed under it).
    for _ in range(50):
        if not any(t.name == "tome-model-call" for t in threading.enumerate()):
            break
        time.sleep(0.05)
    assert not any(t.name == "tome-model-call" for t in threading.enumerate())


@pytest.mark.parametrize("stream", [True, False])
def test_keepalives_before_the_answer_are_fine(scripted, model_for, sleeps, stream):
    server = scripted([Turn(content="slow but fine", faults=[Fault(kind="delay", seconds=0.3)])])
    reply = model_for(server, stream=stream, idle_timeout=1.0).query(ASK, mode=Mode.HIGH)
    assert reply.message.content == "slow but fine" and sleeps == []
    assert len(server.requests) == 1


def test_retry_after_seconds_is_honoured(scripted, model_for, sleeps):
    server = scripted([Turn(content="ok", faults=[Fault(kind="status", status=429, retry_after="1.5")])])
    model_for(server).query(ASK, mode=Mode.HIGH)
    assert sleeps == [1.5]


def test_retry_after_http_date_is_waited_out_beyond_our_own_cap(scripted, model_for, sleeps):
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    server = scripted([Turn(content="ok", faults=[Fault(kind="status", status=503, retry_after=later)])])
    model_for(server, retry_cap=2.0, timeout=None).query(ASK, mode=Mode.HIGH)
    assert len(sleeps) == 1 and 25 < sleeps[0] <= 30


def test_retry_after_600_is_waited_out_in_full(scripted, model_for, sleeps):
    # issue 12.12: Retry-After: 600 used to be cut to the 60 s cap and retried too early.
    server = scripted([Turn(content="ok", faults=[Fault(kind="status", status=429, retry_after="600")])])
    assert model_for(server, retry_cap=60, timeout=None).query(ASK, mode=Mode.HIGH).message.content == "ok"
    assert sleeps == [600.0]


def test_retry_after_beyond_the_runs_time_limit_stops_naming_the_wait(scripted, model_for, sleeps):
    server = scripted([Turn(content="ok", faults=[Fault(kind="status", status=429, retry_after="600")])])
    with pytest.raises(TimeLimitReached, match=r"asked to wait 600s \(Retry-After\), beyond the run's time limit"):
        model_for(server, time_limit=120, timeout=None).query(ASK, mode=Mode.HIGH)
    assert sleeps == [] and len(server.requests) == 1


def test_retry_after_beyond_the_deadline_gives_up_at_once(scripted, model_for, sleeps):
    server = scripted([Turn(content="ok", faults=[Fault(kind="status", status=429, retry_after="30")])])
    with pytest.raises(RateLimited, match="deadline"):
        model_for(server, retry_cap=60, timeout=3).query(ASK, mode=Mode.HIGH)
    assert sleeps == [] and len(server.requests) == 1


# ---- timeouts: DeepSeek's queue (api-docs.deepseek.com/quick_start/rate_limit) -----------------


def test_defaults_outlast_deepseeks_ten_minute_queue():
    from agent.settings import Settings

    defaults = Settings()
    # DeepSeek keeps a queued request up to 10 minutes, sending keep-alives.
    assert defaults.idle_timeout > 600 and OpenAIModel(get_profile("deepseek-v4-pro"), api_key="k").idle_timeout > 600
    # No whole-call deadline: a Think Max turn with a large cap streams for longer than 600 s.
    assert defaults.request_timeout is None and OpenAIModel(get_profile("deepseek-v4-pro"), api_key="k").timeout is None


@pytest.mark.parametrize("stream", [True, False])
def test_keepalives_count_as_life_while_queued(scripted, model_for, sleeps, stream):
    # A queue three times the (shortened) idle limit, kept alive every 0.1 s: one request, no retry.
    server = scripted([Turn(content="served", faults=[Fault(kind="delay", seconds=4.5)])], keepalive_interval=0.1)
    kinds: list[str] = []
    reply = model_for(server, stream=stream, idle_timeout=1.5).query(
        ASK, mode=Mode.HIGH, on_delta=lambda d: kinds.append(d.kind))
    assert reply.message.content == "served" and sleeps == [] and len(server.requests) == 1
    # The live view hears "queued" while only keep-alives arrive, and not once the answer flows.
    assert kinds[0] == "queued" and kinds[-1] == "content" and "queued" not in kinds[kinds.index("content"):]


def test_the_runs_time_limit_ends_a_queued_call(scripted, model_for, sleeps):
    server = scripted([Turn(content="late", faults=[Fault(kind="delay", seconds=30)])], keepalive_interval=0.1)
    with pytest.raises(TimeLimitReached, match="time limit"):
        model_for(server, idle_timeout=5, time_limit=1.0).query(ASK, mode=Mode.HIGH)
    assert sleeps == []


@pytest.mark.parametrize("stream", [True, False])
def test_insufficient_system_resource_is_retried_and_the_partial_turn_dropped(scripted, model_for, sleeps, stream):
    # finish_reason "insufficient_system_resource": DeepSeek ran out of capacity mid-answer
    # (api-docs.deepseek.com/api/create-chat-completion); retried like a 503.
    full = Turn(reasoning_content="look at a.py first", content="Reading it.", tool_calls=[call(path="a.py")],
                faults=[Fault(kind="insufficient")])
    server = scripted([full])
    reply = model_for(server, stream=stream).query(ASK, mode=Mode.HIGH, tools=TOOLS)
    assert reply.finish_reason == "tool_calls" and reply.message.content == "Reading it."
    assert [c.name for c in reply.message.tool_calls] == ["view"]
    assert [r.fault for r in server.requests] == ["insufficient", None] and sleeps == [0.25]
    server.assert_done()


def test_a_non_think_tool_turn_is_accepted_after_escalation(scripted, model_for):
    # A Non-think turn has no reasoning; Think High then sends it back. V4-Pro is reported to
    # reject "" (litellm, hermes-agent); the scripted server does, so this fails on an empty echo.
    server = scripted([Turn(tool_calls=[call(path="a.py")]), Turn(content="done")])
    model = model_for(server)
    first = model.query(ASK, mode=Mode.NON_THINK, tools=TOOLS)
    assert first.message.reasoning_content is None
    history = [*ASK, first.message, ToolMessage(tool_call_id=first.message.tool_calls[0].id, content="x")]
    assert model.query(history, mode=Mode.HIGH, tools=TOOLS).message.content == "done"
    echoed = server.chat_requests[1].body["messages"][1]["reasoning_content"]
    assert echoed == REASONING_PLACEHOLDER
    server.assert_done()


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(kind="status", status=429), RateLimited),
        (Fault(kind="status", status=503), ServerError),
        (Fault(kind="cut"), StreamError),
        (Fault(kind="no_finish"), StreamError),
        # DeepSeek closes a request still queued after 10 minutes (quick_start/rate_limit).
        (Fault(kind="keepalive", seconds=0.2), StreamError),
        (Fault(kind="stall"), StreamError),
        (Fault(kind="insufficient"), ServerError),
    ],
    ids=["429", "503", "cut", "no_finish", "queue-closed", "stall", "insufficient"],
)
def test_persistent_faults_raise_typed_errors_after_every_retry(scripted, model_for, sleeps, fault, error):
    server = scripted([Turn(content="never", faults=[fault] * 5)])
    with pytest.raises(error, match="gave up after 3 attempts"):
        model_for(server, max_retries=2, idle_timeout=1.0).query(ASK, mode=Mode.HIGH)
    assert len(server.requests) == 3 and len(sleeps) == 2


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (400, BadRequest, "rejected the request (400)"),
        (401, AuthError, "set DEEPSEEK_API_KEY"),
        (402, BalanceError, "balance exhausted"),
        (403, AuthError, "DEEPSEEK_API_KEY"),
        (404, BadRequest, "(404)"),
        (422, BadRequest, "(422)"),
    ],
)
def test_client_errors_are_never_retried(scripted, model_for, sleeps, status, error, words):
    server = scripted([Turn(content="never", faults=[Fault(kind="status", status=status)])])
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")) as info:
        model_for(server).query(ASK, mode=Mode.HIGH)
    assert type(info.value) is error and info.value.status == status
    assert len(server.requests) == 1 and sleeps == []


def test_context_length_400_becomes_context_overflow(scripted, model_for, sleeps):
    server = scripted([Turn(content="never")], context_window=100)
    with pytest.raises(ContextOverflow, match="maximum context length is 100 tokens"):
        model_for(server).query(ASK, mode=Mode.HIGH, max_tokens=200)
    assert len(server.requests) == 1 and sleeps == []


def test_deadline_bounds_a_plain_call_that_never_answers(scripted, model_for):
    server = scripted([Turn(content="never", faults=[Fault(kind="keepalive")])], keepalive_interval=0.05)
    start = time.monotonic()
    with pytest.raises(ServerError, match="1.5s call deadline"):
        model_for(server, stream=False, timeout=1.5).query(ASK, mode=Mode.HIGH)
    assert time.monotonic() - start < 1.5 + 8  # the deadline, plus slack for a loaded machine


def test_malformed_tool_arguments_come_back_verbatim_for_the_loop(scripted, model_for, sleeps):
    server = scripted([Turn(tool_calls=[call(path="a.py")], reasoning_content="r",
                            faults=[Fault(kind="malformed_args")])])
    reply = model_for(server).query(ASK, mode=Mode.HIGH, tools=TOOLS)
    assert reply.message.tool_calls[0].arguments == '{"path":'
    assert reply.finish_reason == "tool_calls" and sleeps == []
    server.assert_done()


def test_connection_refused_is_retried_then_a_server_error(model_for, sleeps):
    class Gone:
        base_url = "http://127.0.0.1:9/v1"  # the discard port: nothing listens

    with pytest.raises(ServerError, match="gave up after 2 attempts"):
        model_for(Gone(), max_retries=1).query(ASK, mode=Mode.HIGH)
    assert len(sleeps) == 1


def test_missing_key_names_the_variable():
    model = OpenAIModel(get_profile("deepseek-v4-flash"), api_key=None, base_url="http://127.0.0.1:9/v1")
    with pytest.raises(AuthError, match="set DEEPSEEK_API_KEY"):
        model.query(ASK, mode=Mode.HIGH)
    assert "missing" in repr(model)


# ---- the key stays secret ----------------------------------------------------------------------


def test_api_key_is_only_in_the_authorization_header(scripted, model_for, api_key, caplog, capsys):
    TEST_KEY = api_key
    for name in ("", "openai", "httpx2", "httpcore2", "httpx", "httpcore", "agent"):
        caplog.set_level(logging.DEBUG, logger=name or None)
    echo = f"Incorrect API key provided: {TEST_KEY}"
    server = scripted([
        Turn(reasoning_content="r", tool_calls=[call()],
             faults=[Fault(kind="status", status=503), Fault(kind="cut")]),
        Turn(content="done"),
        Turn(content="never", faults=[Fault(kind="status", status=401, message=echo)]),
    ])
    model = model_for(server)
    reply = model.query(ASK, mode=Mode.HIGH, tools=TOOLS)
    model_for(server, stream=False).query([*ASK, reply.message, ToolMessage(tool_call_id="call_00_0", content="x")],
                                          mode=Mode.HIGH)
    with pytest.raises(AuthError) as info:
        model.query(ASK, mode=Mode.HIGH)
    assert model.list_models()

    assert len(server.requests) == 6
    for rec in server.requests:
        assert rec.headers["authorization"] == f"Bearer {TEST_KEY}"
        others = {k: v for k, v in rec.headers.items() if k != "authorization"}
        assert TEST_KEY not in repr(others) and TEST_KEY not in rec.raw
    assert "DEBUG" in caplog.text and "HTTP Request" in caplog.text  # the loggers really spoke
    assert TEST_KEY not in caplog.text
    out = capsys.readouterr()
    assert TEST_KEY not in out.out + out.err
    assert TEST_KEY not in str(info.value) and TEST_KEY not in repr(info.value) and "***" in str(info.value)
    assert TEST_KEY not in repr(model)


def test_from_settings(scripted, api_key):
    from agent.settings import Settings

    server = scripted([Turn(content="hi")])
    settings = Settings(model="deepseek-v4-flash", base_url=server.base_url, api_key=api_key, stream=False,
                        request_timeout=9, idle_timeout=3, max_retries=1, retry_cap=2, max_time=300)
    model = OpenAIModel.from_settings(settings)
    assert (model.base_url, model.profile.name, model.stream) == (server.base_url, "deepseek-v4-flash", False)
    assert (model.timeout, model.idle_timeout, model.max_retries, model.retry_cap) == (9, 3, 1, 2)
    assert model._deadline(0.0)[1] == "the 9s call deadline"  # sooner than the 300 s run limit
    assert model.query(ASK, mode=Mode.NON_THINK).message.content == "hi"
    assert "deepseek-v4-pro" in model.list_models(timeout=5)


# ---- strict function calling: a beta of https://api.deepseek.com/beta (guides/tool_calls) -------


STRICT_TOOL = {"type": "function", "function": {
    "name": "view", "description": "show a file", "strict": True,
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"],
                   "additionalProperties": False}}}


def test_strict_is_dropped_where_the_endpoint_does_not_enforce_it(scripted, model_for):
    server = scripted([Turn(content="ok"), Turn(content="ok")])
    model_for(server).query(ASK, mode=Mode.HIGH, tools=[STRICT_TOOL])
    sent = server.chat_requests[0].body["tools"][0]["function"]
    assert "strict" not in sent and sent["parameters"] == STRICT_TOOL["function"]["parameters"]
    beta = server.base_url.removesuffix("/v1") + "/beta"
    model_for(server, base_url=beta).query(ASK, mode=Mode.HIGH, tools=[STRICT_TOOL])
    assert server.chat_requests[1].path.startswith("/beta/")
    assert server.chat_requests[1].body["tools"][0]["function"]["strict"] is True
    server.assert_done()


def test_every_default_tool_schema_passes_the_beta_strict_check(scripted, model_for):
    from tools import default_tools

    schemas = [t.schema() for t in default_tools(browser=False)]
    assert any(s["function"]["strict"] for s in schemas)
    server = scripted([Turn(content="ok")])
    beta = server.base_url.removesuffix("/v1") + "/beta"
    assert model_for(server, base_url=beta).query(ASK, mode=Mode.HIGH, tools=schemas).message.content == "ok"


def test_a_nullable_optional_in_a_strict_schema_is_rejected_under_beta(scripted, model_for):
    nullable = {"type": "function", "function": {**STRICT_TOOL["function"], "parameters": {
        "type": "object", "additionalProperties": False, "required": ["path", "line"],
        "properties": {"path": {"type": "string"}, "line": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}}}}
    server = scripted([Turn(content="never")])
    beta = server.base_url.removesuffix("/v1") + "/beta"
    with pytest.raises(BadRequest, match="type 'null' is not supported"):
        model_for(server, base_url=beta).query(ASK, mode=Mode.HIGH, tools=[nullable])
