"""Declaring and calling tools: `@tool`, `ToolContext`, `ToolResult`, `Toolbox`.

A tool is a plain typed function whose first parameter is the `ToolContext`; its other
parameters and its docstring become a pydantic arguments model and an OpenAI tools JSON schema
(in DeepSeek's strict subset: closed objects, no null types, optional parameters left out of
`required`; `strict` is set on the tools whose every parameter is required).

Errors split in two (the smolagents rule): whatever the *model* got wrong (invalid JSON, an
unknown tool, missing, wrong-typed or extra arguments, argument text tome cannot act on such as
nesting too deep, integers beyond 64 bits or lone surrogates, an OSError on a workspace path the
model chose, a `ToolError` raised by the tool) comes back as a `ToolResult` with `ok=False` that
says what to do next; any other exception is our bug and propagates. The line is drawn in two
places: `_parse_call` (the argument text) and `_execute` (the tool's own run). Every result passes through one bound: a token budget per result, head and tail
kept, a note saying how much was cut and where the full text was spilled.
"""

from __future__ import annotations

import errno
import inspect
import json
import logging
import os
import re
import subprocess
import typing
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from agent.errors import TomeError
from agent.invisible import invisible_note, show_invisible
from agent.secrets import redact_outgoing
from agent.settings import Settings
from tools.errors import ToolError  # re-exported: the tools import it from here

if TYPE_CHECKING:
    from tools.workspace import Workspace

__all__ = [
    "DEFAULT_RESULT_TOKENS",
    "Counter",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "Toolbox",
    "tool",
]

log = logging.getLogger("tome.tools")

DEFAULT_RESULT_TOKENS = 10_000
_EXACT_COUNT_CHARS = 1_000_000
_SAMPLE_CHARS = 50_000
_MAX_CHARS_PER_TOKEN = 32


@dataclass
class ToolContext:
    """Per-run state handed to every tool as its first parameter (never part of the schema)."""

    workspace: Workspace
    state_dir: Path
    settings: Settings = field(default_factory=Settings)
    interactive: bool = False
    approve: Callable[[str], bool] | None = None
    redact: Callable[[str], str] | None = None
    submitted: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def spill_dir(self) -> Path:
        """Where full texts of cut results are kept (created on first spill)."""
        return self.state_dir / "spill"


class ToolResult(BaseModel):
    """The observation for one tool call, already bounded."""

    model_config = ConfigDict(extra="forbid")

    call_id: str
    name: str
    content: str
    ok: bool = True
    truncated: bool = False
    spilled_to: str | None = None
    error_kind: str | None = None
    repaired_from: str | None = Field(
        default=None, description="The tool name the model sent when it was repaired."
    )


# --------------------------------------------------------------------------------------------
# Declaring tools
# --------------------------------------------------------------------------------------------

_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?)\s*:\s*$"
)


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Google-style docstring -> (description, {param: description})."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    desc: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in lines:
        m = _SECTION.match(line)
        if m:
            section = m.group(1).lower()
            current = None
            continue
        if section is None:
            desc.append(line)
        elif section in ("args", "arguments", "parameters"):
            m = _ARG_LINE.match(line)
            indent = len(line) - len(line.lstrip())
            if m and indent <= 4:
                current = m.group(1).lstrip("*")
                params[current] = m.group(2).strip()
            elif current and line.strip():
                params[current] = (params[current] + " " + line.strip()).strip()
    return "\n".join(desc).strip(), params


