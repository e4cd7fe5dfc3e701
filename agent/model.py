"""The model client: one class over the `openai` SDK; the provider is a base URL and a profile.

`OpenAIModel.query` sends chat completions (streamed or not) and returns a typed
`ModelResponse`; both paths assemble the same `AssistantMessage` and feed `on_delta` (piece by
piece when streaming, in one piece per kind otherwise). The SDK's own retries are
off: this module retries connection errors, timeouts, 408/409/429/5xx, broken streams and
`finish_reason: insufficient_system_resource` with full-jitter exponential backoff; a server's
Retry-After is waited out in full when the run's time limit allows it.

Timeouts follow DeepSeek's queue (api-docs.deepseek.com/quick_start/rate_limit): a queued
request is kept open for up to 10 minutes with `: keep-alive` SSE comments (empty lines when
not streaming), and the SDK swallows both without yielding. So life is measured on the raw
bytes (`_Liveness`, an httpx transport): any byte, keep-alives included, resets the idle
watchdog, whose default (660 s) lies above DeepSeek's queue limit; keep-alives before the first
payload show as a "queued" delta. There is no whole-call deadline by default: a turn still
producing tokens is never cut; only the run's time limit (`time_limit`, from --max-time) ends it.

Never retried: 400/401/402/403/404/422. They map onto `agent.errors`: a context-length 400 is
`ContextOverflow`, 401/403 `AuthError` (naming the key variable), 402 `BalanceError`.

The API key goes into the Authorization header and nowhere else: not into logs, exception
messages or reprs.
"""

from __future__ import annotations

import copy
import email.utils
import json
import logging
import queue
import random as _random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import httpx2
import openai
from pydantic import SecretStr, TypeAdapter

from agent.errors import (
    AuthError,
    Interrupt,
    BadRequest,
    BalanceError,
    ContextOverflow,
    ModelError,
    RateLimited,
    ServerError,
    StreamError,
)
from agent.profiles import ModelProfile
from agent.records import (
    AssistantMessage,
    Delta,
    Message,
    Mode,
    ModelResponse,
    SystemMessage,
    ToolCall,
    ToolMessage,
    Usage,
    UserMessage,
)
from agent.secrets import redact_outgoing

__all__ = ["Model", "OpenAIModel", "TimeLimitReached", "REASONING_PLACEHOLDER", "to_wire"]

log = logging.getLogger("agent.model")

_RETRY_STATUSES = frozenset({408, 409, 429})
_CONTEXT_PATTERNS = re.compile(
    r"maximum context length|context_length_exceeded|context length|too many tokens|prompt is too long",
    re.IGNORECASE,
)
_MESSAGE = TypeAdapter(Message)
# First backoff step in seconds; full jitter draws uniformly from [0, base * 2**attempt].
_BACKOFF_BASE = 0.5
# DeepSeek's finish_reason when it ran out of capacity mid-answer: the answer is partial and the
# request is to be retried (api-docs.deepseek.com/api/create-chat-completion, finish_reason).
_RESOURCE_FINISH = "insufficient_system_resource"
# Sent as the reasoning of a tool-call turn that has none (one made in Non-think, before an
# escalation): V4-Pro is reported to answer 400 to an empty string (litellm and hermes-agent
# issues), and litellm's non-empty placeholder is accepted. Belief until a live run settles it:
# tests/test_live.py::test_live_exchange_per_mode sends one.
REASONING_PLACEHOLDER = "(no reasoning was recorded for this turn)"


class TimeLimitReached(Interrupt):
    """The run's time limit ends a model call (waiting, queued or streaming) before it finishes."""


class Model(Protocol):
    """What the loop needs from a model: one call that turns messages into a response."""

    def query(
        self,
        messages: Sequence[Message],
        *,
        mode: Mode,
        tools: list[dict] | None = None,
        max_tokens: int | None = None,
        on_delta: Callable[[Delta], None] | None = None,
    ) -> ModelResponse:
        """Send `messages` in `mode`; return the assistant's message, usage and cost."""
        ...


