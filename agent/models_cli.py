"""`tome models`: the built-in model profiles as a table (window, output, modes, prices, tokenizer)."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from agent.cli import add_output_options

__all__ = ["configure", "run", "model_rows"]


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    """Options of models."""
    add_output_options(parser)


def model_rows() -> list[dict]:
    """One row per built-in profile, with its aliases and the tokenizer that really counts."""
    from agent.profiles import ALIASES, PROFILES
    from agent.tokens import effective_tokenizer

    rows = []
    for name, p in PROFILES.items():
        counter = effective_tokenizer(p.tokenizer)
        rows.append({
            "name": name,
            "aliases": [a for a, target in ALIASES.items() if target == name],
            "provider": p.provider,
            "context_window": p.context_window,
            "max_output": p.max_output,
            "modes": [m.value for m in p.mode_fields],
            "prices_per_mtok": {"cache_hit": p.prices.cache_hit, "cache_miss": p.prices.cache_miss,
                                "output": p.prices.output},
            "peak_prices": p.peak_prices is not None,
            "tokenizer": p.tokenizer if counter == p.tokenizer else f"{counter} (stands in for {p.tokenizer})",
            "key": p.api_key_env,
        })
    return rows


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON lines and a result object)."""
    rows = model_rows()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        print(json.dumps({"result": {"status": "ok", "exit_code": 0, "models": len(rows)}}))
        return 0
    t = Table(title="tome models (USD per 1M tokens: cache hit / miss / output)")
    for col in ("model", "aliases", "window", "max output", "modes", "prices", "tokenizer", "key"):
        t.add_column(col, justify="right" if col in ("window", "max output") else "left")
    for r in rows:
        p = r["prices_per_mtok"]
        price = f"{p['cache_hit']:g} / {p['cache_miss']:g} / {p['output']:g}" + (" off-peak" if r["peak_prices"] else "")
        t.add_row(r["name"], ", ".join(r["aliases"]), f"{r['context_window']:,}", f"{r['max_output']:,}",
                  ", ".join(r["modes"]), price, r["tokenizer"], r["key"])
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(t)
    if any(r["peak_prices"] for r in rows):
        console.print("DeepSeek bills weekday peak hours at twice the off-peak prices (see the pricing page).")
    console.print("Any other name needs --base-url (a generic OpenAI-compatible profile, 32,768-token window).")
    return 0
