"""Clean checkouts at a task's base commit from a local repository cache, via git worktrees.

One clone per repository (`--repos-dir`) serves every task of that repository: each task gets a
detached worktree, removed again when the task is done. Blobs the cache lacks are fetched from
its promisor remote when it is a partial clone (`git clone --filter=blob:none`); those nothing
supplies (snapshots that dropped very large files) are left out of the checkout (skip-worktree)
and reported, so the environment spec can restore them.
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
from tools.gitcmd import git as run_git

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
    """git in a clone tome did not make: quiet, no prompts, and none of the clone's hooks."""
    return run_git(*args, cwd=cwd, git_dir=git_dir, input=input, check=check, timeout=timeout, hooks=False)


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
    # rev-list --missing=print names absent objects without fetching them (cat-file would fetch
    # each one lazily from a promisor remote); ls-tree reads trees only, which every partial
    # clone of this kind keeps, to turn those ids into paths.
    listed = git("rev-list", "--objects", "--no-walk", "--missing=print", commit, git_dir=git_dir).stdout
    absent = {line[1:].split()[0] for line in listed.splitlines() if line.startswith("?")}
    if not absent:
        return []
    tree = git("ls-tree", "-r", "--full-tree", commit, git_dir=git_dir).stdout
    entries = [line.split("\t", 1) for line in tree.splitlines() if "\t" in line]
    return [path for meta, path in entries if meta.split()[1] == "blob" and meta.split()[2] in absent]


def _has_promisor(git_dir: Path) -> bool:
    out = git("config", "--get-regexp", r"^remote\..*\.promisor$", git_dir=git_dir, check=False).stdout
    return any(line.split()[-1] == "true" for line in out.splitlines())


def checkout(git_dir: Path, commit: str, dest: Path) -> Checkout:
    """A fresh detached worktree of `commit` at `dest` (replacing whatever was there).

    Blobs the cache lacks are fetched from a promisor remote (a `--filter=blob:none` clone) in
    the checkout itself; those still absent are left out (skip-worktree) and reported.
    """
    remove_checkout(git_dir, dest)
    if git("cat-file", "-e", f"{commit}^{{commit}}", git_dir=git_dir, check=False).returncode:
        raise ConfigError(f"commit {commit} is not in {git_dir}")
    missing = _missing_blobs(git_dir, commit)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(git_dir / "tome-worktree.lock"):
        git("worktree", "add", "--detach", "--no-checkout", str(dest), commit, git_dir=git_dir)
    if missing and _has_promisor(git_dir):
        # git's checkout fetches the missing blobs of the tree in one batch from the promisor
        if git("checkout", "--detach", "--force", commit, cwd=dest, check=False).returncode == 0:
            return Checkout(path=dest, git_dir=git_dir, commit=commit, missing=[])
        missing = _missing_blobs(git_dir, commit)
    if missing:
        _check_out_without(dest, commit, missing)
    else:
        git("checkout", "--detach", "--force", commit, cwd=dest)
    return Checkout(path=dest, git_dir=git_dir, commit=commit, missing=missing)


def _check_out_without(dest: Path, commit: str, missing: list[str]) -> None:
    """Check out `commit` in the new worktree `dest`, leaving out the `missing` paths.

    The index's skip-worktree bit (git-update-index(1)) keeps them out of the checkout, and
    `git checkout -- .`, `diff` and `status` pass them by. It needs no configuration, unlike a
    sparse checkout, which in a worktree lives in config.worktree: git ignores that file (and
    `sparse-checkout set` silently does nothing) when the shared repository's config has no
    core.repositoryformatversion, as a fetched snapshot's has not (seen with git 2.39).
    """
    git("read-tree", commit, cwd=dest)
    git("update-index", "--skip-worktree", "-z", "--stdin", cwd=dest, input="".join(f"{p}\0" for p in missing))
    git("checkout-index", "--all", "--force", cwd=dest)


def remove_checkout(git_dir: Path, dest: Path) -> None:
    """Remove a worktree made by `checkout` (quietly if it is not there)."""
    with file_lock(git_dir / "tome-worktree.lock"):
        if dest.exists():
            git("worktree", "remove", "--force", str(dest), git_dir=git_dir, check=False)
            shutil.rmtree(dest, ignore_errors=True)
        git("worktree", "prune", git_dir=git_dir, check=False)
