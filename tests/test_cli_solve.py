"""`tome solve` / `resume` / `demo` as real subprocesses against the scripted server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.testing.server import ScriptedToolCall, Turn
from loop_helpers import FIX_NEW, FIX_OLD, PLAN, TEST_CMD, fixing_turns

KEY = "sk-cli-test-key-0000"


def env_for(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOME_", "DEEPSEEK_", "OPENAI_"))}
    env.update({
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config"),
        "DEEPSEEK_API_KEY": KEY,
        "TOME_STATE_DIR": str(tmp_path / "state"),
        "TOME_CACHE_DIR": str(tmp_path / "cache"),
        "TOME_SAFETY_SANDBOX": "off",
        "TOME_MAX_RETRIES": "1",
        "TOME_RETRY_CAP": "0.1",
    })
    return env


def tome(args: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def lines_of(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def solve_args(server: Any, repo: Path, *extra: str) -> list[str]:
    return ["solve", "median is wrong for even counts", "--repo", str(repo), "--base-url", server.base_url,
            "--mode", "non-think", "--json", *extra]


def call(name: str, **arguments: Any) -> ScriptedToolCall:
    return ScriptedToolCall(name=name, arguments=arguments)


def test_json_stream_schema_and_exit_0(scripted, repo, tmp_path):
    server = scripted(fixing_turns())
    proc = tome([*solve_args(server, repo), "--test-command", TEST_CMD], env=env_for(tmp_path), cwd=repo)
    assert proc.returncode == 0, proc.stderr
    out = lines_of(proc.stdout)
    events, final = out[:-1], out[-1]
    assert all(set(e) == {"event"} for e in events)
    types = [e["event"]["type"] for e in events]
    assert types[0] == "run_started" and types[-1] == "run_ended" and "check" in types
    result = final["result"]
    for key in ("run_id", "status", "exit_code", "patch", "check", "plan", "modes", "cost", "usage",
                "cache_hit_ratio", "trajectory"):
        assert key in result
    assert result["status"] == "solved" and result["check"]["passed"] and "+    return (ordered[mid - 1] + ordered[mid]) / 2" in result["patch"]
    assert "\x1b[" not in proc.stdout  # no colour in --json
    assert KEY not in proc.stdout + proc.stderr + Path(result["trajectory"]).read_text()


@pytest.mark.parametrize(
    ("turns", "extra", "code", "status"),
    [
        # submitted twice without any test run: accepted unchecked
        ([Turn(content=PLAN, tool_calls=[call("submit", summary="s")]),
          Turn(tool_calls=[call("submit", summary="s")])], [], 1, "unchecked"),
        ([Turn(content=PLAN, tool_calls=[call("view", path="stats.py")])] , ["--max-steps", "1"], 3, "limit"),
    ],
)
def test_exit_codes_for_unchecked_and_limit(scripted, repo, tmp_path, turns, extra, code, status):
    server = scripted(turns)
    proc = tome([*solve_args(server, repo), *extra], env=env_for(tmp_path), cwd=repo)
    assert proc.returncode == code, proc.stderr
    assert lines_of(proc.stdout)[-1]["result"]["status"] == status
    server.assert_done()


def test_exit_2_for_usage_errors(tmp_path):
    proc = tome(["solve", "--json"], env=env_for(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "give a task" in proc.stderr
    proc = tome(["solve", "x", "--repo", str(tmp_path / "nope"), "--json"], env=env_for(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_exit_4_for_model_errors(scripted, repo, tmp_path):
    from agent.testing.server import Fault

    server = scripted([Turn(content="never", faults=[Fault(kind="status", status=402, message="Insufficient Balance")])])
    proc = tome(solve_args(server, repo), env=env_for(tmp_path), cwd=repo)
    assert proc.returncode == 4, proc.stderr
    result = lines_of(proc.stdout)[-1]["result"]
    assert result["status"] == "error" and "balance" in result["reason"].lower()


@pytest.mark.slow
def test_killed_run_resumes_with_the_tool_marked_interrupted(scripted, repo, tmp_path):
    turns = [
        Turn(content=PLAN, tool_calls=[call("bash", command="sleep 60", timeout=120)]),
        Turn(tool_calls=[call("str_replace", path="stats.py", old_str=FIX_OLD, new_str=FIX_NEW)]),
        Turn(tool_calls=[call("run_tests", command=TEST_CMD)]),
        Turn(tool_calls=[call("submit", summary="fixed")]),
    ]
    server = scripted(turns)
    env = env_for(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", *solve_args(server, repo)], env=env, cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    runs = tmp_path / "state" / "runs"
    deadline = time.monotonic() + 60
    trajectory = None
    while time.monotonic() < deadline:
        found = list(runs.glob("*/trajectory.jsonl")) if runs.exists() else []
        if found and '"tool_started"' in found[0].read_text():
            trajectory = found[0]
            break
        time.sleep(0.1)
    assert trajectory is not None, "the run never started its tool"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert '"run_ended"' not in trajectory.read_text()
    resumed = tome(["resume", trajectory.parent.name, "--json"], env=env, cwd=repo)
    assert resumed.returncode == 0, resumed.stderr
    out = lines_of(resumed.stdout)
    marked = [e["event"] for e in out[:-1] if e["event"]["type"] == "tool" and e["event"]["name"] == "bash"]
    assert len(marked) == 1 and marked[0]["content"].startswith("[interrupted")
    assert out[-1]["result"]["status"] == "solved"
    server.assert_done()


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    proc = tome(["demo", "--json"], env=env_for(tmp_path), cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr
    out = lines_of(proc.stdout)
    result = out[-1]["result"]
    assert result["status"] == "solved" and result["check"]["passed"]
    assert "(ordered[mid - 1] + ordered[mid]) / 2" in result["patch"]
    assert result["plan"].startswith("Goal:")
    hits = [e["event"]["response"]["usage"] for e in out[:-1] if e["event"]["type"] == "model"]
    assert len(hits) == 5 and all(u["cache_hit_tokens"] > 0 for u in hits[1:])
