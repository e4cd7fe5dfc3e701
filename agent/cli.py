"""The `tome` command line: a table of subcommands, each in its own module, loaded on demand.

Exit codes: 0 success (solved and checked), 1 finished without a passing check (or a failing
doctor row), 2 usage or configuration error, 3 a limit was reached, 4 model or API error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent import __version__
from agent.errors import ConfigError, Interrupt, ModelError

__all__ = ["main", "add_settings_options", "settings_from_args", "EXIT"]

EXIT = {"ok": 0, "unchecked": 1, "usage": 2, "limit": 3, "model": 4}

# name -> (module with `configure(parser)` and `run(args) -> int`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("agent.doctor", "check settings, API key, tokenizer and endpoint"),
    "pack": ("agent.pack.cli", "pack a repository into the model's window"),
    "solve": ("agent.solve_cli", "solve a task in a repository"),
    "chat": ("agent.chat", "interactive multi-turn session"),
    "demo": ("agent.demo", "offline end-to-end demo against the scripted server"),
    "resume": ("agent.solve_cli", "continue a crashed or stopped run"),
    "replay": ("agent.solve_cli", "show a recorded run"),
    "eval": ("agent.evaluation.cli", "score a model on SWE-bench-style tasks"),
}


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """Options that map onto Settings fields (the command-line layer)."""
    g = parser.add_argument_group("model and limits")
    g.add_argument("--model", help="model name (profile), e.g. deepseek-v4-pro")
    g.add_argument("--base-url", dest="base_url", help="OpenAI-compatible endpoint")
    g.add_argument("--mode", choices=["auto", "non-think", "low", "high", "max"], help="reasoning mode")
    g.add_argument("--max-cost", dest="max_cost", type=float, help="USD cap for the run")
    g.add_argument("--max-steps", dest="max_steps", type=int, help="model-call cap")
    g.add_argument("--max-time", dest="max_time", type=float, help="wall-seconds cap")
    parser.add_argument("--json", action="store_true", help="machine-readable output, no prompts")


_SETTINGS_ARGS = ("model", "base_url", "mode", "max_cost", "max_steps", "max_time")


def settings_from_args(args: argparse.Namespace, project_dir: Path | None = None) -> Any:
    """Load layered settings with this command line on top; warnings go to stderr."""
    from agent.settings import load_settings

    cli = {k: getattr(args, k, None) for k in _SETTINGS_ARGS}
    loaded = load_settings(project_dir, cli=cli)
    for w in loaded.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return loaded.settings


def _parser(selected: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tome", description="A coding agent for 1M-token models (DeepSeek-V4 and friends)."
    )
    parser.add_argument("--version", action="version", version=f"tome {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            importlib.import_module(module).configure(p, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tome` script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    if selected not in COMMANDS:
        selected = None
    try:
        parser = _parser(selected)
    except ModuleNotFoundError as e:
        print(f"tome {selected}: not available in this build ({e.name})", file=sys.stderr)
        return EXIT["usage"]
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT["usage"]
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args))
    except ConfigError as e:
        print(f"tome: {e}", file=sys.stderr)
        return EXIT["usage"]
    except ModelError as e:
        print(f"tome: model error: {e}", file=sys.stderr)
        return EXIT["model"]
    except Interrupt as e:
        print(f"tome: stopped: {e}", file=sys.stderr)
        return EXIT["limit"]
    except KeyboardInterrupt:
        print("tome: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
