"""A real MCP server made with the SDK, for the tests: `python mcp_fixture_server.py stdio|http PORT`.

Tools: add(a, b), shout(text), echo(text, times), slow() (never answers), crash() (the process dies), fail() (an
error result), grow() (adds a tool mid-session). TOME_FIXTURE_CRASH_AT_START=1 makes it exit before it speaks.
"""

from __future__ import annotations

import os
import sys
import time

from mcp.server.mcpserver import Context, MCPServer

if os.environ.get("TOME_FIXTURE_CRASH_AT_START"):
    sys.exit(3)

server = MCPServer("fixture")


@server.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    return str(a + b)


@server.tool()
def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()


@server.tool()
def echo(text: str, times: int = 1) -> str:
    """The text, `times` times."""
    return text * times


@server.tool()
def slow() -> str:
    """Never answers in time."""
    time.sleep(3600)
    return "late"


@server.tool()
def crash() -> str:
    """The server process dies."""
    os._exit(7)


@server.tool()
def fail() -> str:
    """An error result."""
    raise ValueError("the fixture refuses")


def late() -> str:
    """Added while the client is connected."""
    return "late"


@server.tool()
async def grow(ctx: Context) -> str:
    """Adds a tool and tells the client its tool list changed."""
    server.add_tool(late)
    await ctx.notify_tools_changed()
    return "grown"


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
