"""Clean checkouts at a task's base commit from a local repository cache, via git worktrees.

One clone per repository (`--repos-dir`) serves every task of that repository: each task gets a
detached worktree, removed again when the task is done. Blobs the cache lacks (snapshots that
dropped very large files) are left out with a sparse checkout and reported, so the environment
spec can restore them.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from agent.errors import ConfigError

__all__ = ["Checkout", "checkout", "file_lock", "find_repo", "git", "remove_checkout"]


class Checkout(BaseModel):
    """A worktree at `commit` of the cached repository `git_dir`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path
    git_dir: Path
    commit: str
    missing: list[str] = []


def git(*args: str, cwd: Path | None = None, git_dir: Path | None = None,
        input: str | None = None, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run git quietly; raise CalledProcessError with its stderr when `check` and it fails."""
    cmd = ["git", "-c", "advice.detachedHead=false", "-c", "core.hooksPath=/dev/null"]
    if git_dir is not None:
        cmd += ["--git-dir", str(git_dir)]
    return subprocess.run([*cmd, *args], cwd=cwd, input=input, capture_output=True, text=True,
                          check=check, timeout=timeout)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path`, shared between processes (not threads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def find_repo(repos_dir: Path, repo: str) -> Path:
    """The git dir for `owner/name` under `repos_dir`: owner__name, owner+name or name, each bare
    or not, and the bare mirrors owner__name.git and name.git (`git clone --mirror`)."""
    owner, _, name = repo.partition("/")
    for cand in (f"{owner}__{name}", f"{owner}__{name}.git", f"{owner}+{name}", name, f"{name}.git"):
        p = repos_dir / cand
        if (p / ".git").exists():
            return p / ".git"
        if (p / "HEAD").is_file() and (p / "objects").is_dir():
            return p
        if (p / "repo" / "HEAD").is_file():  # a fetch mirror copied as is
            return p / "repo"
    raise ConfigError(f"no clone of {repo} under {repos_dir} (expected {owner}__{name}/ or the bare "
                      f"mirror {owner}__{name}.git)")


def _missing_blobs(git_dir: Path, commit: str) -> list[str]:
    tree = git("ls-tree", "-r", "--full-tree", commit, git_dir=git_dir).stdout
    entries = [line.split("\t", 1) for line in tree.splitlines() if "\t" in line]
    blobs = [(meta.split()[2], path) for meta, path in entries if meta.split()[1] == "blob"]
    if not blobs:
        return []
    out = git("cat-file", "--batch-check", git_dir=git_dir,
              input="".join(f"{sha}\n" for sha, _ in blobs)).stdout.splitlines()
    return [path for (sha, path), line in zip(blobs, out) if line.endswith(" missing")]


def checkout(git_dir: Path, commit: str, dest: Path) -> Checkout:
    """A fresh detached worktree of `commit` at `dest` (replacing whatever was there)."""
    remove_checkout(git_dir, dest)
    if git("cat-file", "-e", f"{commit}^{{commit}}", git_dir=git_dir, check=False).returncode:
        raise ConfigError(f"commit {commit} is not in {git_dir}")
    missing = _missing_blobs(git_dir, commit)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(git_dir / "tome-worktree.lock"):
        git("worktree", "add", "--detach", "--no-checkout", str(dest), commit, git_dir=git_dir)
    if missing:
        git("sparse-checkout", "set", "--no-cone", "/*", *[f"!/{p}" for p in missing], cwd=dest)
    git("checkout", "--detach", "--force", commit, cwd=dest)
    return Checkout(path=dest, git_dir=git_dir, commit=commit, missing=missing)


def remove_checkout(git_dir: Path, dest: Path) -> None:
    """Remove a worktree made by `checkout` (quietly if it is not there)."""
    with file_lock(git_dir / "tome-worktree.lock"):
        if dest.exists():
            git("worktree", "remove", "--force", str(dest), git_dir=git_dir, check=False)
            shutil.rmtree(dest, ignore_errors=True)
        git("worktree", "prune", git_dir=git_dir, check=False)
