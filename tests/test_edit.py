"""The editor through a real Toolbox on real files: views, edits, refusals that change nothing."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from _tools_fixtures import make_box, tree_digest

from tools.base import Toolbox
from tools.edit import EDIT_TOOLS

SOURCE = "".join(f"line {i}\n" for i in range(1, 31))


@pytest.fixture
def box(tmp_path: Path) -> Toolbox:
    root = tmp_path / "ws"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "sub" / "deep").mkdir()
    (root / "pkg" / "sub" / "deep" / "hidden_by_depth.py").write_text("")
    (root / "pkg" / "mod.py").write_text("def f():\n    return 1\n\n\ndef g():\n    return 1\n")
    (root / "notes.txt").write_text(SOURCE)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / "outside.txt").write_text("outside\n")
    return make_box(root, tmp_path / "state", EDIT_TOOLS)


def call(box: Toolbox, name: str, **args):
    return box.run("c", name, json.dumps(args))


def ok(box: Toolbox, name: str, **args) -> str:
    r = call(box, name, **args)
    assert r.ok, r.content
    return r.content


def refused(box: Toolbox, name: str, needle: str, **args) -> str:
    """The call fails with `needle` in its message and changes nothing under tmp_path."""
    top = box.ctx.workspace.root.parent
    before = tree_digest(top)
    r = call(box, name, **args)
    assert not r.ok, r.content
    assert needle in r.content, r.content
    assert tree_digest(top) == before
    return r.content


# ---- view ----------------------------------------------------------------------------------


def test_view_file_numbered(box: Toolbox):
    out = ok(box, "view", path="notes.txt")
    assert out.splitlines()[0] == "     1\tline 1" and out.splitlines()[29] == "    30\tline 30"


def test_view_range(box: Toolbox):
    out = ok(box, "view", path="notes.txt", view_range=[10, 12])
    assert out.splitlines()[:3] == ["    10\tline 10", "    11\tline 11", "    12\tline 12"]
    assert "[lines 10-12 of 30]" in out
    assert (
        ok(box, "view", path="notes.txt", view_range=[29, -1]).splitlines()[1] == "    30\tline 30"
    )


def test_view_directory_two_levels(box: Toolbox):
    out = ok(box, "view", path=".")
    assert "pkg/" in out and "pkg/mod.py" in out and "pkg/sub/" in out and "notes.txt" in out
    assert "hidden_by_depth" not in out and ".git" not in out


@pytest.mark.parametrize(
    "args, needle",
    [
        ({"path": "notes.txt", "view_range": [40, 50]}, "has 30 lines"),
        ({"path": "notes.txt", "view_range": [5, 2]}, "comes before the first"),
        ({"path": "notes.txt", "view_range": [5]}, "two numbers"),
        ({"path": "pkg", "view_range": [1, 2]}, "directory"),
        ({"path": "missing.txt"}, "does not exist"),
        ({"path": "../outside.txt"}, "outside the workspace"),
    ],
)
def test_view_refusals(box: Toolbox, args, needle):
    refused(box, "view", needle, **args)


def test_view_reads_spilled_results_but_not_other_absolute_paths(box: Toolbox, tmp_path: Path):
    box.ctx.spill_dir.mkdir(parents=True)
    spilled = box.ctx.spill_dir / "0001-c-x.txt"
    spilled.write_text("a\nb\n")
    assert ok(box, "view", path=str(spilled), view_range=[2, 2]).startswith("     2\tb")
    refused(box, "view", "outside the workspace", path=str(tmp_path / "outside.txt"))
    refused(box, "create", "outside the workspace", path=str(spilled), file_text="x")


# ---- create --------------------------------------------------------------------------------


def test_create_new_file_and_dirs(box: Toolbox):
    assert "Created new/dir/f.py (2 lines)" in ok(
        box, "create", path="new/dir/f.py", file_text="a = 1\nb = 2\n"
    )
    assert (box.ctx.workspace.root / "new" / "dir" / "f.py").read_text() == "a = 1\nb = 2\n"


def test_create_over_existing_needs_a_view(box: Toolbox):
    refused(box, "create", "already exists (30 lines)", path="notes.txt", file_text="x\n")
    ok(box, "view", path="notes.txt")
    assert "Replaced notes.txt" in ok(box, "create", path="notes.txt", file_text="x\n")
    ok(box, "undo_edit", path="notes.txt")
    assert (box.ctx.workspace.root / "notes.txt").read_text() == SOURCE


@pytest.mark.parametrize(
    "path, needle",
    [
        ("../evil.txt", "outside the workspace"),
        ("/tmp/evil-tome-test.txt", "outside the workspace"),
        ("a\x00b.txt", "NUL byte"),
        (".git/hooks/post-checkout", ".git/"),
        (".git/HEAD", ".git/"),
        ("pkg", "is a directory"),
    ],
)
def test_create_refusals(box: Toolbox, path: str, needle: str):
    refused(box, "create", needle, path=path, file_text="evil\n")
    assert not Path("/tmp/evil-tome-test.txt").exists()


def test_create_through_symlink_outside_refused(box: Toolbox, tmp_path: Path):
    (tmp_path / "elsewhere").mkdir()
    (box.ctx.workspace.root / "link").symlink_to(tmp_path / "elsewhere")
    refused(box, "create", "symlink that points outside", path="link/x.txt", file_text="evil\n")
    (box.ctx.workspace.root / "leak.txt").symlink_to(tmp_path / "outside.txt")
    refused(
        box,
        "str_replace",
        "symlink that points outside",
        path="leak.txt",
        old_str="outside",
        new_str="pwned",
    )


def test_create_reports_broken_python(box: Toolbox):
    assert "no longer parses as Python" in ok(box, "create", path="bad.py", file_text="def f(:\n")


# ---- str_replace ---------------------------------------------------------------------------


def test_str_replace_success_shows_snippet(box: Toolbox):
    out = ok(
        box, "str_replace", path="notes.txt", old_str="line 15\n", new_str="fifteen\nand a half\n"
    )
    assert "Edited notes.txt" in out
    assert "    15\tfifteen\n    16\tand a half\n" in out and "    11\tline 11" in out
    assert "    20\tline 19" in out and "line 20" not in out
    text = (box.ctx.workspace.root / "notes.txt").read_text()
    assert text == SOURCE.replace("line 15\n", "fifteen\nand a half\n")


def test_str_replace_delete(box: Toolbox):
    ok(box, "str_replace", path="notes.txt", old_str="line 3\n")
    assert "line 3\n" not in (box.ctx.workspace.root / "notes.txt").read_text()


def test_str_replace_no_match_shows_nearest_lines(box: Toolbox):
    msg = refused(
        box,
        "str_replace",
        "was not found",
        path="pkg/mod.py",
        old_str="def g():\n    return 2\n",
        new_str="x",
    )
    assert "Closest lines 5-6" in msg and "     5\tdef g():" in msg and "nothing was changed" in msg


def test_str_replace_whitespace_hint(box: Toolbox):
    msg = refused(
        box,
        "str_replace",
        "was not found",
        path="pkg/mod.py",
        old_str="def f():\n  return 1\n",
        new_str="x",
    )
    assert "whitespace or indentation differs" in msg


def test_str_replace_several_matches_lists_lines(box: Toolbox):
    msg = refused(
        box,
        "str_replace",
        "occurs 2 times",
        path="pkg/mod.py",
        old_str="    return 1\n",
        new_str="    return 2\n",
    )
    assert "lines 2, 6" in msg


def test_str_replace_empty_old_str(box: Toolbox):
    refused(box, "str_replace", "old_str is empty", path="notes.txt", old_str="", new_str="x")


def test_str_replace_missing_file(box: Toolbox):
    refused(box, "str_replace", "does not exist", path="nope.txt", old_str="a", new_str="b")


def test_str_replace_in_git_dir(box: Toolbox):
    refused(box, "str_replace", ".git/", path=".git/HEAD", old_str="main", new_str="evil")


def test_str_replace_warns_on_broken_python(box: Toolbox):
    out = ok(box, "str_replace", path="pkg/mod.py", old_str="def f():", new_str="def f(:")
    assert "no longer parses as Python" in out


def test_stale_view_refused(box: Toolbox):
    ok(box, "view", path="notes.txt")
    (box.ctx.workspace.root / "notes.txt").write_text(SOURCE + "added by the shell\n")
    refused(
        box,
        "str_replace",
        "changed on disk since you last viewed it",
        path="notes.txt",
        old_str="line 2\n",
        new_str="two\n",
    )
    refused(box, "insert", "changed on disk", path="notes.txt", insert_line=1, new_str="x")
    ok(box, "view", path="notes.txt")
    ok(box, "str_replace", path="notes.txt", old_str="line 2\n", new_str="two\n")


def test_consecutive_edits_need_no_new_view(box: Toolbox):
    ok(box, "view", path="notes.txt")
    ok(box, "str_replace", path="notes.txt", old_str="line 2\n", new_str="two\n")
    ok(box, "str_replace", path="notes.txt", old_str="line 3\n", new_str="three\n")


def test_unencodable_text_in_latin1_file(box: Toolbox):
    p = box.ctx.workspace.root / "l1.txt"
    p.write_bytes(b"caf\xe9\n")
    refused(box, "str_replace", "cannot hold", path="l1.txt", old_str="caf\u00e9", new_str="\u2603")


def test_binary_file_refused(box: Toolbox):
    (box.ctx.workspace.root / "b.bin").write_bytes(b"ab\x00cd")
    refused(box, "str_replace", "binary file", path="b.bin", old_str="ab", new_str="x")


# ---- insert and undo ------------------------------------------------------------------------


def test_insert_top_middle_end(box: Toolbox):
    ok(box, "insert", path="notes.txt", insert_line=0, new_str="top")
    ok(box, "insert", path="notes.txt", insert_line=3, new_str="after two\n")
    ok(box, "insert", path="notes.txt", insert_line=32, new_str="end")
    lines = (box.ctx.workspace.root / "notes.txt").read_text().splitlines()
    assert lines[:4] == ["top", "line 1", "line 2", "after two"] and lines[-1] == "end"
    assert len(lines) == 33


@pytest.mark.parametrize("line", [-1, 31])
def test_insert_out_of_range(box: Toolbox, line: int):
    refused(box, "insert", "out of range", path="notes.txt", insert_line=line, new_str="x")


def test_undo_edit_steps_back(box: Toolbox):
    ok(box, "str_replace", path="notes.txt", old_str="line 1\n", new_str="one\n")
    ok(box, "insert", path="notes.txt", insert_line=0, new_str="zero")
    ok(box, "undo_edit", path="notes.txt")
    assert (box.ctx.workspace.root / "notes.txt").read_text() == SOURCE.replace("line 1\n", "one\n")
    ok(box, "undo_edit", path="notes.txt")
    assert (box.ctx.workspace.root / "notes.txt").read_text() == SOURCE
    refused(box, "undo_edit", "no edit of notes.txt to undo", path="notes.txt")


def test_undo_of_create_removes_the_file(box: Toolbox):
    ok(box, "create", path="fresh.txt", file_text="x\n")
    ok(box, "undo_edit", path="fresh.txt")
    assert not (box.ctx.workspace.root / "fresh.txt").exists()


# ---- byte-faithful round trips ----------------------------------------------------------------

ROUND_TRIPS = [
    # name, original bytes, old_str, new_str, expected bytes
    (
        "crlf.txt",
        b"one\r\ntwo\r\nthree\r\n",
        "two\n",
        "TWO\nTWO-B\n",
        b"one\r\nTWO\r\nTWO-B\r\nthree\r\n",
    ),
    ("bom.txt", b"\xef\xbb\xbfalpha\nbeta\n", "beta", "gamma", b"\xef\xbb\xbfalpha\ngamma\n"),
    ("latin1.txt", b"caf\xe9\nna\xefve\n", "na\u00efve", "s\u00fbr", b"caf\xe9\ns\xfbr\n"),
    ("nofinal.txt", b"a\nb\nc", "b", "B", b"a\nB\nc"),
    ("mixed.txt", b"a\r\nb\nc\r\n", "b", "B", b"a\r\nB\nc\r\n"),
    ("bomcrlf.txt", b"\xef\xbb\xbfx\r\ny\r\n", "x\ny", "X\nY", b"\xef\xbb\xbfX\r\nY\r\n"),
]


@pytest.mark.parametrize("name, original, old, new, expected", ROUND_TRIPS)
def test_str_replace_round_trips(box: Toolbox, name, original, old, new, expected):
    p = box.ctx.workspace.root / name
    p.write_bytes(original)
    ok(box, "str_replace", path=name, old_str=old, new_str=new)
    assert p.read_bytes() == expected
    ok(box, "undo_edit", path=name)
    assert p.read_bytes() == original


@pytest.mark.parametrize(
    "original, line, new, expected",
    [
        (b"a\r\nb\r\n", 1, "x\ny", b"a\r\nx\r\ny\r\nb\r\n"),
        (b"a\nb", 2, "c", b"a\nb\nc"),
        (b"\xef\xbb\xbfa\n", 0, "z", b"\xef\xbb\xbfz\na\n"),
        (b"caf\xe9\n", 1, "\u00e9t\u00e9", b"caf\xe9\n\xe9t\xe9\n"),
    ],
)
def test_insert_round_trips(box: Toolbox, original, line, new, expected):
    p = box.ctx.workspace.root / "f.txt"
    p.write_bytes(original)
    ok(box, "insert", path="f.txt", insert_line=line, new_str=new)
    assert p.read_bytes() == expected


def test_executable_mode_survives_edits(box: Toolbox):
    p = box.ctx.workspace.root / "run.sh"
    p.write_bytes(b"#!/bin/sh\necho one\n")
    os.chmod(p, 0o755)
    ok(box, "str_replace", path="run.sh", old_str="one", new_str="two")
    ok(box, "insert", path="run.sh", insert_line=2, new_str="echo three")
    assert stat.S_IMODE(p.stat().st_mode) == 0o755
    assert p.read_bytes() == b"#!/bin/sh\necho two\necho three\n"
    ok(box, "undo_edit", path="run.sh")
    ok(box, "undo_edit", path="run.sh")
    assert stat.S_IMODE(p.stat().st_mode) == 0o755 and p.read_bytes() == b"#!/bin/sh\necho one\n"


def test_view_mentions_encoding_and_line_endings(box: Toolbox):
    (box.ctx.workspace.root / "w.txt").write_bytes(b"\xef\xbb\xbfa\r\n")
    out = ok(box, "view", path="w.txt")
    assert "utf-8 with BOM" in out and "'\\r\\n'" in out


@pytest.mark.parametrize(
    "arguments, kind",
    [
        ('{"path": "notes.txt", "old_str": "line 1"', "invalid_json"),
        ('{"path": "notes.txt", "new_str": "x"}', "invalid_arguments"),
        ('{"path": "notes.txt", "old_str": 12, "new_str": "x"}', "invalid_arguments"),
        (
            '{"path": "notes.txt", "old_str": "line 1", "new_str": "x", "count": 2}',
            "invalid_arguments",
        ),
        ('["notes.txt", "line 1", "x"]', "invalid_json"),
    ],
)
def test_malformed_calls_change_nothing(box: Toolbox, arguments: str, kind: str):
    top = box.ctx.workspace.root.parent
    before = tree_digest(top)
    r = box.run("c", "str_replace", arguments)
    assert not r.ok and r.error_kind == kind and "str_replace" in r.content
    assert tree_digest(top) == before


def test_unknown_tool_changes_nothing(box: Toolbox):
    top = box.ctx.workspace.root.parent
    before = tree_digest(top)
    r = box.run("c", "write_file", '{"path": "x.txt", "content": "evil"}')
    assert not r.ok and r.error_kind == "unknown_tool" and "str_replace" in r.content
    assert tree_digest(top) == before


def test_form_feeds_and_unicode_separators_are_not_line_breaks(box: Toolbox):
    p = box.ctx.workspace.root / "ff.py"
    p.write_text("a = 1\n\x0c\nb = '\u2028'\nc = 3\n")
    out = ok(box, "view", path="ff.py")
    assert out.split("\n")[3] == "     4\tc = 3"
    out = ok(box, "insert", path="ff.py", insert_line=3, new_str="x = 0")
    assert p.read_text() == "a = 1\n\x0c\nb = '\u2028'\nx = 0\nc = 3\n"
    out = ok(box, "str_replace", path="ff.py", old_str="c = 3", new_str="c = 4")
    assert "     5\tc = 4" in out
