"""Item 5 of issue 12: a run without a usable sandbox fails closed when headless and asks once
when interactive; only the user opts out. bwrap's absence is a real setting (`safety.bwrap`
naming a program that does not exist), so these run the same with bubblewrap installed or not."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ConfigError
from agent.records import Task, ToolFinished
from agent.settings import SafetySettings, load_settings
from agent.run import RunSpec, finish_run, start_run
from agent.testing.server import ScriptedToolCall, Turn
from loop_helpers import PLAN, settings_for
from tools.sandbox import bwrap_problem, plan_sandbox

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-sandbox-test-key-0000"


def _bwrap_skip() -> str | None:
    path = shutil.which("bwrap")
    return "bubblewrap (bwrap) is not installed" if path is None else bwrap_problem(path)


needs_bwrap = pytest.mark.skipif(_bwrap_skip() is not None, reason=f"sandbox not testable: {_bwrap_skip()}")


def missing_bwrap(tmp_path: Path) -> str:
    return str(tmp_path / "no-such-dir" / "bwrap")


def two_commands_then_submit() -> list[Turn]:
    def call(name: str, **arguments: Any) -> ScriptedToolCall:
        return ScriptedToolCall(name=name, arguments=arguments)

    return [
        Turn(content=PLAN, tool_calls=[call("bash", command="echo first-command")]),
        Turn(tool_calls=[call("bash", command="echo second-command")]),
        Turn(tool_calls=[call("submit", summary="s")]),
        Turn(tool_calls=[call("submit", summary="s")]),  # submitted twice without tests: unchecked
    ]


@pytest.mark.parametrize("mode", ["auto", "require"])
def test_plan_without_bwrap_refuses_headless_with_the_remedy(tmp_path: Path, mode: str) -> None:
    plan = plan_sandbox(SafetySettings(sandbox=mode, bwrap=missing_bwrap(tmp_path)), interactive=False)
    assert plan.bwrap is None and plan.ask is None and plan.error is not None
    assert "apt-get install bubblewrap" in plan.error
    assert "--sandbox off" in plan.error and '[safety] sandbox = "off"' in plan.error
    assert "is not installed" in (plan.unavailable or "")


def test_plan_without_bwrap_asks_when_interactive_and_off_never_wraps(tmp_path: Path) -> None:
    asks = plan_sandbox(SafetySettings(bwrap=missing_bwrap(tmp_path)), interactive=True)
    assert asks.error is None and asks.bwrap is None and "unsandboxed for this session?" in (asks.ask or "")
    required = plan_sandbox(SafetySettings(sandbox="require", bwrap=missing_bwrap(tmp_path)), interactive=True)
    assert required.error is not None and required.ask is None  # 'require' is never asked away
    off = plan_sandbox(SafetySettings(sandbox="off"), interactive=False)
    assert off.bwrap is None and off.error is None and off.ask is None


@needs_bwrap
@pytest.mark.parametrize("interactive", [False, True])
def test_plan_with_real_bwrap_sandboxes_headless_and_interactive(interactive: bool) -> None:
    plan = plan_sandbox(SafetySettings(), interactive=interactive)
    assert plan.bwrap == shutil.which("bwrap") and plan.error is None and plan.ask is None


def test_headless_run_without_bwrap_refuses_before_packing_or_sending(scripted, model_for, repo, tmp_path):
    server = scripted(two_commands_then_submit())
    settings = settings_for(server, tmp_path, safety=SafetySettings(bwrap=missing_bwrap(tmp_path)))
    with pytest.raises(ConfigError, match="headless run does not start without a sandbox") as err:
        start_run(RunSpec(task=Task(statement="median is wrong"), settings=settings, repo=repo,
                              model=model_for(server)))
    assert "apt-get install bubblewrap" in str(err.value) and "--sandbox off" in str(err.value)
    assert server.requests == [] and not (tmp_path / "state" / "runs").exists()


@needs_bwrap
def test_headless_run_with_real_bwrap_starts_and_the_shell_is_sandboxed(scripted, model_for, repo, tmp_path):
    server = scripted(two_commands_then_submit())
    settings = settings_for(server, tmp_path, safety=SafetySettings(approval="deny"))
    run = start_run(RunSpec(task=Task(statement="median is wrong"), settings=settings, repo=repo,
                              model=model_for(server)))
    result = finish_run(run, run.agent.run())
    server.assert_done()
    first = next(e for e in run.trajectory.events if isinstance(e, ToolFinished))
    assert "first-command" in first.content and "runs in a sandbox" in first.content
    assert result.status == "unchecked"


@pytest.mark.parametrize("answer", [True, False])
def test_interactive_run_without_bwrap_asks_once(scripted, model_for, repo, tmp_path, answer):
    server = scripted(two_commands_then_submit())
    settings = settings_for(server, tmp_path, safety=SafetySettings(bwrap=missing_bwrap(tmp_path), approval="ask"))
    asked: list[str] = []

    def approve(question: str) -> bool:
        asked.append(question)
        return answer

    if not answer:
        with pytest.raises(ConfigError, match="running it unsandboxed was not agreed"):
            start_run(RunSpec(task=Task(statement="median is wrong"), settings=settings, repo=repo,
                              model=model_for(server), interactive=True, approve=approve))
        assert len(asked) == 1 and server.requests == []
        return
    run = start_run(RunSpec(task=Task(statement="median is wrong"), settings=settings, repo=repo,
                              model=model_for(server), interactive=True, approve=approve))
    assert len(asked) == 1 and "cannot be sandboxed" in asked[0]
    result = finish_run(run, run.agent.run())
    server.assert_done()
    outputs = [e.content for e in run.trajectory.events if isinstance(e, ToolFinished) and e.name == "bash"]
    assert "first-command" in outputs[0] and "second-command" in outputs[1]
    assert len(asked) == 1 and result.status == "unchecked"  # both commands ran on the one answer


def test_a_project_file_cannot_choose_the_bwrap_program(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "tome.toml").write_text('[safety]\nbwrap = "./evil-bwrap"\nsandbox = "off"\n')
    loaded = load_settings(project, environ={}, user_file=tmp_path / "none.toml")
    assert loaded.settings.safety.bwrap == "bwrap" and loaded.settings.safety.sandbox == "auto"
    assert any("ignored" in w and "safety.bwrap" in w for w in loaded.warnings)
    assert any("ignored safety.sandbox" in w for w in loaded.warnings)


# --------------------------------------------------------------------------------------------
# The command line: which way a headless `tome solve --json` goes
# --------------------------------------------------------------------------------------------


def cli_env(tmp_path: Path, user_config: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOME_", "DEEPSEEK_", "OPENAI_"))}
    config_home = tmp_path / "home" / ".config"
    (config_home / "tome").mkdir(parents=True, exist_ok=True)
    (config_home / "tome" / "config.toml").write_text(user_config)
    env.update({"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(config_home), "DEEPSEEK_API_KEY": KEY,
                "TOME_STATE_DIR": str(tmp_path / "state"), "TOME_CACHE_DIR": str(tmp_path / "cache"),
                "TOME_MAX_RETRIES": "1", "PYTHONPATH": str(ROOT)})
    return env


@pytest.mark.parametrize(
    ("user_safety", "project_safety", "extra", "starts"),
    [
        ("", "", [], False),
        ("", 'sandbox = "off"', [], False),  # a repository cannot opt its own commands out
        ("", "", ["--sandbox", "off"], True),
        ('sandbox = "off"', "", [], True),
    ],
    ids=["no-bwrap", "project-opt-out-ignored", "cli-opt-out", "user-config-opt-out"],
)
def test_headless_cli_fails_closed_unless_the_user_opts_out(scripted, repo, tmp_path, user_safety,
                                                            project_safety, extra, starts):
    server = scripted(two_commands_then_submit())
    env = cli_env(tmp_path, f'[safety]\nbwrap = "{missing_bwrap(tmp_path)}"\n{user_safety}\n')
    if project_safety:
        (repo / "tome.toml").write_text(f"[safety]\n{project_safety}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "solve", "median is wrong", "--repo", str(repo), "--base-url",
         server.base_url, "--mode", "non-think", "--json", *extra],
        env=env, cwd=repo, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if not starts:
        assert proc.returncode == 2, proc.stderr
        assert "apt-get install bubblewrap" in proc.stderr and "--sandbox off" in proc.stderr
        assert server.requests == []
        assert json.loads(proc.stdout.splitlines()[-1])["result"]["exit_code"] == 2  # --json: a result, always
        if project_safety:
            assert "ignored safety.sandbox" in proc.stderr
        return
    assert proc.returncode == 1, proc.stderr
    server.assert_done()
    assert json.loads(proc.stdout.splitlines()[-1])["result"]["status"] == "unchecked"


@pytest.mark.parametrize("bwrap", ["missing", pytest.param("real", marks=needs_bwrap)])
def test_doctor_says_which_way_a_run_would_go(tmp_path: Path, bwrap: str) -> None:
    setting = f'bwrap = "{missing_bwrap(tmp_path)}"' if bwrap == "missing" else ""
    env = cli_env(tmp_path, f"[safety]\n{setting}\n")
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "doctor", "--json", "--timeout", "1"],
                          env=env, cwd=work, capture_output=True, text=True, timeout=120)
    row = next(c for c in json.loads(proc.stdout)["checks"] if c["name"] == "sandbox")
    if bwrap == "missing":
        assert row["detail"].startswith("headless runs refuse to start, interactive runs ask")
        assert "apt-get install bubblewrap" in row["fix"] and "--sandbox off" in row["fix"]
    else:
        assert row["ok"] and row["detail"] == f"shell commands run under {shutil.which('bwrap')}"
