"""The agent loop: ask the model, run its tool calls, append the observations, again.

Control leaves the loop only through a typed `Interrupt` (submitted, a limit, a loop, the user,
malformed turns) or a `ModelError`; either way a `run_ended` event is written first. Every
tool_call_id gets exactly one tool message, interrupts included. State (steps, cost, mode) is
derived from the trajectory, so a resumed run continues with the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.errors import ContextOverflow, Interrupt, ModelError
from agent.model import Model
from agent.modes import MODE_TABLE, escalate, output_cap, rated_mode, triage_mode
from agent.triage import (
    TRIAGE_ATTEMPTS,
    TRIAGE_EXPECTED_OUTPUT,
    TRIAGE_MAX_TOKENS,
    TRIAGE_PROMPT,
    handover_note,
    parse_verdict,
    retry_request,
)
from agent.profiles import ModelProfile
from agent.prompt import PromptPrefix, render
from agent.records import (
    CheckRecord,
    CheckRun,
    Compacted,
    Delta,
    Message,
    Mode,
    ModeChanged,
    ModelCalled,
    RunCaps,
    RunEnded,
    RunStatus,
    ToolCall,
    ToolFinished,
    ToolStarted,
    Triaged,
    TriageVerdict,
    Usage,
    UserMessage,
    UserNote,
)
from agent.trajectory import INTERRUPTED_TOOL, Trajectory, history, model_calls, spent
from agent.treelock import TreeLock
from tools.base import Toolbox

__all__ = [
    "Limits",
    "Agent",
    "open_call_answers",
    "Outcome",
    "Submitted",
    "LimitReached",
    "LoopDetected",
    "UserStopped",
    "MalformedTurns",
    "TurnDone",
]


class Submitted(Interrupt):
    """The model called submit and the check (if any) allows it."""

    def __init__(self, summary: str, check: CheckRecord | None) -> None:
        super().__init__("submitted")
        self.summary = summary
        self.check = check


class LimitReached(Interrupt):
    """A step, token, cost, time or context limit would be passed by the next call."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class LoopDetected(Interrupt):
    """The model repeated the same failing call too often."""


class UserStopped(Interrupt):
    """Ctrl-C or an explicit stop."""


class MalformedTurns(Interrupt):
    """Too many turns in a row that could not be acted on."""


class TurnDone(Interrupt):
    """Chat mode: the model answered in text and waits for the user."""


@dataclass(frozen=True)
class Limits:
    """Run-wide caps, checked before the call that would pass them."""

    max_steps: int | None = None
    max_cost: float | None = None
    max_time: float | None = None
    max_tokens: int | None = None
    repeat_failures: int = 3
    malformed_turns: int = 3
    context_margin: int = 4_096
    min_output: int = 4_096

    @property
    def caps(self) -> RunCaps:
        """The user's caps, as the run_started event records them."""
        return RunCaps(max_steps=self.max_steps, max_cost=self.max_cost, max_time=self.max_time,
                       max_tokens=self.max_tokens)


# How a loop run ended: the run_ended event itself (a chat turn's end is one never written).
Outcome = RunEnded


Checker = Callable[[str], CheckRecord]

_NOT_RUN_LENGTH = (
    "[not run: your reply was cut at the output limit (max_tokens) before this call was complete. "
    "Send the call again, with less text around it.]"
)
_NOT_RUN_SUBMITTED = (
    "you called submit earlier in this turn, so the calls after it were not run; if one is still "
    "needed after the check, call it again"
)
# An escaping bug is an uncaught exception: the process exits with Python's status 1.
_BUG_EXIT = 1
_NO_TOOL = (
    "You replied without calling a tool. Work through the tools; when your check passes, call "
    "submit with a summary."
)
_NO_CHECK = (
    "Before submitting, show that the fix works: run the tests that exercise it with run_tests "
    "(the harness re-runs that command when you submit). Then call submit again."
)


