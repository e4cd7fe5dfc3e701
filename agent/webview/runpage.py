"""One run as a page: the header, the plan, every step with its tool calls, the patch, the charts.

    events ─► redacted ─► run_view (steps with their calls and notes) ─► render_run ─► HTML

Events this module does not know (a kind added later) are shown generically, by type and fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import ConfigError
from agent.records import (
    AssistantMessage,
    CheckRecord,
    CheckRun,
    Compacted,
    Event,
    Mode,
    ModeChanged,
    ModelCalled,
    RunEnded,
    RunStarted,
    RunStatus,
    ToolFinished,
    ToolStarted,
    Triaged,
    Usage,
    UserNote,
)
from agent.trajectory import redact_event
from agent.webview import charts
from agent.webview.diff import file_html, split_files
from agent.webview.page import document, esc

__all__ = ["CallView", "StepView", "RunView", "redacted", "run_view", "render_run", "run_patch", "PATCH_FILE"]

PATCH_FILE = "patch.diff"  # the final patch, which agent.run.complete writes beside the trajectory
HEAD_LINES = 6  # lines of an observation shown before it collapses
_MODE_COLOURS = {Mode.NON_THINK: "var(--m0)", Mode.LOW: "var(--m1)", Mode.HIGH: "var(--m2)", Mode.MAX: "var(--m3)"}


@dataclass
class CallView:
    """One tool call: what the model asked, and the observation it got (None while it runs)."""

    call_id: str
    name: str
    arguments: str
    observation: str | None = None
    ok: bool = True
    error_kind: str | None = None
    elapsed: float = 0.0
    compacted: bool = False


@dataclass
class StepView:
    """One model call, the tool calls it made, and the events that followed it (notes, checks, ...)."""

    number: int
    mode: Mode
    message: AssistantMessage
    usage: Usage
    cost: float
    cumulative_cost: float
    elapsed: float
    calls: list[CallView] = field(default_factory=list)
    after: list[Event] = field(default_factory=list)
    triage: Triaged | None = None  # a triage attempt (agent.triage), not a work step

    @property
    def label(self) -> str:
        """How the charts name this call: its step number, or T for a triage attempt."""
        return "T" if self.triage else str(self.number)


@dataclass
class RunView:
    """A run as the page shows it."""

    started: RunStarted
    steps: list[StepView]  # the work steps
    triage: list[StepView]  # the triage attempts, before the first work step
    before: list[Event]  # events before the first model call
    ended: RunEnded | None
    plan: str | None
    patch: str
    duration: float


def redacted(events: list[Event]) -> list[Event]:
    """The events with every string through the one redaction step (a trajectory written by an
    older or foreign writer may hold what ours would have redacted)."""
    return [redact_event(e) for e in events]


def run_view(events: list[Event], patch: str = "") -> RunView:
    """Group the events into steps: a step is a model call with its tool calls and what followed."""
    started = events[0]
    assert isinstance(started, RunStarted)
    dropped = {i for e in events if isinstance(e, Compacted) for i in e.dropped_call_ids}
    steps: list[StepView] = []
    triage: list[StepView] = []
    before: list[Event] = []
    calls: dict[str, CallView] = {}
    total = 0.0
    last = events[-1]
    ended = last if isinstance(last, RunEnded) else None
    for e in events[1:]:
        if e is ended:
            break  # the header says how the run ended
        if isinstance(e, Triaged):
            total += e.response.cost
            triage.append(StepView(number=len(triage) + 1, mode=e.mode, message=e.response.message,
                                   usage=e.response.usage, cost=e.response.cost, cumulative_cost=total,
                                   elapsed=e.response.elapsed, triage=e))
        elif isinstance(e, ModelCalled):
            total += e.response.cost
            msg = e.response.message
            step = StepView(number=len(steps) + 1, mode=e.mode, message=msg, usage=e.response.usage,
                            cost=e.response.cost, cumulative_cost=total, elapsed=e.response.elapsed)
            for c in msg.tool_calls:
                calls[c.id] = CallView(call_id=c.id, name=c.name, arguments=c.arguments, compacted=c.id in dropped)
                step.calls.append(calls[c.id])
            steps.append(step)
        elif isinstance(e, ToolStarted) and e.call_id in calls:
            continue  # the call is already listed from the model's message
        elif isinstance(e, ToolFinished) and e.call_id in calls:
            call = calls[e.call_id]
            call.observation, call.ok, call.error_kind, call.elapsed = e.content, e.ok, e.error_kind, e.elapsed
        else:
            (steps[-1].after if steps else before).append(e)
    plans = [s.message.content for s in steps if s.message.content and "Goal" in s.message.content]
    return RunView(started=started, steps=steps, triage=triage, before=before, ended=ended, plan=plans[-1] if plans else None,
                   patch=patch, duration=max(last.t - started.t, 0.0))


def run_patch(run_dir: Path, started: RunStarted, *, over: bool) -> tuple[str, str]:
    """(patch, where it came from): the final patch of a run that is `over`, else (a run going on,
    or one from before runs saved their patch) the workspace's diff while it exists."""
    saved = run_dir / PATCH_FILE
    if over and saved.is_file():
        return saved.read_text(encoding="utf-8", errors="replace"), "final patch"
    repo = Path(started.repo)
    if started.base_commit and (repo / ".git").exists():
        from agent.run import git_patch
        from tools.workspace import Workspace

        try:
            patch = git_patch(Workspace(repo, base_commit=started.base_commit), started.base_commit)
        except (RuntimeError, OSError, ConfigError) as e:  # git failed in a moved or broken workspace
            return "", f"the workspace could not be read: {e}"
        return patch, "the workspace now"
    return "", "no saved patch, and the workspace is gone"


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def render_run(view: RunView, *, patch_source: str = "final patch", version: str | None = None) -> str:
    """The whole page of a run (live when `version` says which files it shows)."""
    s = view.started
    body = [
        _header(view),
        _section("Plan", f'<div class="text">{esc(view.plan)}</div>') if view.plan else "",
        _section("Charts", _charts(view)),
        _section(f"Steps ({len(view.steps)})", "".join(_triage(st) for st in view.triage)
                 + "".join(_event(e) for e in view.before) + "".join(_step(st) for st in view.steps)),
        _section("Patch", _patch(view.patch, patch_source)),
    ]
    return document(f"tome run {s.run_id}", "".join(body), version=version)


