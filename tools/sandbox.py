"""An optional OS sandbox for shell commands, built on bubblewrap (`bwrap`).

Inside: the root file system read-only, the workspace writable but its `.git` read-only, a private
`/tmp`, a private PID namespace (so every process dies with the command), no capabilities, and no
network unless `settings.safety.network` is on. bwrap is a Debian package (`bubblewrap`); when it
is missing or the kernel refuses namespaces, `sandbox = "auto"` runs unsandboxed with a note and
`sandbox = "require"` refuses to run.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

__all__ = ["UNSANDBOXED_NOTE", "SandboxPlan", "bwrap_problem", "plan_sandbox", "wrap_argv"]

UNSANDBOXED_NOTE = (
    "note: the shell runs unsandboxed (bubblewrap is not available: {why}); "
    "commands can write anywhere this user can and reach the network"
)


class SandboxPlan(BaseModel):
    """How one shell command will run: under bwrap (with its path) or not, and why."""

    bwrap: str | None = None
    network: bool = False
    note: str | None = None
    error: str | None = None


@functools.lru_cache(maxsize=8)
def bwrap_problem(bwrap: str) -> str | None:
    """None when `bwrap` can create the namespaces we need here, else what went wrong."""
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid",
            "--unshare-net", "--cap-drop", "ALL", "--die-with-parent", "--", "true"]  # fmt: skip
    try:
        p = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{bwrap} could not run: {e}"
    if p.returncode != 0:
        msg = p.stderr.decode(errors="replace").strip().splitlines()
        return f"{bwrap} cannot create namespaces here: {msg[-1] if msg else 'exit ' + str(p.returncode)}"
    return None


def plan_sandbox(mode: Literal["require", "auto", "off"], *, network: bool) -> SandboxPlan:
    """Decide how to run: bwrap when wanted and usable, else a note (auto) or an error (require)."""
    if mode == "off":
        return SandboxPlan(network=True)
    path = shutil.which("bwrap")
    why = (
        "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
        if path is None
        else bwrap_problem(path)
    )
    if why is None:
        reach = "network allowed" if network else "no network"
        note = (
            f"note: the shell runs in a sandbox ({reach}; only the workspace and a private /tmp "
            "are writable; .git is read-only)"
        )
        return SandboxPlan(bwrap=path, network=network, note=note)
    if mode == "require":
        return SandboxPlan(
            error=f"the shell is disabled: settings.safety.sandbox is 'require' but {why}"
        )
    return SandboxPlan(network=True, note=UNSANDBOXED_NOTE.format(why=why))


def wrap_argv(argv: list[str], *, bwrap: str, workspace: Path, network: bool) -> list[str]:
    """`argv` run under bwrap with the workspace writable and everything else read-only."""
    ws = str(workspace)
    out = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
           "--bind", ws, ws]  # fmt: skip
    git = workspace / ".git"
    if git.exists():
        out += ["--ro-bind", str(git), str(git)]
    out += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--cap-drop", "ALL", "--die-with-parent", "--chdir", ws]  # fmt: skip
    if not network:
        out.append("--unshare-net")
    return [*out, "--", *argv]
