"""What a person or a script sees of a run: a rich live status line, or JSONL events.

`LiveView` follows trajectory events and model deltas (step, mode, current tool call, tokens,
cache-hit %, cost). `JsonStream` writes each event as one JSON line on stdout, then the result.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agent.records import (
    CheckRun,
    Compacted,
    Delta,
    Event,
    ModeChanged,
    ModelCalled,
    Result,
    RunEnded,
    RunStarted,
    ToolFinished,
    ToolStarted,
    Triaged,
    Usage,
    UserNote,
)
from agent.secrets import redact_outgoing

__all__ = ["LiveView", "JsonStream", "result_table", "dry_run_table", "triage_line", "short"]


VERBOSE_LINES = 12  # lines of each observation that --verbose shows


def short(text: str, width: int = 100) -> str:
    """One line of at most `width` characters."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


class LiveView:
    """A rich live status for a run; prints a line per finished step above it."""

    def __init__(self, console: Console | None = None, *, verbose: bool = False) -> None:
        self.console = console or Console(stderr=True)
        self.verbose = verbose
        self.live: Live | None = None
        self.step = 0
        self.mode = ""
        self.tool = ""
        self.usage = Usage()
        self.cost = 0.0
        self.streamed = 0
        self.queued_since: float | None = None

    def __enter__(self) -> LiveView:
        self.live = Live(self._status(), console=self.console, refresh_per_second=8, transient=True)
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
            self.live = None

    def _status(self) -> Table:
        hit = self.usage.cache_hit_tokens / self.usage.prompt_tokens if self.usage.prompt_tokens else 0.0
        t = Table.grid(padding=(0, 2))
        t.add_row(
            f"[bold]step[/] {self.step}",
            f"[bold]mode[/] {self.mode}",
            f"[bold]tokens[/] {self.usage.prompt_tokens + self.usage.completion_tokens:,}",
            f"[bold]cache hit[/] {hit:.0%}",
            f"[bold]cost[/] ${self.cost:.4f}",
            f"[dim]{escape(self.tool) or self._activity()}[/]",
        )
        return t

    def _activity(self) -> str:
        if self.queued_since is not None:
            return f"queued at the provider ({time.monotonic() - self.queued_since:.0f}s of keep-alives)"
        return f"streaming {self.streamed} chars" if self.streamed else ""

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._status())

    def on_delta(self, delta: Delta) -> None:
        """Count streamed characters while the model answers; keep-alives alone mean queued."""
        if delta.kind == "queued":
            self.queued_since = self.queued_since or time.monotonic()
        else:
            self.queued_since = None
            self.streamed += len(delta.text)
        self._refresh()

    def on_event(self, event: Event) -> None:
        """Follow one trajectory event."""
        out = self.console
        if isinstance(event, RunStarted):
            self.mode = "triage" if event.triage else event.mode.label
            out.print(f"[bold]run[/] {event.run_id}  model {event.model}  pack {event.pack_tokens:,} tokens")
            if event.triage:
                out.print(f"[bold]mode[/] a triage turn decides (fallback {event.mode.label}: "
                          f"{escape(event.mode_reason)})")
            else:
                out.print(f"[bold]mode[/] {event.mode.label}: {escape(event.mode_reason)}")
        elif isinstance(event, Triaged):
            self.streamed = 0
            self.queued_since = None
            self.usage = self.usage + event.response.usage
            self.cost += event.response.cost
            if event.chosen is not None:
                self.mode = event.chosen.label
            out.print(triage_line(event))
        elif isinstance(event, ModelCalled):
            self.step += 1
            self.streamed = 0
            self.queued_since = None
            self.usage = self.usage + event.response.usage
            self.cost += event.response.cost
            msg = event.response.message
            if msg.content:
                title = "plan" if "Goal" in msg.content and self.step <= 1 else "model"
                out.print(Panel(escape(msg.content.strip()), title=f"step {self.step}: {title}", expand=False))
        elif isinstance(event, ToolStarted):
            self.tool = f"{event.name} {short(event.arguments, 60)}"
        elif isinstance(event, ToolFinished):
            mark = "[green]✓[/]" if event.ok else "[red]✗[/]"
            out.print(f"  {mark} {event.name}: {escape(short(event.content, 110))}")
            if self.verbose:
                head = event.content.splitlines()[:VERBOSE_LINES]
                out.print(Text("\n".join("      " + line for line in head), style="dim"))
            self.tool = ""
        elif isinstance(event, ModeChanged):
            self.mode = event.new.label
            out.print(f"[yellow]mode {event.old.label} → {event.new.label}[/]: {escape(event.reason)}")
        elif isinstance(event, CheckRun):
            c = event.check
            colour = "green" if c.passed else "red"
            out.print(f"[{colour}]check {'passed' if c.passed else 'failed'}[/]: {escape(c.command)}")
        elif isinstance(event, Compacted):
            out.print(f"[yellow]compacted[/] {event.before_tokens:,} → {event.after_tokens:,} tokens")
        elif isinstance(event, UserNote) and event.source == "user":
            out.print(Panel(escape(event.content.strip()), title="you", expand=False))
        elif isinstance(event, UserNote):
            out.print(f"  [dim]note: {escape(short(event.content, 110))}[/]")
        elif isinstance(event, RunEnded):
            out.print(f"[bold]ended[/]: {event.status} ({escape(event.reason)})")
        self._refresh()


