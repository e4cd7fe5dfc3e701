"""A scripted OpenAI-compatible server on 127.0.0.1 that behaves like DeepSeek where it matters.

It replays a script of assistant turns over real HTTP, so tests, the demo and fault drills drive
the real `openai` SDK. Like DeepSeek it counts prompt tokens with the real tokenizer, reports
prompt-cache hits as DeepSeek's cache units would (`PrefixCache`), answers 400 when a tool-call
turn comes back without its `reasoning_content` (or with an empty one) in thinking mode or
without a tool message for each of its calls, and answers DeepSeek's context-length 400 above
the window.

Faults are injected per turn: `faults[i]` shapes attempt `i` of that turn; once they are used
up the turn is served normally. What each kind does to its attempt:

    status          answer `status` (with Retry-After if given) after `seconds`; the turn stays
    keepalive       200, then only keep-alive lines (SSE comments, or empty lines when not
                    streaming) for `seconds`, then close; the turn stays
    cut             send part of the answer, then drop the connection; the turn stays
    no_finish       a complete answer whose finish_reason is missing; the turn stays
    delay           keep-alive lines for `seconds`, then serve the turn (consumes it)
    malformed_args  serve the turn with every tool call's arguments cut short (consumes it)
    stall           200, then nothing at all (not even keep-alives) for `seconds`, then close;
                    the turn stays
    insufficient    the first half of the answer's text, no tool calls, and
                    finish_reason "insufficient_system_resource" (DeepSeek ran out of capacity);
                    the turn stays

Usage (the CLI serves a JSON script until interrupted):

    with ScriptedServer([Turn(content="hi")]) as server:
        client = OpenAI(base_url=server.base_url, api_key="k")
        ...
        server.assert_done()

    python -m agent.testing.server SCRIPT.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.profiles import DEEPSEEK_EFFORTS

__all__ = [
    "Fault",
    "ScriptedToolCall",
    "Turn",
    "Script",
    "RecordedRequest",
    "ScriptedServer",
    "render_prompt",
    "PrefixCache",
    "REASONING_ECHO_MESSAGE",
    "TOOL_ANSWER_MESSAGE",
    "DEFAULT_CACHE_INTERVAL",
]

# DeepSeek's wording (2026), so clients can be tested against what they will really see.
REASONING_ECHO_MESSAGE = "The reasoning_content in the thinking mode must be passed back to the API."
_CONTEXT_MESSAGE = (
    "This model's maximum context length is {window} tokens. However, you requested {total} tokens "
    "({prompt} in the messages, {completion} in the completion). Please reduce the length of the "
    "messages or completion."
)
_STATUS_MESSAGES = {
    401: ("Authentication Fails, Your api key is invalid", "authentication_error"),
    402: ("Insufficient Balance", "unknown_error"),
    422: ("Invalid Parameters", "invalid_request_error"),
    429: ("Rate Limit Reached", "rate_limit_error"),
    500: ("Server Error", "server_error"),
    503: ("Server Overloaded", "server_error"),
}
DEFAULT_MODELS = ("deepseek-v4-pro", "deepseek-v4-flash", "deepseek-flash")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Fault(_Record):
    """One injected failure (or distortion) of one attempt at a turn; see the module docstring."""

    kind: Literal["status", "keepalive", "cut", "no_finish", "delay", "malformed_args", "stall", "insufficient"]
    status: int = Field(default=503, description="HTTP status for kind=status.")
    retry_after: str | None = Field(
        default=None, description="Retry-After header value for kind=status: seconds or an HTTP date."
    )
    message: str | None = Field(default=None, description="Error message for kind=status.")
    seconds: float = Field(
        default=0.0, description="status: wait before answering; delay: keep-alives before serving; "
        "keepalive, stall: how long to keep the connection open (0 = until the client leaves).",
    )

    @field_validator("retry_after", mode="before")
    @classmethod
    def _as_text(cls, v: Any) -> Any:
        return None if v is None else str(v)

    @property
    def consumes_turn(self) -> bool:
        """Whether an attempt under this fault still serves (and uses up) the turn."""
        return self.kind in ("delay", "malformed_args")


class ScriptedToolCall(_Record):
    """A tool call the scripted model makes; dict arguments are sent as JSON text."""

    name: str
    arguments: str | dict[str, Any] = "{}"
    id: str | None = None

    def arguments_text(self) -> str:
        """The arguments as the JSON text sent on the wire."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, ensure_ascii=False)


