"""Git tools: status, the current patch against the base commit, and workspace checkpoints.

A checkpoint is a commit object of the whole working tree (tracked files and untracked files
that are not ignored) built with git plumbing in a temporary index, kept under the hidden ref
`refs/tome/checkpoints/NNNN`. The user's index, branch, HEAD and stash are never touched, and
restoring one brings back changes made through the shell as well as through the editor.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools.base import ToolContext, ToolError, tool
from tools.gitcmd import git as run_git
from tools.workspace import Workspace

__all__ = [
    "EMPTY_TREE",
    "GIT_TOOLS",
    "Checkpoint",
    "checkpoint_if_repo",
    "git_diff",
    "git_status",
    "is_repo",
    "list_checkpoints",
    "make_checkpoint",
    "restore",
    "restore_checkpoint",
    "snapshot_tree",
    "workspace_diff",
]

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
REF_PREFIX = "refs/tome/checkpoints/"
STATUS_LINES = 200
MAX_CHECKPOINTS = 200


class NotARepo(ToolError):
    """The workspace is not inside a git repository."""

    kind = "not_a_repo"


@dataclass
class Checkpoint:
    """A saved state of the working tree."""

    id: str  # "0003"
    commit: str
    tree: str
    label: str


def _env(index: Path | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",  # status must not rewrite the user's index
        "GIT_AUTHOR_NAME": "tome",
        "GIT_AUTHOR_EMAIL": "tome@localhost",
        "GIT_COMMITTER_NAME": "tome",
        "GIT_COMMITTER_EMAIL": "tome@localhost",
        "LC_ALL": "C",
    }
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)
    if index is not None:
        env["GIT_INDEX_FILE"] = str(index)
    else:
        env.pop("GIT_INDEX_FILE", None)
    return env


def _git(
    ws: Workspace,
    *args: str,
    index: Path | None = None,
    data: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    proc = run_git(*args, cwd=ws.root, env=_env(index), input=data, text=False, check=False, timeout=300)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"git {' '.join(args[:3])} failed: {proc.stderr.decode(errors='replace').strip()}"
        )
    return proc


def is_repo(ws: Workspace) -> bool:
    """Whether the workspace root is the top of a git work tree."""
    if shutil.which("git") is None:
        return False
    proc = _git(ws, "rev-parse", "--show-toplevel", check=False)
    return proc.returncode == 0 and Path(proc.stdout.decode().strip()).resolve() == ws.root


def _require_repo(ws: Workspace) -> None:
    if not is_repo(ws):
        raise NotARepo(
            "the workspace is not the root of a git repository, so git status, diffs and "
            "checkpoints are unavailable; use undo_edit for edits made with the editing tools."
        )


def _head(ws: Workspace) -> str | None:
    proc = _git(ws, "rev-parse", "--verify", "-q", "HEAD^{commit}", check=False)
    return proc.stdout.decode().strip() or None


def snapshot_tree(ws: Workspace) -> str:
    """The tree id of the working tree as it is now (untracked, non-ignored files included)."""
    real_index = Path(_git(ws, "rev-parse", "--git-path", "index").stdout.decode().strip())
    if not real_index.is_absolute():
        real_index = ws.root / real_index
    with tempfile.TemporaryDirectory(prefix="tome-index-") as tmp:
        index = Path(tmp) / "index"
        if real_index.exists():
            # A stat cache, so most files need no re-hashing. copy2 keeps the index's mtime: git
            # re-hashes entries changed in the same second as the index was written ("racy git",
            # git's Documentation/technical/racy-git.txt) only while the index looks that old; a
            # fresh mtime made a same-size rewrite look unchanged (a flaky checkpoint).
            shutil.copy2(real_index, index)
        elif _head(ws):
            _git(ws, "read-tree", "HEAD", index=index)
        _git(ws, "add", "-A", "--", ".", index=index)
        return _git(ws, "write-tree", index=index).stdout.decode().strip()


def list_checkpoints(ws: Workspace) -> list[Checkpoint]:
    """Every checkpoint, oldest first."""
    out = _git(
        ws,
        "for-each-ref",
        "--sort=refname",
        "--format=%(refname)%00%(objectname)%00%(tree)%00%(contents:subject)",
        REF_PREFIX,
    ).stdout.decode("utf-8", "replace")
    cps = []
    for line in out.splitlines():
        ref, commit, tree, label = line.split("\0", 3)
        cps.append(Checkpoint(ref[len(REF_PREFIX) :], commit, tree, label))
    return sorted(cps, key=lambda c: (not c.id.isdigit(), int(c.id) if c.id.isdigit() else 0, c.id))


def make_checkpoint(ws: Workspace, label: str, *, keep: int = MAX_CHECKPOINTS) -> Checkpoint:
    """Save the working tree under a new hidden ref (or return the latest if nothing changed).

    Only the newest `keep` checkpoints are kept; older refs are deleted.
    """
    _require_repo(ws)
    tree = snapshot_tree(ws)
    existing = list_checkpoints(ws)
    if existing and existing[-1].tree == tree:
        return existing[-1]
    parent = _head(ws)
    args = ["commit-tree", tree, "-m", label or "checkpoint"]
    if parent:
        args += ["-p", parent]
    commit = _git(ws, *args).stdout.decode().strip()
    number = max((int(c.id) for c in existing if c.id.isdigit()), default=0) + 1
    cid = f"{number:04d}"
    _git(ws, "update-ref", REF_PREFIX + cid, commit)
    for old in existing[: max(0, len(existing) + 1 - keep)]:
        _git(ws, "update-ref", "-d", REF_PREFIX + old.id)
    return Checkpoint(cid, commit, tree, label)


def checkpoint_if_repo(ws: Workspace, label: str) -> Checkpoint | None:
    """A checkpoint when the workspace is a git repository, else None (for the shell tool)."""
    return make_checkpoint(ws, label) if is_repo(ws) else None


def _tree_entries(ws: Workspace, tree: str, paths: list[str]) -> dict[str, tuple[str, str]]:
    if not paths:
        return {}
    out = _git(ws, "ls-tree", "-z", "-r", "--full-tree", tree, "--", *paths).stdout
    entries = {}
    for item in out.split(b"\0"):
        if item:
            meta, path = item.split(b"\t", 1)
            mode, _, sha = meta.decode().split()
            entries[path.decode("utf-8", "surrogateescape")] = (mode, sha)
    return entries


def _blobs(ws: Workspace, shas: list[str]) -> dict[str, bytes]:
    if not shas:
        return {}
    out = _git(ws, "cat-file", "--batch", data="".join(f"{s}\n" for s in shas).encode()).stdout
    blobs, pos = {}, 0
    for sha in shas:
        end = out.index(b"\n", pos)
        size = int(out[pos:end].split()[2])
        blobs[sha] = out[end + 1 : end + 1 + size]
        pos = end + 1 + size + 1
    return blobs


def restore(ws: Workspace, cp: Checkpoint) -> tuple[Checkpoint, list[str]]:
    """Make the working tree match a checkpoint; returns (checkpoint of the state before, changes)."""
    before = make_checkpoint(ws, f"before restoring {cp.id}")
    diff = _git(ws, "diff", "--name-status", "-z", "--no-renames", before.tree, cp.tree).stdout
    fields = [f.decode("utf-8", "surrogateescape") for f in diff.split(b"\0") if f]
    changes = list(zip(fields[::2], fields[1::2]))
    wanted = _tree_entries(ws, cp.tree, [p for s, p in changes if s != "D"])
    blobs = _blobs(ws, sorted({sha for mode, sha in wanted.values() if mode != "160000"}))
    done = []
    for status, path in changes:
        target = ws.root / path
        if (target.is_dir() and not target.is_symlink()) or wanted.get(path, ("",))[0] == "160000":
            done.append(f"left submodule {path} as it is")  # checkpoints do not cover submodules
            continue
        if status == "D":
            if target.is_symlink():
                target.unlink()
            elif target.exists():
                ws.delete(target)
            done.append(f"deleted {path}")
            continue
        mode, sha = wanted[path]
        if target.is_symlink() or (mode == "120000" and target.exists()):
            target.unlink()
        if mode == "120000":
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(blobs[sha].decode("utf-8", "surrogateescape"), target)
        else:
            ws.write_bytes(
                ws.resolve(path, write=True),
                blobs[sha],
                mode=_file_mode(target, executable=mode == "100755"),
            )
        done.append(f"{'restored' if status != 'A' else 'recreated'} {path}")
    return before, done


def _file_mode(path: Path, *, executable: bool) -> int:
    current = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    return (current | 0o111) & ~0o022 if executable else current & ~0o111


def workspace_diff(
    ws: Workspace, *, base: str | None = None, paths: list[str] | None = None, binary: bool = False
) -> str:
    """The patch from the base commit (default: the workspace's, else HEAD) to the working tree."""
    _require_repo(ws)
    base = base or ws.base_commit or _head(ws) or EMPTY_TREE
    tree = snapshot_tree(ws)
    args = ["diff", "--no-color", "--no-ext-diff", "--no-textconv", base, tree]
    if binary:
        args.insert(1, "--binary")
    if paths:
        args += ["--", *paths]
    return _git(ws, *args).stdout.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------


@tool
def git_status(ctx: ToolContext) -> str:
    """Show the branch, the base commit and which files are changed, added or untracked."""
    ws = ctx.workspace
    _require_repo(ws)
    out = (
        _git(ws, "status", "--short", "--branch", "--untracked-files=all")
        .stdout.decode("utf-8", "replace")
        .splitlines()
    )
    head = out[0] if out and out[0].startswith("##") else "## (no branch)"
    files = [l for l in out if not l.startswith("##")]
    lines = [head.lstrip("# "), f"base commit: {ws.base_commit or _head(ws) or '(none yet)'}"]
    if not files:
        lines.append("working tree clean")
    else:
        lines.append(f"{len(files)} changed path{'s' if len(files) != 1 else ''}:")
        lines.extend(files[:STATUS_LINES])
        if len(files) > STATUS_LINES:
            lines.append(f"[{len(files) - STATUS_LINES} more not shown; git_diff shows the patch]")
    cps = list_checkpoints(ws)
    if cps:
        lines.append(f"checkpoints: {', '.join(c.id for c in cps[-10:])} (latest: {cps[-1].label})")
    return "\n".join(lines)


@tool
def git_diff(ctx: ToolContext, path: str | None = None) -> str:
    """Show the current patch: every change since the base commit, untracked files included.

    Args:
        path: Only this file or directory, relative to the workspace root.
    """
    ws = ctx.workspace
    paths = None
    if path:
        p = ws.resolve(path)
        paths = [ws.rel(p)]
    diff = workspace_diff(ws, paths=paths)
    return diff or "No changes against the base commit."


def restore_checkpoint(ws: Workspace, checkpoint_id: str | None = None) -> str:
    """Bring the working tree back to a checkpoint (default: the latest); says what changed."""
    _require_repo(ws)
    cps = list_checkpoints(ws)
    if not cps:
        raise ToolError("there are no checkpoints yet; make one with checkpoint(label).")
    if checkpoint_id is None:
        cp = cps[-1]
    else:
        match = [
            c
            for c in cps
            if checkpoint_id in (c.id, c.id.lstrip("0")) or c.id == checkpoint_id.zfill(4)
        ]
        if not match:
            raise ToolError(
                f"no checkpoint {checkpoint_id!r}; the checkpoints are "
                f"{', '.join(f'{c.id} ({c.label})' for c in cps[-20:])}."
            )
        cp = match[0]
    before, done = restore(ws, cp)
    if not done:
        return f"The working tree already matches checkpoint {cp.id}; nothing changed."
    n = len(done)
    return (
        f"Restored checkpoint {cp.id} ({cp.label}): {n} path{'s' if n != 1 else ''} changed:\n"
        + "\n".join(done[:100])
        + f"\nThe state before is saved as checkpoint {before.id}."
    )


@tool(name="checkpoint")
def checkpoint_tool(ctx: ToolContext, label: str) -> str:
    """Save the whole working tree (shell changes included) so it can be restored later.

    Args:
        label: A few words saying what state this is, e.g. "before refactoring parser".
    """
    cp = make_checkpoint(ctx.workspace, label)
    return f"Checkpoint {cp.id} saved ({cp.label}); restore_checkpoint('{cp.id}') brings this state back."


@tool(name="restore_checkpoint")
def restore_checkpoint_tool(ctx: ToolContext, checkpoint_id: str | None = None) -> str:
    """Bring the working tree back to a checkpoint (default: the latest), undoing shell and editor changes since.

    A checkpoint is taken automatically before every shell command.

    Args:
        checkpoint_id: The checkpoint's id as git_status lists it, e.g. "0003".
    """
    return restore_checkpoint(ctx.workspace, checkpoint_id)


GIT_TOOLS = (git_status, git_diff, checkpoint_tool, restore_checkpoint_tool)