def to_wire(messages: Sequence[Message], profile: ModelProfile) -> list[dict]:
    """Serialize messages for the chat-completions API.

    DeepSeek's rule (profile.requires_reasoning_echo; api-docs.deepseek.com/guides/thinking_mode,
    tool calls): an assistant turn that made tool calls goes back with its reasoning_content in
    every later request, never empty (REASONING_PLACEHOLDER stands in for a turn without one);
    other turns' reasoning is not sent (the API ignores it and it costs tokens).
    """
    wire: list[dict] = []
    for m in messages:
        if isinstance(m, dict):
            m = _MESSAGE.validate_python(m)
        if isinstance(m, (SystemMessage, UserMessage)):
            wire.append({"role": m.role, "content": m.content})
        elif isinstance(m, ToolMessage):
            wire.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
        elif isinstance(m, AssistantMessage):
            out: dict[str, Any] = {"role": "assistant", "content": m.content or ""}
            if m.tool_calls:
                out["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in m.tool_calls
                ]
                if profile.requires_reasoning_echo:
                    out["reasoning_content"] = m.reasoning_content or REASONING_PLACEHOLDER
            wire.append(out)
        else:
            raise TypeError(f"not a message: {type(m).__name__}")
    return wire


# ------------------------------------------------------------------------------------------
# Assembly: streamed chunks and whole completions become the same AssistantMessage
# ------------------------------------------------------------------------------------------


@dataclass
class _Assembly:
    on_delta: Callable[[Delta], None] | None = None
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, str]] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Any = None
    model: str = ""
    response_id: str | None = None

    def _emit(self, kind: str, text: str) -> None:
        if self.on_delta is not None and text:
            self.on_delta(Delta(kind=kind, text=text))  # type: ignore[arg-type]

    def add_chunk(self, chunk: Any) -> None:
        """Fold one ChatCompletionChunk in; tool-call pieces are joined by their index."""
        self.model = chunk.model or self.model
        self.response_id = chunk.id or self.response_id
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        for choice in chunk.choices or []:
            delta = choice.delta
            if delta is not None:
                reasoning = getattr(delta, "reasoning_content", None)
                if reasoning:
                    self.reasoning.append(reasoning)
                    self._emit("reasoning", reasoning)
                if delta.content:
                    self.content.append(delta.content)
                    self._emit("content", delta.content)
                for tc in delta.tool_calls or []:
                    slot = self.calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    if tc.id:
                        slot["id"] = tc.id
                    fn = tc.function
                    if fn is not None and fn.name:
                        slot["name"] += fn.name
                        self._emit("tool_call", fn.name)
                    if fn is not None and fn.arguments:
                        slot["arguments"] += fn.arguments
                        self._emit("tool_call", fn.arguments)
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason

    def add_completion(self, completion: Any) -> None:
        """Fold in a whole (non-streamed) ChatCompletion."""
        self.model = completion.model or ""
        self.response_id = completion.id
        self.usage = completion.usage
        if not completion.choices:
            return
        choice = completion.choices[0]
        msg = choice.message
        reasoning = getattr(msg, "reasoning_content", None)
        if reasoning:
            self.reasoning.append(reasoning)
            self._emit("reasoning", reasoning)
        if msg.content:
            self.content.append(msg.content)
            self._emit("content", msg.content)
        for i, tc in enumerate(msg.tool_calls or []):
            fn = getattr(tc, "function", None)
            name = fn.name if fn is not None else ""
            args = fn.arguments if fn is not None else ""
            self.calls[i] = {"id": tc.id, "name": name, "arguments": args or ""}
            self._emit("tool_call", name)
            self._emit("tool_call", args or "")
        self.finish_reason = choice.finish_reason

    def message(self) -> AssistantMessage:
        """The assembled assistant message."""
        return AssistantMessage(
            content="".join(self.content) or None,
            reasoning_content="".join(self.reasoning) or None,
            tool_calls=[ToolCall(**self.calls[i]) for i in sorted(self.calls)],
        )


def _without_strict(tools: list[dict]) -> list[dict]:
    """Tool entries without the `strict` flag, for endpoints that do not enforce it (DeepSeek's
    is a beta of https://api.deepseek.com/beta: api-docs.deepseek.com/guides/tool_calls)."""
    out = []
    for t in tools:
        fn = t.get("function")
        if isinstance(fn, dict) and "strict" in fn:
            t = {**t, "function": {k: v for k, v in fn.items() if k != "strict"}}
        out.append(t)
    return out


