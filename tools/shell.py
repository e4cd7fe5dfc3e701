"""The `bash` tool: one non-interactive command in the workspace, bounded in time and output.

Each call is a fresh `bash -c` in its own process group with stdin closed and an environment
built from an allowlist (API keys and other secrets are not inherited unless the user lists them
in `settings.safety.env_passthrough`). Destructive commands (a pattern table) need the user's
approval in interactive mode and are refused in headless mode unless `settings.safety.approval`
is "allow". Under bubblewrap (tools.sandbox) the command cannot write outside the workspace,
touch `.git` or reach the network. The pattern table catches accidents, not a determined
adversary; the sandbox is the containment.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path

from agent.errors import ConfigError
from agent.settings import SafetySettings
from tools.base import ToolContext, ToolError, tool
from tools.runner import ProcessResult, run_process
from tools.sandbox import plan_sandbox, settle_sandbox, wrap_argv

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_OUTPUT_BYTES",
    "MAX_TIMEOUT",
    "SHELL_TOOLS",
    "bash",
    "destructive_reason",
    "format_result",
    "require_permission",
    "run_command",
    "shell_environment",
]

DEFAULT_TIMEOUT = 120
MAX_TIMEOUT = 900
MAX_OUTPUT_BYTES = 400_000

_ALLOWED_ENV = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR",
    "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "JAVA_HOME", "GOPATH", "GOROOT",
    "CARGO_HOME", "RUSTUP_HOME", "NVM_DIR", "PYENV_ROOT", "NODE_PATH",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "PYTHONPATH", "PYTHONIOENCODING", "PYTHONUTF8", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE",
    "PYTHONWARNINGS", "PYTHONNOUSERSITE", "PYTHONPYCACHEPREFIX",
})  # fmt: skip
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|PRIVATE", re.IGNORECASE)
# Set for every command: nothing may wait for a terminal, a pager or an editor.
NON_INTERACTIVE_ENV: Mapping[str, str] = {
    "PAGER": "cat", "GIT_PAGER": "cat", "MANPAGER": "cat", "SYSTEMD_PAGER": "",
    "EDITOR": "true", "VISUAL": "true", "GIT_EDITOR": "true", "GIT_SEQUENCE_EDITOR": "true",
    "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true",
    "GIT_SSH_COMMAND": "ssh -o BatchMode=yes", "GCM_INTERACTIVE": "never",
    "CI": "1", "TERM": "dumb", "NO_COLOR": "1", "PY_COLORS": "0", "CLICOLOR": "0",
    "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_PROGRESS_BAR": "off",
    "DEBIAN_FRONTEND": "noninteractive", "PYTHONUNBUFFERED": "1",
    "npm_config_yes": "true", "npm_config_fund": "false", "npm_config_audit": "false",
    "HOMEBREW_NO_AUTO_UPDATE": "1", "COLUMNS": "160", "LINES": "50",
}  # fmt: skip


def shell_environment(
    safety: SafetySettings, *, environ: Mapping[str, str] | None = None, sandboxed: bool = False
) -> dict[str, str]:
    """The environment a command gets: allowlisted and configured variables, non-interactive."""
    src = os.environ if environ is None else environ
    env: dict[str, str] = {}
    for name, value in src.items():
        passthrough = any(fnmatch.fnmatchcase(name, pat) for pat in safety.env_passthrough)
        allowed = (name in _ALLOWED_ENV or name.startswith("LC_")) and not _SECRET_NAME.search(name)
        if passthrough or allowed:
            env[name] = value
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    env.update(NON_INTERACTIVE_ENV)
    if sandboxed:  # the real /tmp and $HOME are read-only or hidden inside the sandbox
        env["TMPDIR"] = "/tmp"
        env["XDG_CACHE_HOME"] = "/tmp/.cache"
        env["npm_config_cache"] = "/tmp/.npm"
    return env


# --------------------------------------------------------------------------------------------
# Destructive commands
# --------------------------------------------------------------------------------------------

_DESTRUCTIVE: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), why)
    for p, why in (
        (r"\bgit\s+(?:-\S+\s+)*reset\b[^;&|]*--hard", "git reset --hard discards uncommitted work"),
        (r"\bgit\s+(?:-\S+\s+)*clean\b[^;&|]*\s(?:-[a-zA-Z]*f|--force)", "git clean -f deletes untracked files"),
        (r"\bgit\s+(?:-\S+\s+)*push\b[^;&|]*\s(?:-[a-zA-Z]*f\b|--force|\+\S)", "git push --force rewrites remote history"),
        (r"\bgit\s+(?:-\S+\s+)*(?:checkout|restore)\b[^;&|]*\s(?:--\s+)?\.(?:\s|$)", "discarding every change in the working tree"),
        (r"\bgit\s+(?:-\S+\s+)*branch\b[^;&|]*\s-D\b", "git branch -D deletes an unmerged branch"),
        (r"\bgit\s+(?:-\S+\s+)*stash\s+(?:drop|clear)\b", "dropping stashed work"),
        (r"\bgit\s+(?:-\S+\s+)*(?:filter-branch|filter-repo)\b", "rewriting repository history"),
        (r"\bgit\s+(?:-\S+\s+)*reflog\s+expire\b", "expiring the reflog"),
        (r"\bdd\b[^;&|]*\bof=", "dd writes raw data over a file or device"),
        (r"\b(?:mkfs(?:\.\w+)?|mkswap|fdisk|sfdisk|parted|wipefs|shred)\b", "formatting or wiping a disk or file"),
        (r"\b(?:chmod|chown|chgrp)\s+(?:\S+\s+)*(?:-[a-zA-Z]*R|--recursive)\b", "changing permissions recursively"),
        (r"\b(?:curl|wget|fetch)\b[^;&]*\|\s*(?:sudo\s+)?(?:env\s+\S+\s+)*(?:ba|z|da|k|fi)?sh\b", "piping a download into a shell"),
        (r"\b(?:curl|wget|fetch)\b[^;&]*\|\s*(?:sudo\s+)?python[0-9.]*\b", "piping a download into python"),
        (r"\b(?:ba|z|da)?sh\s+(?:-c\s+)?[\"']?(?:<\(|\$\()\s*(?:curl|wget)\b", "running a downloaded script"),
        (r">\s*/dev/(?:sd|nvme|hd|vd|xvd|mmcblk|disk)", "writing to a block device"),
        (r"\b(?:shutdown|reboot|halt|poweroff)\b|\binit\s+[06]\b|\bsystemctl\s+(?:poweroff|reboot|halt)", "shutting the machine down"),
        (r"\bkill(?:all)?\s+(?:-\S+\s+)*-1\b", "signalling every process"),
        (r":\s*\(\s*\)\s*\{[^}]*:\s*\|\s*:", "a fork bomb"),
        (r"\bfind\s+(?:/|~|\$HOME)\S*\s[^;&|]*(?:-delete|-exec\s+rm\b)", "deleting files found outside the workspace"),
    )
)  # fmt: skip
_SEGMENT_SPLIT = re.compile(r"\|\||&&|[;|&\n`]|\$\(|\)")
_PREFIXES = frozenset(
    {"sudo", "doas", "command", "exec", "nohup", "time", "nice", "xargs", "env", "builtin"}
)


def _rm_reason(words: list[str], workspace: Path) -> str | None:
    recursive = False
    targets: list[str] = []
    options_done = False
    for w in words[1:]:
        if not options_done and w == "--":
            options_done = True
        elif not options_done and w.startswith("--"):
            recursive |= w == "--recursive"
        elif not options_done and w.startswith("-") and len(w) > 1:
            recursive |= "r" in w or "R" in w
        else:
            targets.append(w)
    if not recursive:
        return None
    tmp_roots = [Path("/tmp"), Path("/var/tmp")]
    for t in targets:
        if "$" in t or t.startswith("~"):
            return f"rm -r of {t!r}, which may expand outside the workspace"
        if t.split("/")[0] in ("*", ".*") or t in (".", "./"):
            return f"rm -r of {t!r} deletes everything in the workspace"
        p = Path(t) if t.startswith("/") else workspace / t
        resolved = Path(os.path.normpath(p))
        try:
            if resolved.exists():
                resolved = resolved.resolve()
        except OSError:
            pass
        if resolved == workspace or resolved in workspace.parents:
            return f"rm -r of {t!r} deletes the workspace or a directory that contains it"
        if workspace in resolved.parents:
            if resolved.relative_to(workspace).parts[0] == ".git":
                return f"rm -r of {t!r} deletes repository history"
            continue
        if any(r in resolved.parents for r in tmp_roots):
            continue
        return f"rm -r of {t!r}, outside the workspace and /tmp"
    return None


def destructive_reason(command: str, *, workspace: Path) -> str | None:
    """Why `command` looks destructive (a short phrase), or None."""
    flat = " ".join(command.split())
    for pattern, why in _DESTRUCTIVE:
        if pattern.search(flat):
            return why
    ws = workspace.resolve()
    for segment in _SEGMENT_SPLIT.split(command):
        try:
            words = shlex.split(segment, comments=True)
        except ValueError:
            words = segment.split()
        while words and (
            words[0] in _PREFIXES or re.match(r"^\w+=", words[0]) or words[0].startswith("-")
        ):
            words = words[1:]
        if words and os.path.basename(words[0]) == "rm":
            why = _rm_reason(words, ws)
            if why:
                return why
    return None


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def _workspace_root(ctx: ToolContext) -> Path:
    return Path(ctx.workspace.root).resolve()


def run_command(
    ctx: ToolContext, argv: list[str], *, timeout: float, max_output: int = MAX_OUTPUT_BYTES
) -> tuple[ProcessResult, str | None]:
    """Run `argv` in the workspace with the shell's environment and sandbox: (result, note).

    The note (how the sandbox confines it) is returned on the first call of a run only."""
    try:  # settled at run start; a context built without `start_run` settles it here, once
        ctx.settings = settle_sandbox(ctx.settings, interactive=ctx.interactive, confirm=ctx.approve)
    except ConfigError as e:
        raise ToolError(f"the shell is disabled: {e}", kind="sandbox_unavailable") from None
    safety = ctx.settings.safety
    plan = plan_sandbox(safety, interactive=ctx.interactive)
    root = _workspace_root(ctx)
    env = shell_environment(safety, sandboxed=plan.bwrap is not None)
    if plan.bwrap is not None:
        argv = wrap_argv(argv, bwrap=plan.bwrap, workspace=root, network=plan.network)
    result = run_process(argv, cwd=root, env=env, timeout=timeout, max_output=max_output)
    note = plan.note
    if note is not None:
        if note in ctx.notes:
            note = None  # said once per run, not on every call
        else:
            ctx.notes.append(note)
    return result, note


def format_result(result: ProcessResult, *, timeout: float, notes: list[str]) -> str:
    """The observation for a finished command: output, then how it ended, then notes."""
    out = result.output if result.output.strip() else "(no output)\n"
    lines = [out.rstrip("\n")]
    if result.timed_out:
        lines.append(
            f"[timed out after {timeout:g} s: the command and every process it started were killed. "
            "Run long jobs with a larger timeout, or make them shorter (fewer tests, smaller input)]"
        )
    elif result.exit_code is not None and result.exit_code < 0:
        lines.append(f"[killed by signal {-result.exit_code}]")
    else:
        lines.append(f"[exit code {result.exit_code}]")
    if result.omitted_bytes:
        lines.append(
            f"[{result.omitted_bytes:,} of {result.total_bytes:,} bytes of output were dropped from "
            "the middle; redirect to a file and view or grep it to see everything]"
        )
    if result.stopped_leftovers:
        lines.append(
            "[background processes the command left running were stopped: each call is its own "
            "process group; start a server and use it within the same command]"
        )
    lines.extend(f"[{n}]" for n in notes)
    return "\n".join(lines) + "\n"


def require_permission(ctx: ToolContext, command: str, why: str) -> None:
    """Return when a destructive command may run (allowed, or approved); else raise ToolError."""
    approval = ctx.settings.safety.approval
    if approval == "allow":
        return
    if approval == "ask" and ctx.interactive and ctx.approve is not None:
        if ctx.approve(
            f"The agent wants to run a destructive command ({why}):\n  {command}\nAllow it?"
        ):
            return
        raise ToolError(
            f"refused by the user: {why}. Do not retry this command; find a non-destructive way "
            "or ask the user what they want.",
            kind="refused",
        )
    if approval == "deny":
        mode = "set to deny them (approval is 'deny')"
    elif ctx.interactive:
        mode = "interactive but has no way to ask the user"
    else:
        mode = "headless"
    raise ToolError(
        f"refused: {why}. This run is {mode}, so destructive commands are not run "
        "(settings.safety.approval). Find a non-destructive way to do it (e.g. delete specific "
        "files inside the workspace, or use the edit tools).",
        kind="refused",
    )


@tool
def bash(ctx: ToolContext, command: str, timeout: int = DEFAULT_TIMEOUT) -> str:
    """Run a bash command in the workspace root and return its output (stdout and stderr interleaved) and exit code.

    Each call is a fresh non-interactive shell: no state carries over between calls, stdin is
    closed, pagers and editors are disabled. The command and everything it starts are killed at
    the timeout or when it exits.

    Args:
        command: the bash command line to run, e.g. "python -m pytest tests/test_x.py -q".
        timeout: seconds before the command is killed (at most 900).
    """
    if not command.strip():
        raise ToolError(
            "the command is empty; pass the shell command to run.", kind="invalid_arguments"
        )
    if "\x00" in command:
        raise ToolError("the command contains a NUL byte; remove it.", kind="invalid_arguments")
    if timeout <= 0:
        raise ToolError(
            f"timeout must be a positive number of seconds, not {timeout}.",
            kind="invalid_arguments",
        )
    notes: list[str] = []
    used = timeout
    if timeout > MAX_TIMEOUT:
        used = MAX_TIMEOUT
        notes.append(
            f"note: the requested timeout of {timeout} s is above the maximum; it was clamped to {MAX_TIMEOUT} s"
        )
    root = _workspace_root(ctx)
    why = destructive_reason(command, workspace=root)
    if why:
        require_permission(ctx, command, why)
    shell = shutil.which("bash") or "/bin/bash"
    result, sandbox_note = run_command(
        ctx, [shell, "--noprofile", "--norc", "-c", command], timeout=used
    )
    if sandbox_note:
        notes.append(sandbox_note)
    return format_result(result, timeout=used, notes=notes)


SHELL_TOOLS = (bash,)