def triage_line(event: Triaged) -> str:
    """One triage attempt for people: the rating, the files, the check, the mode it set."""
    cost = f"${event.response.cost:.4f}, {event.response.usage.prompt_tokens:,} tokens in"
    if event.verdict is not None:
        v = event.verdict
        files = ", ".join(v.files) or "none named"
        line = (f"[bold]triage[/] {escape(v.rating)}; files: {escape(short(files, 80))}; "
                f"check: {escape(short(v.check, 60) or 'none')} ({cost})")
    else:
        line = f"[bold]triage[/] [red]no usable answer[/]: {escape(event.problem or '')} ({cost})"
    if event.chosen is not None:
        line += f"\n[bold]mode[/] {event.chosen.label}: {escape(event.reason)}"
    return line


def dry_run_table(report: dict) -> Group:
    """`tome solve --dry-run`: the first request's chunks with their tokens, the tools, the mode."""
    t = Table(title="first request (not sent)")
    t.add_column("chunk", style="bold")
    t.add_column("tokens", justify="right")
    t.add_column("chars", justify="right")
    for c in report["chunks"]:
        t.add_row(c["name"], f"{c['tokens']:,}", f"{c['chars']:,}")
    t.add_row("total", f"{sum(c['tokens'] for c in report['chunks']):,}", "", style="bold")
    files = report["pack_files"]
    lines = [
        f"[bold]model[/] {report['model']} at {escape(report['endpoint'])}",
        f"[bold]mode[/] a triage turn decides (fallback {report['mode_label']}: {escape(report['mode_reason'])})"
        if report.get("triage") else f"[bold]mode[/] {report['mode_label']}: {escape(report['mode_reason'])}",
        f"[bold]pack[/] {files['full']:,} files in full, {files['outline']:,} as outlines, {files['path']:,} as paths",
        f"[bold]tools[/] {', '.join(report['tools'])}",
    ]
    return Group(t, *(Text.from_markup(line) for line in lines))


def result_table(result: Result) -> Group:
    """The result as a small table plus the patch."""
    t = Table(title=f"tome run {result.run_id}", show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    check = "none"
    if result.check is not None:
        check = f"{'passed' if result.check.passed else 'FAILED'}: {result.check.command}"
    rows = [
        ("status", f"{result.status} (exit {result.exit_code})"),
        ("reason", result.reason),
        ("check", check),
        ("modes", " → ".join(m.label for m in result.modes)),
        ("triage", f"{result.triage.rating}; {', '.join(result.triage.files) or 'no files named'}"
         if result.triage else "none"),
        ("steps", str(result.steps)),
        ("tokens", f"{result.usage.prompt_tokens:,} prompt, {result.usage.completion_tokens:,} output"),
        ("cache hit", f"{result.cache_hit_ratio:.1%}"),
        ("cost", f"${result.cost:.4f}"),
        ("time", f"{result.elapsed:.1f}s"),
        ("trajectory", result.trajectory),
    ]
    for k, v in rows:
        t.add_row(k, escape(v))
    parts: list = [t]
    if result.patch:
        parts.append(Panel(Text(result.patch), title="patch", expand=False))
    return Group(*parts)


class JsonStream:
    """JSONL events on a stream, then one final result object."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def on_event(self, event: Event) -> None:
        """One event as one line."""
        self.stream.write(json.dumps({"event": redact_outgoing(event.model_dump(mode="json"))}) + "\n")
        self.stream.flush()

    def result(self, result: Result) -> None:
        """The final line."""
        payload = result.model_dump(mode="json")
        payload["cache_hit_ratio"] = result.cache_hit_ratio
        # The patch too: a CI log is public, and a diff of a config file may hold its secrets.
        self.stream.write(json.dumps({"result": redact_outgoing(payload)}) + "\n")
        self.stream.flush()
