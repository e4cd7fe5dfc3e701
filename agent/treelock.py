"""One run at a time per working tree: `TreeLock`.

A run holds an exclusive flock(2) on the top directory of the tree it edits while its loop can
edit it; the kernel drops the lock when the descriptor closes, so a crash (even kill -9) never
leaves a stale one. The lock is on the directory itself (an O_DIRECTORY descriptor), not on a
lock file: nothing is written into the tree or into its git dir (which a repository's own `.git`
file would get to choose), and runs see each other whatever state dirs they use. flock(2) locks
belong to an open file description, so a second lock of the same tree is refused even within
one process.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from agent.errors import ConfigError, TreeBusy
from tools.gitcmd import git as run_git

__all__ = ["TreeLock", "tree_lock"]


class TreeLock:
    """An exclusive lock on one working tree; `acquire` is a no-op while this object holds it."""

    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise TreeBusy saying how to run beside the other run."""
        if self._fd is not None:
            return
        fd = os.open(self.tree, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise TreeBusy(
                f"another tome run is editing {self.tree}; wait for it to end, or give this run its "
                "own git worktree: tome solve --worktree (Python: worktree=True)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.release()


def tree_lock(repo: Path) -> TreeLock:
    """The (not yet taken) lock of the working tree `repo` is in: its git top level, else `repo`."""
    if not Path(repo).is_dir():
        raise ConfigError(f"the working tree {repo} does not exist (any more)")
    proc = run_git("rev-parse", "--show-toplevel", cwd=repo, check=False)
    top = proc.stdout.strip() if proc.returncode == 0 else ""
    return TreeLock(Path(top).resolve() if top else Path(repo).resolve())
