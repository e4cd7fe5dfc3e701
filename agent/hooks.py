"""User hooks: commands from the user's config run on tool and run events.

    before_tool   ─ before a call runs: a non-zero exit blocks it; its output is the reason the model sees
    after_tool    ─ after a call ran, with the result: a non-zero exit adds its output to the observation
    before_submit ─ before a submission is checked: a non-zero exit rejects it, and the model goes on
    run_end       ─ when the run has ended (notifications); its exit changes nothing

Each command gets the event as one JSON object on stdin, runs in the repository as its own process
group under a timeout (a timeout or a command that cannot start blocks: hooks fail closed), and
sees the user's own environment: hooks come only from the user's config (`Settings.hooks` is
user-only), never from a repository. They wrap tools at the seam the Toolbox already has, a
`Tool`'s function, so every call path (built-in and MCP tools alike) passes them.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent.settings import HookCommand, HookSettings

__all__ = ["HookRunner", "HookVerdict", "hooked_tools"]

MAX_PAYLOAD_TEXT = 64_000  # characters of a tool result or patch given to a hook
MAX_REASON = 2_000  # characters of a hook's output the model sees


class HookVerdict(BaseModel):
    """What the hooks of one event said: blocked or not, and why (their output)."""

    blocked: bool = False
    reason: str = ""


def _argv(command: list[str] | str) -> list[str]:
    return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit:,} characters cut]"


class HookRunner:
    """Runs the user's hooks of one run, in its repository."""

    def __init__(self, settings: HookSettings, *, cwd: Path, run_id: str,
                 redact: Callable[[str], str] | None = None) -> None:
        self.settings = settings
        self.cwd = cwd
        self.run_id = run_id
        self.redact = redact or (lambda text: text)

    def fire(self, event: str, payload: dict[str, Any], *, tool: str | None = None) -> HookVerdict:
        """Run every command of `event` (in order, stopping at the first that blocks)."""
        commands: list[HookCommand] = getattr(self.settings, event)
        body = json.dumps({"event": event, "run_id": self.run_id, "cwd": str(self.cwd), **payload},
                          default=str).encode()
        for hook in commands:
            if tool is not None and hook.tools is not None and tool not in hook.tools:
                continue
            verdict = self._run(hook, body)
            if verdict.blocked:
                return verdict
        return HookVerdict()

    def _run(self, hook: HookCommand, body: bytes) -> HookVerdict:
        from tools.runner import run_process

        argv = _argv(hook.command)
        if shutil.which(argv[0]) is None:  # the runner's launcher would only report exit 127
            return HookVerdict(blocked=True, reason=f"the hook {argv[0]!r} could not start: no such program")
        try:
            done = run_process(argv, cwd=self.cwd, env=os.environ, timeout=hook.timeout, input=body,
                               max_output=16_000)
        except OSError as e:
            return HookVerdict(blocked=True, reason=f"the hook {argv[0]!r} could not start: {e.strerror}")
        if done.timed_out:
            return HookVerdict(blocked=True, reason=f"the hook {argv[0]!r} timed out after {hook.timeout:g}s")
        if done.exit_code != 0:
            said = self.redact(done.output.strip()) or f"the hook {argv[0]!r} exited with {done.exit_code}"
            return HookVerdict(blocked=True, reason=_cut(said, MAX_REASON))
        return HookVerdict()

    # ---- the events ---------------------------------------------------------------------------

    def before_tool(self, name: str, arguments: dict[str, Any]) -> HookVerdict:
        """May block the call."""
        return self.fire("before_tool", {"tool": name, "arguments": arguments}, tool=name)

    def after_tool(self, name: str, arguments: dict[str, Any], output: str, ok: bool) -> HookVerdict:
        """Sees the result; a non-zero exit is reported to the model."""
        payload = {"tool": name, "arguments": arguments, "ok": ok,
                   "output": _cut(self.redact(output), MAX_PAYLOAD_TEXT)}
        return self.fire("after_tool", payload, tool=name)

    def before_submit(self, summary: str, patch: str) -> HookVerdict:
        """May reject the submission."""
        return self.fire("before_submit", {"summary": summary, "patch": _cut(self.redact(patch), MAX_PAYLOAD_TEXT)})

    def run_end(self, result: dict[str, Any]) -> HookVerdict:
        """Told how the run ended."""
        return self.fire("run_end", result)


def _wrap(t: Any, runner: HookRunner) -> Any:
    """`t` with its function run between the before_tool and after_tool hooks."""
    from tools.base import ToolError

    inner = t.fn

    def fn(ctx: Any, **kwargs: Any) -> str:
        verdict = runner.before_tool(t.name, kwargs)
        if verdict.blocked:
            raise ToolError(f"a before_tool hook blocked this call: {verdict.reason}", kind="blocked_by_hook")
        if t.name == "submit":
            from agent.run import git_patch

            verdict = runner.before_submit(str(kwargs.get("summary", "")),
                                           git_patch(ctx.workspace, ctx.workspace.base_commit))
            if verdict.blocked:
                raise ToolError(f"a before_submit hook rejected the submission: {verdict.reason}\n"
                                "Fix what it names and submit again.", kind="rejected_by_hook")
        try:
            output = inner(ctx, **kwargs)
        except ToolError as e:
            runner.after_tool(t.name, kwargs, str(e), ok=False)
            raise
        verdict = runner.after_tool(t.name, kwargs, output, ok=True)
        if verdict.blocked:
            output += f"\n\n[an after_tool hook reported: {verdict.reason}]"
        return output

    wrapped = copy.copy(t)
    wrapped.fn = fn
    return wrapped


def hooked_tools(tools: list[Any], runner: HookRunner | None) -> list[Any]:
    """The tools with the user's tool hooks around them; the same list when there are none."""
    s = runner.settings if runner is not None else None
    if s is None or not (s.before_tool or s.after_tool or s.before_submit):
        return tools
    return [_wrap(t, runner) for t in tools]
