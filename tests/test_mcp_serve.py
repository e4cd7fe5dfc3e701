"""`tome mcp serve` driven by the official SDK's client, over stdio and streamable HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from test_cli_solve import env_for, tome
from test_mcp import free_port


def serve_env(tmp_path: Path) -> dict[str, str]:
    env = env_for(tmp_path)
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    return env


async def session(target, calls):
    async with Client(target, read_timeout_seconds=120) as client:
        listed = await client.list_tools()
        results = [await client.call_tool(name, args) for name, args in calls]
        return sorted(t.name for t in listed.tools), results


def text(result) -> str:
    return "\n".join(b.text for b in result.content if b.type == "text")


def calls_for(repo: Path) -> list:
    return [("pack", {"path": str(repo), "task": "median is wrong for even counts", "budget": 5000}),
            ("pack", {"path": str(repo), "output": "manifest"}),
            ("count_tokens", {"text": "def hello():\n    return 'world'\n"}),
            ("count_tokens", {"path": str(repo / "stats.py"), "model": "deepseek-v4-flash"}),
            ("pack", {"path": str(repo / "nowhere")}),
            ("count_tokens", {})]


def check(repo: Path, tmp_path: Path, names, results) -> None:
    from agent.tokens import get_tokenizer

    assert names == ["count_tokens", "pack"]
    doc, man, counted, counted_file, missing, neither = results
    out = tmp_path / "pack.xml"
    cli = tome(["pack", str(repo), "--task", "median is wrong for even counts", "--budget", "5000", "-o", str(out)],
               env=serve_env(tmp_path), cwd=repo)
    assert cli.returncode == 0, cli.stderr
    assert text(doc) == out.read_text() and "def median" in text(doc)
    manifest = json.loads(text(man))
    assert {i["path"] for i in manifest["items"]} >= {"stats.py", "tests/test_stats.py"} and "document" not in manifest
    tok = get_tokenizer("deepseek-v4")
    assert json.loads(text(counted))["tokens"] == tok.count("def hello():\n    return 'world'\n")
    assert json.loads(text(counted_file))["tokens"] == tok.count((repo / "stats.py").read_text())
    assert missing.is_error and "no such directory" in text(missing)
    assert neither.is_error and "exactly one of text or path" in text(neither)


def test_stdio_serve_packs_like_tome_pack(repo, tmp_path):
    params = StdioServerParameters(command=sys.executable, args=["-m", "agent.cli", "mcp", "serve"],
                                   env=serve_env(tmp_path), cwd=repo)
    names, results = asyncio.run(session(params, calls_for(repo)))
    check(repo, tmp_path, names, results)


@pytest.fixture
def served(tmp_path) -> str:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "mcp", "serve", "--http", str(port)],
                            env=serve_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import socket

    deadline = time.monotonic() + 90  # readiness wait, not an assertion on speed
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"tome mcp serve --http did not start: {proc.stderr.read().decode()}")
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    proc.wait(10)


def test_http_serve_packs_like_tome_pack_on_loopback(repo, tmp_path, served):
    names, results = asyncio.run(session(served, calls_for(repo)))
    check(repo, tmp_path, names, results)
