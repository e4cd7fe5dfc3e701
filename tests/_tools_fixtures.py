"""Shared helpers for the tools tests: a workspace with a context, and a whole-tree digest."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from tools.base import Toolbox, ToolContext
from tools.workspace import Workspace


def tree_digest(root: Path) -> str:
    """Hash of every path, mode, symlink target and file content under `root` (.git included)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            h.update(str(p.relative_to(root)).encode() + b"\0" + oct(st.st_mode).encode())
            if p.is_symlink():
                h.update(os.readlink(p).encode())
            elif p.is_file():
                h.update(p.read_bytes())
    return h.hexdigest()


def make_ctx(root: Path, state: Path) -> ToolContext:
    """A context over `root`, spilling into `state`."""
    return ToolContext(workspace=Workspace(root), state_dir=state)


def make_box(root: Path, state: Path, tools, **kw) -> Toolbox:
    """A Toolbox over `root` with the given tools."""
    return Toolbox(list(tools), make_ctx(root, state), **kw)


def git(root: Path, *args: str) -> str:
    """Run git in `root` with a fixed identity; returns stdout."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(root),
    }
    return subprocess.run(
        ["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True
    ).stdout
