"""apply_patch on real files: git-compatible results, tolerance, all-or-nothing refusals, fuzz vs git."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
from pathlib import Path

import pytest
from _tools_fixtures import make_box, tree_digest

from tools.base import Toolbox
from tools.edit import EDIT_TOOLS
from tools.patch import PATCH_TOOLS, parse_patch

BODY = "".join(f"line {i}\n" for i in range(1, 41))


@pytest.fixture
def box(tmp_path: Path) -> Toolbox:
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "a.txt").write_text(BODY)
    (root / "pkg" / "b.py").write_text("def f():\n    return 1\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    return make_box(root, tmp_path / "state", PATCH_TOOLS + EDIT_TOOLS)


def run(box: Toolbox, patch: str):
    return box.run("c", "apply_patch", json.dumps({"patch": patch}))


def ok(box: Toolbox, patch: str) -> str:
    r = run(box, patch)
    assert r.ok, r.content
    return r.content


def refused(box: Toolbox, patch: str, *needles: str) -> str:
    top = box.ctx.workspace.root.parent
    before = tree_digest(top)
    r = run(box, patch)
    assert not r.ok, r.content
    for n in needles:
        assert n in r.content, r.content
    assert tree_digest(top) == before
    return r.content


def read(box: Toolbox, path: str) -> str:
    return (box.ctx.workspace.root / path).read_text()


MODIFY = """\
--- a/a.txt
+++ b/a.txt
@@ -9,7 +9,7 @@
 line 9
 line 10
 line 11
-line 12
+LINE TWELVE
 line 13
 line 14
 line 15
"""


def test_modify(box: Toolbox):
    out = ok(box, MODIFY)
    assert "M a.txt" in out
    assert read(box, "a.txt") == BODY.replace("line 12\n", "LINE TWELVE\n")


def test_shifted_line_numbers_near_and_far(box: Toolbox):
    ok(box, MODIFY.replace("@@ -9,7 +9,7 @@", "@@ -3,7 +3,7 @@"))
    assert "LINE TWELVE" in read(box, "a.txt")
    ok(box, "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n line 35\n-line 36\n+LINE 36\n line 37\n")
    assert "LINE 36\n" in read(box, "a.txt")


def test_shift_is_reported(box: Toolbox):
    out = ok(box, MODIFY.replace("@@ -9,7 +9,7 @@", "@@ -20,7 +20,7 @@"))
    assert "applied at line 9 (the header says 20)" in out


def test_multi_file_new_delete_rename(box: Toolbox):
    patch = """\
diff --git a/pkg/b.py b/pkg/c.py
similarity index 60%
rename from pkg/b.py
rename to pkg/c.py
--- a/pkg/b.py
+++ b/pkg/c.py
@@ -1,2 +1,2 @@
 def f():
