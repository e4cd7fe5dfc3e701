"""The `bash` tool: one non-interactive command in the workspace, bounded in time and output.

Each call is a fresh `bash -c` with no terminal (stdin from /dev/null, its own session) under a
launcher that ends everything it started (tools.runner), and an environment built from an
allowlist (API keys and other secrets are not inherited unless the user lists them in
`settings.safety.env_passthrough`). Destructive commands, judged on a parse of the shell syntax
(tools.shell_syntax: every simple command, through wrappers and nested `sh -c` strings) and a
pattern table, need the user's approval in interactive mode and are refused in headless mode
unless `settings.safety.approval` is "allow". Under bubblewrap (tools.sandbox) the command cannot
write outside the workspace, touch `.git` or reach the network. The check catches accidents and
plain tricks, not a determined adversary; the sandbox is the containment.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from agent.errors import ConfigError
from agent.settings import SafetySettings
from tools.base import ToolContext, ToolError, tool
from tools.runner import ProcessResult, run_process
from tools.sandbox import plan_sandbox, settle_sandbox, wrap_argv
from tools.shell_syntax import SHELLS, Command, read_command_line

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_OUTPUT_BYTES",
    "MAX_TIMEOUT",
    "SHELL_TOOLS",
    "bash",
    "destructive_reason",
    "format_result",
    "interactive_reason",
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
    # Vim started without a terminal quits at once (`-es` batch mode skips VIMINIT; :help VIMINIT).
    "VIMINIT": "if !has('ttyin') | cquit | endif",
}  # fmt: skip
# What programs print when they wanted a terminal and found none.
_WANTED_TERMINAL = re.compile(
    r"/dev/tty|not a tty|not a terminal|Input is not from a terminal|Error opening terminal|"
    r"failed tty get|terminal is required|no tty present|must be run from a terminal|"
    r"Aborting commit due to empty commit message",
    re.IGNORECASE,
)
TERMINAL_HINT = (
    "this command wanted a terminal, and commands here have none (stdin is /dev/null, no "
    "controlling terminal, editors and pagers are non-interactive): use its non-interactive "
    "form (git commit -m MSG, --yes/-y, --batch, --no-pager, top -b -n 1) or the edit tools "
    "(view, str_replace, create, insert) to change files"
)


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
        (r"\b(?:ba|z|da)?sh\s+(?:-c\s+)?[\"']?(?:<\(|\$\()\s*(?:curl|wget)\b", "running a downloaded script"),
        (r">\s*/dev/(?:sd|nvme|hd|vd|xvd|mmcblk|disk)", "writing to a block device"),
        (r"\b(?:shutdown|reboot|halt|poweroff)\b|\binit\s+[06]\b|\bsystemctl\s+(?:poweroff|reboot|halt)", "shutting the machine down"),
        (r"\bkill(?:all)?\s+(?:-\S+\s+)*-1\b", "signalling every process"),
        (r":\s*\(\s*\)\s*\{[^}]*:\s*\|\s*:", "a fork bomb"),
        (r"\bfind\s+(?:/|~|\$HOME)\S*\s[^;&|]*(?:-delete|-exec\s+rm\b)", "deleting files found outside the workspace"),
    )
)  # fmt: skip
_TMP_ROOTS = (Path("/tmp"), Path("/var/tmp"))
_DELETERS = frozenset({"rm", "rmdir", "unlink", "shred"})
_INTERPRETERS = re.compile(r"^(?:python[0-9.]*|perl|ruby|node|php)$")
_DOWNLOADERS = frozenset({"curl", "wget", "fetch"})
_FIND_FILTERS = frozenset({"-name", "-iname", "-path", "-ipath", "-wholename", "-iwholename",
                           "-regex", "-iregex", "-lname", "-ilname"})  # fmt: skip


def _where(path: str, base: Path | None) -> Path | None:
    """Where `path` points from `base` (None: not known before it runs: `$X`, `~`, unknown cwd)."""
    if "$" in path or "`" in path or path.startswith("~"):
        return None
    if path.startswith("/"):
        p = Path(os.path.normpath(path))
    elif base is None:
        return None
    else:
        p = Path(os.path.normpath(base / path))
    try:
        return p.resolve() if p.exists() else p
    except OSError:
        return p


def _place_reason(what: str, target: str, where: Path | None, ws: Path) -> str | None:
    """Why deleting recursively at `where` is destructive, or None (inside the workspace or /tmp)."""
    if where is None:
        return f"{what} of {target!r}, which may expand outside the workspace"
    if where == ws or where in ws.parents:
        return f"{what} of {target!r} deletes the workspace or a directory that contains it"
    if ws in where.parents:
        if where.relative_to(ws).parts[0] == ".git":
            return f"{what} of {target!r} deletes repository history"
        return None
    if any(r in where.parents for r in _TMP_ROOTS):
        return None
    return f"{what} of {target!r}, outside the workspace and /tmp"


def _rm_reason(cmd: Command, cwds: list[Path | None], ws: Path) -> str | None:
    recursive, targets, options_done = False, [], False
    for w in cmd.argv[1:]:
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
    if "xargs" in cmd.wrappers:
        return ("rm -r of paths xargs reads at run time; name the paths, or use find DIR -name "
                "PATTERN -delete inside the workspace")
    for t in targets:
        if t == "{}" and "find" in cmd.wrappers:
            continue  # the find that runs it is judged on its own
        if t.split("/")[0] in ("*", ".*") or t in (".", "./"):
            return f"rm -r of {t!r} deletes everything in the workspace"
        for base in cwds:
            why = _place_reason("rm -r", t, _where(t, base), ws)
            if why:
                return why
    return None


def _find_reason(cmd: Command, cwds: list[Path | None], ws: Path) -> str | None:
    argv = cmd.argv
    execs = [i for i, w in enumerate(argv) if w in ("-exec", "-execdir", "-ok", "-okdir")]
    runs_deleter = any(os.path.basename(w) in _DELETERS for w in argv[execs[0] + 1 :]) if execs else False
    if "-delete" not in argv and not runs_deleter:
        return None
    rest = list(argv[1:])
    while rest and (rest[0] in ("-H", "-L", "-P", "-D") or rest[0].startswith("-O")):
        if rest.pop(0) == "-D" and rest:
            rest.pop(0)  # find(1): -D debugopts
    roots = []
    while rest and not rest[0].startswith("-") and rest[0] not in ("(", "!", ")"):
        roots.append(rest.pop(0))
    patterns = [argv[i + 1] for i, w in enumerate(argv[:-1]) if w in _FIND_FILTERS]
    spares_git = bool(patterns) and not any(
        fnmatch.fnmatchcase(".git", p.rsplit("/", 1)[-1]) for p in patterns
    )
    for root in roots or ["."]:
        for base in cwds:
            where = _where(root, base)
            if where == ws and spares_git:
                continue  # e.g. find . -name '*.pyc' -delete
            if where == ws:
                return (f"find {root} deleting without a -name filter that spares .git deletes the "
                        "repository history too; add -name PATTERN or start it in a subdirectory")
            why = _place_reason("find deleting under", root, where, ws)
            if why:
                return why
    return None


def _downloads_into_interpreter(cmd: Command) -> str | None:
    if not _DOWNLOADERS & set(cmd.after):
        return None
    flags = "".join(w[1:] for w in cmd.argv[1:] if w.startswith("-") and not w.startswith("--"))
    args = [w for w in cmd.argv[1:] if not w.startswith("-") or w == "-"]
    if cmd.name in SHELLS and "c" not in flags:  # `sh`, `sh -`, `sh -s ARGS` read the script from stdin
        return "piping a download into a shell" if not args or args[0] == "-" or "s" in flags else None
    if _INTERPRETERS.match(cmd.name) and (not args or args[0] == "-") and "-c" not in cmd.argv:
        return f"piping a download into {cmd.name}"
    return None


def _cd(cmd: Command, cwd: Path | None) -> Path | None:
    """The directory after `cd`/`pushd` (None: not known before it runs)."""
    args = [w for w in cmd.argv[1:] if not w.startswith("-")]
    return _where(args[0], cwd) if args else None


def destructive_reason(command: str, *, workspace: Path) -> str | None:
    """Why `command` looks destructive (a short phrase), or None.

    Judged on every simple command the line can run (tools.shell_syntax), after each `cd` from
    every directory the line may be in; a line that does not parse cannot be judged, so it is
    treated as destructive (a headless run refuses it, an interactive one asks)."""
    syntax = read_command_line(command)
    texts = [" ".join(command.split()), *(" ".join(c.argv) for c in syntax.commands)]
    for text in texts:
        for pattern, why in _DESTRUCTIVE:
            if pattern.search(text):
                return why
    if syntax.fork_bombs:
        return f"a fork bomb (function {syntax.fork_bombs[0]!r} starts copies of itself)"
    ws = workspace.resolve()
    cwds: list[Path | None] = [ws]
    for cmd in syntax.commands:
        if cmd.name in ("cd", "pushd"):
            cwds.append(_cd(cmd, cwds[-1]))
        why = _rm_reason(cmd, cwds, ws) if cmd.name == "rm" else None
        why = why or (_find_reason(cmd, cwds, ws) if cmd.name == "find" else None)
        why = why or _downloads_into_interpreter(cmd)
        if why:
            return why
    if syntax.errors:
        return (f"the command does not parse as shell syntax (near {syntax.errors[0]!r}), so it "
                "cannot be checked; write it in plainer syntax")
    return None


# --------------------------------------------------------------------------------------------
# Programs that wait for a terminal
# --------------------------------------------------------------------------------------------

_VIM = frozenset({"vi", "vim", "nvim", "view", "vimdiff", "rvim", "rview", "ex", "evim", "gvim",
                  "vim.basic", "vim.tiny", "vim.nox", "vim.gtk3"})  # fmt: skip
_EDITORS = frozenset({"nano", "pico", "emacs", "emacsclient", "micro", "joe", "jed", "mcedit",
                      "ne", "kak", "hx", "helix", "mg"})  # fmt: skip
_SCREENS = frozenset({"top", "htop", "btop", "atop", "iotop", "nmtui", "tig", "ranger", "mc",
                      "iftop", "nethogs", "watch"})  # fmt: skip
_INFO_FLAGS = frozenset({"--version", "--help", "-h", "-V", "-v"})


def _runs_without_terminal(cmd: Command) -> bool:
    """True when this invocation of a terminal program runs as a batch tool."""
    words = set(cmd.argv[1:])
    if words & _INFO_FLAGS:
        return True
    short = "".join(w[1:] for w in words if w.startswith("-") and not w.startswith("--"))
    if cmd.name in _VIM:  # -es: silent Ex mode, reads commands, needs no terminal (:help -s-ex)
        return "s" in short and ("e" in short or "E" in short or cmd.name == "ex")
    if cmd.name == "emacs":
        return bool(words & {"--batch", "-batch", "--script", "-script"})
    if cmd.name in ("top", "iotop"):
        return "b" in short or "--batch" in words
    if cmd.name == "watch":
        return bool(words & {"-g", "--chgexit"})
    return False


def interactive_reason(command: str) -> str | None:
    """Why `command` would wait for a terminal it never gets (an editor, a full-screen tool), or None."""
    for cmd in read_command_line(command).commands:
        if cmd.name not in _VIM | _EDITORS | _SCREENS or _runs_without_terminal(cmd):
            continue
        if cmd.name in _VIM:
            how = "vim -es -c 'CMD' -c wq FILE, sed -i, or the edit tools (view, str_replace, create, insert)"
        elif cmd.name in _EDITORS:
            how = "the edit tools (view, str_replace, create, insert)" + (
                ", or emacs --batch" if cmd.name == "emacs" else ""
            )
        elif cmd.name == "watch":
            how = "run the command once, or a loop with sleep and a bound"
        else:
            how = "its batch form (top -b -n 1, ps aux, git log)"
        return (
            f"{cmd.name} waits for a terminal, and commands here have none (stdin is /dev/null): "
            f"it would hang until the timeout. Use {how}."
        )
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
    if _WANTED_TERMINAL.search(result.output):
        lines.append(f"[{TERMINAL_HINT}]")
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

    Each call is a fresh non-interactive shell with no terminal: no state carries over between
    calls, stdin is closed, pagers and editors are disabled (change files with the edit tools).
    The command and everything it starts are killed at the timeout or when it exits.

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
    waits = interactive_reason(command)
    if waits:
        raise ToolError(waits, kind="interactive")
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
