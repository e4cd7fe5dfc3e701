"""Tools from the user's MCP servers, offered to the model through the same `Toolbox` path.

    settings.mcp ─► connect_servers ─► McpHub (one background event loop, a session per server)
                                        └─► mcp_tools() ─► McpTool per remote tool, `mcp__SERVER__TOOL`

Servers come only from the user's config (`[mcp.servers.NAME]`, user-only: a repository must not
start processes through its tome.toml); a project may name the ones it wants (`mcp.use`). The
tool list is read once at the start, sorted, and fixed for the run (its schemas are part of the
saved prompt prefix); a server that changes its list later is reported, not followed. A server
that fails to start is a warning and the run goes on without it. Each call is checked against the
tool's JSON schema, needs approval (asked when a person is there, refused headless unless the user
set `approval = "allow"` for that server), is bounded by the server's timeout, and its result or
error comes back as an observation (the Toolbox redacts and bounds it).

The official SDK (`mcp`, modelcontextprotocol/python-sdk) is asynchronous; tome's loop is not, so
the sessions live on one event loop in a daemon thread and calls wait on it with a deadline.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import threading
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent.settings import McpServer, Settings, user_config_path

__all__ = ["McpHub", "McpServerStatus", "McpTool", "connect_servers", "tool_name"]

_NAME_OK = re.compile(r"[^A-Za-z0-9_-]")  # OpenAI function names: ^[a-zA-Z0-9_-]{1,64}$
_MAX_NAME = 64


def tool_name(server: str, tool: str) -> str:
    """The name the model sees: `mcp__SERVER__TOOL`, with characters function names forbid as `_`."""
    return _NAME_OK.sub("_", f"mcp__{server}__{tool}")[:_MAX_NAME]


class McpServerStatus(BaseModel):
    """How connecting to one server went: its tools, or why it is not used."""

    name: str
    transport: str
    ok: bool
    tools: list[str] = []  # the names the model sees, sorted
    hidden: list[str] = []  # tools the server has that its allow-list leaves out
    error: str | None = None


class _Listed(BaseModel):
    name: str
    description: str = ""
    input_schema: dict[str, Any] = {}


class McpHub:
    """The run's MCP sessions on one background event loop; `close()` ends them."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tome-mcp", daemon=True)
        self._thread.start()
        self._stop = asyncio.Event()
        self._clients: dict[str, Any] = {}
        self._tasks: list[asyncio.Future[Any]] = []
        self.servers: dict[str, McpServer] = {}
        self.statuses: list[McpServerStatus] = []
        self.notes: list[str] = []
        self.tools: list[McpTool] = []

    # ---- connecting -----------------------------------------------------------------------------

    def add(self, name: str, server: McpServer, *, cwd: Path, log: Path | None) -> McpServerStatus:
        """Start (or reach) one server and list its tools; a failure is a status, never a raise."""
        try:
            transport = server.transport()
        except Exception as e:  # a config entry with neither or both transports
            return self._record(McpServerStatus(name=name, transport="?", ok=False, error=str(e)))
        ready: asyncio.Future[list[_Listed]] = self._loop.create_future()
        holder = asyncio.run_coroutine_threadsafe(self._hold(name, server, ready, cwd=cwd, log=log), self._loop)
        self._tasks.append(holder)
        waiting = asyncio.run_coroutine_threadsafe(asyncio.wait_for(asyncio.shield(ready), server.timeout),
                                                   self._loop)
        try:
            listed = waiting.result(server.timeout + 5)
        except Exception as e:  # the server is the user's; whatever it did, the run goes on without it
            holder.cancel()
            why = f"did not answer within {server.timeout:g}s" if isinstance(e, TimeoutError) else _describe(e)
            return self._record(McpServerStatus(name=name, transport=transport, ok=False, error=why))
        self.servers[name] = server
        offered = [t for t in listed if server.tools is None or t.name in server.tools]
        tools = sorted((McpTool(self, name, t) for t in offered), key=lambda t: t.name)
        self.tools += tools
        return self._record(McpServerStatus(
            name=name, transport=transport, ok=True, tools=[t.name for t in tools],
            hidden=sorted(t.name for t in listed if t not in offered)))

    def _record(self, status: McpServerStatus) -> McpServerStatus:
        self.statuses.append(status)
        return status

    async def _hold(self, name: str, server: McpServer, ready: asyncio.Future[list[_Listed]], *,
                    cwd: Path, log: Path | None) -> None:
        """Open the session, list the tools, and keep the session until the hub closes."""
        from mcp import Client

        try:
            async with AsyncExitStack() as stack:
                target = await _target(stack, server, cwd=cwd, log=log)
                client = await stack.enter_async_context(
                    Client(target, read_timeout_seconds=server.timeout, message_handler=self._watch(name)))
                listed = await _list_tools(client)
                watcher = await self._watch_changes(stack, name, client)
                self._clients[name] = client
                ready.set_result(listed)
                await self._stop.wait()
                if watcher is not None:
                    watcher.cancel()
        except BaseException as e:  # noqa: BLE001 - reported through `ready` or as a note
            if not ready.done():
                ready.set_exception(e if isinstance(e, Exception) else RuntimeError(repr(e)))
            elif not isinstance(e, asyncio.CancelledError):
                self.notes.append(f"MCP server {name} stopped: {_describe(e)}")
            self._clients.pop(name, None)

    async def _watch_changes(self, stack: AsyncExitStack, name: str, client: Any) -> asyncio.Task[None] | None:
        """Subscribe to tool-list changes (protocol 2026-07-28 delivers them on a `subscriptions/listen`
        stream, mcp/client/client.py Client.listen; older servers send a notification, see `_watch`)."""
        try:
            sub = await stack.enter_async_context(client.listen(tools_list_changed=True))
        except Exception:  # noqa: BLE001 - ListenNotSupportedError or a refusal: the tools stay fixed anyway
            return None

        async def drain() -> None:
            async for _event in sub:
                self._changed(name)

        return asyncio.create_task(drain())

    def _changed(self, name: str) -> None:
        self.notes.append(f"MCP server {name} changed its tool list during the run; the run keeps "
                          "the tools it started with")

    def _watch(self, name: str) -> Any:
        async def handler(message: Any) -> None:
            method = getattr(message, "method", None)
            if method == "notifications/tools/list_changed":
                self._changed(name)

        return handler

    # ---- calling --------------------------------------------------------------------------------

    def call(self, server: str, tool: str, arguments: dict[str, Any]) -> Any:
        """Call one tool and wait for its result (raises TimeoutError, or the SDK's error)."""
        client = self._clients.get(server)
        if client is None:
            raise ConnectionError(f"the MCP server {server} is not connected (it stopped or never started)")
        timeout = self.servers[server].timeout
        future = asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(client.call_tool(tool, arguments, read_timeout_seconds=timeout), timeout),
            self._loop)
        try:
            return future.result(timeout + 5)
        except TimeoutError:
            future.cancel()
            raise

    def pending_notes(self) -> str:
        """What the servers did since the last call (a changed tool list), as lines to report."""
        notes, self.notes[:] = list(self.notes), []
        return "".join(f"\n[{n}]" for n in notes)

    def close(self) -> None:
        """End every session (stopping stdio servers) and the event loop."""
        if not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        for task in self._tasks:
            try:
                task.result(10)
            except Exception:  # noqa: BLE001 - a server that fails while closing is gone either way
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()


