"""git_status, git_diff and checkpoints on real repositories, with changes made by real shells."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from _tools_fixtures import git, make_box, tree_digest

from tools.base import Toolbox
from tools.edit import EDIT_TOOLS
from tools.git import GIT_TOOLS, checkpoint_if_repo, list_checkpoints, workspace_diff


def worktree_digest(root: Path) -> str:
    """Digest of the working tree without .git."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for f in sorted(filenames):
            p = Path(dirpath) / f
            h.update(str(p.relative_to(root)).encode() + oct(p.lstat().st_mode).encode())
            h.update(os.readlink(p).encode() if p.is_symlink() else p.read_bytes())
    return h.hexdigest()


def user_state(root: Path) -> tuple[bytes, str, str, str]:
    """What must never change: the index bytes, HEAD, the branch and the stash."""
    index = (root / ".git" / "index").read_bytes() if (root / ".git" / "index").exists() else b""
    head = (root / ".git" / "HEAD").read_text()
    branch = git(root, "rev-parse", "HEAD")
    stash = git(root, "stash", "list")
    return index, head, branch, stash


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text("build/\n")
    (root / "a.py").write_text("x = 1\n")
    (root / "b.py").write_text("y = 2\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o755)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    (root / "build").mkdir()
    (root / "build" / "artifact.o").write_bytes(b"\x00obj")
    return root


@pytest.fixture
def box(repo: Path, tmp_path: Path) -> Toolbox:
    return make_box(repo, tmp_path / "state", GIT_TOOLS + EDIT_TOOLS)


def call(box: Toolbox, tool_name: str, **args):
    return box.run("c", tool_name, json.dumps(args))


def shell(root: Path, script: str) -> None:
    subprocess.run(["sh", "-c", script], cwd=root, check=True)


def test_status_and_diff_include_untracked(box: Toolbox, repo: Path):
    state = user_state(repo)
    shell(repo, "echo 'x = 10' > a.py && rm b.py && echo 'z = 3' > new.py")
    out = call(box, "git_status").content
    assert out.splitlines()[0].startswith("main") and "3 changed paths" in out
    assert " M a.py" in out and " D b.py" in out and "?? new.py" in out and "artifact" not in out
    diff = call(box, "git_diff").content
    assert (
        "+x = 10" in diff
        and "deleted file mode" in diff
        and "new file mode" in diff
        and "+z = 3" in diff
    )
    assert "artifact" not in diff
    only = call(box, "git_diff", path="new.py").content
    assert "new.py" in only and "a.py" not in only
    assert user_state(repo) == state


def test_diff_against_the_base_commit(box: Toolbox, repo: Path):
    base = git(repo, "rev-parse", "HEAD").strip()
    shell(repo, "echo 'x = 5' > a.py")
    git(repo, "commit", "-q", "-am", "later")  # the agent (or user) committed on top
    box.ctx.workspace.base_commit = base
    diff = call(box, "git_diff").content
    assert "-x = 1" in diff and "+x = 5" in diff
    box.ctx.workspace.base_commit = None
    assert call(box, "git_diff").content == "No changes against the base commit."


def test_diff_applies_to_a_clean_checkout(box: Toolbox, repo: Path, tmp_path: Path):
    shell(
        repo,
        "printf 'x = 1\\nx2 = 2\\n' > a.py && mkdir -p pkg && echo 'q = 1' > pkg/q.py && chmod +x pkg/q.py",
    )
    patch = workspace_diff(box.ctx.workspace, binary=True)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    (tmp_path / "p.diff").write_text(patch)
    git(clone, "apply", str(tmp_path / "p.diff"))
    assert (clone / "pkg" / "q.py").read_text() == "q = 1\n"
    assert (clone / "pkg" / "q.py").stat().st_mode & 0o100
    assert (clone / "a.py").read_text() == (repo / "a.py").read_text()


def test_checkpoint_restores_shell_changes(box: Toolbox, repo: Path):
    state = user_state(repo)
    r = call(box, "checkpoint", label="clean start")
    assert r.ok and "Checkpoint 0001 saved" in r.content
    saved = worktree_digest(repo)
    shell(
        repo,
        "echo broken > a.py && rm run.sh && mkdir -p d && echo new > d/c.txt && echo more >> build/artifact.o",
    )
    changed = worktree_digest(repo)
    r = call(box, "restore_checkpoint")
    assert r.ok, r.content
    assert (
        "restored a.py" in r.content
        and "recreated run.sh" in r.content
        and "deleted d/c.txt" in r.content
    )
    assert (repo / "run.sh").read_text() == "#!/bin/sh\necho hi\n"
    assert stat.S_IMODE((repo / "run.sh").stat().st_mode) & 0o111
    # Ignored files are not part of checkpoints: the artifact keeps its shell-made change.
    assert (repo / "build" / "artifact.o").read_bytes() == b"\x00objmore\n"
    (repo / "build" / "artifact.o").write_bytes(b"\x00obj")
    assert worktree_digest(repo) == saved
    # The state before the restore was saved too: restoring it brings the shell changes back.
    assert "saved as checkpoint 0002" in r.content
    assert call(box, "restore_checkpoint", checkpoint_id="2").ok
    (repo / "build" / "artifact.o").write_bytes(b"\x00objmore\n")
    assert worktree_digest(repo) == changed
    assert user_state(repo) == state


def test_checkpoint_keeps_staged_changes_and_undo_history(box: Toolbox, repo: Path):
    shell(repo, "echo 'x = 2' > a.py")
    git(repo, "add", "a.py")  # the user staged something: the index must survive
    state = user_state(repo)
    call(box, "checkpoint", label="staged")
    shell(repo, "echo 'x = 3' > a.py")
    assert call(box, "restore_checkpoint").ok
    assert (repo / "a.py").read_text() == "x = 2\n"
    assert user_state(repo) == state
    # The restore went through the workspace, so undo_edit steps back over it.
    assert call(box, "undo_edit", path="a.py").ok
    assert (repo / "a.py").read_text() == "x = 3\n"


def test_unchanged_tree_reuses_the_latest_checkpoint(box: Toolbox, repo: Path):
    assert "0001" in call(box, "checkpoint", label="one").content
    assert "0001" in call(box, "checkpoint", label="two").content
    shell(repo, "echo z > z.txt")
    assert "0002" in call(box, "checkpoint", label="three").content
    assert [c.id for c in list_checkpoints(box.ctx.workspace)] == ["0001", "0002"]
    assert "checkpoints: 0001, 0002" in call(box, "git_status").content


def test_restore_when_nothing_changed(box: Toolbox):
    call(box, "checkpoint", label="x")
    assert "already matches" in call(box, "restore_checkpoint").content


def test_empty_repository(tmp_path: Path):
    root = tmp_path / "empty"
    root.mkdir()
    git(root, "init", "-q")
    (root / "f.txt").write_text("hello\n")
    b = make_box(root, tmp_path / "s", GIT_TOOLS)
    assert "+hello" in call(b, "git_diff").content
    assert "(none yet)" in call(b, "git_status").content
    assert call(b, "checkpoint", label="first").ok
    (root / "f.txt").write_text("bye\n")
    assert call(b, "restore_checkpoint").ok and (root / "f.txt").read_text() == "hello\n"


@pytest.mark.parametrize(
    "tool_name, args, needle",
    [
        ("restore_checkpoint", {"checkpoint_id": "0042"}, "no checkpoint '0042'"),
        ("git_diff", {"path": "../x"}, "outside the workspace"),
    ],
)
def test_refusals_change_nothing(box: Toolbox, repo: Path, tool_name, args, needle):
    call(box, "checkpoint", label="x")
    shell(repo, "echo dirty > a.py")
    before = tree_digest(repo.parent)
    r = call(box, tool_name, **args)
    assert not r.ok and needle in r.content, r.content
    assert tree_digest(repo.parent) == before


def test_restore_without_checkpoints(box: Toolbox, repo: Path):
    before = tree_digest(repo)
    r = call(box, "restore_checkpoint")
    assert not r.ok and "no checkpoints yet" in r.content
    assert tree_digest(repo) == before


@pytest.mark.parametrize(
    "tool_name", ["git_status", "git_diff", "checkpoint", "restore_checkpoint"]
)
def test_not_a_repository(tmp_path: Path, tool_name: str):
    root = tmp_path / "plain"
    root.mkdir()
    (root / "f.txt").write_text("x\n")
    b = make_box(root, tmp_path / "s", GIT_TOOLS)
    before = tree_digest(tmp_path)
    args = {"label": "x"} if tool_name == "checkpoint" else {}
    r = call(b, tool_name, **args)
    assert (
        not r.ok
        and r.error_kind == "not_a_repo"
        and "not the root of a git repository" in r.content
    )
    assert tree_digest(tmp_path) == before
    assert checkpoint_if_repo(b.ctx.workspace, "x") is None


def test_a_checkpoint_is_taken_before_every_shell_call(repo: Path, tmp_path: Path):
    from tools.base import ToolContext, tool

    @tool(name="bash")
    def fake_shell(ctx: ToolContext, command: str) -> str:
        """Run a command (a real subprocess)."""
        proc = subprocess.run(
            ["sh", "-c", command],
            cwd=ctx.workspace.root,
            check=False,
            capture_output=True,
            text=True,
        )
        return proc.stdout + proc.stderr

    b = make_box(repo, tmp_path / "state", (fake_shell, *GIT_TOOLS))
    saved = worktree_digest(repo)
    assert b.run("1", "bash", json.dumps({"command": "echo broken > a.py; rm b.py"})).ok
    assert b.run("2", "bash", json.dumps({"command": "echo more >> a.py"})).ok
    cps = list_checkpoints(b.ctx.workspace)
    assert [c.label for c in cps] == ["before bash call 1", "before bash call 2"]
    r = call(b, "restore_checkpoint", checkpoint_id=cps[0].id)
    assert r.ok, r.content
    assert worktree_digest(repo) == saved


def test_library_restore_for_the_chat_undo(box: Toolbox, repo: Path):
    from tools.git import make_checkpoint, restore_checkpoint

    make_checkpoint(box.ctx.workspace, "before")
    shell(repo, "echo changed > a.py")
    out = restore_checkpoint(box.ctx.workspace)
    assert "restored a.py" in out and (repo / "a.py").read_text() == "x = 1\n"


def test_old_checkpoints_are_pruned(box: Toolbox, repo: Path):
    from tools.git import make_checkpoint

    for i in range(5):
        shell(repo, f"echo {i} > counter.txt")
        make_checkpoint(box.ctx.workspace, f"step {i}", keep=3)
    cps = list_checkpoints(box.ctx.workspace)
    assert [c.label for c in cps] == ["step 2", "step 3", "step 4"]
    assert [c.id for c in cps] == ["0003", "0004", "0005"]