def _section(title: str, inner: str) -> str:
    return f"<section><h2>{esc(title)}</h2>{inner}</section>"


def _status(view: RunView) -> str:
    if view.ended is None:
        return '<span class="live">running, or stopped without an end (tome resume goes on)</span>'
    good = view.ended.status in (RunStatus.SOLVED, RunStatus.UNCHECKED)
    return (f'<span class="{"status-ok" if good else "status-bad"}">{esc(view.ended.status)}</span> '
            f'(exit {view.ended.exit_code}): {esc(view.ended.reason)}')


def _check_text(check: CheckRecord | None) -> str:
    if check is None:
        return "none"
    mark = '<span class="status-ok">passed</span>' if check.passed else '<span class="status-bad">failed</span>'
    return f"{mark} <code>{esc(check.command)}</code> ({check.passed_count} passed, {check.failed_count} failed)"


def _header(view: RunView) -> str:
    s = view.started
    calls = view.triage + view.steps
    usage = sum((st.usage for st in calls), Usage())
    hit = f"{usage.cache_hit_tokens / usage.prompt_tokens:.0%}" if usage.prompt_tokens else "-"
    checks = [e.check for st in view.steps for e in st.after if isinstance(e, CheckRun)]
    check = view.ended.check if view.ended and view.ended.check else (checks[-1] if checks else None)
    changes = [e for st in view.steps for e in st.after if isinstance(e, ModeChanged)]
    decided = [st.triage for st in view.triage if st.triage and st.triage.chosen is not None]
    first, why = (decided[0].chosen, decided[0].reason) if decided else (s.mode, s.mode_reason)
    modes = f"{esc(first.label)} <span class=\"muted\">({esc(why)})</span>" + "".join(
        f"<br>→ {esc(c.new.label)} after step {c.step} <span class=\"muted\">({esc(c.reason)})</span>"
        for c in changes)
    commit = f" at <code>{esc(s.base_commit)}</code>" if s.base_commit else ""
    rows = [
        ("repository", f"<code>{esc(s.repo)}</code>{commit}"),
        ("model", esc(s.model) + (f' <span class="muted">at {esc(s.base_url)}</span>' if s.base_url else "")),
        ("modes", modes),
        ("status", _status(view)),
        ("check", _check_text(check)),
        ("steps", str(len(view.steps))),
        ("tokens", f"{usage.prompt_tokens:,} prompt ({hit} cache hit), {usage.completion_tokens:,} output"),
        ("cost", f"${sum(st.cost for st in calls):.4f}"),
        ("time", f"{view.duration:.1f} s"),
    ]
    if view.ended and view.ended.summary:
        rows.append(("summary", f'<span class="text">{esc(view.ended.summary)}</span>'))
    facts = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    task = s.task.statement
    return (f"<h1>tome run <code>{esc(s.run_id)}</code></h1>"
            f'<details id="task" open><summary>task</summary><pre>{esc(task)}</pre></details>'
            f'<table class="facts" id="facts">{facts}</table>')