def _reports_cache(raw: Any) -> bool:
    """Whether a usage object carries prompt-cache fields (DeepSeek's, or OpenAI's cached_tokens)."""
    if raw is None:
        return False
    details = getattr(raw, "prompt_tokens_details", None)
    return getattr(raw, "prompt_cache_hit_tokens", None) is not None or (
        details is not None and getattr(details, "cached_tokens", None) is not None)


def _usage(raw: Any) -> Usage:
    """Usage from the SDK object, reading DeepSeek's extra cache fields where present."""
    if raw is None:
        return Usage()
    prompt = raw.prompt_tokens or 0
    hit = getattr(raw, "prompt_cache_hit_tokens", None)
    miss = getattr(raw, "prompt_cache_miss_tokens", None)
    if hit is None:
        details = getattr(raw, "prompt_tokens_details", None)
        hit = (getattr(details, "cached_tokens", None) or 0) if details is not None else 0
    if miss is None:
        miss = max(prompt - hit, 0)
    cdetails = getattr(raw, "completion_tokens_details", None)
    reasoning = (getattr(cdetails, "reasoning_tokens", None) or 0) if cdetails is not None else 0
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=raw.completion_tokens or 0,
        reasoning_tokens=reasoning,
        cache_hit_tokens=hit,
        cache_miss_tokens=miss,
    )


# ------------------------------------------------------------------------------------------
# Errors: what is retried, and what each failure becomes
# ------------------------------------------------------------------------------------------