class Turn(_Record):
    """One scripted assistant turn, with faults for its first attempts."""

    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)
    finish_reason: str | None = Field(
        default=None, description="Defaults to tool_calls when the turn calls tools, else stop."
    )
    faults: list[Fault] = Field(default_factory=list)

    def final_reason(self) -> str:
        """The finish_reason served when no fault removes it."""
        return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")


TurnSource = Turn | Callable[[dict[str, Any]], Turn]


class Script:
    """The turns a server replays, in order: Turn records or callables `(request body) -> Turn`."""

    def __init__(self, turns: Sequence[TurnSource | dict[str, Any]]) -> None:
        self.turns: list[TurnSource] = [
            Turn.model_validate(t) if isinstance(t, dict) else t for t in turns
        ]

    @classmethod
    def from_json(cls, path: str | Path) -> Script:
        """Load a script: a JSON list of turns, or an object with a "turns" list."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        turns = data["turns"] if isinstance(data, dict) else data
        return cls([Turn.model_validate(t) for t in turns])

    def __len__(self) -> int:
        return len(self.turns)


class RecordedRequest(_Record):
    """One request the server received (header names lowercased), and what it answered."""

    method: str
    path: str
    headers: dict[str, str]
    raw: str = ""
    body: Any = None
    status: int = 0
    turn: int | None = Field(default=None, description="Index of the turn this request was for.")
    fault: str | None = Field(default=None, description="Kind of the fault applied, if any.")
    usage: dict[str, Any] | None = None


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return json.dumps(content, sort_keys=True)


# The open-weights V4 encoder puts the Max effort marker at the very start of the prompt (belief
# from issue 13; settled by encoding/encoding_dsv4.py of deepseek-ai/DeepSeek-V4-Pro on Hugging
# Face), so a switch into or out of Max shares no cached prefix with what came before.
MAX_EFFORT_MARKER = "<|effort:max|>"


def render_prompt(body: dict[str, Any], *, thinking: bool = True) -> str:
    """The canonical text of a request's prompt: the effort marker (Max), leading system
    messages, tools, then the rest.

    Prefix caching and token counts are computed on this text, so two requests that share a
    message prefix share a text prefix.
    """
    messages = body.get("messages") or []
    tools = body.get("tools") or []
    parts: list[str] = []
    if thinking and DEEPSEEK_EFFORTS.get(body.get("reasoning_effort") or "") == "max":
        parts.append(MAX_EFFORT_MARKER)
    i = 0
    while i < len(messages) and isinstance(messages[i], dict) and messages[i].get("role") == "system":
        parts.append(f"<|system|>{_text_of(messages[i].get('content'))}\n")
        i += 1
    if tools:
        parts.append(f"<|tools|>{json.dumps(tools, sort_keys=True, ensure_ascii=False)}\n")
    parts += [render_message(m, thinking=thinking) for m in messages[i:] if isinstance(m, dict)]
    return "".join(parts)


def render_message(m: dict[str, Any], *, thinking: bool = True) -> str:
    """One non-leading message as it appears in the prompt text."""
    role = m.get("role", "")
    parts = [f"<|{role}|>"]
    calls = m.get("tool_calls") or []
    if role == "assistant" and calls and thinking and m.get("reasoning_content"):
        parts.append(f"<think>{m['reasoning_content']}</think>")
    if role == "tool":
        parts.append(f"[{m.get('tool_call_id', '')}]")
    parts.append(_text_of(m.get("content")))
    for c in calls:
        fn = c.get("function", {}) if isinstance(c, dict) else {}
        parts.append(f"<|call|>{fn.get('name', '')}({fn.get('arguments', '')})")
    parts.append("\n")
    return "".join(parts)


# ---- the prefix cache -------------------------------------------------------------------------

# Tokens between the cache units DeepSeek cuts inside a long prompt. The guide says "fixed token
# intervals" without the number: 4,096 is a belief, to be settled by a live run
# (benchmarks/cache_hits.py --cache-interval shows how much the figures depend on it).
DEFAULT_CACHE_INTERVAL = 4_096
# A newline followed by a non-space character is a pre-token boundary of the V4 tokenizer
# (agent.tokens, count_batch), so counting the pieces between such seams counts the whole.
_SEAM = re.compile(r"\n(?=\S)")


class PrefixCache:
    """DeepSeek's context cache as its guide describes it (api-docs.deepseek.com/guides/kv_cache).

    A request hits only a whole stored *unit*: the longest unit that is a prefix of its prompt.
    Units are stored at the end of each request's input (the whole prompt) and at the end of
    its output (the prompt followed by the answer as the next request will render it), at a
    common prefix detected with an earlier prompt (usable by later requests, not by the one that
    revealed it), and every `interval` tokens inside a long prompt (cut at the nearest seam, a
    pre-token boundary, at or after the interval). Units are kept as (length, digest).
    """

    def __init__(self, tokenizer: Any, *, interval: int = DEFAULT_CACHE_INTERVAL) -> None:
        self.tokenizer = tokenizer
        self.interval = max(1, interval)
        self._units: dict[int, dict[bytes, int]] = {}
        self._prompts: list[str] = []
        self._lock = threading.Lock()

    @staticmethod
    def _digest(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def _add(self, text: str, tokens: int) -> None:
        self._units.setdefault(len(text), {}).setdefault(self._digest(text), tokens)

    def units(self) -> list[tuple[int, int]]:
        """Stored units as (characters, tokens), shortest first."""
        with self._lock:
            return sorted((n, t) for n, d in self._units.items() for t in d.values())

    def lookup(self, text: str) -> int:
        """Tokens of the longest stored unit that is a prefix of `text` (0: a full miss)."""
        with self._lock:
            lengths = sorted((n for n in self._units if n <= len(text)), reverse=True)
            for n in lengths:
                tokens = self._units[n].get(self._digest(text[:n]))
                if tokens is not None:
                    return tokens
        return 0

    def request(self, text: str, prompt_tokens: int) -> int:
        """Serve one prompt: its hit, then the units it stores (input end, intervals, common prefix)."""
        hit = min(self.lookup(text), prompt_tokens)
        shared = max((_common_prefix(text, p) for p in self._prompts), default=0)
        intervals = self._interval_cuts(text)
        with self._lock:
            self._prompts.append(text)
            self._add(text, prompt_tokens)
            for end, tokens in intervals:
                self._add(text[:end], tokens)
        if 0 < shared < len(text) and not self._has(text[:shared]):
            self.store(text[:shared], self.tokenizer.count(text[:shared]))
        return hit

    def _has(self, text: str) -> bool:
        with self._lock:
            return self._digest(text) in self._units.get(len(text), {})

    def store(self, text: str, tokens: int) -> None:
        """Store one unit (the end of a model output, a detected common prefix)."""
        with self._lock:
            self._add(text, tokens)

    def _interval_cuts(self, text: str) -> list[tuple[int, int]]:
        """(end offset, tokens so far) at the first seam past each multiple of the interval."""
        ends = [m.end() for m in _SEAM.finditer(text)]
        starts = [0, *ends]
        pieces = [text[a:b] for a, b in zip(starts, [*ends, len(text)])]
        counts = self.tokenizer.count_batch(pieces) if hasattr(self.tokenizer, "count_batch") else [
            self.tokenizer.count(p) for p in pieces]
        cuts: list[tuple[int, int]] = []
        total, target = 0, self.interval
        for end, n in zip(ends, counts):
            total += n
            if total >= target:
                cuts.append((end, total))
                target = (total // self.interval + 1) * self.interval
        return cuts


# The JSON Schema subset of strict function calling (api-docs.deepseek.com/guides/tool_calls,
# strict mode): these types plus enum and anyOf; every object closed, with every property required.
_STRICT_TYPES = frozenset({"object", "string", "number", "integer", "boolean", "array"})


def _strict_problem(tool: Any) -> str | None:
    """Why a strict tool's schema is outside the strict subset, or None (also for a non-strict tool)."""
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(fn, dict) or not fn.get("strict"):
        return None
    return _schema_problem(fn.get("parameters") or {}, fn.get("name", "?"))