def _charts(view: RunView) -> str:
    steps = view.triage + view.steps  # every model call, the triage attempts (T) first
    if not steps:
        return '<p class="muted">no model call yet</p>'
    labels = [st.label for st in steps]
    hits = [st.usage.cache_hit_tokens for st in steps]
    misses = [max(st.usage.prompt_tokens - st.usage.cache_hit_tokens, 0) for st in steps]
    reasoning = [st.usage.reasoning_tokens for st in steps]
    answer = [max(st.usage.completion_tokens - st.usage.reasoning_tokens, 0) for st in steps]
    by_tool: dict[str, list[int]] = {}
    for st in steps:
        for c in st.calls:
            counts = by_tool.setdefault(c.name, [0, 0, 0])
            counts[0 if c.observation is None else (1 if c.ok else 2)] += 1
    tool_rows = [charts.BarRow(name, [charts.Part("ok", ok, "var(--ok)"), charts.Part("failed", bad, "var(--bad)"),
                                      charts.Part("no answer yet", open_, "var(--warn)")],
                               note=f"{ok} ok, {bad} failed" + (f", {open_} open" if open_ else ""))
                 for name, (open_, ok, bad) in sorted(by_tool.items(), key=lambda kv: -sum(kv[1]))]
    segments: list[charts.Segment] = []
    for i, st in enumerate(steps):
        if segments and segments[-1].label == st.mode.label:
            segments[-1] = charts.Segment(segments[-1].start, i + 1, st.mode.label, segments[-1].colour)
        else:
            segments.append(charts.Segment(i, i + 1, st.mode.label, _MODE_COLOURS.get(st.mode, "var(--m1)")))
    prompt = [charts.Series("cache hit", hits, "var(--hit)"), charts.Series("cache miss", misses, "var(--miss)")]
    output = [charts.Series("reasoning", reasoning, "var(--out)"), charts.Series("answer", answer, "var(--accent)")]
    return "".join([
        charts.columns("prompt-chart", "prompt tokens per step", labels, prompt),
        charts.columns("output-chart", "output tokens per step", labels, output),
        charts.line("cost-chart", "cumulative cost (USD) after each call", labels,
                    [st.cumulative_cost for st in steps], fmt="${:,.4f}"),
        charts.timeline("mode-chart", "mode of each model call", segments, len(steps), labels),
        charts.bars("tools-chart", "tool calls by name and outcome", tool_rows) if tool_rows else "",
    ])


def _collapsible(text: str, element_id: str, *, label: str) -> str:
    """`text` in full when short; else its first lines with the whole behind a summary."""
    lines = text.splitlines()
    if len(lines) <= HEAD_LINES:
        return f"<pre>{esc(text)}</pre>"
    head = "\n".join(lines[:HEAD_LINES])
    return (f"<pre>{esc(head)}</pre><details id=\"{esc(element_id)}\"><summary>{esc(label)}: all "
            f"{len(lines)} lines</summary><pre>{esc(text)}</pre></details>")


def _arguments(raw: str) -> str:
    try:
        return json.dumps(json.loads(raw), indent=1, ensure_ascii=False)
    except (json.JSONDecodeError, TypeError):
        return raw


def _call(c: CallView) -> str:
    if c.observation is None:
        state, tags = "running", '<span class="tag">no observation (running, or interrupted)</span>'
    elif c.ok:
        state, tags = "ok", f'<span class="tag ok">ok</span> <span class="muted">{c.elapsed:.2f} s</span>'
    else:
        state = "failed"
        tags = f'<span class="tag failed">failed{": " + esc(c.error_kind) if c.error_kind else ""}</span>'
    if c.compacted:
        tags += ' <span class="tag">compacted later</span>'
    obs = "" if c.observation is None else _collapsible(c.observation, f"obs-{c.call_id}", label="observation")
    return (f'<div class="call {state}" data-tool="{esc(c.name)}"><h3><code>{esc(c.name)}</code> {tags}</h3>'
            f"{_collapsible(_arguments(c.arguments), f'args-{c.call_id}', label='arguments')}{obs}</div>")