-    return 1
+    return 2
diff --git a/new.sh b/new.sh
new file mode 100755
--- /dev/null
+++ b/new.sh
@@ -0,0 +1,2 @@
+#!/bin/sh
+echo new
diff --git a/a.txt b/a.txt
deleted file mode 100644
--- a/a.txt
+++ /dev/null
@@ -1,40 +0,0 @@
""" + "".join(f"-line {i}\n" for i in range(1, 41))
    out = ok(box, patch)
    assert "R pkg/b.py -> pkg/c.py" in out and "A new.sh" in out and "D a.txt" in out
    root = box.ctx.workspace.root
    assert not (root / "pkg" / "b.py").exists() and not (root / "a.txt").exists()
    assert read(box, "pkg/c.py") == "def f():\n    return 2\n"
    assert read(box, "new.sh") == "#!/bin/sh\necho new\n"
    assert stat.S_IMODE((root / "new.sh").stat().st_mode) & 0o111


def test_pure_rename_and_mode_change(box: Toolbox):
    root = box.ctx.workspace.root
    ok(
        box,
        "diff --git a/pkg/b.py b/pkg/d.py\nsimilarity index 100%\nrename from pkg/b.py\nrename to pkg/d.py\n",
    )
    assert (
        read(box, "pkg/d.py") == "def f():\n    return 1\n" and not (root / "pkg" / "b.py").exists()
    )
    ok(box, "diff --git a/a.txt b/a.txt\nold mode 100644\nnew mode 100755\n")
    assert (root / "a.txt").stat().st_mode & 0o100 and read(box, "a.txt") == BODY


def test_no_newline_at_end_both_ways(box: Toolbox):
    root = box.ctx.workspace.root
    (root / "n.txt").write_bytes(b"a\nb")
    ok(box, "--- a/n.txt\n+++ b/n.txt\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n")
    assert (root / "n.txt").read_bytes() == b"a\nb\n"
    ok(box, "--- a/n.txt\n+++ b/n.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n\\ No newline at end of file\n")
    assert (root / "n.txt").read_bytes() == b"a\nc"


def test_crlf_file_with_lf_patch_keeps_crlf(box: Toolbox):
    root = box.ctx.workspace.root
    (root / "w.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    out = ok(box, "--- a/w.txt\n+++ b/w.txt\n@@ -1,3 +1,4 @@\n one\n-two\n+2\n+2b\n three\n")
    assert (root / "w.txt").read_bytes() == b"one\r\n2\r\n2b\r\nthree\r\n"
    assert "ignoring line endings" in out


def test_trailing_whitespace_tolerated(box: Toolbox):
    root = box.ctx.workspace.root
    (root / "s.py").write_text("x = 1   \ny = 2\n")
    out = ok(box, "--- a/s.py\n+++ b/s.py\n@@ -1,2 +1,2 @@\n x = 1\n-y = 2\n+y = 3\n")
    assert read(box, "s.py") == "x = 1   \ny = 3\n" and "ignoring trailing whitespace" in out


def test_wrong_hunk_counts_are_recounted(box: Toolbox):
    ok(box, MODIFY.replace("@@ -9,7 +9,7 @@", "@@ -9,12 +9,3 @@"))
    assert "LINE TWELVE" in read(box, "a.txt")


def test_fenced_patch(box: Toolbox):
    ok(box, "Here it is:\n```diff\n" + MODIFY + "```\n")
    assert "LINE TWELVE" in read(box, "a.txt")


def test_latin1_and_bom_files(box: Toolbox):
    root = box.ctx.workspace.root
    (root / "l.txt").write_bytes(b"caf\xe9\nx\n")
    ok(box, "--- a/l.txt\n+++ b/l.txt\n@@ -1,2 +1,2 @@\n caf\u00e9\n-x\n+\u00fc\n")
    assert (root / "l.txt").read_bytes() == b"caf\xe9\n\xfc\n"
    (root / "bom.txt").write_bytes(b"\xef\xbb\xbfa\nb\n")
    ok(box, "--- a/bom.txt\n+++ b/bom.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n")
    assert (root / "bom.txt").read_bytes() == b"\xef\xbb\xbfa\nc\n"


def test_undo_after_patch(box: Toolbox):
    ok(box, MODIFY)
    assert box.run("u", "undo_edit", json.dumps({"path": "a.txt"})).ok
    assert read(box, "a.txt") == BODY


# ---- refusals: each leaves every byte as it was ---------------------------------------------


def test_all_or_nothing_when_a_later_file_fails(box: Toolbox):
    patch = (
        MODIFY
        + "--- a/pkg/b.py\n+++ b/pkg/b.py\n@@ -1,2 +1,2 @@\n def g():\n-    return 1\n+    return 2\n"
    )
    msg = refused(box, patch, "hunk 1 of 1 for pkg/b.py", "does not apply", "No file was changed")
    assert "Closest lines 1-2" in msg and "     1\tdef f():" in msg


def test_second_hunk_failure_names_it(box: Toolbox):
    patch = MODIFY + "@@ -30,3 +30,3 @@\n line 30\n-line 31 (not there)\n+x\n line 32\n"
    refused(box, patch, "hunk 2 of 2 for a.txt (@@ -30,3 +30,3 @@)", "Closest lines 30-32")


@pytest.mark.parametrize(
    "patch, needles",
    [
        ("just some words\n", ["holds no file changes"]),
        ("", ["holds no file changes"]),
        ("--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n*line 1\n", ["could not be parsed"]),
        (
            "--- a/../escape.txt\n+++ b/../escape.txt\n@@ -0,0 +1 @@\n+x\n",
            ["outside the workspace"],
        ),
        ("--- /dev/null\n+++ b//tmp/tome-abs.txt\n@@ -0,0 +1 @@\n+x\n", ["outside the workspace"]),
        ("--- /dev/null\n+++ b/.git/hooks/pre-commit\n@@ -0,0 +1 @@\n+x\n", [".git/"]),
        ("--- a/.git/config\n+++ b/.git/config\n@@ -1 +1 @@\n-[core]\n+[evil]\n", [".git/"]),
        (
            "--- /dev/null\n+++ b/a.txt\n@@ -0,0 +1 @@\n+x\n",
            ["creates a.txt, which already exists"],
        ),
        (
            "--- a/missing.txt\n+++ b/missing.txt\n@@ -1 +1 @@\n-a\n+b\n",
            ["missing.txt, which does not exist"],
        ),
        (
            "diff --git a/pkg/b.py b/a.txt\nsimilarity index 100%\nrename from pkg/b.py\nrename to a.txt\n",
            ["which already exists"],
        ),
        (
            "diff --git a/img.png b/img.png\nnew file mode 100644\nBinary files /dev/null and b/img.png differ\n",
            ["binary"],
        ),
        (
            "--- a/a.txt\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-line 1\n-line 2\n",
            ["holds more than the patch removes"],
        ),
    ],
)
def test_bad_patches_refused(box: Toolbox, patch: str, needles: list[str]):
    refused(box, patch, *needles)
    assert not Path("/tmp/tome-abs.txt").exists()


def test_symlink_escape_refused(box: Toolbox, tmp_path: Path):
    (tmp_path / "victim.txt").write_text("keep\n")
    (box.ctx.workspace.root / "link.txt").symlink_to(tmp_path / "victim.txt")
    refused(
        box,
        "--- a/link.txt\n+++ b/link.txt\n@@ -1 +1 @@\n-keep\n+pwned\n",
        "symlink that points outside",
    )


def test_stale_file_refused(box: Toolbox):
    assert box.run("v", "view", json.dumps({"path": "a.txt"})).ok
    (box.ctx.workspace.root / "a.txt").write_text(BODY + "more\n")
    refused(box, MODIFY, "changed on disk since you last viewed it")


def test_unencodable_in_latin1_refused(box: Toolbox):
    (box.ctx.workspace.root / "l.txt").write_bytes(b"caf\xe9\n")
    refused(box, "--- a/l.txt\n+++ b/l.txt\n@@ -1 +1 @@\n-caf\u00e9\n+\u2603\n", "cannot hold")


# ---- fuzz against git apply -------------------------------------------------------------------


def _git(cwd: Path, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}
    return subprocess.run(
        ["git", *args], check=False, cwd=cwd, env=env, input=data, capture_output=True
    )


def _random_edit(rng: random.Random, lines: list[str]) -> list[str]:
    out = list(lines)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(out) + 1)
        op = rng.choice(["ins", "del", "rep"])
        if op == "ins" or not out or i == len(out):
            out[i:i] = [f"new {rng.random():.6f}\n" for _ in range(rng.randint(1, 3))]
        elif op == "del":
            del out[i : i + rng.randint(1, 3)]
        else:
            out[i] = f"changed {rng.random():.6f}\n"
    return out


@pytest.mark.parametrize("seed", range(30))
def test_fuzz_matches_git_apply_even_when_shifted(tmp_path: Path, seed: int):
    rng = random.Random(seed)
    # Repeated lines make matching ambiguous, as in real code.
    pool = [f"stmt {k}\n" for k in range(12)] + ["\n", "    pass\n", "}\n"]
    before = [rng.choice(pool) for _ in range(rng.randint(5, 80))]
    after = _random_edit(rng, before)
    if rng.random() < 0.3 and after:
        after[-1] = after[-1].rstrip("\n")  # no final newline
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f.txt").write_text("".join(before))
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "f.txt").write_text("".join(after))
    diff = _git(tmp_path, "diff", "--no-index", "-U3", "x/f.txt", "y/f.txt").stdout.decode()
    diff = diff.replace("a/x/f.txt", "a/f.txt").replace("b/y/f.txt", "b/f.txt")
    assert diff, "the edit changed nothing"
    # The target file gains lines at the top, so every hunk header is off.
    shift = [f"added {k}\n" for k in range(rng.randint(0, 6))]
    for side in ("git", "ours"):
        (tmp_path / side).mkdir()
        (tmp_path / side / "f.txt").write_text("".join(shift + before))
    _git(tmp_path / "git", "init", "-q")
    (tmp_path / "p.diff").write_text(diff)
    g = _git(tmp_path / "git", "apply", str(tmp_path / "p.diff"))
    box = make_box(tmp_path / "ours", tmp_path / "state", PATCH_TOOLS)
    r = run(box, diff)
    if g.returncode == 0:
        assert r.ok, r.content
        assert (tmp_path / "ours" / "f.txt").read_bytes() == (
            tmp_path / "git" / "f.txt"
        ).read_bytes()
    if not shift:
        assert r.ok and (tmp_path / "ours" / "f.txt").read_text() == "".join(after)


def test_parse_patch_records():
    [fp] = parse_patch(MODIFY)
    assert fp.old_path == fp.new_path == "a.txt" and len(fp.hunks) == 1
    h = fp.hunks[0]
    assert (
        (h.src_start, h.src_len) == (9, 7)
        and h.old[3] == "line 12\n"
        and h.new[3] == "LINE TWELVE\n"
    )


def test_deleting_the_last_file_of_a_directory_removes_it_like_git(box: Toolbox):
    root = box.ctx.workspace.root
    (root / "gone" / "sub").mkdir(parents=True)
    (root / "gone" / "sub" / "only.txt").write_text("bye\n")
    ok(
        box,
        "diff --git a/gone/sub/only.txt b/gone/sub/only.txt\ndeleted file mode 100644\n"
        "--- a/gone/sub/only.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n",
    )
    assert not (root / "gone").exists()


def test_hunk_headers_without_numbers(box: Toolbox):
    out = ok(
        box,
        "--- a/a.txt\n+++ b/a.txt\n@@\n line 20\n-line 21\n+LINE 21\n line 22\n@@ @@\n line 30\n-line 31\n+LINE 31\n",
    )
    assert "applied at line 20" in out
    text = read(box, "a.txt")
    assert "LINE 21\n" in text and "LINE 31\n" in text and "line 21\n" not in text


def test_paths_without_prefixes(box: Toolbox):
    ok(
        box,
        "--- pkg/b.py\n+++ pkg/b.py\n@@ -1,2 +1,2 @@\n def f():\n-    return 1\n+    return 3\n",
    )
    assert read(box, "pkg/b.py") == "def f():\n    return 3\n"


def test_form_feed_lines_match_git(box: Toolbox, tmp_path: Path):
    root = box.ctx.workspace.root
    before, after = "a\n\x0c\nb\x0cc\nd\n", "a\n\x0c\nb\x0cc\nD\n"
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    (tmp_path / "x" / "f.txt").write_text(before)
    (tmp_path / "y" / "f.txt").write_text(after)
    diff = _git(tmp_path, "diff", "--no-index", "x/f.txt", "y/f.txt").stdout.decode()
    diff = diff.replace("a/x/f.txt", "a/f.txt").replace("b/y/f.txt", "b/f.txt")
    (root / "f.txt").write_text(before)
    out = ok(box, diff)
    assert "applied" not in out.split("M f.txt")[1].split("\n")[1]  # no shift, no looser match
    assert (root / "f.txt").read_text() == after