async def _target(stack: AsyncExitStack, server: McpServer, *, cwd: Path, log: Path | None) -> Any:
    """What `mcp.Client` connects to: a stdio transport (the server's stderr to the run's log, not
    the terminal), or a streamable-HTTP transport with the entry's headers."""
    if server.command is not None:
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        errlog = stack.enter_context(open(log or os.devnull, "a", encoding="utf-8"))
        # The SDK gives the server only a safe base environment (PATH, HOME, ...:
        # mcp/client/stdio.py get_default_environment) plus `env`: tome's keys are not inherited.
        params = StdioServerParameters(command=server.command, args=server.args, env=server.env, cwd=cwd)
        return stdio_client(params, errlog=errlog)
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    http = await stack.enter_async_context(create_mcp_http_client(headers=server.headers or None))
    return streamable_http_client(server.url, http_client=http)


async def _list_tools(client: Any) -> list[_Listed]:
    out: list[_Listed] = []
    cursor: str | None = None
    while True:
        page = await client.list_tools(cursor=cursor)
        out += [_Listed(name=t.name, description=t.description or "", input_schema=t.input_schema or {})
                for t in page.tools]
        cursor = page.next_cursor
        if not cursor:
            return out


def _describe(e: BaseException) -> str:
    inner = getattr(e, "exceptions", None)  # an ExceptionGroup from the SDK's task groups
    if inner:
        return "; ".join(_describe(x) for x in inner)
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class McpTool:
    """One remote tool, shaped like a `tools.base.Tool` so the Toolbox runs it like any other."""

    def __init__(self, hub: McpHub, server: str, listed: _Listed) -> None:
        self.hub = hub
        self.server = server
        self.remote = listed.name
        self.name = tool_name(server, listed.name)
        self.description = f"[MCP server {server}] {listed.description}".strip()
        self.input_schema = listed.input_schema
        self.defaults: dict[str, Any] = {}

    def schema(self) -> dict[str, Any]:
        """The OpenAI tools entry, with the server's own JSON schema (not strict: it is theirs)."""
        params = {"type": "object", "properties": {}, **self.input_schema}
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": params}}

    def pinned(self, schema: dict[str, Any]) -> McpTool:
        """This tool as the run first offered it (a resumed run keeps the schema it started with)."""
        fixed = copy.copy(self)
        fixed.description = schema["function"]["description"]
        fixed.input_schema = schema["function"]["parameters"]
        return fixed

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Arguments pass as they are; `fn` checks them against the server's JSON schema."""
        return arguments

    def fn(self, ctx: Any, **arguments: Any) -> str:
        """Check, approve and run the call; every failure is a ToolError the model sees."""
        from tools.base import ToolError

        problems = _schema_problems(self.input_schema, arguments)
        if problems:
            raise ToolError(f"invalid arguments for {self.name}:\n" + "\n".join(f"- {p}" for p in problems)
                            + f"\nCall {self.name} again with arguments that match its schema.",
                            kind="invalid_arguments")
        self._approve(ctx, arguments)
        try:
            result = self.hub.call(self.server, self.remote, arguments)
        except TimeoutError:
            raise ToolError(f"the MCP server {self.server} did not answer {self.remote} within "
                            f"{self.hub.servers[self.server].timeout:g}s; try again later or do without it",
                            kind="mcp_timeout") from None
        except Exception as e:  # the server's failure, not ours: the model sees it and goes on
            raise ToolError(f"the MCP server {self.server} failed on {self.remote}: {_describe(e)}",
                            kind="mcp_error") from None
        text = render_result(result) + self.hub.pending_notes()
        if getattr(result, "is_error", False):
            raise ToolError(f"{self.name} reported an error: {text}", kind="mcp_tool_error")
        return text

    def _approve(self, ctx: Any, arguments: dict[str, Any]) -> None:
        from tools.base import ToolError

        policy = self.hub.servers[self.server].approval
        if ctx.settings.safety.approval == "deny":  # a project may tighten approval for every tool
            policy = "deny"
        if policy == "allow":
            return
        where = f'approval = "allow" under [mcp.servers.{self.server}] in {user_config_path()}'
        if policy == "deny":
            raise ToolError(f"calls to the MCP server {self.server} are refused by the settings; "
                            "do without this tool", kind="refused")
        if not ctx.interactive or ctx.approve is None:
            raise ToolError(f"{self.name} needs the user's approval and this run is headless, so it was "
                            f"refused (the user can set {where}); do without this tool", kind="refused")
        if not ctx.approve(f"The agent wants to call the MCP tool {self.name} with "
                           f"{json.dumps(arguments, sort_keys=True)[:400]}\nAllow it?"):
            raise ToolError(f"the user declined this call to {self.name}; do without it or ask",
                            kind="refused")

    def __repr__(self) -> str:
        return f"McpTool({self.name!r})"


