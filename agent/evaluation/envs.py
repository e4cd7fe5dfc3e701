"""Environments cached per (repo, version): a venv under a cache dir, built once and reused.

Each environment has its own checkout at the setup commit (what `pip install -e .` binds to);
a task's worktree is put first on PYTHONPATH so its tests import the task's code. Specs whose
tasks must build in their own checkout (`task_install`) lock the environment for the task.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from agent.errors import TomeError
from agent.evaluation.envspecs import EnvSpec
from agent.evaluation.workspace import Checkout, checkout, file_lock

__all__ = ["EnvError", "Environment", "ensure_env", "env_key", "restore_missing", "run_logged"]


class EnvError(TomeError):
    """An environment could not be built; the message names the failing command and its log."""


class Environment(BaseModel):
    """A ready environment: which python to run and where its files are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    python: str
    bin_dir: Path | None = None
    root: Path | None = None
    setup_time: float = 0.0
    built_now: bool = False

    def env_vars(self, spec: EnvSpec, checkout_dir: Path, *, ccache_dir: Path | None = None) -> dict[str, str]:
        """Process environment for commands in `checkout_dir`: venv first on PATH, code on PYTHONPATH."""
        env = dict(os.environ)
        for k in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTEST_ADDOPTS"):
            env.pop(k, None)
        if self.bin_dir is not None:
            env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
            env["VIRTUAL_ENV"] = str(self.bin_dir.parent)
        env["PYTHONPATH"] = os.pathsep.join(str((checkout_dir / p).resolve()) for p in spec.pythonpath)
        env.update(spec.test_env)
        if spec.ccache and ccache_dir is not None and shutil.which("ccache"):
            # paths relative to the checkout, so the same sources hit the cache from any worktree
            env.update(CC="ccache gcc", CXX="ccache g++", CCACHE_DIR=str(ccache_dir),
                       CCACHE_BASEDIR=str(checkout_dir.resolve()), CCACHE_NOHASHDIR="1")
        return env


def env_key(repo: str, version: str) -> str:
    """Directory-safe key of (repo, version)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{repo.replace('/', '__')}-{version or 'any'}")


def run_logged(cmd: str | list[str], *, cwd: Path, env: dict[str, str], log: Path,
               timeout: float | None = None) -> int:
    """Run a command, appending its output to `log`; return the exit code (124 on timeout)."""
    argv = shlex.split(cmd) if isinstance(cmd, str) else cmd
    with log.open("a", encoding="utf-8", errors="replace") as fh:
        fh.write(f"$ {shlex.join(argv)}\n")
        fh.flush()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            fh.write(f"\n[tome] timed out after {timeout}s\n")
            return 124
        except BaseException:
            _kill_group(proc)
            raise
        fh.write(f"[exit {code}]\n")
        return code


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # tests spawn their own children: end the whole session, not just the runner
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def restore_missing(co: Checkout, steps: list[str], *, env: dict[str, str], log: Path) -> None:
    """Run the spec's restore steps for files the cache lacks; EnvError naming any still missing."""
    if not co.missing:
        return
    for step in steps:
        run_logged(step, cwd=co.path, env=env, log=log)
    absent = [p for p in co.missing if not (co.path / p).exists()]
    if absent:
        raise EnvError(f"the repository cache lacks {absent[0]}"
                       f"{f' (and {len(absent) - 1} more: {absent[1:4]})' if len(absent) > 1 else ''} at "
                       f"{co.commit[:12]}, no remote supplied it and no restore step of the spec does; "
                       "fetch the full repository or add a restore step")


def _tail(log: Path, n: int = 15) -> str:
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-n:])


def _install_requirements(env: Environment, spec: EnvSpec, src: Path, vars_: dict[str, str], log: Path) -> None:
    pip = [env.python, "-m", "pip", "install", "--no-build-isolation"]
    for req in spec.requirements:
        path = src / req
        if not path.is_file():
            continue
        if run_logged([*pip, "-r", str(path)], cwd=src, env=vars_, log=log) == 0:
            continue
        for line in path.read_text().splitlines():  # best effort: whatever installs, installs
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                run_logged([*pip, line], cwd=src, env=vars_, log=log)


def ensure_env(spec: EnvSpec, key: str, *, cache_dir: Path, git_dir: Path, setup_commit: str) -> Environment:
    """The environment for `key`, built under `cache_dir/key` the first time (one builder at a time)."""
    if spec.use_current_interpreter:
        return Environment(key=key, python=sys.executable)
    root = cache_dir / key
    marker = root / "ready.json"
    with file_lock(cache_dir / f"{key}.lock"):
        if marker.is_file():
            info = json.loads(marker.read_text())
            if info.get("digest") == spec.digest():
                return Environment(key=key, python=str(root / "venv" / "bin" / "python"),
                                   bin_dir=root / "venv" / "bin", root=root,
                                   setup_time=info.get("setup_time", 0.0))
        t0 = time.monotonic()
        root.mkdir(parents=True, exist_ok=True)
        log = root / "setup.log"
        log.write_text("")
        co = checkout(git_dir, setup_commit, root / "src")
        src = co.path
        venv = root / "venv"
        flags = ["--system-site-packages"] if spec.system_site_packages else []
        if run_logged([sys.executable, "-m", "venv", "--clear", *flags, str(venv)], cwd=root,
                      env=dict(os.environ), log=log):
            raise EnvError(f"{key}: python -m venv failed; see {log}")
        env = Environment(key=key, python=str(venv / "bin" / "python"), bin_dir=venv / "bin", root=root)
        vars_ = env.env_vars(spec, src)
        vars_.pop("PYTHONPATH", None)
        if spec.pins:
            pins = [env.python, "-m", "pip", "install", "--no-input", *spec.pins]
            if run_logged(pins, cwd=src, env=vars_, log=log):
                raise EnvError(f"{key}: `{shlex.join(pins)}` failed; see {log}\n{_tail(log)}")
        restore_missing(co, spec.restore, env=vars_, log=log)
        for step in spec.install:
            if run_logged(step, cwd=src, env=vars_, log=log):
                raise EnvError(f"{key}: `{step if isinstance(step, str) else shlex.join(step)}` "
                               f"failed; see {log}\n{_tail(log)}")
        _install_requirements(env, spec, src, vars_, log)
        setup_time = time.monotonic() - t0
        marker.write_text(json.dumps({"digest": spec.digest(), "setup_time": setup_time,
                                      "commit": setup_commit}))
        return env.model_copy(update={"setup_time": setup_time, "built_now": True})

