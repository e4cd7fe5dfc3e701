"""Trajectories: one JSONL file of events per run, appended and flushed after every step.

The conversation is derived from the events (`history`), never kept as a parallel list, so a
run read back from disk continues exactly where it stopped. A torn last line (a crash mid-write)
is ignored; a tool that started but never finished is marked as interrupted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from agent.errors import ConfigError
from agent.records import (
    AssistantMessage,
    Compacted,
    Event,
    Message,
    ModelCalled,
    RunStarted,
    ToolFinished,
    ToolMessage,
    ToolStarted,
    Triaged,
    Usage,
    UserMessage,
    UserNote,
)
from agent.secrets import redact_outgoing

__all__ = [
    "Trajectory", "history", "assistant_turns", "model_calls", "spent", "redact_event",
    "COMPACTED_STUB", "INTERRUPTED_TOOL",
]

_EVENT: TypeAdapter[Event] = TypeAdapter(Event)

COMPACTED_STUB = "[output removed when the conversation was compacted; run the tool again to see it]"
INTERRUPTED_TOOL = (
    "[interrupted: the run stopped while this tool was running; its effect on the workspace is "
    "unknown, so check the files (git_status, view) before repeating it]"
)


class Trajectory:
    """An append-only event log on disk plus the events in memory."""

    def __init__(self, path: Path, events: list[Event] | None = None) -> None:
        self.path = path
        self.events: list[Event] = list(events or [])
        self._listeners: list[Callable[[Event], None]] = []

    @classmethod
    def create(cls, path: Path) -> Trajectory:
        """A new, empty trajectory file (refuses to overwrite an existing run)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size:
            raise ConfigError(f"{path} already holds a run; resume it or pick another run id")
        path.write_text("", encoding="utf-8")
        return cls(path)

    @classmethod
    def load(cls, path: Path, *, repair: bool = True) -> Trajectory:
        """Read a run back; a torn last line is dropped (and, with `repair`, removed from disk)."""
        if not path.is_file():
            raise ConfigError(f"no trajectory at {path}")
        lines = path.read_text(encoding="utf-8").splitlines()
        events: list[Event] = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                events.append(_EVENT.validate_json(line))
            except ValidationError as e:
                if i == len(lines) - 1:
                    break  # a crash mid-write leaves a partial last line
                raise ConfigError(f"{path}:{i + 1}: not a trajectory event: {e.errors()[0]['msg']}") from None
        if not events or not isinstance(events[0], RunStarted):
            raise ConfigError(f"{path}: does not start with run_started")
        traj = cls(path, events)
        if repair:  # rewrite without the torn line so later appends start on a fresh line
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(ev.model_dump_json() + "\n" for ev in events), encoding="utf-8")
            os.replace(tmp, path)
        return traj

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Call `listener` with every event appended from now on (live views, --json)."""
        self._listeners.append(listener)

    def append(self, event: Event) -> None:
        """Redact the event, write it, flush it to disk, then tell the listeners (views, --json)."""
        event = redact_event(event)
        self.events.append(event)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(event.model_dump_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        for listener in self._listeners:
            listener(event)

    @property
    def started(self) -> RunStarted:
        """The run_started event."""
        first = self.events[0]
        assert isinstance(first, RunStarted)
        return first

    def unfinished_tools(self) -> list[ToolStarted]:
        """Tool calls that started and never finished (the run died under them)."""
        done = {e.call_id for e in self.events if isinstance(e, ToolFinished)}
        return [e for e in self.events if isinstance(e, ToolStarted) and e.call_id not in done]

    def of_type(self, kind: type) -> Iterator:
        """Events of one type, in order."""
        return (e for e in self.events if isinstance(e, kind))


def redact_event(event: Event) -> Event:
    """`event` with secrets redacted from all its text (the same object when it had none)."""
    data = event.model_dump()
    clean = redact_outgoing(data)
    return event if clean is data else _EVENT.validate_python(clean)


def history(events: Iterable[Event]) -> list[Message]:
    """The conversation after the fixed prefix, rendered from the events."""
    events = list(events)
    dropped: set[str] = set()
    for e in events:
        if isinstance(e, Compacted):
            dropped.update(e.dropped_call_ids)
    out: list[Message] = []
    for e in events:
        if isinstance(e, ModelCalled):
            out.append(e.response.message)
        elif isinstance(e, ToolFinished):
            out.append(ToolMessage(tool_call_id=e.call_id, content=COMPACTED_STUB if e.call_id in dropped else e.content))
        elif isinstance(e, UserNote):
            out.append(UserMessage(content=e.content))
        elif isinstance(e, Triaged):  # the question and the answer as sent, without tool calls
            out.append(UserMessage(content=e.request))
            out.append(AssistantMessage(content=e.response.message.content or "(no answer)"))
            if e.note:
                out.append(UserMessage(content=e.note))
    return out


def model_calls(events: Iterable[Event]) -> list[ModelCalled | Triaged]:
    """Every event that records a model call: the work turns and the triage attempts."""
    return [e for e in events if isinstance(e, (ModelCalled, Triaged))]


def spent(events: Iterable[Event]) -> tuple[Usage, float]:
    """Tokens and USD of every model call so far, triage included."""
    usage, cost = Usage(), 0.0
    for e in model_calls(events):
        usage, cost = usage + e.response.usage, cost + e.response.cost
    return usage, cost


def assistant_turns(events: Iterable[Event]) -> list[AssistantMessage]:
    """Every assistant message in order (plans, summaries)."""
    return [e.response.message for e in events if isinstance(e, ModelCalled)]
