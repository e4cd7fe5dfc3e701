"""Workspace: confinement, atomic writes keeping mode bits, decoding, freshness and undo."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from _tools_fixtures import tree_digest

from tools.base import ToolError
from tools.workspace import PathError, StaleFileError, Workspace, decode, sha256


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("x = 1\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("secret\n")
    return Workspace(root)


def test_relative_paths_resolve_inside(ws: Workspace):
    assert ws.resolve("pkg/a.py") == ws.root / "pkg" / "a.py"
    assert ws.resolve("./pkg/../pkg/a.py") == ws.root / "pkg" / "a.py"
    assert ws.resolve(str(ws.root / "pkg")) == ws.root / "pkg"
    assert ws.rel(ws.root / "pkg" / "a.py") == "pkg/a.py"


@pytest.mark.parametrize(
    "path, needle",
    [
        ("../outside/secret.txt", "outside the workspace"),
        ("pkg/../../outside", "outside the workspace"),
        ("/etc/passwd", "outside the workspace"),
        ("pkg/a\x00.py", "NUL byte"),
        ("", "path is empty"),
        ("  ", "path is empty"),
    ],
)
def test_bad_paths_refused(ws: Workspace, path: str, needle: str):
    with pytest.raises(PathError, match=needle):
        ws.resolve(path)


def test_symlink_outside_refused_inside_allowed(ws: Workspace, tmp_path: Path):
    (ws.root / "out").symlink_to(tmp_path / "outside")
    (ws.root / "leak.txt").symlink_to(tmp_path / "outside" / "secret.txt")
    (ws.root / "alias.py").symlink_to("pkg/a.py")
    for p in ("out/secret.txt", "leak.txt", "out"):
        with pytest.raises(PathError, match="symlink that points outside"):
            ws.resolve(p)
    assert ws.resolve("alias.py") == ws.root / "pkg" / "a.py"


def test_git_dir_not_writable(ws: Workspace):
    assert ws.resolve(".git/config") == ws.root / ".git" / "config"  # reading is fine
    for p in (".git/config", ".git/hooks/pre-commit", "pkg/../.git/x", "sub/.git/config"):
        with pytest.raises(PathError, match=r"\.git"):
            ws.resolve(p, write=True)
    (ws.root / "gitlink").symlink_to(".git")
    with pytest.raises(PathError, match=r"\.git"):
        ws.resolve("gitlink/config", write=True)
    with pytest.raises(PathError):
        ws.write_bytes(ws.root / ".git" / "config", b"evil")
    assert (ws.root / ".git" / "config").read_text() == "[core]\n"


def test_atomic_write_keeps_mode_and_leaves_no_temp(ws: Workspace):
    script = ws.root / "run.sh"
    script.write_text("#!/bin/sh\n")
    os.chmod(script, 0o755)
    ws.write_bytes(script, b"#!/bin/sh\necho hi\n")
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert script.read_bytes() == b"#!/bin/sh\necho hi\n"
    assert sorted(p.name for p in ws.root.iterdir()) == [".git", "pkg", "run.sh"]


def test_new_file_gets_umask_mode_and_parent_dirs(ws: Workspace):
    p = ws.resolve("new/deep/f.txt", write=True)
    ws.write_bytes(p, b"hi")
    assert p.read_bytes() == b"hi"
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask


def test_write_through_symlink_inside_updates_target(ws: Workspace):
    (ws.root / "alias.py").symlink_to("pkg/a.py")
    ws.write_bytes(ws.resolve("alias.py", write=True), b"x = 2\n")
    assert (ws.root / "alias.py").is_symlink()
    assert (ws.root / "pkg" / "a.py").read_bytes() == b"x = 2\n"


def test_symlinked_directory_inside_the_workspace_still_writes_through(tmp_path: Path):
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "alias").symlink_to("pkg", target_is_directory=True)
    ws = Workspace(root)
    ws.write_bytes(ws.resolve("alias/new.py", write=True), b"x = 1\n")
    assert (root / "pkg" / "new.py").read_bytes() == b"x = 1\n" and (root / "alias").is_symlink()


def test_undo_history_steps_back_to_creation(ws: Workspace):
    p = ws.resolve("f.txt", write=True)
    for data in (b"one", b"two", b"three"):
        ws.write_bytes(p, data)
    assert ws.history_depth(p) == 3
    ws.undo(p)
    assert p.read_bytes() == b"two"
    ws.undo(p)
    assert p.read_bytes() == b"one"
    assert "removed" in ws.undo(p)
    assert not p.exists()
    before = tree_digest(ws.root)
    with pytest.raises(ToolError, match="no edit of f.txt to undo"):
        ws.undo(p)
    assert tree_digest(ws.root) == before


def test_undo_restores_mode_and_deleted_file(ws: Workspace):
    p = ws.root / "pkg" / "a.py"
    os.chmod(p, 0o751)
    ws.delete(p)
    assert not p.exists()
    ws.undo(p)
    assert p.read_bytes() == b"x = 1\n" and stat.S_IMODE(p.stat().st_mode) == 0o751


def test_freshness(ws: Workspace):
    p = ws.root / "pkg" / "a.py"
    tf = ws.read_text(p)
    ws.check_fresh(p, tf.digest)  # never seen: nothing to compare with
    ws.mark_seen(p, tf.digest)
    p.write_text("x = 99\n")
    with pytest.raises(StaleFileError, match="changed on disk since you last viewed it"):
        ws.check_fresh(p, ws.read_text(p).digest)
    ws.write_bytes(p, b"x = 3\n")  # our own write refreshes what the model has seen
    ws.check_fresh(p, sha256(b"x = 3\n"))


@pytest.mark.parametrize(
    "data, text, encoding, bom",
    [
        (b"plain\n", "plain\n", "utf-8", False),
        ("caf\u00e9\n".encode(), "caf\u00e9\n", "utf-8", False),
        (b"\xef\xbb\xbfbom\r\n", "bom\r\n", "utf-8", True),
        (b"caf\xe9\n", "caf\u00e9\n", "latin-1", False),
    ],
)
def test_decode(data: bytes, text: str, encoding: str, bom: bool):
    assert decode(data) == (text, encoding, bom)


def test_text_file_round_trip_and_unencodable(ws: Workspace):
    p = ws.root / "l1.txt"
    p.write_bytes(b"caf\xe9\r\nna\xefve")
    tf = ws.read_text(p)
    assert tf.encoding == "latin-1" and tf.newline == "\r\n"
    assert tf.encode(tf.text) == p.read_bytes()
    with pytest.raises(ToolError, match="latin-1-encoded and cannot hold"):
        tf.encode("snow \u2603")


def test_binary_refused(ws: Workspace):
    p = ws.root / "blob.bin"
    p.write_bytes(b"\x00\x01\x02")
    with pytest.raises(ToolError, match="binary file"):
        ws.read_text(p)


def test_workspace_root_must_exist(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        Workspace(tmp_path / "missing")


def test_delete_prunes_empty_directories_and_undo_restores(ws: Workspace):
    p = ws.resolve("deep/er/f.txt", write=True)
    ws.write_bytes(p, b"x")
    (ws.root / "deep" / "keep.txt").write_text("k")
    ws.delete(p)
    assert not (ws.root / "deep" / "er").exists() and (ws.root / "deep" / "keep.txt").exists()
    ws.undo(p)
    assert p.read_bytes() == b"x"
