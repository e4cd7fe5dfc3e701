"""Run a command with no terminal, drain its output with a memory cap, end all it started.

The command runs under a launcher (tools/reaper.py) in a new session (so it has no controlling
terminal and its own process group), stdin from /dev/null, stdout and stderr interleaved on one
pipe. Output is read as it comes; only the first and last `max_output // 2` bytes are kept. The
launcher is a child subreaper: when the time is up, or when the command exits leaving processes
behind (background jobs, `setsid` or double-forked daemons), every descendant gets SIGTERM, then
SIGKILL after a grace period, and the result says so: nothing a command starts outlives it. The
process group is ended too, for where the launcher cannot be a subreaper.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

__all__ = ["ProcessResult", "clean_output", "group_alive", "run_process"]

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


class ProcessResult(BaseModel):
    """What a finished (or killed) command did."""

    exit_code: int | None
    """The exit status; negative is a signal number; None when killed before it reported one."""
    timed_out: bool = False
    output: str = ""
    total_bytes: int = 0
    omitted_bytes: int = 0
    duration: float = 0.0
    stopped_leftovers: bool = False
    """Background processes were still running after the command exited and were stopped."""


def clean_output(data: bytes) -> str:
    """Decode output for a model: invalid UTF-8 replaced, colours removed, progress redraws folded."""
    text = data.decode("utf-8", errors="replace")
    text = _ANSI.sub("", text.replace("\r\n", "\n"))
    # A carriage return redraws the line: keep only what the last redraw showed.
    return "\n".join(
        line.rsplit("\r", 1)[-1] if "\r" in line else line for line in text.split("\n")
    )


def group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process is left in process group `pgid`."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():  # not Linux: ask the kernel, zombies included
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid pgrp ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _Capture:
    """Keeps the head and the tail of a byte stream within `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.half = max(1, limit // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > self.half:
                del self.tail[: len(self.tail) - self.half]

    def render(self) -> tuple[str, int]:
        omitted = self.total - len(self.head) - len(self.tail)
        if omitted <= 0:
            return clean_output(bytes(self.head + self.tail)), 0
        marker = f"\n[... {omitted} bytes of output omitted ...]\n"
        return clean_output(bytes(self.head)) + marker + clean_output(bytes(self.tail)), omitted


_REAPER = Path(__file__).with_name("reaper.py")


def _launcher(argv: Sequence[str], status_fd: int, kill_grace: float, leftover_grace: float) -> list[str]:
    """`argv` under the subreaper launcher (tools/reaper.py), which ends every descendant."""
    if not sys.executable:  # an embedded interpreter: the process group is all we can end
        return list(argv)
    return [sys.executable, "-I", "-S", str(_REAPER), str(status_fd), f"{kill_grace:g}",
            f"{leftover_grace:g}", "--", *argv]  # fmt: skip


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    max_output: int = 256_000,
    kill_grace: float = 2.0,
    leftover_grace: float = 0.5,
    input: bytes | None = None,
) -> ProcessResult:
    """Run `argv` with no terminal under a subreaper; end every process it started, on exit or on
    timeout; keep the head and tail of its output. `input` is its stdin (from a file, so a command
    that never reads it cannot block us)."""
    start = time.monotonic()
    deadline = start + timeout
    stdin: Any = subprocess.DEVNULL
    if input is not None:
        stdin = tempfile.TemporaryFile()
        stdin.write(input)
        stdin.seek(0)
    status_r, status_w = os.pipe()
    try:
        proc = subprocess.Popen(
            _launcher(argv, status_w, kill_grace, leftover_grace),
            cwd=cwd,
            env=dict(env),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # setsid(2): no controlling terminal, its own process group
            pass_fds=(status_w,),
        )
    except BaseException:
        os.close(status_r)
        if input is not None:
            stdin.close()
        raise
    finally:
        os.close(status_w)
    pgid = proc.pid  # a new session leader's pgid is its pid
    cap = _Capture(max_output)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    timed_out = False
    leftovers = False
    exited_at: float | None = None
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        eof = False
        while not eof:
            now = time.monotonic()
            if proc.poll() is not None and exited_at is None:
                exited_at = now
            if exited_at is not None and now - exited_at > leftover_grace:
                break  # the launcher is gone; something it could not end still holds the pipe
            if now >= deadline:
                timed_out = True
                break
            wait = min(deadline - now, 0.1 if exited_at is None else leftover_grace)
            for _key, _ in sel.select(timeout=max(wait, 0.0)):
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    eof = True
                    break
                cap.add(chunk)
        if not timed_out:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True  # it closed its output but kept running
        if timed_out:  # the launcher ends the tree: SIGTERM, then SIGKILL after kill_grace
            _signal_pid(proc.pid, signal.SIGTERM)
            _wait_group(pgid, proc, kill_grace + 5.0, fd, cap)
        elif _still_alive(pgid, proc, 0.3):  # without a launcher (or not on Linux): the group
            leftovers = True
            _signal_group(pgid, signal.SIGTERM)
            _wait_group(pgid, proc, min(kill_grace, 1.0), fd, cap)
        if group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
            _wait_group(pgid, proc, 5.0, fd, cap)
        code = proc.wait()
        _drain(fd, cap)
    proc.stdout.close()
    with os.fdopen(status_r, "rb") as status:
        leftovers |= b"leftovers" in status.read()
    if input is not None:
        stdin.close()
    output, omitted = cap.render()
    return ProcessResult(
        exit_code=None if timed_out and code in (-signal.SIGTERM, -signal.SIGKILL) else code,
        timed_out=timed_out,
        output=output,
        total_bytes=cap.total,
        omitted_bytes=omitted,
        duration=round(time.monotonic() - start, 3),
        stopped_leftovers=leftovers,
    )


def _signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _still_alive(pgid: int, proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """True when the group still has live members after `seconds` (members may be exiting)."""
    end = time.monotonic() + seconds
    while group_alive(pgid):
        if time.monotonic() >= end:
            return True
        proc.poll()
        time.sleep(0.01)
    return False


def _wait_group(
    pgid: int, proc: subprocess.Popen[bytes], seconds: float, fd: int, cap: _Capture
) -> None:
    end = time.monotonic() + seconds
    while True:
        proc.poll()  # reap the leader so it does not count as alive
        _drain(fd, cap)
        if not group_alive(pgid) or time.monotonic() >= end:
            return
        time.sleep(0.03)


def _drain(fd: int, cap: _Capture) -> None:
    for _ in range(64):  # bounded: a writer that never pauses must not keep us here
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            return
        if not chunk:
            return
        cap.add(chunk)