class Agent:
    """One run's loop over a model, a toolbox and a trajectory."""

    def __init__(
        self,
        *,
        model: Model,
        toolbox: Toolbox,
        prefix: PromptPrefix,
        trajectory: Trajectory,
        profile: ModelProfile,
        limits: Limits,
        tokenizer,
        checker: Checker | None = None,
        check_command: str | None = None,
        pack_tokens: int = 0,
        chat: bool = False,
        on_delta: Callable[[Delta], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        tree_lock: TreeLock | None = None,
    ) -> None:
        self.model = model
        self.toolbox = toolbox
        self.prefix = prefix
        self.traj = trajectory
        self.profile = profile
        self.limits = limits
        self.tokenizer = tokenizer
        self.checker = checker
        self.check_command = check_command
        self.pack_tokens = pack_tokens
        self.chat = chat
        self.on_delta = on_delta
        self.clock = clock
        self.tree_lock = tree_lock  # held while the loop can edit the tree, released at run_ended
        self._started = clock()
        self._elapsed_before = self._recorded_elapsed()
        self._malformed = 0
        self._warned_no_check = False
        self._counts: dict[str, int] = {}
        self._token_memo: dict[str, int] = {}
        self._prefix_tokens = self._count_messages(prefix.messages()) + self._count(
            json.dumps(toolbox.schemas(), sort_keys=True)
        )

    # ---- state derived from the trajectory --------------------------------------------------

    @property
    def mode(self) -> Mode:
        """The current mode: the last mode change, else the triage's choice, else the mode the
        run started in."""
        mode = self.traj.started.mode
        for e in self.traj.events:
            if isinstance(e, Triaged) and e.chosen is not None:
                mode = e.chosen
            elif isinstance(e, ModeChanged):
                mode = e.new
        return mode

    @property
    def triage_pending(self) -> bool:
        """Whether the run still owes its triage turn (none decided yet)."""
        return self.traj.started.triage and not any(
            e.chosen is not None for e in self.traj.of_type(Triaged))

    @property
    def steps(self) -> int:
        """Model calls so far."""
        return sum(1 for _ in self.traj.of_type(ModelCalled))

    @property
    def usage(self) -> Usage:
        """Token usage so far, triage included."""
        return spent(self.traj.events)[0]

    @property
    def cost(self) -> float:
        """USD spent so far, triage included."""
        return spent(self.traj.events)[1]

    @property
    def elapsed(self) -> float:
        """Wall seconds of this run, across resumes."""
        return self._elapsed_before + self.clock() - self._started

    def _recorded_elapsed(self) -> float:
        ts = [e.t for e in self.traj.events if e.t]
        return max(ts) - min(ts) if len(ts) > 1 else 0.0

    def _emit(self, event) -> None:
        self.traj.append(event.model_copy(update={"t": time.time(), "step": self.steps}))

    def add_user_message(self, text: str) -> None:
        """Append a user's message to the history (chat)."""
        self._emit(UserNote(content=text, source="user"))

    def set_mode(self, mode: Mode, reason: str) -> None:
        """Switch the reasoning mode from the next call on."""
        if mode != self.mode:
            self._emit(ModeChanged(old=self.mode, new=mode, reason=reason))

    # ---- the loop ---------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Step until an interrupt or a model error; always ends with a run_ended event."""
        if self.tree_lock is not None:
            self.tree_lock.acquire()  # again, when a chat goes on after an end
        while True:
            try:
                self.step()
            except Interrupt as stop:
                return self._finish(stop)
            except KeyboardInterrupt:
                return self._finish(UserStopped("interrupted by the user"))
            except ModelError as e:
                return self._end(RunStatus.ERROR, f"model error: {e}", 4)
            except BaseException as bug:  # our bug: the run still ends on record, then it raises
                self._end(RunStatus.ERROR, f"internal error: {type(bug).__name__}: {bug}", _BUG_EXIT)
                raise

    def step(self) -> None:
        """One model call and the tool calls it asked for (the triage turn first, if owed)."""
        if self.triage_pending:
            return self._triage()
        messages = render(self.prefix, history(self.traj.events))
        max_tokens, prompt_tokens = self._fit(messages)
        self._check_limits(prompt_tokens, max_tokens)
        self._spend_by_mode()
        try:
            response = self._query(messages, max_tokens)
        except ContextOverflow:
            self._compact("the API said the prompt does not fit the window")
            messages = render(self.prefix, history(self.traj.events))
            max_tokens, prompt_tokens = self._fit(messages)
            response = self._query(messages, max_tokens)
        self._emit(ModelCalled(mode=self.mode, response=response))
        calls = response.message.tool_calls
        if response.finish_reason == "length":
            for call in calls:
                self._emit(ToolFinished(call_id=call.id, name=call.name, content=_NOT_RUN_LENGTH, ok=False))
            if not calls:
                self._emit(UserNote(content="Your reply was cut at the output limit. Continue in shorter steps."))
            self._malformed_turn()
            return
        if not calls:
            if self.chat:
                raise TurnDone("the model answered")
            self._emit(UserNote(content=_NO_TOOL))
            self._malformed_turn()
            return
        usable = self._run_calls(calls)
        if usable:
            self._malformed = 0
        else:
            self._malformed_turn()
        submitted = self.toolbox.ctx.submitted
        if submitted is not None:
            self.toolbox.ctx.submitted = None
            self._on_submit(submitted)

    def triage(self) -> Triaged | None:
        """Make the owed triage attempts up to the deciding one and return it (None when the
        run owes none); limits and model errors raise as in `step`."""
        while self.triage_pending:
            self._triage()
        decided = [e for e in self.traj.of_type(Triaged) if e.chosen is not None]
        return decided[-1] if decided else None

    def _triage(self) -> None:
        """One triage attempt over the prefix; the deciding one (a verdict, or the last try)
        sets the starting mode. Its cost counts in the caps like any call's."""
        tried = list(self.traj.of_type(Triaged))
        request = retry_request(tried[-1].problem or "") if tried else TRIAGE_PROMPT
        messages = render(self.prefix, [*history(self.traj.events), UserMessage(content=request)])
        mode = triage_mode(self.profile)
        max_tokens, prompt_tokens = self._fit(messages, want=TRIAGE_MAX_TOKENS)
        self._check_limits(prompt_tokens, max_tokens, mode=mode, expected_out=TRIAGE_EXPECTED_OUTPUT)
        response = self.model.query(messages, mode=mode, tools=self.toolbox.schemas(), max_tokens=max_tokens,
                                    on_delta=self.on_delta)
        verdict, problem = parse_verdict(response.message.content)
        if response.message.tool_calls and verdict is None:
            problem = "it called a tool instead of answering"
        event = Triaged(mode=mode, request=request, response=response, verdict=verdict, problem=problem)
        if verdict is not None or len(tried) + 1 >= TRIAGE_ATTEMPTS:
            event = event.model_copy(update=self._starting_mode(verdict))
        self._emit(event)

    def _starting_mode(self, verdict: TriageVerdict | None) -> dict[str, Any]:
        """The deciding triage attempt's fields: the mode from the rating, else the fallback's."""
        started = self.traj.started
        if verdict is None:
            chosen, reason = started.mode, f"triage gave no usable answer; fallback: {started.mode_reason}"
        else:
            choice = rated_mode(verdict.rating, pack_tokens=self.pack_tokens, profile=self.profile)
            chosen, reason = choice.mode, "; ".join(choice.reasons)
        return {"chosen": chosen, "reason": reason, "note": handover_note(chosen)}

    def _query(self, messages: list[Message], max_tokens: int):
        return self.model.query(
            messages,
            mode=self.mode,
            tools=self.toolbox.schemas(),
            max_tokens=max_tokens,
            on_delta=self.on_delta,
        )

    def _run_calls(self, calls: list[ToolCall]) -> bool:
        """Run a turn's calls in order (none after a submit); True when one could be acted on."""
        usable = False
        for i, call in enumerate(calls):
            usable |= self._run_tool(call)
            if self.toolbox.ctx.submitted is not None and i + 1 < len(calls):
                for rest in calls[i + 1:]:
                    self._emit(_not_run(rest, _NOT_RUN_SUBMITTED))
                break
        return usable

    def _run_tool(self, call: ToolCall) -> bool:
        """Run one call; True when the model's call was well-formed enough to act on."""
        start = time.monotonic()
        self._emit(ToolStarted(call_id=call.id, name=call.name, arguments=call.arguments))
        result = self.toolbox.run(call.id, call.name, call.arguments)
        content = result.content
        if not result.ok:
            key = hashlib.sha256(f"{call.name}\0{_canonical(call.arguments)}".encode()).hexdigest()
            self._counts[key] = self._counts.get(key, 0) + 1
            seen = self._counts[key]
            if seen == self.limits.repeat_failures - 1:
                content += (
                    f"\n\nNote: this exact call has now failed {seen} times. Change the approach; "
                    "one more identical failing call stops the run."
                )
        self._emit(ToolFinished(
            call_id=call.id, name=result.name, content=content, ok=result.ok,
            error_kind=result.error_kind, elapsed=time.monotonic() - start,
        ))
        if not result.ok and self._counts[key] >= self.limits.repeat_failures:
            raise LoopDetected(f"the same failing call to {call.name} was repeated {self._counts[key]} times")
        return result.error_kind not in ("invalid_json", "unknown_tool")

    def _malformed_turn(self) -> None:
        self._malformed += 1
        if self._malformed >= self.limits.malformed_turns:
            raise MalformedTurns(f"{self._malformed} turns in a row could not be acted on")

    def _on_submit(self, summary: str) -> None:
        command = self.check_command or self._last_test_command()
        if command is None or self.checker is None:
            if not self._warned_no_check and self.checker is not None:
                self._warned_no_check = True
                self._emit(UserNote(content=_NO_CHECK))
                return
            raise Submitted(summary, None)
        check = self.checker(command)
        self._emit(CheckRun(check=check))
        if check.passed:
            raise Submitted(summary, check)
        note = f"Your submission was checked with `{check.command}` and the check failed:\n{check.summary}\n"
        nxt = escalate(self.mode, profile=self.profile, pack_tokens=self.pack_tokens)
        within_cap = self.limits.max_cost is None or self.cost < self.limits.max_cost
        if nxt is not None and within_cap:
            self._emit(ModeChanged(old=self.mode, new=nxt, reason="the self-check failed"))
            note += f"(Reasoning mode raised to {nxt.label}.)\n"
        note += "Write a revised plan (Goal / Files / Verify), fix the problem, and submit again."
        self._emit(UserNote(content=note))

    def _last_test_command(self) -> str | None:
        for e in reversed(self.traj.events):
            if isinstance(e, ToolStarted) and e.name == "run_tests":
                try:
                    args = json.loads(e.arguments or "{}")
                except (ValueError, RecursionError):  # the model's argument text, as it came
                    continue
                if isinstance(args, dict) and args.get("command"):
                    return str(args["command"])
        return None

    # ---- limits and context -----------------------------------------------------------------

    def _check_limits(self, prompt_tokens: int, max_tokens: int, *, mode: Mode | None = None,
                      expected_out: int | None = None) -> None:
        """Raise LimitReached when the next call (in `mode`, writing about `expected_out`) would
        pass a cap."""
        lim = self.limits
        step_cap = lim.max_steps if lim.max_steps is not None else MODE_TABLE[self.mode].max_steps
        if self.steps >= step_cap:
            raise LimitReached("steps", f"step limit reached ({self.steps} of {step_cap} model calls)")
        if lim.max_time is not None and self.elapsed >= lim.max_time:
            raise LimitReached("time", f"time limit reached ({self.elapsed:.0f}s of {lim.max_time:g}s)")
        usage = self.usage
        if expected_out is None:
            expected_out = usage.completion_tokens // self.steps if self.steps else 2_000
        expected_out = min(expected_out, max_tokens)
        if lim.max_tokens is not None:
            used = usage.prompt_tokens + usage.completion_tokens
            if used + prompt_tokens + expected_out > lim.max_tokens:
                raise LimitReached("tokens", f"token limit: {used:,} spent, the next call needs about "
                                   f"{prompt_tokens + expected_out:,} of {lim.max_tokens:,}")
        if lim.max_cost is not None:
            previous = self._cacheable_prompt_tokens(mode or self.mode)
            estimate = self.profile.cost(Usage(
                prompt_tokens=prompt_tokens,
                cache_hit_tokens=min(previous, prompt_tokens),
                cache_miss_tokens=max(prompt_tokens - previous, 0),
                completion_tokens=expected_out,
            ))
            if self.cost + estimate > lim.max_cost:
                raise LimitReached("cost", f"cost cap: ${self.cost:.4f} spent, the next call would cost "
                                   f"about ${estimate:.4f}, cap ${lim.max_cost:g}")

    def _spend_by_mode(self) -> None:
        """A mode that has used its share of the cost cap hands over to the next one up: a
        task that Non-think has not solved with a fifth of the money is harder than it looked."""
        cap = self.limits.max_cost
        while cap is not None:
            spec = MODE_TABLE[self.mode]
            if self.cost < spec.cost_share * cap:
                return
            nxt = escalate(self.mode, profile=self.profile, pack_tokens=self.pack_tokens)
            if nxt is None:
                return  # the top mode runs to the run's own cap
            self._emit(ModeChanged(
                old=self.mode, new=nxt,
                reason=f"{self.mode.label} used its share of the cost cap (${self.cost:.4f} of "
                       f"{spec.cost_share:.0%} x ${cap:g})",
            ))

    def _cacheable_prompt_tokens(self, mode: Mode) -> int:
        """The last prompt's tokens, which the next call (in `mode`) can hit in the cache; none
        after a switch into or out of a mode whose prompts start differently (Think Max's marker)."""
        calls = model_calls(self.traj.events)
        if not calls:
            return 0
        last = calls[-1]
        return last.response.usage.prompt_tokens if self.profile.same_prefix(last.mode, mode) else 0

    def _count(self, text: str) -> int:
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        n = self._token_memo.get(key)
        if n is None:
            n = self._token_memo[key] = self.tokenizer.count(text)
        return n

    def _count_messages(self, messages: list[Message]) -> int:
        total = 0
        for m in messages:
            total += 8  # role and separators
            for text in (getattr(m, "content", None), getattr(m, "reasoning_content", None)):
                if text:
                    total += self._count(text)
            for call in getattr(m, "tool_calls", []) or []:
                total += 8 + self._count(call.name) + self._count(call.arguments)
        return total

    def _prompt_tokens(self, messages: list[Message]) -> int:
        head = len(self.prefix.messages())
        return self._prefix_tokens + self._count_messages(messages[head:])

    def _fit(self, messages: list[Message], *, want: int | None = None) -> tuple[int, int]:
        """max_tokens for the next call (up to `want`, else the mode's cap), compacting once if
        the history no longer fits."""
        window = self.profile.context_window - self.limits.context_margin
        want = want or output_cap(self.mode, self.profile)
        prompt = self._prompt_tokens(messages)
        if prompt + self.limits.min_output > window:
            self._compact(f"the prompt ({prompt:,} tokens) no longer leaves room for output")
            messages = render(self.prefix, history(self.traj.events))
            prompt = self._prompt_tokens(messages)
            if prompt + self.limits.min_output > window:
                raise LimitReached("context", f"the prompt does not fit the window even after compaction ({prompt:,} tokens)")
        return min(want, window - prompt), prompt

    def _compact(self, reason: str) -> None:
        """Drop old tool outputs (keeping the newest and the last failure); recorded as an event."""
        before = self._prompt_tokens(render(self.prefix, history(self.traj.events)))
        done = {cid for e in self.traj.of_type(Compacted) for cid in e.dropped_call_ids}
        results = [e for e in self.traj.of_type(ToolFinished) if e.call_id not in done]
        keep = {e.call_id for e in results[-4:]}
        failures = [e for e in results if not e.ok]
        if failures:
            keep.add(failures[-1].call_id)
        dropped = [e.call_id for e in results if e.call_id not in keep]
        if not dropped:
            raise LimitReached("context", f"nothing left to compact ({reason})")
        event = Compacted(dropped_call_ids=dropped, before_tokens=before, after_tokens=0, reason=reason)
        after = self._prompt_tokens(render(self.prefix, history([*self.traj.events, event])))
        self._emit(event.model_copy(update={"after_tokens": after}))

    # ---- endings ----------------------------------------------------------------------------

    def _finish(self, stop: Interrupt) -> Outcome:
        if isinstance(stop, Submitted):
            if stop.check is None:
                return self._end(RunStatus.UNCHECKED, "submitted without a check", 1, None, stop.summary)
            return self._end(RunStatus.SOLVED, "submitted; the check passed", 0, stop.check, stop.summary)
        if isinstance(stop, LimitReached):
            return self._end(RunStatus.LIMIT, str(stop), 3)
        if isinstance(stop, UserStopped):
            return self._end(RunStatus.INTERRUPTED, str(stop), 130)
        if isinstance(stop, TurnDone):
            return RunEnded(status=RunStatus.TURN, reason=str(stop), exit_code=0)  # not written
        if isinstance(stop, MalformedTurns):
            return self._end(RunStatus.ERROR, str(stop), 4)
        return self._end(RunStatus.LIMIT, str(stop), 3)  # LoopDetected and any other interrupt

    def _end(self, status: RunStatus, reason: str, code: int, check: CheckRecord | None = None,
             summary: str | None = None) -> RunEnded:
        try:
            for event in open_call_answers(self.traj, f"the run ended ({status.value}: {reason})"):
                self._emit(event)
            self._emit(RunEnded(status=status, reason=reason, exit_code=code, check=check, summary=summary))
        finally:
            if self.tree_lock is not None:
                self.tree_lock.release()
        return self.traj.events[-1]


def _canonical(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), sort_keys=True)
    except (ValueError, RecursionError, TypeError):  # not JSON, too deep, a 5,000-digit integer
        return arguments.strip()


def _not_run(call: ToolCall, why: str) -> ToolFinished:
    return ToolFinished(call_id=call.id, name=call.name, content=f"[not run: {why}]", ok=False,
                        error_kind="not_run")


def open_call_answers(traj: Trajectory, why: str) -> list[ToolFinished]:
    """Answers for the calls of `traj` that have none: a call that started was interrupted, a
    later one was not run. The API refuses a request in which an assistant turn's tool_calls
    lack a tool message each, so every exit (and a resume after a crash) answers them all."""
    finished = {e.call_id for e in traj.of_type(ToolFinished)}
    started = {e.call_id for e in traj.of_type(ToolStarted)}
    out = []
    for ev in traj.of_type(ModelCalled):
        for call in ev.response.message.tool_calls:
            if call.id in finished:
                continue
            if call.id in started:
                out.append(ToolFinished(call_id=call.id, name=call.name, content=INTERRUPTED_TOOL, ok=False))
            else:
                out.append(_not_run(call, why))
            finished.add(call.id)
    return out
