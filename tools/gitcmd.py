"""One way to run git, for every caller: the tools, runs, the demo and the evaluation harness.

git never prompts (GIT_TERMINAL_PROMPT=0: a lazy fetch from a promisor remote fails instead of
waiting for a password), and a caller working in a clone it did not make (the harness) turns the
clone's own hooks off (`hooks=False`, core.hooksPath=/dev/null); in the user's own repository the
user's hooks run as git would run them (git-lfs, for one, checks files out through a hook).
Both switches are git's own: GIT_TERMINAL_PROMPT in git(1) ENVIRONMENT, core.hooksPath in
git-config(1) and githooks(5).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["git"]


def git(*args: str, cwd: Path | None = None, git_dir: Path | None = None, input: str | bytes | None = None,
        check: bool = True, timeout: float = 600, text: bool = True, hooks: bool = True,
        env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[Any]:
    """Run `git ARGS` with its output captured; CalledProcessError (with stderr) when `check` and it fails."""
    cmd = ["git", "-c", "advice.detachedHead=false"]
    if not hooks:
        cmd += ["-c", "core.hooksPath=/dev/null"]
    if git_dir is not None:
        cmd += ["--git-dir", str(git_dir)]
    environ = {**(os.environ if env is None else env), "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(
        [*cmd, *args], cwd=cwd, input=input, capture_output=True, text=text, check=check, timeout=timeout,
        env=environ, stdin=subprocess.DEVNULL if input is None else None,
    )