def _schema_problems(schema: dict[str, Any], arguments: dict[str, Any]) -> list[str]:
    import jsonschema

    try:
        validator = jsonschema.validators.validator_for(schema)(schema)
        errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
    except jsonschema.SchemaError:
        return []  # a schema the server got wrong: let the server judge the call
    return [f"{'.'.join(str(p) for p in e.path) or '(arguments)'}: {e.message}" for e in errors[:10]]


def render_result(result: Any) -> str:
    """A tool result as text: text blocks as they are, other blocks named, else structured content."""
    parts: list[str] = []
    for block in result.content:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            parts.append(f"[{kind} ({block.mime_type}), not shown]")
        elif kind == "resource_link":
            parts.append(f"[resource {block.uri}]")
        elif kind == "resource":
            parts.append(getattr(block.resource, "text", None) or f"[resource {block.resource.uri}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, sort_keys=True))
    return "\n".join(parts) or "(no output)"


def connect_servers(settings: Settings, *, cwd: Path, log_dir: Path | None = None,
                    warn: Any = None) -> McpHub | None:
    """Connect the servers this run may use (the user's, narrowed by a project's `mcp.use`)."""
    say = warn or (lambda _message: None)
    defined = settings.mcp.servers
    wanted: Sequence[str] = sorted(defined) if settings.mcp.use is None else settings.mcp.use
    for name in wanted:
        if name not in defined:
            say(f"the project asks for the MCP server {name!r}, which {user_config_path()} does not define")
    names = [n for n in wanted if n in defined]
    if not names:
        return None
    hub = McpHub()
    for name in names:
        log = log_dir / f"mcp-{name}.log" if log_dir is not None else None
        status = hub.add(name, defined[name], cwd=cwd, log=log)
        if not status.ok:
            say(f"MCP server {name} is not used in this run: {status.error}")
    seen: dict[str, McpTool] = {}
    for t in hub.tools:
        if t.name in seen:
            say(f"MCP tools {seen[t.name].server}/{seen[t.name].remote} and {t.server}/{t.remote} share "
                f"the name {t.name}; only the first is offered")
        else:
            seen[t.name] = t
    hub.tools = sorted(seen.values(), key=lambda t: t.name)
    return hub
