"""An OS sandbox for shell commands, built on bubblewrap (`bwrap`), and the one decision of
whether a run may use the shell without it.

Inside: the root file system read-only, the workspace writable but its `.git` read-only, a private
`/tmp`, a private PID namespace (so every process dies with the command), no capabilities, and no
network unless `settings.safety.network` is on. bwrap is a Debian package (`bubblewrap`). When it
is missing or the kernel refuses namespaces, a run fails closed: `sandbox = "require"` and headless
runs with `sandbox = "auto"` refuse to start; an interactive `auto` run asks the user once. Only
the user opts out (`--sandbox off`, or `sandbox = "off"` in user config; a project file cannot).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from agent.errors import ConfigError
from agent.settings import SafetySettings, Settings, user_config_path

__all__ = ["SandboxPlan", "bwrap_problem", "plan_sandbox", "settle_sandbox", "wrap_argv"]


class SandboxPlan(BaseModel):
    """How shell commands will run: under bwrap (with its path), unsandboxed, or not at all."""

    bwrap: str | None = None
    network: bool = False
    note: str | None = None
    error: str | None = None
    """Set when no command may run: the message says how to install bubblewrap or opt out."""
    ask: str | None = None
    """Set for an interactive run without bwrap: the question to put to the user, once."""
    unavailable: str | None = None
    """Why bwrap cannot be used here, when it was wanted and cannot."""


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


def _remedy() -> str:
    return (
        "Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap), or opt out explicitly "
        f'with --sandbox off or [safety] sandbox = "off" in {user_config_path()}'
    )


def plan_sandbox(safety: SafetySettings, *, interactive: bool) -> SandboxPlan:
    """Decide how shell commands run: bwrap when wanted and usable; else off, ask, or refuse."""
    if safety.sandbox == "off":
        return SandboxPlan(network=True)
    path = shutil.which(safety.bwrap)
    why = f"{safety.bwrap} is not installed" if path is None else bwrap_problem(path)
    if why is None:
        reach = "network allowed" if safety.network else "no network"
        note = (
            f"note: the shell runs in a sandbox ({reach}; only the workspace and a private /tmp "
            "are writable; .git is read-only)"
        )
        return SandboxPlan(bwrap=path, network=safety.network, note=note)
    if safety.sandbox == "require":
        return SandboxPlan(
            error=f"settings.safety.sandbox is 'require' but {why}. {_remedy()}.", unavailable=why
        )
    if not interactive:
        return SandboxPlan(
            error=f"a headless run does not start without a sandbox: {why}, and shell commands "
            f"would run unsandboxed, with network. {_remedy()}.",
            unavailable=why,
        )
    return SandboxPlan(
        ask=f"The shell cannot be sandboxed here ({why}): commands the agent runs could write "
        "anywhere you can and reach the network. Run them unsandboxed for this session?",
        unavailable=why,
    )


def settle_sandbox(
    settings: Settings, *, interactive: bool, confirm: Callable[[str], bool] | None
) -> Settings:
    """The run's settings with the sandbox question settled, asked at most once; else ConfigError.

    Unchanged when bwrap is usable or the user opted out; `sandbox = "off"` for this run when an
    interactive user agrees to run unsandboxed."""
    plan = plan_sandbox(settings.safety, interactive=interactive)
    if plan.error is not None:
        raise ConfigError(plan.error)
    if plan.ask is None:
        return settings
    if confirm is None or not confirm(plan.ask):
        raise ConfigError(f"stopped: the shell cannot be sandboxed and running it unsandboxed was "
                          f"not agreed. {_remedy()}.")
    safety = settings.safety.model_copy(update={"sandbox": "off"})
    return settings.model_copy(update={"safety": safety})


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
