"""The contract CI bots rely on: every exit code, with and without --json, and a JSON result object
as the last line of every --json run, whatever ended it. Real subprocesses, real scripted server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.testing.server import Fault, Turn
from loop_helpers import PLAN, TEST_CMD, call, fixing_turns
from test_cli_solve import KEY, env_for, lines_of, solve_args, tome


def _last_result(stdout: str) -> dict[str, Any]:
    last = stdout.strip().splitlines()[-1]
    payload = json.loads(last)
    assert set(payload) == {"result"}, last
    return payload["result"]


def _colours(text: str) -> list[str]:
    """SGR colour parameters (30-38, 40-48, 90-97, 100-107) in `text`."""
    found = []
    for params in re.findall(r"\x1b\[([0-9;]*)m", text):
        for p in filter(None, params.split(";")):
            if 30 <= int(p) <= 38 or 40 <= int(p) <= 48 or 90 <= int(p) <= 107:
                found.append(p)
    return found


def _no_key(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "DEEPSEEK_API_KEY"}


# (name, turns for the server, extra args, env change, exit code)
CASES = [
    ("solved", fixing_turns(), ["--test-command", TEST_CMD], None, 0),
    ("unchecked", [Turn(content=PLAN, tool_calls=[call("submit", summary="s")]),
                   Turn(tool_calls=[call("submit", summary="s")])], [], None, 1),
    ("bad option", None, ["--max-cost", "nan"], None, 2),
    ("negative limit", None, ["--max-time", "-5"], None, 2),
    ("missing key", None, [], _no_key, 2),
    ("limit", [Turn(content=PLAN, tool_calls=[call("view", path="stats.py")])], ["--max-steps", "1"], None, 3),
    ("model error", [Turn(content="x", faults=[Fault(kind="status", status=500)] * 3)], [], None, 4),
]


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
@pytest.mark.parametrize(("name", "turns", "extra", "env_change", "code"), CASES, ids=[c[0] for c in CASES])
def test_every_exit_code(scripted, repo, tmp_path, name, turns, extra, env_change, code, as_json):
    server = scripted(turns or [])
    env = env_for(tmp_path)
    env = env_change(env) if env_change else env
    args = solve_args(server, repo, *extra)
    if not as_json:
        args.remove("--json")
    proc = tome(args, env=env, cwd=repo)
    assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-2000:]
    if as_json:
        result = _last_result(proc.stdout)
        assert result["exit_code"] == code
        if code == 2:
            assert result["status"] == "error" and result["reason"]
    else:
        assert not proc.stdout.strip().startswith("{")
    if code == 2:
        # checked before anything was packed or written, and before any request
        assert not server.chat_requests
        assert not (tmp_path / "state" / "runs").exists()
    assert KEY not in proc.stdout + proc.stderr


def test_missing_key_is_reported_before_the_pack(repo, tmp_path):
    """The key check comes first: no 'packing' stage line, no run directory, exit 2."""
    proc = tome(["solve", "x", "--repo", str(repo), "--mode", "non-think"], env=_no_key(env_for(tmp_path)), cwd=repo)
    assert proc.returncode == 2
    assert "DEEPSEEK_API_KEY" in proc.stderr and "packing" not in proc.stderr


def test_resume_of_a_finished_run_calls_no_model(scripted, repo, tmp_path):
    server = scripted(fixing_turns())
    env = env_for(tmp_path)
    first = tome([*solve_args(server, repo), "--test-command", TEST_CMD], env=env, cwd=repo)
    assert first.returncode == 0, first.stderr
    calls = len(server.chat_requests)
    run_id = _last_result(first.stdout)["run_id"]
    again = tome(["resume", run_id, "--json"], env=env, cwd=repo)
    assert again.returncode == 0, again.stderr
    result = _last_result(again.stdout)
    assert result["status"] == "solved" and result["run_id"] == run_id and result["check"]["passed"]
    assert len(server.chat_requests) == calls  # no sixth call
    trajectory = Path(result["trajectory"]).read_text().splitlines()
    assert sum('"run_ended"' in line for line in trajectory) == 1
    # and without a key: reporting a finished run needs none
    last = tome(["resume", "--last", "--json"], env=_no_key(env), cwd=repo)
    assert last.returncode == 0 and _last_result(last.stdout)["run_id"] == run_id


def test_task_from_stdin_and_outputs_to_files(scripted, repo, tmp_path):
    server = scripted(fixing_turns())
    patch_out, message_out = tmp_path / "fix.patch", tmp_path / "last.txt"
    args = ["solve", "-", "--repo", str(repo), "--base-url", server.base_url, "--mode", "non-think", "--json",
            "--test-command", TEST_CMD, "--patch-out", str(patch_out), "--output-last-message", str(message_out)]
    proc = subprocess.run([sys.executable, "-m", "agent.cli", *args], env=env_for(tmp_path), cwd=repo,
                          input="median is wrong for even counts\n", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    started = lines_of(proc.stdout)[0]["event"]
    assert started["task"]["statement"].strip() == "median is wrong for even counts"
    result = _last_result(proc.stdout)
    assert patch_out.read_text() == result["patch"] and "ordered[mid - 1]" in result["patch"]
    assert message_out.read_text().strip() == "median averages the middle two"


def test_dry_run_shows_the_first_request_and_sends_nothing(scripted, repo, tmp_path):
    server = scripted([])
    proc = tome(["solve", "fix median", "--repo", str(repo), "--base-url", server.base_url, "--dry-run",
                 "--json"], env=env_for(tmp_path), cwd=repo)
    assert proc.returncode == 0, proc.stderr
    report = _last_result(proc.stdout)
    # mode auto: the first request is the triage turn (agent.triage), the prefix plus its question
    assert [c["name"] for c in report["chunks"]] == ["system", "tools", "pack", "task", "triage request"]
    assert report["triage"] is True
    assert all(c["tokens"] > 0 for c in report["chunks"])
    assert {"view", "str_replace", "run_tests", "submit"} <= set(report["tools"])
    assert report["mode"] and report["mode_reason"]
    assert not server.requests and not (tmp_path / "state" / "runs").exists()
    text = tome(["solve", "fix median", "--repo", str(repo), "--base-url", server.base_url, "--dry-run"],
                env=env_for(tmp_path), cwd=repo)
    assert text.returncode == 0 and "pack" in text.stdout and "not sent" in text.stdout


def test_runs_lists_and_cleans(scripted, repo, tmp_path):
    server = scripted(fixing_turns())
    env = env_for(tmp_path)
    assert tome([*solve_args(server, repo), "--test-command", TEST_CMD], env=env, cwd=repo).returncode == 0
    listed = tome(["runs", "--json"], env=env, cwd=repo)
    rows = lines_of(listed.stdout)
    assert listed.returncode == 0 and rows[-1]["result"]["total"] == 1
    assert rows[0]["status"] == "solved" and rows[0]["repo"] == str(repo) and rows[0]["steps"] == 4
    table = tome(["runs", "--no-color"], env=env, cwd=repo)
    assert rows[0]["run_id"] in table.stdout and "\x1b[" not in table.stdout
    kept = tome(["runs", "clean", "--older-than", "30d", "--json"], env=env, cwd=repo)
    assert _last_result(kept.stdout)["removed"] == []
    gone = tome(["runs", "clean", "--older-than", "0s", "--json"], env=env, cwd=repo)
    assert _last_result(gone.stdout)["removed"] == [rows[0]["run_id"]]
    assert not any((tmp_path / "state" / "runs").iterdir())
    bad = tome(["runs", "clean", "--older-than", "soon", "--json"], env=env, cwd=repo)
    assert bad.returncode == 2 and _last_result(bad.stdout)["exit_code"] == 2


def test_a_closed_pipe_is_no_traceback(tmp_path):
    """`tome runs --json | head -1`: the reader leaves early; tome exits without a BrokenPipeError trace."""
    runs = tmp_path / "state" / "runs"
    for i in range(1500):  # more output than a pipe buffers (64 KiB), so a write meets the closed end
        (runs / f"run-{i:04d}").mkdir(parents=True)
        (runs / f"run-{i:04d}" / "trajectory.jsonl").write_text(json.dumps(
            {"type": "run_started", "run_id": f"run-{i:04d}", "t": 1e9 + i, "repo": "/r" * 20, "model": "m"}) + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "runs", "--json", "--limit", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for(tmp_path))
    proc.stdout.close()  # the reader is gone before tome writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_help_lists_exit_codes_environment_and_config(tmp_path):
    out = tome(["solve", "--help"], env=env_for(tmp_path), cwd=tmp_path).stdout
    for needle in ("exit codes:", "141", "DEEPSEEK_API_KEY", "NO_COLOR", "config.toml", "--dry-run", "--yes"):
        assert needle in out, needle


def test_eval_of_a_broken_tasks_file_names_the_line(tmp_path):
    tasks = tmp_path / "bad.jsonl"
    tasks.write_text('{"instance_id": "a__b-1", "repo": "a/b", "base_commit": "0"}\n{not json\n')
    proc = tome(["eval", str(tasks), "--model", "empty", "--json"], env=env_for(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "bad.jsonl:2" in proc.stderr
    assert _last_result(proc.stdout)["exit_code"] == 2


def test_no_color_is_honoured(scripted, repo, tmp_path):
    server = scripted(fixing_turns())
    env = {**env_for(tmp_path), "NO_COLOR": "1", "FORCE_COLOR": "1", "TERM": "xterm-256color"}
    args = solve_args(server, repo, "--test-command", TEST_CMD)
    args.remove("--json")
    proc = tome(args, env=env, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert not _colours(proc.stdout + proc.stderr)  # styles such as bold may remain, colours not
