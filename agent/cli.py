"""The `tome` command line: a table of subcommands, each in its own module, loaded on demand.

Exit codes: 0 success (solved and checked), 1 finished without a passing check (or a failing
doctor row), 2 usage or configuration error (a missing key included: retrying cannot help),
3 a limit was reached, 4 model or API error, 130 interrupted, 141 the reader of the output went
away (`| head`). With `--json`, the last line on stdout is always one
`{"result": ...}` object carrying the exit code, whatever ended the command.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent import __version__
from agent.errors import ConfigError, Interrupt, ModelError

__all__ = ["main", "add_settings_options", "settings_from_args", "EXIT", "error_result"]

EXIT = {"ok": 0, "unchecked": 1, "usage": 2, "limit": 3, "model": 4, "interrupted": 130, "pipe": 141}

EPILOG = """\
exit codes:
  0    solved, and the check passed
  1    finished without a passing check (or a failing doctor row)
  2    usage or configuration error (bad option, unknown model, missing key)
  3    a limit was reached (--max-steps, --max-cost, --max-time, tokens, context)
  4    model or API error (server errors, rate limits after retries): worth retrying
  130  interrupted (Ctrl-C)
  141  the output's reader went away (e.g. | head)

environment:
  DEEPSEEK_API_KEY      key for deepseek-* models (OPENAI_API_KEY for OpenAI-compatible ones)
  OPENAI_BASE_URL       endpoint, below TOME_BASE_URL in precedence
  TOME_<FIELD>          any setting, e.g. TOME_MODEL, TOME_MAX_COST, TOME_SAFETY_SANDBOX
  NO_COLOR              no colour in any output (or --no-color)

configuration:
  user       {user}
  project    tome.toml in the repository (task-level settings only; may tighten safety)
  layering   defaults < user file < project file < environment < command line
"""

# name -> (module with `configure(parser)` and `run(args) -> int`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("agent.doctor", "check settings, API key, tokenizer and endpoint"),
    "pack": ("agent.pack.cli", "pack a repository into the model's window"),
    "solve": ("agent.solve_cli", "solve a task in a repository"),
    "chat": ("agent.chat", "interactive multi-turn session"),
    "demo": ("agent.demo", "offline end-to-end demo against the scripted server"),
    "resume": ("agent.solve_cli", "continue a crashed or stopped run"),
    "replay": ("agent.solve_cli", "show a recorded run"),
    "runs": ("agent.runs_cli", "list recorded runs; runs clean --older-than 30d"),
    "models": ("agent.models_cli", "the model profiles: window, output, modes, prices, tokenizer"),
    "eval": ("agent.evaluation.cli", "score a model on SWE-bench-style tasks"),
    "view": ("agent.webview.cli", "a run or an evaluation as one HTML page; --serve shows it live on 127.0.0.1"),
    "mcp": ("agent.mcp_server", "tome as an MCP server: mcp serve [--http PORT] (pack, count_tokens)"),
}


def _limit(kind: type) -> Any:
    """An argparse type: a finite number, 0 or more (NaN, infinities and negatives are usage errors;
    0 stops before the first model call)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """--json, --quiet, --verbose and --no-color: how a command talks."""
    g = parser.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="machine-readable output, no prompts")
    g.add_argument("-q", "--quiet", action="store_true", help="only the result")
    g.add_argument("-v", "--verbose", action="store_true", help="also each observation's first lines")
    g.add_argument("--no-color", dest="no_color", action="store_true", help="no colour (also: NO_COLOR=1)")


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """Options that map onto Settings fields (the command-line layer), plus the output options."""
    from agent.modes import MODE_CHOICES

    g = parser.add_argument_group("model and limits")
    g.add_argument("--model", help="model name or alias (see tome models), e.g. deepseek-v4-pro, flash")
    g.add_argument("--base-url", dest="base_url", help="OpenAI-compatible endpoint")
    g.add_argument("--mode", choices=list(MODE_CHOICES), help="reasoning mode")
    g.add_argument("--max-cost", dest="max_cost", type=_limit(float), help="USD cap for the run")
    g.add_argument("--max-steps", dest="max_steps", type=_limit(int), help="model-call cap")
    g.add_argument("--max-time", dest="max_time", type=_limit(float), help="wall-seconds cap")
    g.add_argument("--sandbox", dest="sandbox", choices=["require", "auto", "off"],
                   help="run the shell under bubblewrap; 'off' opts out (headless runs need one or the other)")
    add_output_options(parser)


