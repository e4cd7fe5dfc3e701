"""The bash tool against real subprocesses (and real bubblewrap when it can run here)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

from agent.settings import SafetySettings, Settings
from tools.base import Toolbox, ToolContext, ToolError
from tools.runner import run_process
from tools.sandbox import bwrap_problem, plan_sandbox
from tools.shell import MAX_TIMEOUT, bash, destructive_reason, shell_environment
from tools.workspace import Workspace


class _Chars:
    def count(self, text: str) -> int:
        return (len(text) + 3) // 4


def _bwrap_skip_reason() -> str | None:
    path = shutil.which("bwrap")
    if path is None:
        return "bubblewrap (bwrap) is not installed"
    return bwrap_problem(path)


BWRAP_SKIP = _bwrap_skip_reason()
needs_bwrap = pytest.mark.skipif(
    BWRAP_SKIP is not None, reason=f"sandbox not testable: {BWRAP_SKIP}"
)


def make_ctx(tmp_path: Path, **safety: object) -> ToolContext:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    settings = Settings(safety=SafetySettings(**{"sandbox": "off", **safety}))
    return ToolContext(workspace=Workspace(ws), state_dir=tmp_path / "state", settings=settings)


def tree_digest(root: Path) -> str:
    """Hash of every file under `root`, and of the repository's HEAD, branches and index.

    Inside `.git` only what a destructive command could lose counts: the Toolbox takes a
    checkpoint (hidden refs and objects) before each shell call, which is no change of state.
    """
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if rel[0] == ".git" and not (
            rel[1:2] in (("HEAD",), ("index",)) or rel[1:3] == ("refs", "heads")
        ):
            continue
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def live_processes_with(token: str) -> list[int]:
    """Pids of non-zombie processes whose command line contains `token`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state = stat[stat.rfind(")") + 2 :].split()[0]
        if token in cmd and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def test_output_and_exit_code(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    out = bash(ctx, command="echo out; echo err >&2; pwd; exit 3")
    assert out.splitlines()[:3] == ["out", "err", str(ctx.workspace.root)]
    assert "[exit code 3]" in out


def test_stdin_closed_and_non_interactive_env(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    out = bash(
        ctx,
        command='read -r line; echo "read=$?"; echo "$PAGER|$GIT_EDITOR|$GIT_TERMINAL_PROMPT|$CI|$TERM|$PIP_NO_INPUT|$DEBIAN_FRONTEND"',
    )
    assert "read=1" in out  # EOF at once: nothing can wait for input
    assert "cat|true|0|1|dumb|1|noninteractive" in out


def _needs(program: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(shutil.which(program) is None, reason=f"{program} is not installed here")


@pytest.mark.parametrize(
    ("command", "program"),
    [pytest.param(c, p, marks=_needs(p)) for c, p in
     [("vi a.py", "vi"), ("vim a.py", "vim"), ("cd sub && vim ../a.py", "vim"), ("nano a.py", "nano"),
      ("timeout 100 vim a.py", "vim"), ("sh -c 'vi a.py'", "vi"), ("top", "top"), ("watch ls", "watch")]],
)  # fmt: skip
def test_programs_that_wait_for_a_terminal_are_refused_at_once(
    tmp_path: Path, command: str, program: str
) -> None:
    """Issue 12 item 8: `vi a.py` waited 120 s for a terminal that never comes."""
    ctx = make_ctx(tmp_path)
    (ctx.workspace.root / "a.py").write_text("x = 1\n")
    (ctx.workspace.root / "sub").mkdir()
    res = Toolbox([bash], ctx, tokenizer=_Chars()).run(
        "c1", "bash", json.dumps({"command": command, "timeout": 20})
    )
    assert not res.ok and res.error_kind == "interactive", res.content
    assert f"{program} waits for a terminal" in res.content and "timed out" not in res.content


@pytest.mark.parametrize(
    ("command", "program", "expect"),
    [pytest.param(c, p, e, marks=_needs(p)) for c, p, e in
     [("printf 'vim a.py\\n' > edit.sh; sh edit.sh", "vim", "Input is not from a terminal"),
      ("git init -q . && git add a.py && git -c user.name=t -c user.email=t@t commit", "git", "empty commit message"),
      ("python3 -c \"open('/dev/tty')\"", "python3", "/dev/tty")]],
)  # fmt: skip
def test_a_command_that_reads_a_terminal_fails_fast_with_a_hint(
    tmp_path: Path, command: str, program: str, expect: str
) -> None:
    """Not refused beforehand (a script, git's editor, /dev/tty): it finds no terminal and ends."""
    ctx = make_ctx(tmp_path)
    (ctx.workspace.root / "a.py").write_text("x = 1\n")
    out = bash(ctx, command=command, timeout=60)
    assert "timed out" not in out and expect in out
    assert "wanted a terminal" in out and "non-interactive form" in out


@pytest.mark.parametrize(
    "command",
    [pytest.param("vim -es -c 'normal Goadded' -c wq a.py", marks=_needs("vim")),
     pytest.param("less a.py", marks=_needs("less")), pytest.param("top -b -n 1 | head -1", marks=_needs("top"))],
)  # fmt: skip
def test_batch_forms_of_terminal_programs_still_run(tmp_path: Path, command: str) -> None:
    ctx = make_ctx(tmp_path)
    (ctx.workspace.root / "a.py").write_text("x = 1\n")
    out = bash(ctx, command=command, timeout=60)
    assert "[exit code 0]" in out and "timed out" not in out
    if command.startswith("vim"):
        assert (ctx.workspace.root / "a.py").read_text() == "x = 1\nadded\n"
    if command.startswith("less"):
        assert "x = 1" in out


@pytest.mark.parametrize("sandbox", ["off", pytest.param("require", marks=needs_bwrap)])
def test_timeout_kills_whole_group(tmp_path: Path, sandbox: str) -> None:
    ctx = make_ctx(tmp_path, sandbox=sandbox)
    token = f"1000.{uuid.uuid4().int % 10**9}"
    out = bash(
        ctx, command=f"sleep {token} & sleep {token} & echo started; sleep {token}", timeout=3
    )
    assert "started" in out
    assert "timed out after 3 s" in out and "killed" in out
    assert live_processes_with(token) == []


@pytest.mark.parametrize("sandbox", ["off", pytest.param("require", marks=needs_bwrap)])
def test_background_leftovers_are_stopped(tmp_path: Path, sandbox: str) -> None:
    ctx = make_ctx(tmp_path, sandbox=sandbox)
    token = f"1000.{uuid.uuid4().int % 10**9}"
    out = bash(ctx, command=f"sleep {token} & echo bye", timeout=30)
    assert "bye" in out and "[exit code 0]" in out
    if sandbox == "off":  # under bwrap the PID namespace takes them down with the command
        assert "background processes" in out
    assert live_processes_with(token) == []
    plain = bash(ctx, command="echo plain")
    assert "background processes" not in plain and "[exit code 0]" in plain


DAEMON = (
    "import os, sys, time\n"
    "if os.fork(): sys.exit(0)\n"
    "os.setsid()\n"
    "if os.fork(): sys.exit(0)\n"
    "open('daemon.pid', 'w').write(str(os.getpid()))\n"
    "time.sleep(1000)\n"
)


def _dead(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :].split()[0] in ("Z", "X")


@pytest.mark.parametrize("ending", ["exit", "timeout"])
@pytest.mark.parametrize("sandbox", ["off", pytest.param("require", marks=needs_bwrap)])
def test_setsid_and_double_forked_daemons_do_not_outlive_the_call(
    tmp_path: Path, sandbox: str, ending: str
) -> None:
    """Issue 12 item 7: a new session escapes a process-group kill, a subreaper still sees it."""
    ctx = make_ctx(tmp_path, sandbox=sandbox)
    token = f"1000.{uuid.uuid4().int % 10**9}"
    daemon = f"python3 -c {shlex.quote(DAEMON)} {token}"
    command = (
        f"setsid sleep {token} & echo $! > setsid.pid; {daemon}; "
        "for _ in $(seq 200); do [ -s daemon.pid ] && break; sleep 0.05; done; echo started"
    )
    if ending == "timeout":
        command += f"; sleep {token}"
    out = bash(ctx, command=command, timeout=8 if ending == "timeout" else 60)  # the daemons start in < 8 s
    assert "started" in out
    if ending == "timeout":
        assert "timed out" in out
    elif sandbox == "off":  # under bwrap its PID namespace ends them with the command, unremarked
        assert "background processes" in out
    assert live_processes_with(token) == []
    if sandbox == "off":  # under bwrap the files hold pids of its own PID namespace
        pids = [int((ctx.workspace.root / f).read_text()) for f in ("setsid.pid", "daemon.pid")]
        assert all(_dead(pid) for pid in pids), pids


def test_timeout_group_kill_ignores_sigterm(tmp_path: Path) -> None:
    token = f"1000.{uuid.uuid4().int % 10**9}"
    r = run_process(
        ["bash", "-c", f"trap '' TERM; (trap '' TERM; sleep {token}) & sleep {token}"],
        cwd=tmp_path, env={"PATH": os.environ["PATH"]}, timeout=0.5, kill_grace=0.3,
    )  # fmt: skip
    assert r.timed_out and r.exit_code is None
    assert live_processes_with(token) == []


def test_output_capped_head_and_tail(tmp_path: Path) -> None:
    r = run_process(
        ["python3", "-c", "import sys\nprint('FIRST')\nsys.stdout.write('x' * 3_000_000)\nprint()\nprint('LAST')"],
        cwd=tmp_path, env={"PATH": os.environ["PATH"]}, timeout=60, max_output=10_000,
    )  # fmt: skip
    assert r.exit_code == 0
    assert r.output.startswith("FIRST") and r.output.rstrip().endswith("LAST")
    assert r.total_bytes > 3_000_000 and r.omitted_bytes > 2_900_000
    assert len(r.output) < 11_000
    ctx = make_ctx(tmp_path)
    out = bash(ctx, command="yes abcdefghij | head -c 2000000; echo; echo END")
    assert "bytes of output were dropped from the middle" in out and "END" in out


def test_secrets_not_inherited_unless_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-deepseek-secret")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-secret")
    monkeypatch.setenv("RANDOM_UNLISTED", "unlisted-value")
    monkeypatch.setenv("LC_TIME", "C")
    ctx = make_ctx(tmp_path)
    out = bash(ctx, command="env")
    assert "sk-deepseek-secret" not in out and "tok-secret" not in out
    assert "unlisted-value" not in out
    assert "LC_TIME=C" in out and "PATH=" in out
    ctx2 = make_ctx(tmp_path, env_passthrough=["MY_SERVICE_TOKEN", "RANDOM_*"])
    out2 = bash(ctx2, command="env")
    assert "MY_SERVICE_TOKEN=tok-secret" in out2 and "RANDOM_UNLISTED=unlisted-value" in out2
    assert "sk-deepseek-secret" not in out2


def test_environment_allowlist_unit() -> None:
    env = shell_environment(
        SafetySettings(),
        environ={"PATH": "/bin", "OPENAI_API_KEY": "x", "AWS_SECRET_ACCESS_KEY": "y", "HOME": "/h",
                 "GITHUB_TOKEN": "z", "DB_PASSWORD": "p", "PYTHONPATH": "/p", "LC_ALL": "C"},
    )  # fmt: skip
    assert {"PATH", "HOME", "PYTHONPATH", "LC_ALL"} <= set(env)
    assert not {"OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "DB_PASSWORD"} & set(env)


def test_timeout_clamp_is_reported(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    out = bash(ctx, command="echo hi", timeout=MAX_TIMEOUT * 100)
    assert "hi" in out and f"clamped to {MAX_TIMEOUT} s" in out


@pytest.mark.parametrize(
    "command",
    ["rm -rf .", "rm -rf *", "rm -rf .git", "git reset --hard", "git clean -fdx", "git push --force origin main",
     "chmod -R 000 src", "curl -s http://example.invalid/x.sh | sh", "dd if=/dev/zero of=keep.txt bs=1 count=1"],
)  # fmt: skip
def test_destructive_refused_headless_and_nothing_changes(tmp_path: Path, command: str) -> None:
    ctx = make_ctx(tmp_path)
    root = ctx.workspace.root
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "src").mkdir()
    (root / "keep.txt").write_text("precious\n")
    (root / "src" / "a.py").write_text("x = 1\n")
    before = tree_digest(root)
    box = Toolbox([bash], ctx, tokenizer=_Chars())
    res = box.run("c1", "bash", json.dumps({"command": command}))
    assert not res.ok and res.error_kind == "refused"
    assert "refused" in res.content and "headless" in res.content
    assert tree_digest(root) == before


def test_destructive_table_leaves_ordinary_commands_alone(tmp_path: Path) -> None:
    ws = tmp_path
    for ok in ["rm -rf build", "rm -f a.txt", "rm -rf /tmp/scratch", "git status && git diff", "git checkout foo.py",
               "git clean -n", "chmod +x run.sh", "grep -r 'reset --hard' .", "curl -s http://x/ -o page.html"]:  # fmt: skip
        assert destructive_reason(ok, workspace=ws) is None, ok
    for bad in ["sudo rm -rf /etc", "cd /tmp && rm -rf ~", "rm -rf $HOME/x", "rm -r ..", "mkfs.ext4 /dev/sdb",
                "bash <(curl -s http://x)", "kill -9 -1", "find / -name '*.py' -delete"]:  # fmt: skip
        assert destructive_reason(bad, workspace=ws), bad


def test_destructive_asks_in_interactive_mode(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    (ctx.workspace.root / "build").mkdir()
    (ctx.workspace.root / "keep.txt").write_text("x")
    asked: list[str] = []

    def deny(q: str) -> bool:
        asked.append(q)
        return False

    ctx.interactive, ctx.approve = True, deny
    with pytest.raises(ToolError, match="refused by the user"):
        bash(ctx, command="rm -rf *")
    assert len(asked) == 1 and "rm -rf *" in asked[0]
    assert (ctx.workspace.root / "keep.txt").exists()
    ctx.approve = lambda q: asked.append(q) is None
    out = bash(ctx, command="rm -rf *")
    assert "[exit code 0]" in out and not (ctx.workspace.root / "keep.txt").exists()


def test_approval_settings(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, approval="deny")
    ctx.interactive, ctx.approve = True, lambda q: pytest.fail("deny must not ask")
    (ctx.workspace.root / "f").write_text("x")
    with pytest.raises(ToolError, match="approval is 'deny'"):
        bash(ctx, command="rm -rf .")
    assert (ctx.workspace.root / "f").exists()
    allow = make_ctx(tmp_path, approval="allow")
    assert "[exit code 0]" in bash(allow, command="rm -rf f")
    assert not (allow.workspace.root / "f").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [({"command": "   "}, "command is empty"), ({"command": "echo a\x00b"}, "NUL"),
     ({"command": "touch made", "timeout": 0}, "positive"), ({"command": "touch made", "timeout": "soon"}, "timeout")],
)  # fmt: skip
def test_bad_arguments_are_clear_errors(
    tmp_path: Path, args: dict[str, object], message: str
) -> None:
    ctx = make_ctx(tmp_path)
    before = tree_digest(ctx.workspace.root)
    res = Toolbox([bash], ctx, tokenizer=_Chars()).run("c1", "bash", json.dumps(args))
    assert not res.ok and message in res.content
    assert tree_digest(ctx.workspace.root) == before


def test_redact_hook_sees_every_result(tmp_path: Path) -> None:
    from tools.edit import view

    ctx = make_ctx(tmp_path)
    ctx.redact = lambda text: text.replace("hunter2", "[REDACTED]")
    (ctx.workspace.root / "config.ini").write_text("password=hunter2\n")
    box = Toolbox([bash, view], ctx, tokenizer=_Chars())
    for name, args in [("bash", {"command": "echo password=hunter2"}), ("view", {"path": "config.ini"}),
                       ("view", {"path": "config.ini", "view_range": [5, 1]})]:
        res = box.run("c1", name, json.dumps(args))
        assert "hunter2" not in res.content, (name, res.content)
    assert "[REDACTED]" in box.run("c2", "bash", json.dumps({"command": "echo password=hunter2"})).content


def test_no_bwrap_require_and_headless_refuse_interactive_asks_once(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-dir" / "bwrap")  # bwrap's absence, as a real setting
    ctx = make_ctx(tmp_path, sandbox="require", bwrap=missing)
    before = tree_digest(ctx.workspace.root)
    with pytest.raises(ToolError, match="sandbox is 'require' but .* is not installed"):
        bash(ctx, command="echo should-not-run > ran.txt")
    headless = make_ctx(tmp_path, sandbox="auto", bwrap=missing)
    with pytest.raises(ToolError, match="headless run does not start without a sandbox"):
        bash(headless, command="echo should-not-run > ran.txt")
    assert tree_digest(ctx.workspace.root) == before
    asked: list[str] = []
    interactive = make_ctx(tmp_path, sandbox="auto", bwrap=missing)
    interactive.interactive, interactive.approve = True, lambda q: asked.append(q) is None
    assert "ran" in bash(interactive, command="echo ran")
    assert "again" in bash(interactive, command="echo again") and len(asked) == 1


def test_plan_sandbox_off_never_wraps() -> None:
    assert plan_sandbox(SafetySettings(sandbox="off"), interactive=False).bwrap is None


# --------------------------------------------------------------------------------------------
# The real sandbox
# --------------------------------------------------------------------------------------------


@needs_bwrap
def test_sandbox_confines_writes(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, sandbox="require")
    root = ctx.workspace.root
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    git_before = tree_digest(root / ".git")
    outside = Path(tempfile.mkdtemp(prefix="tome-sbx-", dir="/var/tmp"))
    private = f"/tmp/tome-private-{uuid.uuid4().hex}"
    try:
        out = bash(
            ctx,
            command=(
                f"echo in > inside.txt && echo ok-inside; "
                f"echo x > {outside}/escaped.txt || echo blocked-outside; "
                f"touch .git/hacked || echo blocked-git; "
                f"echo y > {private} && cat {private}; "
                f"mount -o remount,rw / 2>/dev/null || echo blocked-remount"
            ),
        )
        assert "ok-inside" in out and (root / "inside.txt").read_text() == "in\n"
        assert "blocked-outside" in out and "Read-only file system" in out
        assert not (outside / "escaped.txt").exists()
        assert "blocked-git" in out and tree_digest(root / ".git") == git_before
        assert "y" in out and not Path(private).exists()  # /tmp inside is private
        assert "blocked-remount" in out
        assert "unsandboxed" not in out and "background processes" not in out
        assert "runs in a sandbox (no network;" in out  # told once per run
        assert "sandbox" not in bash(ctx, command="echo again")
    finally:
        shutil.rmtree(outside)


def _listener() -> tuple[socket.socket, list[int]]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    hits: list[int] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            hits.append(1)
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    return srv, hits


@needs_bwrap
def test_sandbox_refuses_network_unless_enabled(tmp_path: Path) -> None:
    srv, hits = _listener()
    port = srv.getsockname()[1]
    probe = (
        'python3 -c "import socket,sys\n'
        f"try: socket.create_connection(('127.0.0.1', {port}), timeout=3); print('CONNECTED')\n"
        "except OSError as e: print('NO-NETWORK', e); sys.exit(7)\""
    )
    try:
        out = bash(make_ctx(tmp_path, sandbox="require"), command=probe)
        assert "NO-NETWORK" in out and "[exit code 7]" in out and hits == []
        out = bash(make_ctx(tmp_path, sandbox="require", network=True), command=probe)
        assert "CONNECTED" in out
        for _ in range(100):  # the accept thread may lag the client by a moment
            if hits:
                break
            threading.Event().wait(0.02)
        assert hits
    finally:
        srv.close()