def _step(st: StepView) -> str:
    m = st.message
    u = st.usage
    head = (f'<div class="step-head"><h3>step {st.number}</h3><span>{esc(st.mode.label)}</span>'
            f"<span>{u.prompt_tokens:,} prompt ({u.cache_hit_tokens:,} cached), {u.completion_tokens:,} out</span>"
            f"<span>${st.cost:.4f}</span><span>{st.elapsed:.1f} s</span></div>")
    reasoning = (f'<details id="reasoning-{st.number}"><summary>reasoning ({len(m.reasoning_content):,} chars)'
                 f"</summary><pre>{esc(m.reasoning_content)}</pre></details>") if m.reasoning_content else ""
    text = f'<div class="text">{esc(m.content)}</div>' if m.content else ""
    inner = reasoning + text + "".join(_call(c) for c in st.calls) + "".join(_event(e) for e in st.after)
    return f'<div class="step" id="step-{st.number}">{head}{inner}</div>'


def _triage(st: StepView) -> str:
    """A triage attempt: the rating, files and check it gave (or why it could not be used), and
    the starting mode when it decided."""
    t = st.triage
    assert t is not None
    u = st.usage
    head = (f'<div class="step-head"><h3>triage {st.number}</h3><span>{esc(st.mode.label)}</span>'
            f"<span>{u.prompt_tokens:,} prompt ({u.cache_hit_tokens:,} cached), {u.completion_tokens:,} out</span>"
            f"<span>${st.cost:.4f}</span><span>{st.elapsed:.1f} s</span></div>")
    if t.verdict is not None:
        v = t.verdict
        files = ", ".join(f"<code>{esc(f)}</code>" for f in v.files) or "none named"
        said = (f"<p>rating <b>{esc(v.rating)}</b>; files {files}; check "
                f"<code>{esc(v.check or '-')}</code></p>")
    else:
        said = f'<p><span class="tag failed">unusable</span> {esc(t.problem or "")}</p>'
    chosen = (f'<p>starting mode <b>{esc(t.chosen.label)}</b> <span class="muted">({esc(t.reason)})</span></p>'
              if t.chosen is not None else "")
    answer = _collapsible(st.message.content or "", f"triage-{st.number}", label="answer")
    return f'<div class="triage" id="triage-{st.number}">{head}{said}{chosen}{answer}</div>'


def _event(e: Event) -> str:
    """A non-step event inline: notes, user text, mode changes, checks, compactions, anything else."""
    if isinstance(e, UserNote) and e.source == "user":
        return f'<div class="note user"><span class="who">you</span><div class="text">{esc(e.content)}</div></div>'
    if isinstance(e, UserNote):
        return f'<div class="note"><b>note</b> {_collapsible(e.content, f"note-{e.step}-{e.t}", label="note")}</div>'
    if isinstance(e, ModeChanged):
        return f'<div class="note"><b>mode</b> {esc(e.old.label)} → {esc(e.new.label)}: {esc(e.reason)}</div>'
    if isinstance(e, CheckRun):
        return (f'<div class="note"><b>check</b> {_check_text(e.check)}'
                f'{_collapsible(e.check.summary, f"check-{e.step}-{e.t}", label="check output")}</div>')
    if isinstance(e, Compacted):
        return (f'<div class="note"><b>compacted</b> {e.before_tokens:,} → {e.after_tokens:,} tokens, '
                f"{len(e.dropped_call_ids)} tool outputs replaced: {esc(e.reason)}</div>")
    if isinstance(e, RunEnded):
        return f'<div class="note"><b>ended</b> {esc(e.status)}: {esc(e.reason)} (then resumed)</div>'
    data = e.model_dump(mode="json", exclude={"t", "step", "type"})
    kind = str(getattr(e, "type", type(e).__name__))
    fields = _collapsible(json.dumps(data, indent=1, ensure_ascii=False), f"ev-{kind}-{e.t}", label=kind)
    return f'<div class="note event" data-type="{esc(kind)}"><b>{esc(kind)}</b>{fields}</div>'


def _patch(patch: str, source: str) -> str:
    if not patch.strip():
        return f'<p class="muted" id="patch">no changes ({esc(source)})</p>'
    files = split_files(patch)
    parts = [f'<p class="muted">{len(files)} file(s), from {esc(source)}</p>']
    parts += [f'<div class="file" data-path="{esc(path)}"><h3>{esc(path)}</h3>{file_html(path, text)}</div>'
              for path, text in files]
    return f'<div id="patch">{"".join(parts)}</div>'
