"""A hostile file system: directories swapped for symlinks mid-call, and writes killed mid-way.

The race (issue 12, item 1): a process in the workspace swaps a directory for a symlink to an
outside directory between the path check (`Workspace.resolve`) and the write. `SwappingWorkspace`
plays that process at the worst moment, deterministically: the real directory is in place for
every check and the symlink for everything after it. Each editing tool must then refuse with an
observation, and nothing outside the workspace may change.

The killed write (item 16): a write killed between creating its temp file and renaming it
leaves the temp file; the next run start removes it, and no patch ever holds one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _tools_fixtures import git, tree_digest

from tools.base import Toolbox, ToolContext
from tools.edit import EDIT_TOOLS
from tools.patch import PATCH_TOOLS
from tools.workspace import TEMP_SUFFIX, PathError, Workspace, remove_stale_temp_files

MOD = "def f():\n    return 1\n"
ROOT = Path(__file__).resolve().parents[1]


class SwappingWorkspace(Workspace):
    """A workspace where `swapped` is a real directory during each path check, a symlink after.

    With `swap_after` set, the swap happens once, after that many checks (counted from when
    `racing` is set), and stays.
    """

    def __init__(self, root: Path, swapped: str, outside: Path) -> None:
        super().__init__(root)
        self.real = self.root / swapped
        self.hidden = self.real.with_name(f".{self.real.name}-real")
        self.outside = outside
        self.racing = False
        self.swap_after: int | None = None
        self.checks = 0

    def resolve(self, path, **kw):  # type: ignore[no-untyped-def]
        """Check with the real directory in place, then swap it for the symlink."""
        if self.swap_after is None:
            self.restore()
        checked = super().resolve(path, **kw)
        if self.racing:
            self.checks += 1
            if self.swap_after in (None, self.checks):
                self.real.rename(self.hidden)
                self.real.symlink_to(self.outside, target_is_directory=True)
        return checked

    def restore(self) -> None:
        """Put the real directory back."""
        if self.hidden.exists():
            self.real.unlink()
            self.hidden.rename(self.real)


def _box(tmp_path: Path, swapped: str) -> tuple[Toolbox, SwappingWorkspace]:
    root = tmp_path / "ws"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "sub" / "mod.py").write_text(MOD)
    (root / "pkg" / "sub" / "two.py").write_text(MOD)
    (root / "top.txt").write_text("top\n")
    outside = tmp_path / "outside"
    shutil.copytree(root / swapped, outside)  # the same files, so every read of it succeeds
    ws = SwappingWorkspace(root, swapped, outside)
    ctx = ToolContext(workspace=ws, state_dir=tmp_path / "state")
    return Toolbox(list(EDIT_TOOLS + PATCH_TOOLS), ctx), ws


def _call(box: Toolbox, name: str, **args: object):
    return box.run("c", name, json.dumps(args))


_DIFF = (
    "--- a/pkg/sub/mod.py\n+++ b/pkg/sub/mod.py\n"
    "@@ -1,2 +1,2 @@\n def f():\n-    return 1\n+    return 2\n"
)
_TWO = _DIFF.replace("pkg/sub/mod.py", "pkg/sub/two.py")
_TOP = "--- a/top.txt\n+++ b/top.txt\n@@ -1 +1 @@\n-top\n+changed\n"
_DELETE = "--- a/pkg/sub/mod.py\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-def f():\n-    return 1\n"

# (tool, arguments, an edit made before the race begins so that there is something to undo)
CALLS = {
    "create": ("create", {"path": "pkg/sub/new.py", "file_text": "x = 1\n"}, None),
    "str_replace": (
        "str_replace",
        {"path": "pkg/sub/mod.py", "old_str": "return 1", "new_str": "return 2"},
        None,
    ),
    "insert": (
        "insert",
        {"path": "pkg/sub/mod.py", "insert_line": 0, "new_str": "import os\n"},
        None,
    ),
    "undo": (
        "undo_edit",
        {"path": "pkg/sub/mod.py"},
        ("str_replace", {"path": "pkg/sub/mod.py", "old_str": "return 1", "new_str": "return 3"}),
    ),
    "undo_creation": (
        "undo_edit",
        {"path": "pkg/sub/made.py"},
        ("create", {"path": "pkg/sub/made.py", "file_text": "y = 1\n"}),
    ),
    "apply_patch": ("apply_patch", {"patch": _DIFF}, None),
    "delete": ("apply_patch", {"patch": _DELETE}, None),
    "apply_patch_rolled_back": ("apply_patch", {"patch": _TOP + _DIFF}, None),  # top.txt goes back
    "view": ("view", {"path": "pkg/sub/mod.py"}, None),  # a read must not show the outside either
}


@pytest.mark.parametrize("swapped", ["pkg", "pkg/sub"])
@pytest.mark.parametrize("op", sorted(CALLS))
def test_directory_swapped_for_symlink_after_the_check_is_refused(
    tmp_path: Path, op: str, swapped: str
):
    box, ws = _box(tmp_path, swapped)
    name, args, setup = CALLS[op]
    if setup is not None:
        assert _call(box, setup[0], **setup[1]).ok
    if op == "undo_creation":  # the outside holds the made file too, for undo to delete there
        made = Path("pkg/sub/made.py")
        shutil.copy(ws.root / made, ws.outside / made.relative_to(swapped))
    inside, outside = tree_digest(ws.root), tree_digest(ws.outside)

    ws.racing = True
    result = _call(box, name, **args)
    ws.racing = False
    ws.restore()

    assert tree_digest(ws.outside) == outside, "a write landed outside the workspace"
    assert not result.ok, result.content
    assert re.search("nothing was (changed|read)", result.content), result.content
    assert "became a symlink" in result.content
    assert tree_digest(ws.root) == inside
    if op.startswith("undo"):  # a refused undo keeps its step: once the tree is sane, it works
        assert _call(box, name, **args).ok


@pytest.mark.parametrize("op", ["write_bytes", "delete", "undo"])
def test_the_workspace_writes_nothing_through_a_directory_swapped_after_resolve(
    tmp_path: Path, op: str
):
    _, ws = _box(tmp_path, "pkg/sub")
    target = ws.resolve("pkg/sub/mod.py", write=True)
    ws.write_bytes(target, b"x = 5\n")  # an edit to undo
    outside, inside = tree_digest(ws.outside), tree_digest(ws.root)
    ws.racing = True
    ws.resolve("pkg/sub/mod.py", write=True)  # checked; now pkg/sub is the symlink
    act = {
        "write_bytes": lambda: ws.write_bytes(target, b"evil\n"),
        "delete": lambda: ws.delete(target),
        "undo": lambda: ws.undo(target),
    }[op]
    with pytest.raises(PathError, match="pkg/sub/ became a symlink"):
        act()
    ws.racing = False
    ws.restore()
    assert tree_digest(ws.outside) == outside and tree_digest(ws.root) == inside
    assert ws.history_depth(target) == 1


def test_a_patch_stopped_half_way_by_the_race_names_the_files_it_could_not_put_back(
    tmp_path: Path,
):
    box, ws = _box(tmp_path, "pkg")
    outside = tree_digest(ws.outside)
    ws.racing, ws.swap_after = True, 4  # plan: mod.py, two.py; apply: mod.py, then two.py
    result = _call(box, "apply_patch", patch=_DIFF + _TWO)
    ws.racing = False
    ws.restore()

    assert tree_digest(ws.outside) == outside, "a write landed outside the workspace"
    assert not result.ok and "became a symlink" in result.content, result.content
    assert "could not be put back: pkg/sub/mod.py." in result.content
    assert (ws.root / "pkg" / "sub" / "mod.py").read_text() != MOD
    assert _call(box, "undo_edit", path="pkg/sub/mod.py").ok  # nothing is lost
    assert (ws.root / "pkg" / "sub" / "mod.py").read_text() == MOD


# --------------------------------------------------------------------------------------------
# A killed write
# --------------------------------------------------------------------------------------------

# The child writes through the workspace with a file-size limit below the data: the kernel kills
# it with SIGXFSZ once the temp file reaches the limit (setrlimit(2), RLIMIT_FSIZE), between
# writing the temp file and renaming it. CPython ignores SIGXFSZ (Python/pylifecycle.c); the
# child restores the default action, so this is a real kill, not an exception that cleans up.
_KILLED_WRITER = """
import resource, signal, sys
from pathlib import Path
from tools.workspace import Workspace