_SETTINGS_ARGS = ("model", "base_url", "mode", "max_cost", "max_steps", "max_time")


def settings_from_args(args: argparse.Namespace, project_dir: Path | None = None) -> Any:
    """Load layered settings with this command line on top; warnings go to stderr."""
    from agent.settings import load_settings

    cli = {k: getattr(args, k, None) for k in _SETTINGS_ARGS}
    cli["safety.sandbox"] = getattr(args, "sandbox", None)
    loaded = load_settings(project_dir, cli=cli)
    for w in loaded.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return loaded.settings


class _UsageError(Exception):
    """argparse's complaint, carried to main so that --json can end with it."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors reach main instead of exiting on their own."""

    def error(self, message: str) -> Any:  # argparse's hook; the default exits 2 itself
        self.print_usage(sys.stderr)
        raise _UsageError(f"{self.prog}: {message}")


def _parser(selected: str | None) -> argparse.ArgumentParser:
    from agent.settings import user_config_path

    parser = _Parser(
        prog="tome", description="A coding agent for 1M-token models (DeepSeek-V4 and friends).",
        epilog=EPILOG.format(user=user_config_path()), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tome {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOG.format(
            user=user_config_path()), formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == selected:
            importlib.import_module(module).configure(p, name)
    return parser


def error_result(exit_code: int, reason: str, *, kind: str) -> dict[str, Any]:
    """The `--json` result object of a command that ended in an error before (or instead of) a run."""
    from agent.secrets import redact_outgoing

    return {"result": {"run_id": None, "status": "error", "error": kind, "exit_code": exit_code,
                       "reason": redact_outgoing(reason)}}


def _classify(e: BaseException) -> tuple[int, str, str]:
    """(exit code, kind, message) of an error that ends a command."""
    if isinstance(e, ConfigError):
        return EXIT["usage"], "config", str(e)
    if isinstance(e, ModelError):
        return EXIT["model"], "model", f"model error: {e}"
    if isinstance(e, Interrupt):
        return EXIT["limit"], "limit", f"stopped: {e}"
    return EXIT["interrupted"], "interrupted", "interrupted"


def _finish_error(code: int, kind: str, message: str, *, as_json: bool) -> int:
    print(f"tome: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps(error_result(code, message, kind=kind)), flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tome` script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    if "--no-color" in argv:
        os.environ["NO_COLOR"] = "1"  # rich and every Console of this process honour it
    try:
        return _main(argv, as_json=as_json)
    except BrokenPipeError:
        # The reader went away (`tome runs | head`): no traceback; stdout is closed for good (the
        # Python docs' recipe, "Note on SIGPIPE" in the signal module). 141 = 128 + SIGPIPE, what
        # a shell reports for a command SIGPIPE ended, as git's own `git log | head` does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT["pipe"]


def _main(argv: list[str], *, as_json: bool) -> int:
    selected = next((a for a in argv if not a.startswith("-")), None)
    if selected not in COMMANDS:
        selected = None
    try:
        parser = _parser(selected)
    except ModuleNotFoundError as e:
        return _finish_error(EXIT["usage"], "usage", f"{selected}: not available in this build ({e.name})",
                             as_json=as_json)
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        return _finish_error(EXIT["usage"], "usage", str(e), as_json=as_json)
    except SystemExit as e:  # --help and --version
        return e.code if isinstance(e.code, int) else EXIT["usage"]
    if args.command is None:
        parser.print_help()
        return EXIT["usage"]
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args))
    except (ConfigError, ModelError, Interrupt, KeyboardInterrupt) as e:
        return _finish_error(*_classify(e), as_json=as_json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