def _strictify(schema: Any, *, optional: frozenset[str] = frozenset()) -> Any:
    """Bring a pydantic JSON schema into the strict subset DeepSeek documents (guides/tool_calls,
    strict mode): no titles or defaults, closed objects, no `null` type; a parameter with a
    default is optional by leaving it out of `required` (omitted means its default)."""
    if isinstance(schema, list):
        return [_strictify(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("title", "default"):
            continue
        if key in ("properties", "$defs"):
            out[key] = {k: _strictify(v) for k, v in value.items()}
        else:
            out[key] = _strictify(value)
    out = _without_null(out)
    if out.get("type") == "object" and "properties" in out:
        out["additionalProperties"] = False
        required = schema.get("required", [])
        out["required"] = [name for name in out["properties"] if name in required and name not in optional]
    return out


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """`prop` with any `null` branch of its anyOf removed (a one-branch anyOf is inlined)."""
    branches = prop.get("anyOf")
    if not isinstance(branches, list) or not any(_is_null(b) for b in branches):
        return prop
    rest = [b for b in branches if not _is_null(b)]
    out = {k: v for k, v in prop.items() if k != "anyOf"}
    if len(rest) == 1:
        return {**rest[0], **out}
    return {**out, "anyOf": rest}


def _is_null(branch: Any) -> bool:
    return isinstance(branch, dict) and branch.get("type") == "null"


def _param_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """Type hints of the model-facing parameters (`ctx` and the return type are not needed)."""
    annotations = {
        k: v for k, v in getattr(fn, "__annotations__", {}).items() if k not in ("ctx", "return")
    }
    localns: dict[str, Any] = {}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
        try:
            localns[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    holder = type("_Hints", (), {"__annotations__": annotations})
    return typing.get_type_hints(
        holder, globalns=fn.__globals__, localns=localns, include_extras=True
    )


class Tool:
    """A typed function the model can call; build one with `@tool`."""

    def __init__(self, fn: Callable[..., str], *, name: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.description, param_docs = _parse_docstring(fn.__doc__)
        hints = _param_hints(fn)
        params = list(inspect.signature(fn).parameters.values())
        if not params or params[0].name != "ctx":
            raise TypeError(f"tool {self.name}: the first parameter must be `ctx: ToolContext`")
        fields: dict[str, Any] = {}
        self.defaults: dict[str, Any] = {}
        for p in params[1:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"tool {self.name}: *args/**kwargs cannot be described to a model")
            if p.name not in hints:
                raise TypeError(f"tool {self.name}: parameter {p.name} needs a type hint")
            doc = param_docs.get(p.name, "")
            if p.default is p.empty:
                fields[p.name] = (hints[p.name], Field(description=doc or None))
            else:
                self.defaults[p.name] = p.default
                if p.default is not None:
                    doc = f"{doc} (default: {json.dumps(p.default)})".strip()
                fields[p.name] = (hints[p.name], Field(default=p.default, description=doc or None))
        self.args_model: type[BaseModel] = create_model(  # type: ignore[call-overload]
            f"{self.name}_args",
            __config__=ConfigDict(extra="forbid"),
            **fields,
        )

    def schema(self) -> dict[str, Any]:
        """The OpenAI tools entry: {"type": "function", "function": {...}}."""
        params = _strictify(self.args_model.model_json_schema(), optional=frozenset(self.defaults))
        params.setdefault("properties", {})
        params["type"] = "object"
        params["additionalProperties"] = False
        params.setdefault("required", [])
        # Strict mode requires every property (DeepSeek's and OpenAI's rules), so only a tool
        # without optional parameters can be strict; the model layer drops the flag where the
        # endpoint does not enforce it.
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": params,
                "strict": not self.defaults,
            },
        }

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validate raw arguments; a null for an optional parameter means its default."""
        cleaned = {k: v for k, v in arguments.items() if not (v is None and k in self.defaults)}
        model = self.args_model.model_validate(cleaned)
        return {k: getattr(model, k) for k in type(model).model_fields}

    def __call__(self, ctx: ToolContext, **kwargs: Any) -> str:
        """Validate the arguments and run the tool (raises ValidationError / ToolError)."""
        result = self.fn(ctx, **self.validate(kwargs))
        if not isinstance(result, str):
            raise TypeError(f"tool {self.name} returned {type(result).__name__}, not str")
        return result

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


def tool(fn: Callable[..., str] | None = None, *, name: str | None = None) -> Any:
    """Decorator: a typed function with a docstring becomes a `Tool`."""
    if fn is None:
        return lambda f: Tool(f, name=name)
    return Tool(fn, name=name)


# --------------------------------------------------------------------------------------------
# Calling tools
# --------------------------------------------------------------------------------------------


class Counter(Protocol):
    """Anything that counts tokens (agent.tokens' tokenizers do)."""

    def count(self, text: str) -> int: ...


class _ApproxCounter:
    """len/4: used only until agent.tokens is importable."""

    def count(self, text: str) -> int:
        return (len(text) + 3) // 4


def _default_counter() -> Counter:
    try:
        from agent.tokens import get_tokenizer  # type: ignore[import-not-found]

        return get_tokenizer("deepseek-v4")  # type: ignore[no-any-return]
    except (ImportError, OSError, TomeError) as e:  # no exact tokenizer available here
        log.debug("no exact tokenizer (%s); counting len/4", e)
        return _ApproxCounter()


def _type_name(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " | ".join(_type_name(s) for s in schema["anyOf"])
    t = schema.get("type", "any")
    if t == "array" and isinstance(schema.get("items"), dict):
        return f"array of {_type_name(schema['items'])}"
    return str(t)


def _describe_args(t: Tool) -> str:
    props = t.schema()["function"]["parameters"]["properties"]
    parts = []
    for k, v in props.items():
        opt = "" if k not in t.defaults else ", optional"
        parts.append(f"{k} ({_type_name(v)}{opt})")
    return ", ".join(parts) or "no arguments"


def _validation_message(t: Tool, err: ValidationError) -> str:
    props = t.schema()["function"]["parameters"]["properties"]
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(arguments)"
        top = str(e["loc"][0]) if e["loc"] else ""
        if e["type"] == "missing":
            lines.append(f"- missing required argument `{loc}` ({_type_name(props.get(top, {}))})")
        elif e["type"] == "extra_forbidden":
            lines.append(f"- unexpected argument `{loc}`: {t.name} has no such parameter")
        else:
            got = json.dumps(e.get("input"), default=str)
            if len(got) > 80:
                got = got[:77] + "..."
            want = _type_name(props.get(top, {})) if top in props else ""
            lines.append(
                f"- argument `{loc}`: {e['msg']}"
                + (f"; expected {want}" if want else "")
                + f", got {got}"
            )
    return (
        f"invalid arguments for {t.name}:\n"
        + "\n".join(lines)
        + f"\nCall {t.name} again with: {_describe_args(t)}."
    )


# The argument-parsing boundary: everything the model can put in its argument text that tome
# cannot act on is refused here, as the model's mistake, before any tool sees it.
MAX_ARGUMENT_DEPTH = 32
# Integers in arguments fit in 64 bits (RFC 8259 section 6: beyond 2**53 they are not even
# interoperable); converting a longer digit string is where Python's 4,300-digit limit would
# raise ValueError (sys.get_int_max_str_digits, Python 3.11+).
MAX_INT_DIGITS = 18
# A surrogate code point left in a str after JSON decoding is a lone one (a valid pair decodes
# to one character); RFC 8259 section 8.2 calls such strings unpredictable, and UTF-8 cannot
# encode them, so a file write or a subprocess argument would fail on it.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class _LongInteger(Exception):
    def __init__(self, digits: int) -> None:
        super().__init__(f"{digits} digits")
        self.digits = digits


def _json_int(digits: str) -> int:
    n = len(digits.lstrip("-"))
    if n > MAX_INT_DIGITS:
        raise _LongInteger(n)
    return int(digits)


def _loads(text: str) -> Any:
    return json.loads(text, parse_int=_json_int)


def _where(path: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "(arguments)"


def _argument_problem(args: dict[str, Any]) -> str | None:
    """What makes decoded arguments unusable (too deep, a lone surrogate), or None."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(args, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_ARGUMENT_DEPTH:
            return f"are nested more than {MAX_ARGUMENT_DEPTH} levels deep (at `{_where(path[:4])}...`)"
        if isinstance(value, dict):
            for k, v in value.items():
                if _SURROGATE.search(k):
                    return _surrogate_problem(k, path)
                stack.append((v, (*path, k)))
        elif isinstance(value, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(value))
        elif isinstance(value, str) and _SURROGATE.search(value):
            return _surrogate_problem(value, path)
    return None


def _surrogate_problem(text: str, path: tuple[Any, ...]) -> str:
    m = _SURROGATE.search(text)
    assert m is not None
    return (
        f"hold a lone UTF-16 surrogate (\\u{ord(m.group()):04x}) in `{_where(path)}`, which is not a "
        "character and cannot be written to a file or a command: send valid Unicode (a character "
        "beyond U+FFFF is one \\uXXXX\\uXXXX pair, or the character itself)"
    )


def _parse_call(t: Tool, arguments: str | None) -> dict[str, Any]:
    """The call's validated arguments; every way they can be unusable is a `ToolError`."""
    retry = f"Send one JSON object with: {_describe_args(t)}."
    try:
        args = _loads(arguments) if arguments and arguments.strip() else {}
        if isinstance(args, str):  # double-encoded JSON object
            args = _loads(args)
    except json.JSONDecodeError as e:
        raise ToolError(
            f"the arguments for {t.name} are not valid JSON ({e.msg} at line {e.lineno} "
            f"column {e.colno}). {retry}",
            kind="invalid_json",
        ) from None
    except _LongInteger as e:
        raise ToolError(
            f"the arguments for {t.name} hold an integer of {e.digits:,} digits; numbers in tool "
            f"arguments have at most {MAX_INT_DIGITS} digits (send long ones as strings). {retry}",
            kind="invalid_arguments",
        ) from None
    except RecursionError:  # the decoder recurses once per nesting level
        raise ToolError(
            f"the arguments for {t.name} are nested too deeply to decode (tool arguments are at "
            f"most {MAX_ARGUMENT_DEPTH} levels deep). {retry}",
            kind="invalid_json",
        ) from None
    if not isinstance(args, dict):
        raise ToolError(
            f"the arguments for {t.name} must be a JSON object, not {type(args).__name__}. {retry}",
            kind="invalid_json",
        )
    problem = _argument_problem(args)
    if problem is not None:
        raise ToolError(f"the arguments for {t.name} {problem}. {retry}", kind="invalid_arguments")
    try:
        return t.validate(args)
    except ValidationError as e:
        raise ToolError(_validation_message(t, e), kind="invalid_arguments") from None


# The tool-execution boundary: an OSError is the model's when the OS refused a path inside the
# workspace (which the model chose) for a reason that lies in that path; the rest (a full disk,
# too many open files, I/O errors, paths of tome's own outside the workspace) are ours and raise.
_PATH_ERRNOS = frozenset({
    errno.ENAMETOOLONG, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ELOOP,
    errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTEMPTY, errno.EINVAL, errno.EILSEQ,
    errno.ETXTBSY, errno.EXDEV,
})
_PATH_HINTS = {
    # Linux: NAME_MAX is 255 bytes per path component, PATH_MAX 4,096 bytes (limits.h, path_resolution(7)).
    errno.ENAMETOOLONG: "a file name is at most 255 bytes and a whole path at most 4,096: choose a shorter name",
    errno.ENOENT: "check the path with find_files",
    errno.ENOTDIR: "a part of the path is a file, not a directory: check it with find_files",
}


def _model_os_error(e: OSError, root: Path) -> bool:
    names = [n for n in (e.filename, e.filename2) if isinstance(n, (str, bytes))]
    if e.errno not in _PATH_ERRNOS or not names:
        return False
    return all(_is_within(Path(os.path.abspath(os.fsdecode(n))), root) for n in names)


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _execute(t: Tool, ctx: ToolContext, kwargs: dict[str, Any]) -> Any:
    """Run the tool; an OSError about a workspace path the model chose becomes a `ToolError`."""
    root = ctx.workspace.root
    try:
        return t.fn(ctx, **kwargs)
    except OSError as e:
        if not _model_os_error(e, root):
            raise
        name = os.fsdecode(e.filename)
        rel = os.path.relpath(name, root)
        shown = rel if len(rel) <= 80 else f"{rel[:60]}...{rel[-12:]} ({len(rel):,} characters)"
        hint = _PATH_HINTS.get(e.errno, "check the path and try another")  # type: ignore[arg-type]
        raise ToolError(
            f"{t.name} could not use {shown!r}: {e.strerror} ({errno.errorcode.get(e.errno or 0, e.errno)}); {hint}.",
            kind="os_error",
        ) from None


class Toolbox:
    """The tools of one run: their schemas, and `run` for a raw call (never raises for model mistakes)."""

    def __init__(
        self,
        tools: Sequence[Tool],
        ctx: ToolContext,
        *,
        result_token_budget: int = DEFAULT_RESULT_TOKENS,
        tokenizer: Counter | None = None,
        checkpoint_before: Collection[str] = ("bash", "run_tests"),
    ) -> None:
        self.tools: dict[str, Tool] = {}
        for t in tools:
            if t.name in self.tools:
                raise ValueError(f"two tools are named {t.name!r}")
            self.tools[t.name] = t
        self.ctx = ctx
        self.result_token_budget = result_token_budget
        self.counter: Counter = tokenizer if tokenizer is not None else _default_counter()
        # Tools whose changes only a checkpoint can undo (the shell, test runs): the working
        # tree is saved in a hidden git ref before each of their calls.
        self.checkpoint_before = frozenset(checkpoint_before)
        self._spills = 0

    def schemas(self) -> list[dict[str, Any]]:
        """OpenAI tool schemas in a stable order (cache-friendly)."""
        return [t.schema() for t in self.tools.values()]

    def _lookup(self, name: str) -> tuple[Tool | None, str | None]:
        if name in self.tools:
            return self.tools[name], None
        folded = [t for n, t in self.tools.items() if n.lower() == name.strip().lower()]
        if len(folded) == 1:
            log.info("repaired tool name %r -> %r", name, folded[0].name)
            self.ctx.notes.append(f"repaired tool name {name!r} -> {folded[0].name!r}")
            return folded[0], name
        return None, None

    def _error(self, call_id: str, name: str, message: str, kind: str) -> ToolResult:
        content, truncated, spilled = self.bound(message, call_id=call_id, name=name)
        return ToolResult(
            call_id=call_id,
            name=name,
            content=content,
            ok=False,
            truncated=truncated,
            spilled_to=spilled,
            error_kind=kind,
        )

    def run(self, call_id: str, name: str, arguments: str | None) -> ToolResult:
        """Parse, validate and run one call; model mistakes come back as `ok=False` results."""
        t, repaired = self._lookup(name)
        if t is None:
            return self._error(
                call_id,
                name,
                f"Error: there is no tool named {name!r}. "
                f"Available tools: {', '.join(self.tools)}. Call one of these by its exact name.",
                "unknown_tool",
            )
        try:
            kwargs = _parse_call(t, arguments)
            if t.name in self.checkpoint_before:
                self._checkpoint(f"before {t.name} call {call_id}")
            output = _execute(t, self.ctx, kwargs)
        except ToolError as e:
            result = self._error(call_id, t.name, f"Error: {e}", e.kind)
            result.repaired_from = repaired
            return result
        if not isinstance(output, str):
            raise TypeError(f"tool {t.name} returned {type(output).__name__}, not str")
        content, truncated, spilled = self.bound(output, call_id=call_id, name=t.name)
        return ToolResult(
            call_id=call_id,
            name=t.name,
            content=content,
            truncated=truncated,
            spilled_to=spilled,
            repaired_from=repaired,
        )

    def _checkpoint(self, label: str) -> None:
        from tools.git import checkpoint_if_repo  # git is optional: only for repositories

        try:
            checkpoint_if_repo(self.ctx.workspace, label)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            # Best effort: a repository git cannot snapshot must not stop the command.
            log.warning("no checkpoint before %s: %s", label, e)
            self.ctx.notes.append(f"no checkpoint {label}: {e}")

    # ---------------------------------------------------------------------------------------
    # Bounding
    # ---------------------------------------------------------------------------------------

    def _total(self, text: str) -> tuple[int, bool]:
        """(tokens, exact): exact up to a million characters, else estimated from samples."""
        if len(text) <= _EXACT_COUNT_CHARS:
            return self.counter.count(text), True
        step = len(text) // 3
        samples = [text[i * step : i * step + _SAMPLE_CHARS] for i in range(3)]
        per_char = sum(self.counter.count(x) for x in samples) / sum(len(x) for x in samples)
        return int(per_char * len(text)), False

    def _spill(self, text: str, *, call_id: str, name: str) -> Path:
        self.ctx.spill_dir.mkdir(parents=True, exist_ok=True)
        self._spills += 1
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{call_id or self._spills}-{name}")[:80]
        path = self.ctx.spill_dir / f"{self._spills:04d}-{safe}.txt"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        return path

    def bound(
        self, text: str, *, call_id: str = "", name: str = ""
    ) -> tuple[str, bool, str | None]:
        """Redact secrets, show invisible characters, fit the result budget: (content, truncated, spilled_to)."""
        text = redact_outgoing(text)  # every result and its spill file, whatever the tool
        if self.ctx.redact is not None:  # a caller's own rules, on top
            text = self.ctx.redact(text)
        text, invisible = show_invisible(text)  # file text, shell and test output alike
        if invisible:
            text = f"{invisible_note(invisible, where='This output')}\n{text}"
        budget = self.result_token_budget
        # Every token covers at least one byte, so a short text needs no counting.
        if len(text) <= budget and len(text.encode("utf-8")) <= budget:
            return text, False, None
        total_tokens, exact = self._total(text)
        if total_tokens <= budget and (exact or self.counter.count(text) <= budget):
            return text, False, None
        path = self._spill(text, call_id=call_id, name=name)
        lines = re.findall(r"[^\n]*\n|[^\n]+\Z", text)
        n = len(lines)

        def line_note(first_cut: int, last_cut: int) -> str:
            return (
                f"[... lines {first_cut:,}-{last_cut:,} of {n:,} cut ({last_cut - first_cut + 1:,} "
                f"lines; {'' if exact else 'about '}{total_tokens:,} tokens in all, budget {budget:,}); "
                "the full text is in "
                f"{path}: see the rest with view(path={str(path)!r}, view_range=[{first_cut}, "
                f"{min(last_cut, first_cut + 199)}]) ...]\n"
            )

        # Keep whole lines from both ends, each side half of what the note leaves.
        reserve = self.counter.count(line_note(n, n)) + 2
        side = max(0, (budget - reserve) // 2)
        head = _take(lines, side, self.counter, from_end=False)
        tail = _take(lines[len(head) :], side, self.counter, from_end=True)
        if head or tail:
            first_cut, last_cut = len(head) + 1, n - len(tail)
            head_text = "".join(head)
            if head_text and not head_text.endswith("\n"):
                head_text += "\n"
            return head_text + line_note(first_cut, last_cut) + "".join(tail), True, str(path)
        # One huge line (or a tiny budget): cut characters instead.
        note = (
            f"\n[... \x00CUT\x00 of {len(text):,} characters (about {total_tokens:,} tokens in all) "
            f"cut from the middle; the full text is in {path}; a shell command can slice it "
            "(head -c, cut -c, grep -o) ...]\n"
        )
        widest = note.replace("\x00CUT\x00", f"{len(text):,}")
        side = max(0, (budget - self.counter.count(widest) - 2) // 2)
        head_s = _take_chars(text, side, self.counter, from_end=False)
        tail_s = _take_chars(text[len(head_s) :], side, self.counter, from_end=True)
        cut = len(text) - len(head_s) - len(tail_s)
        return head_s + note.replace("\x00CUT\x00", f"{cut:,}") + tail_s, True, str(path)


def _take_chars(text: str, budget: int, counter: Counter, *, from_end: bool) -> str:
    """The longest prefix (or suffix) of `text` that fits in `budget` tokens."""
    lo, hi = 0, min(len(text), budget * 8) + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        piece = text[-mid:] if from_end else text[:mid]
        if _within(counter, piece, budget):
            lo = mid
        else:
            hi = mid
    if lo == 0:
        return ""
    return text[-lo:] if from_end else text[:lo]


def _within(counter: Counter, text: str, budget: int) -> bool:
    # No token spans more than a few dozen characters: far longer texts need no counting
    # (and counting one huge word is slow in BPE tokenizers).
    if len(text) > budget * _MAX_CHARS_PER_TOKEN:
        return False
    return counter.count(text) <= budget


def _take(lines: list[str], budget: int, counter: Counter, *, from_end: bool) -> list[str]:
    """As many whole lines from one end of `lines` as fit in `budget` tokens."""
    seq = lines[::-1] if from_end else lines
    # Grow by doubling, then binary-search the exact count: few tokenizer calls on long outputs.
    lo, hi = 0, 1
    while hi <= len(seq) and _within(counter, "".join(seq[:hi]), budget):
        lo, hi = hi, hi * 2
    hi = min(hi, len(seq) + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _within(counter, "".join(seq[:mid]), budget):
            lo = mid
        else:
            hi = mid
    taken = seq[:lo]
    return taken[::-1] if from_end else taken