def _schema_problem(schema: Any, where: str) -> str | None:
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if kind is not None and kind not in _STRICT_TYPES:
        return f"{where}: type {kind!r} is not supported"
    if kind == "object":
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return f"{where}: additionalProperties must be false"
        if set(schema.get("required") or []) != set(props):
            return f"{where}: every property must be required"
        for name, sub in props.items():
            if problem := _schema_problem(sub, f"{where}.{name}"):
                return problem
    for sub in [schema.get("items"), *(schema.get("anyOf") or [])]:
        if problem := _schema_problem(sub, where):
            return problem
    return None


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"Error {status}"


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


class ScriptedServer:
    """A real HTTP server on 127.0.0.1 (ephemeral port) replaying a script; a context manager."""

    def __init__(
        self,
        script: Script | Sequence[TurnSource | dict[str, Any]],
        *,
        tokenizer: Any = None,
        models: Sequence[str] = DEFAULT_MODELS,
        context_window: int = 1_048_576,
        cache_interval: int = DEFAULT_CACHE_INTERVAL,
        api_key: str | None = None,
        thinking_default: bool = True,
        keepalive_interval: float = 0.05,
        chunk_chars: int = 8,
        port: int = 0,
    ) -> None:
        self.script = script if isinstance(script, Script) else Script(script)
        self.models = list(models)
        self.context_window = context_window
        self.cache_interval = cache_interval
        self.thinking_default = thinking_default
        self.keepalive_interval = keepalive_interval
        self.chunk_chars = max(1, chunk_chars)
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []
        self._api_key = api_key
        self._tokenizer = tokenizer
        self._port = port
        self._lock = threading.Lock()
        self._next_turn = 0
        self._attempt = 0
        self._cache: PrefixCache | None = None
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = f"{self.base_url}" if self._httpd else "stopped"
        return f"ScriptedServer({state}, turn {self._next_turn}/{len(self.script)})"

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/v1` while running."""
        if self._httpd is None:
            raise RuntimeError("the scripted server is not running (use it as a context manager)")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def tokenizer(self) -> Any:
        """The counter for prompt and completion tokens (DeepSeek-V4's unless one was given)."""
        if self._tokenizer is None:
            from agent.tokens import get_tokenizer

            self._tokenizer = get_tokenizer("deepseek-v4")
        return self._tokenizer

    def start(self) -> ScriptedServer:
        """Bind an ephemeral port and serve in a background thread."""
        if self._httpd is not None:
            return self
        _ = self.tokenizer  # load before the first request so it does not eat a client's deadline
        handler = type("_BoundHandler", (_Handler,), {"scripted": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="scripted-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port; open keep-alive streams end."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- script state ---------------------------------------------------------------------

    @property
    def turns_left(self) -> int:
        """Turns not yet served."""
        return len(self.script) - self._next_turn

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The recorded chat-completion requests, in order."""
        return [r for r in self.requests if r.path.rstrip("/").endswith("chat/completions")]

    def assert_done(self) -> None:
        """Raise AssertionError if a call went wrong or a scripted turn was never used."""
        problems = list(self.errors)
        if self.turns_left:
            problems.append(
                f"{self.turns_left} scripted turn(s) never used "
                f"(served {self._next_turn} of {len(self.script)})"
            )
        if problems:
            raise AssertionError("; ".join(problems))

    def _fail(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    # ---- request logic (called from handler threads) ----------------------------------------

    def _thinking(self, body: dict[str, Any]) -> bool:
        thinking = body.get("thinking")
        if thinking is None:
            return self.thinking_default
        if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
            raise _HTTPError(400, f"thinking must be {{'type': 'enabled' | 'disabled'}}, got {thinking!r}")
        return thinking["type"] == "enabled"

    def _validate(self, body: Any, *, beta: bool = False) -> tuple[bool, str, int]:
        """Check a chat request like DeepSeek does; returns (thinking, prompt text, prompt tokens).

        `beta`: the request came under /beta, where `strict` tool schemas are enforced.
        """
        if not isinstance(body, dict):
            raise _HTTPError(400, "Failed to deserialize the JSON body into the target type")
        if body.get("model") not in self.models:
            raise _HTTPError(400, "Model Not Exist")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _HTTPError(400, "messages must be a non-empty list")
        thinking = self._thinking(body)
        effort = body.get("reasoning_effort")
        if effort is not None and effort not in DEEPSEEK_EFFORTS:
            accepted = ", ".join(DEEPSEEK_EFFORTS)
            raise _HTTPError(400, f"reasoning_effort must be one of {accepted}, got {effort!r}")
        if thinking:
            for m in messages:
                if (
                    isinstance(m, dict)
                    and m.get("role") == "assistant"
                    and m.get("tool_calls")
                    and not (isinstance(m.get("reasoning_content"), str) and m["reasoning_content"])
                ):
                    # A missing reasoning_content is documented to fail; an empty one is reported
                    # to (litellm, hermes-agent issues on V4-Pro): both get the 400 here.
                    raise _HTTPError(400, REASONING_ECHO_MESSAGE)
        _check_tool_answers(messages)
        if beta:
            for problem in (_strict_problem(t) for t in body.get("tools") or []):
                if problem:
                    raise _HTTPError(400, f"strict function calling: {problem}")
        text = render_prompt(body, thinking=thinking)
        prompt_tokens = self.tokenizer.count(text)
        completion = int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)
        if prompt_tokens + completion > self.context_window:
            raise _HTTPError(
                400,
                _CONTEXT_MESSAGE.format(
                    window=self.context_window,
                    total=prompt_tokens + completion,
                    prompt=prompt_tokens,
                    completion=completion,
                ),
            )
        return thinking, text, prompt_tokens

    @property
    def cache(self) -> PrefixCache:
        """The prefix cache shared by every request to this server."""
        with self._lock:
            if self._cache is None:
                self._cache = PrefixCache(self.tokenizer, interval=self.cache_interval)
            return self._cache

    def _take_attempt(self, body: dict[str, Any]) -> tuple[int, Turn, Fault | None]:
        """The turn this request is for and the fault for this attempt (None: serve normally)."""
        with self._lock:
            index = self._next_turn
            if index >= len(self.script):
                raise _HTTPError(
                    500,
                    f"scripted server: extra call #{index + 1}: the script has only "
                    f"{len(self.script)} turn(s)",
                    "server_error",
                )
            attempt = self._attempt
        source = self.script.turns[index]
        try:
            turn = source(body) if callable(source) else source
            if not isinstance(turn, Turn):
                turn = Turn.model_validate(turn)
        except Exception as e:
            raise _HTTPError(500, f"scripted server: turn {index} raised {type(e).__name__}: {e}",
                             "server_error") from e
        fault = turn.faults[attempt] if attempt < len(turn.faults) else None
        with self._lock:
            if fault is None or fault.consumes_turn:
                self._next_turn += 1
                self._attempt = 0
            else:
                self._attempt += 1
        return index, turn, fault


# DeepSeek's wording (reported from the official API in langgenius/dify#32222; OpenAI's is the same
# sentence followed by the ids): an assistant turn's tool_calls each need a tool message after it.
TOOL_ANSWER_MESSAGE = (
    "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
    "'tool_call_id'. (insufficient tool messages following tool_calls message)"
)


def _check_tool_answers(messages: list[Any]) -> None:
    """400 unless every tool_call id of an assistant turn has a tool message right after the turn."""
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and m.get("role") == "assistant" and m.get("tool_calls")):
            continue
        answered: set[Any] = set()
        for later in messages[i + 1:]:
            if not (isinstance(later, dict) and later.get("role") == "tool"):
                break
            answered.add(later.get("tool_call_id"))
        missing = [c.get("id") for c in m["tool_calls"] if isinstance(c, dict) and c.get("id") not in answered]
        if missing:
            raise _HTTPError(400, f"{TOOL_ANSWER_MESSAGE} Missing: {', '.join(map(str, missing))}")


def _usage(
    server: ScriptedServer, prompt_tokens: int, hit: int, reasoning: str, content: str, calls: list[dict[str, Any]]
) -> dict[str, Any]:
    count = server.tokenizer.count
    reasoning_tokens = count(reasoning) if reasoning else 0
    completion = reasoning_tokens + (count(content) if content else 0)
    for c in calls:
        completion += count(c["function"]["name"] + c["function"]["arguments"])
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": hit},
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "prompt_cache_hit_tokens": hit,
        "prompt_cache_miss_tokens": prompt_tokens - hit,
    }


class _Handler(BaseHTTPRequestHandler):
    scripted: ScriptedServer  # set on the bound subclass
    protocol_version = "HTTP/1.1"
    server_version = "tome-scripted/1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests own the output
        pass

    # ---- plumbing ---------------------------------------------------------------------------

    def _record(self, raw: bytes) -> RecordedRequest:
        text = raw.decode("utf-8", errors="replace")
        try:
            body = json.loads(text) if text else None
        except json.JSONDecodeError:
            body = None
        rec = RecordedRequest(
            method=self.command, path=self.path, headers={k.lower(): v for k, v in self.headers.items()},
            raw=text, body=body,
        )
        with self.scripted._lock:
            self.scripted.requests.append(rec)
        return rec

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        self.close_connection = True

    def _send_error(self, rec: RecordedRequest, err: _HTTPError, headers: dict[str, str] | None = None) -> None:
        rec.status = err.status
        self._send_json(
            err.status,
            {"error": {"message": err.message, "type": err.kind, "param": None, "code": "invalid_request_error"}},
            headers,
        )

    def _start_chunked(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.send_header("x-request-id", uuid.uuid4().hex)
        self.end_headers()
        self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop(self) -> None:
        """Close the connection abruptly, without ending the chunked body."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True

    def _keepalive(self, seconds: float, line: bytes) -> bool:
        """Send keep-alive lines for `seconds` (0: until the client leaves); False if it left."""
        srv = self.scripted
        end = time.monotonic() + seconds if seconds > 0 else float("inf")
        while not srv._stopping.is_set():
            try:
                self._chunk(line)
            except OSError:
                return False
            left = end - time.monotonic()
            if left <= 0:
                return True
            srv._stopping.wait(min(srv.keepalive_interval, left))
        return False

    def _stall(self, seconds: float) -> None:
        """Send nothing for `seconds` (0: until the server stops); the client must give up first."""
        srv = self.scripted
        srv._stopping.wait(seconds if seconds > 0 else None)

    # ---- routes ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        rec = self._record(b"")
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            if not self._authorized(rec):
                return
            rec.status = 200
            data = [{"id": m, "object": "model", "owned_by": "deepseek"} for m in self.scripted.models]
            self._send_json(200, {"object": "list", "data": data})
            return
        self.scripted._fail(f"unexpected GET {self.path}")
        self._send_error(rec, _HTTPError(404, f"scripted server: no route GET {self.path}"))

    def do_POST(self) -> None:
        rec = self._record(self._read_body())
        if not self.path.rstrip("/").endswith(("/v1/chat/completions", "/chat/completions")):
            self.scripted._fail(f"unexpected POST {self.path}")
            self._send_error(rec, _HTTPError(404, f"scripted server: no route POST {self.path}"))
            return
        if not self._authorized(rec):
            return
        try:
            self._chat(rec)
        except _HTTPError as e:
            if e.status >= 500:
                self.scripted._fail(e.message)
            self._send_error(rec, e)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client left; that is its business
        except Exception as e:  # a bug here must fail the test, not hang it
            self.scripted._fail(f"scripted server crashed: {type(e).__name__}: {e}")
            try:
                self._send_error(rec, _HTTPError(500, f"scripted server crashed: {e}", "server_error"))
            except OSError:
                pass

    def _authorized(self, rec: RecordedRequest) -> bool:
        key = self.scripted._api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self._send_error(rec, _HTTPError(401, _STATUS_MESSAGES[401][0], "authentication_error"))
        return False

    def _chat(self, rec: RecordedRequest) -> None:
        srv = self.scripted
        body = rec.body
        thinking, text, prompt_tokens = srv._validate(body, beta="/beta/" in self.path)
        index, turn, fault = srv._take_attempt(body)
        rec.turn = index
        rec.fault = fault.kind if fault else None
        stream = bool(body.get("stream"))

        if fault is not None and fault.kind == "status":
            if fault.seconds:
                time.sleep(fault.seconds)
            message, kind = _STATUS_MESSAGES.get(fault.status, (_phrase(fault.status), "error"))
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send_error(rec, _HTTPError(fault.status, fault.message or message, kind), headers)
            return

        hit = srv.cache.request(text, prompt_tokens)
        reasoning = (turn.reasoning_content or "") if thinking else ""
        content = turn.content or ""
        calls = [
            {
                "index": i,
                "id": c.id or f"call_{index:02d}_{i}",
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments_text()},
            }
            for i, c in enumerate(turn.tool_calls)
        ]
        if fault is not None and fault.kind == "insufficient":
            reasoning, content, calls = reasoning[: len(reasoning) // 2], content[: len(content) // 2], []
        if fault is not None and fault.kind == "malformed_args":
            for c in calls:
                args = c["function"]["arguments"]
                c["function"]["arguments"] = args[: max(1, len(args) // 2)] if len(args) > 1 else "{"
        finish: str | None = turn.final_reason()
        if fault is not None and fault.kind == "no_finish":
            finish = None
        if fault is not None and fault.kind == "insufficient":
            finish = "insufficient_system_resource"
        usage = _usage(srv, prompt_tokens, hit, reasoning, content, calls)
        rec.usage = usage
        if fault is None or fault.consumes_turn:
            answer = {"role": "assistant", "content": content, "reasoning_content": reasoning,
                      "tool_calls": [{k: v for k, v in c.items() if k != "index"} for c in calls]}
            rendered = render_message(answer, thinking=thinking)
            srv.cache.store(text + rendered, prompt_tokens + srv.tokenizer.count(rendered))
        rec.status = 200
        meta = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_tome_scripted",
        }

        if fault is not None and fault.kind == "stall":
            self._start_chunked("text/event-stream; charset=utf-8" if stream else "application/json")
            self._stall(fault.seconds)
            self._drop()
            return

        if stream:
            self._start_chunked("text/event-stream; charset=utf-8")
            if fault is not None and fault.kind in ("keepalive", "delay"):
                alive = self._keepalive(fault.seconds, b": keep-alive\n\n")
                if fault.kind == "keepalive" or not alive:
                    self._drop()
                    return
            events = list(self._stream_events(meta, reasoning, content, calls, finish, usage))
            if fault is not None and fault.kind == "cut":
                events = events[: max(1, len(events) // 2)]
            for e in events:
                self._chunk(e)
            if fault is not None and fault.kind == "cut":
                self._drop()
                return
            self._chunk(b"data: [DONE]\n\n")
            self._end_chunked()
            return

        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reasoning:
            message["reasoning_content"] = reasoning
        if calls:
            message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
        payload = json.dumps(
            {
                **meta,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage,
            }
        ).encode()
        self._start_chunked("application/json")
        if fault is not None and fault.kind in ("keepalive", "delay"):
            alive = self._keepalive(fault.seconds, b"\n")
            if fault.kind == "keepalive" or not alive:
                self._drop()
                return
        if fault is not None and fault.kind == "cut":
            self._chunk(payload[: len(payload) // 2])
            self._drop()
            return
        self._chunk(payload)
        self._end_chunked()

    def _stream_events(
        self,
        meta: dict[str, Any],
        reasoning: str,
        content: str,
        calls: list[dict[str, Any]],
        finish: str | None,
        usage: dict[str, Any],
    ) -> Iterator[bytes]:
        n = self.scripted.chunk_chars

        def event(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            chunk = {
                **meta,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
                **extra,
            }
            return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"

        def pieces(text: str) -> list[str]:
            return [text[i : i + n] for i in range(0, len(text), n)]

        yield event({"role": "assistant", "content": ""})
        for p in pieces(reasoning):
            yield event({"reasoning_content": p})
        for p in pieces(content):
            yield event({"content": p})
        for c in calls:
            args = c["function"]["arguments"]
            yield event({"tool_calls": [{"index": c["index"], "id": c["id"], "type": "function",
                                         "function": {"name": c["function"]["name"], "arguments": ""}}]})
            for p in pieces(args):
                yield event({"tool_calls": [{"index": c["index"], "function": {"arguments": p}}]})
        # DeepSeek puts usage on the last chunk, the one with finish_reason.
        yield event({"content": ""}, finish, usage=usage)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a JSON script on 127.0.0.1 until interrupted; print the base URL first."""
    parser = argparse.ArgumentParser(prog="python -m agent.testing.server", description=main.__doc__)
    parser.add_argument("script", type=Path, help="JSON file: a list of turns or {\"turns\": [...]}")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    parser.add_argument("--cache-interval", type=int, default=DEFAULT_CACHE_INTERVAL,
                        help="tokens between the cache units cut inside a long prompt")
    parser.add_argument("--context-window", type=int, default=1_048_576, help="tokens")
    args = parser.parse_args(argv)
    script = Script.from_json(args.script)
    server = ScriptedServer(
        script, port=args.port, cache_interval=args.cache_interval, context_window=args.context_window
    )
    with server:
        print(server.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    try:
        server.assert_done()
    except AssertionError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
