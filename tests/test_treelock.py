"""One run per working tree: a second in-place run is refused, in another process (the CLI
exits 2) and in this one (TreeBusy); the lock dies with its process and ends with the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from loop_helpers import make_repo

from agent.errors import ConfigError, TreeBusy
from agent.records import RunEnded, Task
from agent.settings import SafetySettings, Settings
from agent.run import RunSpec, start_run

DEAD_URL = "http://127.0.0.1:9"  # never reached: these runs stop before their first model call

HOLDER = """
import sys
from pathlib import Path
from agent.records import Task
from agent.settings import SafetySettings, Settings
from agent.run import RunSpec, start_run

tmp = Path(sys.argv[2])
settings = Settings(base_url="{url}", api_key="sk-lock-test", state_dir=tmp / "state-a",
                    cache_dir=tmp / "cache", mode="non-think", safety=SafetySettings(sandbox="off"))
run = start_run(RunSpec(task=Task(statement="hold the tree"), settings=settings, repo=Path(sys.argv[1])))
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes stdin or kills us
""".format(url=DEAD_URL)


def _settings(tmp_path: Path, name: str) -> Settings:
    return Settings(base_url=DEAD_URL, api_key="sk-lock-test", state_dir=tmp_path / name,
                    cache_dir=tmp_path / "cache", mode="non-think", max_steps=0,
                    safety=SafetySettings(sandbox="off", approval="deny"))


def _cli(repo: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # no user config of the machine's
        "TOME_STATE_DIR": str(tmp_path / "state-b"),  # another state dir than the holder's
        "TOME_CACHE_DIR": str(tmp_path / "cache"),
        "TOME_BASE_URL": DEAD_URL,
        "TOME_MODE": "non-think",
        "TOME_SAFETY_SANDBOX": "off",
        "DEEPSEEK_API_KEY": "sk-lock-test",
    }
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "solve", "fix it", "--repo", str(repo), "--json",
         "--max-steps", "0", *extra],
        env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )


def test_a_second_process_is_refused_until_the_first_dies(tmp_path: Path):
    repo = make_repo(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(repo), str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked", holder.stderr
        refused = _cli(repo, tmp_path)
        assert refused.returncode == 2, refused.stderr
        assert "another tome run is editing" in refused.stderr and "--worktree" in refused.stderr
        assert not (tmp_path / "state-b" / "runs").exists()  # refused before anything was written
        beside = _cli(repo, tmp_path, "--worktree")  # its own tree: not refused (stops at 0 steps)
        assert beside.returncode == 3, beside.stderr
        # a subdirectory is the same working tree
        sub = _cli(repo / "tests", tmp_path)
        assert sub.returncode == 2 and "--worktree" in sub.stderr
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: the kernel drops the flock with the process
        holder.wait(timeout=60)
    after = _cli(repo, tmp_path)
    assert after.returncode == 3, after.stderr


def test_the_python_api_raises_tree_busy_until_the_run_ends(tmp_path: Path):
    repo = make_repo(tmp_path)
    first = start_run(RunSpec(task=Task(statement="first"), settings=_settings(tmp_path, "s1"), repo=repo))
    with pytest.raises(TreeBusy, match="--worktree") as err:
        start_run(RunSpec(task=Task(statement="second"), settings=_settings(tmp_path, "s2"), repo=repo))
    assert isinstance(err.value, ConfigError)  # the CLI's exit 2
    outcome = first.agent.run()  # max_steps=0: ends at once, releasing the tree
    assert outcome.status == "limit" and isinstance(first.trajectory.events[-1], RunEnded)
    second = start_run(RunSpec(task=Task(statement="second"), settings=_settings(tmp_path, "s2"), repo=repo))
    assert second.agent.run().status == "limit"
