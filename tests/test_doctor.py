"""`tome doctor` as a real subprocess, with a temporary HOME and working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DROP = ("DEEPSEEK_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL")


def doctor(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items() if k not in DROP and not k.startswith("TOME_")}
    base.update(
        HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), PYTHONPATH=str(ROOT), COLUMNS="200", **env
    )
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "doctor", *args],
        cwd=work, env=base, capture_output=True, text=True, timeout=120,
    )


def rows(result: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    data = json.loads(result.stdout)
    assert data["ok"] is (result.returncode == 0)
    return {c["name"]: c for c in data["checks"]}


def test_without_a_key_it_fails_and_names_the_variable(tmp_path):
    result = doctor(tmp_path)
    assert result.returncode == 1, result.stderr
    assert "DEEPSEEK_API_KEY is not set" in result.stdout
    assert "export DEEPSEEK_API_KEY=" in result.stdout  # the fix
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 3}
    assert "FAIL" in lines["API key"] and "FAIL" in lines["endpoint"]
    assert " ok " in lines["settings"] and " ok " in lines["tokenizer"]


def test_with_a_key_and_the_scripted_endpoint_every_row_passes(tmp_path, scripted):
    key = "sk-doctor-secret-42"
    server = scripted([], api_key=key)
    env = {"DEEPSEEK_API_KEY": key, "TOME_BASE_URL": server.base_url}
    result = doctor(tmp_path, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout and "tome doctor" in result.stdout
    assert key not in result.stdout + result.stderr
    as_json = doctor(tmp_path, "--json", **env)
    checks = rows(as_json)
    assert as_json.returncode == 0 and all(c["ok"] for c in checks.values())
    assert server.base_url in checks["endpoint"]["detail"]
    assert key not in as_json.stdout + as_json.stderr
    assert [r.path for r in server.requests] == ["/v1/models"] * 2
    server.assert_done()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["wrong key", "nothing listening"])
def test_an_unusable_endpoint_is_a_failing_row_with_a_fix(tmp_path, scripted, case):
    key = "sk-doctor-wrong-7"
    url = scripted([], api_key="sk-other").base_url if case == "wrong key" else "http://127.0.0.1:9/v1"
    result = doctor(tmp_path, "--json", "--timeout", "3", DEEPSEEK_API_KEY=key, TOME_BASE_URL=url)
    assert result.returncode == 1
    endpoint = rows(result)["endpoint"]
    assert not endpoint["ok"] and "TOME_BASE_URL" in endpoint["fix"]
    assert ("AuthError" if case == "wrong key" else "ServerError") in endpoint["detail"]
    assert key not in result.stdout + result.stderr


def test_a_planted_endpoint_is_ignored_and_each_setting_shows_its_source(tmp_path, scripted):
    key = "sk-doctor-secret-43"
    server, stranger = scripted([], api_key=key), scripted([])
    user = tmp_path / "home" / ".config" / "tome" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text(f'base_url = "{server.base_url}"\nmax_cost = 2.0\n')
    planted = tmp_path / "work" / "tome.toml"
    planted.parent.mkdir(parents=True)
    planted.write_text(f'base_url = "{stranger.base_url}"\nmode = "high"\n[safety]\nsandbox = "require"\n')
    result = doctor(tmp_path, "--json", DEEPSEEK_API_KEY=key, TOME_MAX_STEPS="7")
    checks = rows(result)
    assert result.returncode == 0, result.stdout + result.stderr
    assert stranger.requests == [] and [r.path for r in server.requests] == ["/v1/models"]
    assert server.base_url in checks["endpoint"]["detail"]
    assert f"{planted}: ignored base_url: a project file may not choose endpoints" in checks["settings"]["detail"]
    assert checks["settings sources"]["detail"] == (
        f"{user}: base_url, max_cost; {planted}: mode, safety.sandbox; environment: max_steps"
    )
    assert key not in result.stdout + result.stderr