ws = Workspace(sys.argv[1])
target = ws.resolve("stats.py", write=True)
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the default action would dump core
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
ws.write_bytes(target, b"x = 1\\n" * 100_000)
"""


def _kill_a_write(repo: Path) -> Path:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(repo)],
        env=env,
        cwd=repo.parent,
        capture_output=True,
    )
    assert proc.returncode == -signal.SIGXFSZ, proc.stderr.decode()
    temps = [p for p in repo.iterdir() if p.name.endswith(TEMP_SUFFIX)]
    assert len(temps) == 1 and temps[0].stat().st_size == 4096, temps
    return temps[0]


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "stats.py").write_text("x = 0\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def test_a_killed_writes_temp_file_is_never_part_of_the_patch(tmp_path: Path):
    from agent.run import git_patch

    repo = _repo(tmp_path)
    temp = _kill_a_write(repo)
    (repo / "stats.py").write_text("x = 2\n")
    patch = git_patch(Workspace(repo), git(repo, "rev-parse", "HEAD").strip())
    assert "+x = 2" in patch
    assert temp.name not in patch and TEMP_SUFFIX not in patch
    assert (repo / "stats.py").read_text() == "x = 2\n"


def test_the_next_run_start_removes_a_killed_writes_temp_file(tmp_path: Path, scripted):
    from loop_helpers import settings_for

    from agent.records import Task
    from agent.run import RunSpec, git_patch, start_run

    repo = _repo(tmp_path)
    temp = _kill_a_write(repo)
    run = start_run(RunSpec(task=Task(statement="anything"), settings=settings_for(scripted([]), tmp_path),
                            repo=repo))
    assert not temp.exists()
    assert (repo / "stats.py").read_text() == "x = 0\n"  # the killed write changed nothing
    assert git_patch(run.agent.toolbox.ctx.workspace, run.trajectory.started.base_commit) == ""


def test_a_live_writers_temp_file_is_kept(tmp_path: Path):
    repo = _repo(tmp_path)
    dead = _kill_a_write(repo)
    live = repo / f".stats.py.{os.getpid()}.0123abcd{TEMP_SUFFIX}"  # as a write in flight names it
    live.write_bytes(b"partial")
    (repo / ".git" / f"x.1.0123abcd{TEMP_SUFFIX}").write_bytes(b"")  # .git/ is never searched
    assert remove_stale_temp_files(repo) == [dead.name]
    assert live.exists() and not dead.exists()
