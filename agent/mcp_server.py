"""`tome mcp serve`: tome's packer as an MCP server, for other agents (Claude Code, Codex, ...).

Two tools, made with the official SDK's `MCPServer` (modelcontextprotocol/python-sdk):

    pack(path, task, budget, model, output)  ─ the same document `tome pack -o FILE` writes
                                                (exact-token budget), or its manifest as JSON
    count_tokens(text | path, model)          ─ exact tokens with the model's own tokenizer

Over stdio (the default: the client starts `tome mcp serve`) or streamable HTTP bound to
127.0.0.1 only (`--http PORT`). Settings load as for `tome pack` in that directory.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any, Literal

__all__ = ["configure", "count_tokens", "make_server", "pack", "run"]

INSTRUCTIONS = ("tome packs a repository into a model's context window with exact token counts "
                "(DeepSeek-V4's own tokenizer by default): call pack for the document, count_tokens to "
                "measure text or a file.")


def _settings(project: Path | None) -> Any:
    from agent.settings import load_settings

    return load_settings(project).settings


def _directory(path: str) -> Path:
    from agent.errors import ConfigError

    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"{path}: no such directory")
    return root


def pack(path: str, task: str | None = None, budget: int | None = None, model: str | None = None,
         output: Literal["document", "manifest"] = "document") -> str:
    """Pack the repository at `path` for `task` within `budget` tokens of `model`'s tokenizer."""
    from agent.pack import build_pack
    from agent.pack.cli import manifest

    root = _directory(path)
    settings = _settings(root)
    built = build_pack(root, task=task, budget=budget, model=model, settings=settings)
    if output == "manifest":
        return json.dumps(manifest(built), default=str, sort_keys=True)
    return built.document + built.relevant


def count_tokens(text: str | None = None, path: str | None = None, model: str | None = None) -> str:
    """Exact tokens of `text`, or of the file at `path`, with `model`'s tokenizer (JSON)."""
    from agent.errors import ConfigError
    from agent.tokens import get_tokenizer

    if (text is None) == (path is None):
        raise ConfigError("give exactly one of text or path")
    if path is not None:
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    settings = _settings(None)
    profile = (settings.model_copy(update={"model": model}) if model else settings).profile()
    counter = get_tokenizer(profile.tokenizer)
    return json.dumps({"tokens": counter.count(text or ""), "model": profile.name, "tokenizer": counter.name})


def make_server() -> Any:
    """The MCP server with tome's tools."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("tome", instructions=INSTRUCTIONS)
    server.tool()(_reporting(pack))
    server.tool()(_reporting(count_tokens))
    return server


def _reporting(fn: Any) -> Any:
    """`fn` with tome's errors (bad path, unknown model) raised as the SDK's ToolError, whose text
    the client sees; the SDK hides any other exception's text (mcp/server/mcpserver/tools/base.py)."""
    from mcp.server.mcpserver.exceptions import ToolError

    from agent.errors import TomeError

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> str:
        try:
            return fn(*args, **kwargs)
        except TomeError as e:
            raise ToolError(str(e)) from None

    return call


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    """`tome mcp serve [--http PORT]`."""
    sub = parser.add_subparsers(dest="mcp_command", required=True)
    serve = sub.add_parser("serve", help="serve pack and count_tokens over MCP (stdio by default)")
    serve.add_argument("--http", type=int, metavar="PORT",
                       help="serve streamable HTTP on 127.0.0.1:PORT (at /mcp) instead of stdio")


def run(args: argparse.Namespace) -> int:
    """Serve until the client goes away (stdio) or the process is stopped (HTTP)."""
    server = make_server()
    if args.http is None:
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.http)  # loopback only
    return 0
