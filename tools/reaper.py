"""The launcher of one command: a child subreaper that runs it and ends every process it started.

`tools.runner` runs this file as its own process (`python -I -S reaper.py FD GRACE LEFTOVER -- ARGV`);
tome never imports it, so the subreaper attribute stays with this launcher and never makes tome the
parent of strangers' orphans. With prctl(PR_SET_CHILD_SUBREAPER) (Linux 3.4+, prctl(2)) an orphan of
the command's tree, a `setsid` or double-forked daemon included, is re-parented to this process
instead of init, so walking parent links in /proc (proc(5): field 4 of /proc/PID/stat) finds every
descendant. When the command exits, what it left running gets LEFTOVER seconds to end, then SIGTERM,
then SIGKILL; SIGTERM, SIGINT or SIGHUP to this process (the runner's timeout) end the whole tree
the same way (SIGKILL GRACE seconds after SIGTERM). The exit status is the command's (a signal is
re-raised); "leftovers" is written to FD when processes had to be stopped after it exited.
Only the standard library: `-I -S` keeps the repository's PYTHONPATH and site hooks out.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
WATCHED = {signal.SIGCHLD, *STOP_SIGNALS}


def become_subreaper() -> bool:
    """Make orphans of this process's tree its children (Linux); False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def initial_environment() -> dict[bytes, bytes] | os._Environ[bytes]:
    """The environment this process was started with, before Python's locale coercion (PEP 538)
    added LC_CTYPE to it: /proc/self/environ holds the one given to execve (proc(5))."""
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return os.environb
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if b"=" in item)
    return {k: v for k, _, v in pairs}


def descendants(root: int) -> list[int]:
    """Live (non-zombie) processes below `root`, found through the parent links in /proc."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # state ppid pgrp ... after "(comm)"
        if len(fields) > 1 and fields[0] not in (b"Z", b"X"):
            children.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            found.append(child)
            stack.append(child)
    return found


def reap(main: int, status: int | None) -> int | None:
    """Collect every exited child (orphans re-parented here too); the main command's status."""
    while True:
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == main:
            status = code


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def end_tree(main: int, status: int | None, *, grace: float) -> int | None:
    """SIGTERM every descendant, SIGKILL what is left after `grace` until none is left."""
    me = os.getpid()
    signal_all(descendants(me), signal.SIGTERM)
    end = time.monotonic() + grace
    while descendants(me) and time.monotonic() < end:
        status = reap(main, status)
        time.sleep(0.02)
    end = time.monotonic() + 10.0  # rounds: what forked between a scan and its kill goes next round
    while (left := descendants(me)) and time.monotonic() < end:
        signal_all(left, signal.SIGKILL)
        status = reap(main, status)
        time.sleep(0.01)
    return reap(main, status)


def exit_like(status: int) -> None:
    """Leave with the command's status: its exit code, or the signal that ended it."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig != signal.SIGKILL:  # SIGKILL cannot be caught, so it has no handler to reset
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status))


def main(argv: list[str]) -> None:
    """Run the command of `argv` (FD GRACE LEFTOVER -- ARGV...) and end its whole tree."""
    status_fd, grace, leftover = int(argv[1]), float(argv[2]), float(argv[3])
    command = argv[5:]
    os.set_inheritable(status_fd, False)
    become_subreaper()
    signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    try:
        # The child gets an empty mask and default dispositions (Python ignores SIGPIPE, SIGXFSZ).
        main_pid = os.posix_spawnp(
            command[0], command, initial_environment(),
            setsigmask=(), setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, *WATCHED),
        )  # fmt: skip
    except OSError as e:
        os.write(2, f"{command[0]}: {e.strerror}\n".encode())
        os._exit(127)
    status: int | None = None
    stopped = False
    while status is None and not stopped:
        stopped = signal.sigwaitinfo(WATCHED).si_signo in STOP_SIGNALS
        status = reap(main_pid, status)
    leftovers = False
    if not stopped:
        end = time.monotonic() + leftover
        while descendants(os.getpid()) and time.monotonic() < end:
            reap(main_pid, status)
            time.sleep(0.02)
        leftovers = bool(descendants(os.getpid()))
    if stopped or leftovers:
        status = end_tree(main_pid, status, grace=grace if stopped else min(grace, 1.0))
    if leftovers:
        os.write(status_fd, b"leftovers\n")
    os.close(status_fd)
    if status is None:  # not reaped even after SIGKILL rounds: say it was killed
        os._exit(128 + signal.SIGKILL)
    exit_like(status)


if __name__ == "__main__":
    main(sys.argv)