class _Retryable(Exception):
    """An attempt failed in a way another attempt may fix; `error` is what to raise at the end."""

    def __init__(self, error: ModelError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def _retry_after(headers: Any, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After (or retry-after-ms) header: delta seconds or an HTTP date."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - (now or datetime.now(timezone.utc))).total_seconds(), 0.0)


def _error_text(e: openai.APIStatusError) -> str:
    body = e.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(body.get("message"), str):
            return body["message"]
    text = e.message or ""
    return text


def _is_keepalive(data: bytes) -> bool:
    """Whether a body chunk holds only keep-alive lines: SSE comments or empty lines."""
    return all(not line.strip() or line.startswith(b":") for line in data.splitlines())


class _WatchedStream(httpx2.SyncByteStream):
    def __init__(self, inner: Any, on_bytes: Callable[[bytes], None]) -> None:
        self._inner = inner
        self._on_bytes = on_bytes

    def __iter__(self):
        for chunk in self._inner:
            self._on_bytes(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class _Liveness(httpx2.BaseTransport):
    """An httpx transport that reports each raw body chunk to the attempt reading it.

    The SDK parses SSE and JSON above this seam and drops keep-alive comments and blank lines,
    so this is the only place a queued request's keep-alives can be seen. Each attempt runs in
    its own worker thread, which registers its listener here before it sends.
    """

    def __init__(self) -> None:
        self._inner = httpx2.HTTPTransport()
        self._local = threading.local()

    def listen(self, on_bytes: Callable[[bytes], None] | None) -> None:
        """Report the body chunks of requests sent from this thread to `on_bytes`."""
        self._local.on_bytes = on_bytes

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self._inner.handle_request(request)
        on_bytes = getattr(self._local, "on_bytes", None)
        if on_bytes is not None:
            response.stream = _WatchedStream(response.stream, on_bytes)
        return response

    def close(self) -> None:
        self._inner.close()


class OpenAIModel:
    """A chat model behind an OpenAI-compatible endpoint: `profile` plus `base_url`.

    `timeout` is an optional whole-call deadline (off by default: a turn still producing tokens
    is never cut); `idle_timeout` abandons an attempt after that many seconds without a byte
    (keep-alives count); `time_limit` is the run's wall-clock budget from construction on: no
    attempt or wait goes past it. `random` and `sleep` are seams for the retry backoff (tests
    pass a recorder and no-op sleep); `clock` measures the deadlines.
    """

    def __init__(
        self,
        profile: ModelProfile,
        *,
        api_key: str | None,
        base_url: str | None = None,
        stream: bool = True,
        timeout: float | None = None,
        idle_timeout: float = 660,
        time_limit: float | None = None,
        max_retries: int = 6,
        retry_cap: float = 60,
        random: Callable[[], float] = _random.random,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile = profile
        self.base_url: str = (base_url or profile.base_url).rstrip("/")
        self.stream = stream
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.max_retries = max_retries
        self.retry_cap = retry_cap
        self._random = random
        self._sleep = sleep
        self._clock = clock
        self._ends_at = clock() + time_limit if time_limit is not None else None
        self._key = SecretStr(api_key) if api_key else None
        self._client: openai.OpenAI | None = None
        self._transport = _Liveness()

    @classmethod
    def from_settings(cls, settings: Any) -> OpenAIModel:
        """The client that `settings` describe (model, base URL, key, timeouts, retries)."""
        profile = settings.profile()
        return cls(
            profile,
            api_key=settings.resolved_api_key(),
            base_url=settings.base_url or profile.base_url,
            stream=settings.stream,
            timeout=settings.request_timeout,
            idle_timeout=settings.idle_timeout,
            time_limit=settings.max_time,
            max_retries=settings.max_retries,
            retry_cap=settings.retry_cap,
        )

    def __repr__(self) -> str:
        key = "set" if self._key else "missing"
        return f"OpenAIModel({self.profile.name!r}, base_url={self.base_url!r}, api_key={key})"

    # ---- plumbing ---------------------------------------------------------------------------

    def _sdk(self) -> openai.OpenAI:
        if self._key is None:
            raise AuthError(
                f"no API key for {self.profile.name}: set {self.profile.api_key_env} "
                f"(or api_key in ~/.config/tome/config.toml)"
            )
        if self._client is None:
            # Our retry policy, not the SDK's: its retries would nest inside ours.
            self._client = openai.OpenAI(
                api_key=self._key.get_secret_value(), base_url=self.base_url, max_retries=0,
                http_client=httpx2.Client(transport=self._transport, timeout=self._http_timeout()),
            )
        return self._client

    def _redact(self, text: str) -> str:
        if self._key is not None:
            secret = self._key.get_secret_value()
            if secret:
                text = text.replace(secret, "***")
        return text

    def _status_error(self, e: openai.APIStatusError) -> ModelError | _Retryable:
        """The typed error for an HTTP error answer (wrapped in _Retryable when worth retrying)."""
        status = e.status_code
        detail = self._redact(_error_text(e))
        where = f"{self.base_url} ({self.profile.name})"
        env = self.profile.api_key_env
        if status == 400:
            if _CONTEXT_PATTERNS.search(detail):
                return ContextOverflow(f"prompt does not fit {self.profile.name}'s window: {detail}", status=400)
            return BadRequest(f"{where} rejected the request (400): {detail}", status=400)
        if status == 401:
            return AuthError(f"{where} refused the API key (401): set {env} to a valid key ({detail})", status=401)
        if status == 402:
            return BalanceError(
                f"{where}: account balance exhausted (402): top up the account, then retry ({detail})", status=402
            )
        if status == 403:
            return AuthError(f"{where} denied access (403): check that the key in {env} may use this model "
                             f"({detail})", status=403)
        if status in _RETRY_STATUSES or status >= 500:
            kind = RateLimited if status == 429 else ServerError
            return _Retryable(kind(f"{where} answered {status}: {detail}", status=status),
                              _retry_after(e.response.headers))
        return BadRequest(f"{where} rejected the request ({status}): {detail}", status=status)

    def _classify(self, e: BaseException) -> ModelError | _Retryable:
        where = f"{self.base_url} ({self.profile.name})"
        if isinstance(e, (_Retryable, ModelError)):
            return e
        if isinstance(e, openai.APIStatusError):
            return self._status_error(e)
        if isinstance(e, openai.APITimeoutError):
            return _Retryable(ServerError(f"{where}: request timed out"))
        if isinstance(e, openai.APIConnectionError):
            cause = type(e.__cause__).__name__ if e.__cause__ else "connection error"
            return _Retryable(ServerError(f"{where}: connection failed ({cause})"))
        if isinstance(e, httpx2.TimeoutException):
            return _Retryable(ServerError(f"{where}: request timed out"))
        if isinstance(e, httpx2.TransportError):
            return _Retryable(StreamError(f"{where}: response cut off ({type(e).__name__})"))
        if isinstance(e, (json.JSONDecodeError, openai.APIResponseValidationError)):
            return _Retryable(StreamError(f"{where}: unreadable response ({type(e).__name__})"))
        if isinstance(e, openai.APIError):  # an error object inside a stream
            return _Retryable(ServerError(f"{where}: error in stream: {self._redact(e.message)}"))
        raise e  # our bug: let it surface as is

    # ---- one attempt ------------------------------------------------------------------------

    def _http_timeout(self) -> httpx2.Timeout:
        # httpx's read timeout is per read, so keep-alive bytes reset it like they reset ours.
        return httpx2.Timeout(self.idle_timeout + 1, connect=min(self.idle_timeout, 30.0))

    def _deadline(self, start: float) -> tuple[float | None, str]:
        """The earlier of the call's own deadline and the run's time limit, and which it is."""
        own = start + self.timeout if self.timeout is not None else None
        if self._ends_at is not None and (own is None or self._ends_at <= own):
            return self._ends_at, "the run's time limit"
        return own, f"the {self.timeout:g}s call deadline" if own is not None else ""

    def _out_of_time(self, what: str) -> ModelError | Interrupt:
        if what == "the run's time limit":
            return TimeLimitReached(f"time limit reached during a model call ({self.base_url})")
        return ServerError(f"no complete answer within {what}")

    def _attempt(
        self, request: dict[str, Any], *, stream: bool, deadline: tuple[float | None, str],
        on_delta: Callable[[Delta], None] | None,
    ) -> _Assembly:
        """One HTTP exchange, read in a worker thread so the idle watchdog can abandon it."""
        client = self._sdk()
        ends_at, what = deadline
        inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        cancelled = threading.Event()
        handles: list[Any] = []

        def on_bytes(data: bytes) -> None:
            inbox.put(("keepalive" if _is_keepalive(data) else "bytes", data))

        def work() -> None:
            self._transport.listen(on_bytes)
            try:
                if stream:
                    sdk_stream = client.chat.completions.create(**request, stream=True)
                    handles.append(sdk_stream.response)
                    if cancelled.is_set():
                        return
                    inbox.put(("open", None))
                    for chunk in sdk_stream:
                        if cancelled.is_set():
                            return
                        inbox.put(("chunk", chunk))
                    inbox.put(("end", None))
                else:
                    raw = client.chat.completions.with_streaming_response.create(**request)
                    with raw as response:
                        handles.append(response.http_response)
                        if cancelled.is_set():
                            return
                        inbox.put(("done", response.parse()))
            except BaseException as e:  # handed to the caller's thread
                inbox.put(("error", e))
            finally:
                self._transport.listen(None)
                for h in handles:
                    h.close()

        worker = threading.Thread(target=work, name="tome-model-call", daemon=True)
        assembly = _Assembly(on_delta=on_delta)
        opened = payload = False
        worker.start()
        try:
            while True:
                wait = self.idle_timeout
                if ends_at is not None:
                    remaining = ends_at - self._clock()
                    if remaining <= 0:
                        raise self._out_of_time(what)
                    wait = min(wait, remaining)
                try:
                    kind, item = inbox.get(timeout=wait)
                except queue.Empty:
                    if wait < self.idle_timeout:
                        raise self._out_of_time(what) from None
                    raise _Retryable(StreamError(f"no data for {self.idle_timeout:g}s (not even a keep-alive)")) from None
                if kind == "error":
                    if opened and isinstance(item, (openai.APIConnectionError, httpx2.TransportError)):
                        cause = type(item.__cause__ or item).__name__
                        raise _Retryable(StreamError(f"stream cut off mid-way ({cause})")) from None
                    raise item
                if kind == "keepalive":
                    if not payload and on_delta is not None:
                        on_delta(Delta(kind="queued", text=": keep-alive"))
                elif kind == "bytes":
                    payload = True
                elif kind == "open":
                    opened = True
                elif kind == "chunk":
                    assembly.add_chunk(item)
                elif kind == "done":
                    if not hasattr(item, "choices"):
                        raise _Retryable(StreamError("response is not a chat completion"))
                    assembly.add_completion(item)
                    break
                elif kind == "end":
                    break
        finally:
            cancelled.set()
            for h in list(handles):
                try:
                    h.close()
                except Exception:  # closing from this thread races the worker's own close
                    pass
        if assembly.finish_reason is None:
            what_came = "stream ended" if stream else "response came"
            raise _Retryable(StreamError(f"{what_came} without a finish_reason (truncated answer)"))
        if assembly.finish_reason == _RESOURCE_FINISH:
            # A partial answer: dropped here, so it is never recorded or run; retried like a 503.
            raise _Retryable(ServerError(f"{self.base_url} stopped the answer: {_RESOURCE_FINISH}", status=503))
        return assembly

    # ---- public -----------------------------------------------------------------------------

    def request_body(
        self, messages: Sequence[Message], *, mode: Mode, tools: list[dict] | None = None,
        max_tokens: int | None = None, stream: bool | None = None,
    ) -> dict[str, Any]:
        """The keyword arguments sent to `chat.completions.create` (without `stream`)."""
        stream = self.stream if stream is None else stream
        body: dict[str, Any] = {
            "model": self.profile.name,
            "messages": to_wire(messages, self.profile),
            **copy.deepcopy(self.profile.request_fields(Mode(mode))),
        }
        if tools:
            body["tools"] = tools if self.profile.enforces_strict(self.base_url) else _without_strict(tools)
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if stream and "stream_options" in self.profile.accepts:
            body["stream_options"] = {"include_usage": True}
        return redact_outgoing(body)  # the one redaction step for what leaves the machine

    def query(
        self,
        messages: Sequence[Message],
        *,
        mode: Mode,
        tools: list[dict] | None = None,
        max_tokens: int | None = None,
        on_delta: Callable[[Delta], None] | None = None,
    ) -> ModelResponse:
        """Send `messages` in `mode`; retry transient failures inside the deadline; typed result."""
        request = self.request_body(messages, mode=mode, tools=tools, max_tokens=max_tokens)
        start = self._clock()
        deadline = self._deadline(start)
        attempt = 0
        while True:
            try:
                assembly = self._attempt(request, stream=self.stream, deadline=deadline, on_delta=on_delta)
                break
            except BaseException as e:
                outcome = self._classify(e)
            if not isinstance(outcome, _Retryable):
                raise outcome from None
            error = outcome.error
            if attempt >= self.max_retries:
                raise type(error)(f"{error} (gave up after {attempt + 1} attempts)", status=error.status) from None
            delay = self._backoff(attempt, outcome.retry_after)
            self._check_wait(error, delay, outcome.retry_after, deadline, attempt)
            attempt += 1
            asked = " as the server asked (Retry-After)" if outcome.retry_after is not None else ""
            log.warning("model call failed: %s; retry %d/%d in %.2fs%s", error, attempt, self.max_retries, delay, asked)
            self._sleep(delay)
        usage = _usage(assembly.usage)
        if assembly.usage is None:
            log.warning("%s sent no usage; cost counted as 0", self.base_url)
        return ModelResponse(
            message=assembly.message(),
            finish_reason=assembly.finish_reason or "",
            usage=usage,
            cost=self.profile.cost(usage),
            model=assembly.model or self.profile.name,
            request_id=assembly.response_id,
            elapsed=self._clock() - start,
            cache_reported=_reports_cache(assembly.usage),
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """The server's Retry-After in full, else full jitter capped at retry_cap."""
        if retry_after is not None:
            return retry_after
        return self._random() * min(self.retry_cap, _BACKOFF_BASE * 2**attempt)

    def _check_wait(
        self, error: ModelError, delay: float, retry_after: float | None, deadline: tuple[float | None, str],
        attempt: int,
    ) -> None:
        """Stop, naming the wait, when waiting `delay` would pass the call's deadline or the run's limit."""
        ends_at, what = deadline
        if ends_at is None or self._clock() + delay < ends_at:
            return
        left = max(ends_at - self._clock(), 0.0)
        wait = (f"the server asked to wait {delay:g}s (Retry-After)" if retry_after is not None
                else f"retry {attempt + 1} would wait {delay:.2f}s")
        message = f"{error} (gave up: {wait}, beyond {what}: {left:.0f}s left)"
        if what == "the run's time limit":
            raise TimeLimitReached(message) from None
        raise type(error)(message, status=error.status) from None

    def list_models(self, *, timeout: float = 10) -> list[str]:
        """Model names the endpoint serves (one attempt; errors typed like query's)."""
        try:
            page = self._sdk().models.list(timeout=timeout)
            return [m.id for m in page.data]
        except BaseException as e:
            outcome = self._classify(e)
        raise (outcome.error if isinstance(outcome, _Retryable) else outcome) from None
