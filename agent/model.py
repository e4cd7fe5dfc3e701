"""The model client: one class over the `openai` SDK; the provider is a base URL and a profile.

`OpenAIModel.query` sends chat completions (streamed or not) and returns a typed
`ModelResponse`; both paths assemble the same `AssistantMessage` and feed `on_delta` (piece by
piece when streaming, in one piece per kind otherwise). The SDK's own retries are
off: this module retries connection errors, timeouts, 408/409/429/5xx and broken streams with
full-jitter exponential backoff (honouring Retry-After, capped), all inside one deadline per
call. Streams are read in a worker thread so a stream that sends only keep-alive lines (which
the SDK swallows without yielding) is abandoned after `idle_timeout` and retried.

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

__all__ = ["Model", "OpenAIModel", "to_wire"]

log = logging.getLogger("agent.model")

_RETRY_STATUSES = frozenset({408, 409, 429})
_CONTEXT_PATTERNS = re.compile(
    r"maximum context length|context_length_exceeded|context length|too many tokens|prompt is too long",
    re.IGNORECASE,
)
_MESSAGE = TypeAdapter(Message)
# First backoff step in seconds; full jitter draws uniformly from [0, base * 2**attempt].
_BACKOFF_BASE = 0.5


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

    DeepSeek's rule (profile.requires_reasoning_echo): an assistant turn that made tool calls
    goes back with its reasoning_content, as a string even when empty, in every later request;
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
                    out["reasoning_content"] = m.reasoning_content or ""
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


class OpenAIModel:
    """A chat model behind an OpenAI-compatible endpoint: `profile` plus `base_url`.

    `random` and `sleep` are seams for the retry backoff (tests pass a recorder and no-op
    sleep); `clock` measures the per-call deadline.
    """

    def __init__(
        self,
        profile: ModelProfile,
        *,
        api_key: str | None,
        base_url: str | None = None,
        stream: bool = True,
        timeout: float = 600,
        idle_timeout: float = 120,
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
        self._key = SecretStr(api_key) if api_key else None
        self._client: openai.OpenAI | None = None

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
                api_key=self._key.get_secret_value(), base_url=self.base_url, max_retries=0, timeout=self.timeout
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

    def _attempt(
        self, request: dict[str, Any], *, stream: bool, deadline: float, on_delta: Callable[[Delta], None] | None
    ) -> _Assembly:
        """One HTTP exchange, read in a worker thread so the watchdog and deadline can abandon it."""
        client = self._sdk()
        remaining = deadline - self._clock()
        read = min(self.idle_timeout + 1, remaining) if stream else remaining
        timeout = httpx2.Timeout(remaining, connect=min(remaining, 30.0), read=read)
        inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        cancelled = threading.Event()
        handles: list[Any] = []

        def work() -> None:
            try:
                if stream:
                    sdk_stream = client.chat.completions.create(**request, stream=True, timeout=timeout)
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
                    raw = client.chat.completions.with_streaming_response.create(**request, timeout=timeout)
                    with raw as response:
                        handles.append(response.http_response)
                        if cancelled.is_set():
                            return
                        inbox.put(("done", response.parse()))
            except BaseException as e:  # handed to the caller's thread
                inbox.put(("error", e))
            finally:
                for h in handles:
                    h.close()

        worker = threading.Thread(target=work, name="tome-model-call", daemon=True)
        assembly = _Assembly(on_delta=on_delta)
        opened = False
        worker.start()
        try:
            while True:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise ServerError(f"no complete answer within the {self.timeout:g}s deadline")
                wait = min(self.idle_timeout, remaining) if stream else remaining
                try:
                    kind, item = inbox.get(timeout=wait)
                except queue.Empty:
                    if wait >= remaining:
                        raise ServerError(f"no complete answer within the {self.timeout:g}s deadline") from None
                    raise _Retryable(
                        StreamError(f"stream sent no data for {self.idle_timeout:g}s (keep-alives only)")
                    ) from None
                if kind == "error":
                    if opened and isinstance(item, (openai.APIConnectionError, httpx2.TransportError)):
                        cause = type(item.__cause__ or item).__name__
                        raise _Retryable(StreamError(f"stream cut off mid-way ({cause})")) from None
                    raise item
                if kind == "open":
                    opened = True
                if kind == "chunk":
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
            what = "stream ended" if stream else "response came"
            raise _Retryable(StreamError(f"{what} without a finish_reason (truncated answer)"))
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
            body["tools"] = tools
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
        deadline = start + self.timeout
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
            if self._clock() + delay >= deadline:
                raise type(error)(
                    f"{error} (gave up: the {self.timeout:g}s deadline leaves no time for retry {attempt + 1})",
                    status=error.status,
                ) from None
            attempt += 1
            log.warning("model call failed: %s; retry %d/%d in %.2fs", error, attempt, self.max_retries, delay)
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
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter, or the server's Retry-After; never longer than retry_cap."""
        if retry_after is not None:
            return min(retry_after, self.retry_cap)
        return self._random() * min(self.retry_cap, _BACKOFF_BASE * 2**attempt)

    def list_models(self, *, timeout: float = 10) -> list[str]:
        """Model names the endpoint serves (one attempt; errors typed like query's)."""
        try:
            page = self._sdk().models.list(timeout=timeout)
            return [m.id for m in page.data]
        except BaseException as e:
            outcome = self._classify(e)
        raise (outcome.error if isinstance(outcome, _Retryable) else outcome) from None
