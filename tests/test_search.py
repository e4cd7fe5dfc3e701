"""grep (both engines), find_files and find_symbol on a real tree with ignore files."""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
import time
from pathlib import Path

import pytest
from _tools_fixtures import make_box, tree_digest

from tools.base import Toolbox
from tools.search import SEARCH_TIMEOUT, SEARCH_TOOLS, SearchTimeout, rg_binary, search_text, walk_files

ENGINES = [
    "python",
    pytest.param(
        "rg", marks=pytest.mark.skipif(rg_binary() is None, reason="ripgrep not installed")
    ),
]


def build(root: Path) -> Path:
    files = {
        ".gitignore": "build/\n*.log\n!keep.log\n",
        "app/__init__.py": "",
        "app/models.py": (
            "from typing import TYPE_CHECKING\n\n"
            "LIMIT = 10\n\n"
            "class Model:\n"
            "    name: str = 'm'\n\n"
            "    def save(self, force=False):\n"
            "        return 'Saved'\n\n"
            "    async def refresh(self):\n"
            "        pass\n\n"
            "def save(obj):\n"
            "    return obj.save()\n\n"
            "if TYPE_CHECKING:\n"
            "    class Hidden:\n"
            "        pass\n"
        ),
        "app/views.py": "from app.models import save\n\n\ndef index():\n    return save(None)  # SAVE\n",
        "app/static/.gitignore": "*.min.js\n",
        "app/static/app.js": "function save(x) {\n  return x;\n}\nclass Store {\n  load() {\n    return 1;\n  }\n}\nconst LIMIT = 3;\n",
        "app/static/app.min.js": "function save(x){return x}\n",
        "cmd/main.go": "package main\n\nfunc save() error {\n\treturn nil\n}\n\ntype Store struct{}\n",
        "build/out.py": "def save():\n    pass\n",
        "debug.log": "save failed\n",
        "keep.log": "save kept\n",
        ".hidden/secret.py": "def save():\n    pass\n",
        "excluded.py": "def save():\n    pass\n",
        "notes/long.txt": "".join(f"save number {i}\n" for i in range(300)),
    }
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (root / "blob.bin").write_bytes(b"save\x00\x01\x02")
    (root / ".git" / "info").mkdir(parents=True)
    (root / ".git" / "info" / "exclude").write_text("excluded.py\n")
    return root


@pytest.fixture
def box(tmp_path: Path) -> Toolbox:
    root = build(tmp_path / "ws")
    return make_box(root, tmp_path / "state", SEARCH_TOOLS)


def call(box: Toolbox, tool_name: str, **args):
    return box.run("c", tool_name, json.dumps(args))


def files_of(out: str) -> set[str]:
    return {line.split(":")[0] for line in out.splitlines()[1:] if ":" in line}


@pytest.mark.parametrize("engine", ENGINES)
def test_engines_see_the_same_files(box: Toolbox, engine: str):
    res = search_text(box.ctx.workspace.root, "save", engine=engine, max_results=1000)
    assert {h.path for h in res.hits} == {
        "app/models.py",
        "app/views.py",
        "app/static/app.js",
        "cmd/main.go",
        "keep.log",
        "notes/long.txt",
    }
    assert res.matches == 3 + 2 + 1 + 1 + 1 + 300 and res.files == 6 and res.complete


@pytest.mark.skipif(rg_binary() is None, reason="ripgrep not installed")
@pytest.mark.parametrize(
    "pattern, kw",
    [
        ("save", {}),
        ("save", {"max_results": 3}),
        ("SAVE", {"ignore_case": True, "context": 1}),
        ("def \\w+", {"glob": "*.py"}),
        ("return", {"glob": "app/*.py", "context": 2, "max_results": 2}),
        ("save", {"start": "app"}),
        ("number 2\\d\\d", {"start": "notes/long.txt", "max_results": 5}),
    ],
)
def test_rg_and_python_print_the_same(box: Toolbox, pattern: str, kw: dict):
    root = box.ctx.workspace.root
    if "start" in kw:
        kw = {**kw, "start": root / kw["start"]}
    kw.setdefault("max_results", 100)
    a = search_text(root, pattern, engine="rg", **kw)
    b = search_text(root, pattern, engine="python", **kw)
    assert (a.matches, a.files, a.complete) == (b.matches, b.files, b.complete)
    assert a.hits == b.hits


def test_grep_tool_output_and_totals(box: Toolbox):
    r = call(box, "grep", pattern="save number", max_results=5)
    assert r.ok
    lines = r.content.splitlines()
    assert lines[0].startswith("300 matching lines in 1 file (showing the first 5")
    assert lines[1] == "notes/long.txt:1:save number 0" and len(lines) == 6


def test_grep_context_and_glob(box: Toolbox):
    out = call(box, "grep", pattern="return 'Saved'", context=1, glob="*.py").content
    assert "app/models.py-8-    def save(self, force=False):" in out
    assert "app/models.py:9:        return 'Saved'" in out
    assert files_of(call(box, "grep", pattern="save", glob="*.go").content) == {"cmd/main.go"}


def test_grep_no_match(box: Toolbox):
    assert call(box, "grep", pattern="zzz_nothing").content == "No matches for 'zzz_nothing'."


@pytest.mark.parametrize(
    "args, needle",
    [
        ({"pattern": "(unclosed"}, "not a valid regular expression"),
        ({"pattern": "save", "path": "../"}, "outside the workspace"),
        ({"pattern": "save", "path": "nope"}, "does not exist"),
        ({"pattern": ""}, "pattern is empty"),
        ({"pattern": "save", "context": 50}, "context must be between"),
        ({"pattern": "save", "max_results": 0}, "max_results must be between"),
    ],
)
def test_grep_refusals(box: Toolbox, args: dict, needle: str):
    before = tree_digest(box.ctx.workspace.root.parent)
    r = call(box, "grep", **args)
    assert not r.ok and needle in r.content, r.content
    assert tree_digest(box.ctx.workspace.root.parent) == before


@pytest.mark.skipif(rg_binary() is None, reason="ripgrep not installed")
def test_rg_bad_regex_is_a_tool_error(box: Toolbox):
    from tools.base import ToolError

    with pytest.raises(ToolError, match="not a valid regular expression.*ripgrep says"):
        search_text(box.ctx.workspace.root, "(unclosed", engine="rg")


def test_long_lines_are_clipped(box: Toolbox):
    (box.ctx.workspace.root / "wide.txt").write_text("needle " + "x" * 5000 + "\n")
    out = call(box, "grep", pattern="needle").content
    assert "more characters]" in out and len(out) < 600


# ---- find_files ----------------------------------------------------------------------------


def test_find_files_globs(box: Toolbox):
    out = call(box, "find_files", pattern="*.py").content
    assert out.splitlines() == [
        "3 files match '*.py':",
        "app/__init__.py",
        "app/models.py",
        "app/views.py",
    ]
    assert call(box, "find_files", pattern="app/*.py").content.count("\n") == 3
    assert call(box, "find_files", pattern="/*.log").content.splitlines()[1:] == ["keep.log"]
    out = call(box, "find_files", pattern="*.js,*.go").content
    assert out.splitlines()[1:] == ["app/static/app.js", "cmd/main.go"]


def test_find_files_cap_and_none(box: Toolbox):
    out = call(box, "find_files", pattern="*", max_results=2).content
    assert "(showing the first 2" in out and len(out.splitlines()) == 3
    assert call(box, "find_files", pattern="*.rs").content.startswith("No files match")


def test_walk_with_and_without_git_agree(tmp_path: Path):
    root = build(tmp_path / "ws")
    without = list(walk_files(root))  # .git exists but is not a repository: git fails, walk runs
    assert without == list(walk_files(root, use_git=False))
    subprocess.run(["rm", "-rf", str(root / ".git")], check=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / ".git" / "info").mkdir(exist_ok=True)
    (root / ".git" / "info" / "exclude").write_text("excluded.py\n")
    with_git = list(walk_files(root))
    pure = list(walk_files(root, use_git=False))
    assert with_git == pure
    rels = [p.relative_to(root).as_posix() for p in pure]
    assert "excluded.py" not in rels and "build/out.py" not in rels and "keep.log" in rels
    assert "debug.log" not in rels and "app/static/app.min.js" not in rels


# ---- find_symbol ---------------------------------------------------------------------------


def test_find_symbol_python_and_patterns(box: Toolbox):
    out = call(box, "find_symbol", name="save").content
    lines = out.splitlines()
    assert lines[0] == "4 definitions of 'save':"
    assert "app/models.py:8: method Model.save: def save(self, force=False):" in lines
    assert "app/models.py:14: function save: def save(obj):" in lines
    assert any(l.startswith("app/static/app.js:1: function save") for l in lines)
    assert any(l.startswith("cmd/main.go:3: function save") for l in lines)


def test_find_symbol_dotted_and_kinds(box: Toolbox):
    assert (
        call(box, "find_symbol", name="Model.save")
        .content.splitlines()[1]
        .startswith("app/models.py:8: method Model.save")
    )
    assert "async def refresh" in call(box, "find_symbol", name="refresh").content
    assert "variable Model.name" in call(box, "find_symbol", name="name").content
    out = call(box, "find_symbol", name="LIMIT").content
    assert "app/models.py:3: variable LIMIT" in out and "app/static/app.js:9: variable LIMIT" in out
    assert "app/models.py:18: class Hidden" in call(box, "find_symbol", name="Hidden").content
    out = call(box, "find_symbol", name="Store").content
    assert "cmd/main.go:7: type Store" in out and "app/static/app.js:4: class Store" in out
    assert "method load" in call(box, "find_symbol", name="load").content


def test_find_symbol_limits_and_errors(box: Toolbox):
    out = call(box, "find_symbol", name="save", max_results=1).content
    assert "(showing the first 1" in out and len(out.splitlines()) == 2
    assert call(box, "find_symbol", name="nothing_here").content.startswith("No definition")
    r = call(box, "find_symbol", name="save(")
    assert not r.ok and "not an identifier" in r.content
    assert call(box, "find_symbol", name="save", path="cmd").content.count("\n") == 1


# ---- every search is bounded in time -------------------------------------------------------


def _path_without_rg() -> str:
    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not (Path(d) / "rg").exists())


def test_catastrophic_regex_times_out_without_ripgrep(tmp_path: Path, monkeypatch):
    # (a+)+$ backtracks exponentially on a run of a's that does not end the line: Python's `re`
    # held the GIL for minutes on this file (issue 12, item 10).
    monkeypatch.setenv("PATH", _path_without_rg())  # the real lookup (shutil.which) finds no rg
    assert rg_binary() is None
    root = tmp_path / "ws"
    root.mkdir()
    (root / "aaa.txt").write_text(("a" * 5000 + "!\n") * 3)
    box = make_box(root, tmp_path / "state", SEARCH_TOOLS)
    started = time.monotonic()
    r = call(box, "grep", pattern="(a+)+$")
    elapsed = time.monotonic() - started
    assert not r.ok and r.error_kind == "timeout"
    assert f"timed out after {SEARCH_TIMEOUT:g} s; simplify the pattern" in r.content
    assert elapsed < 6 * SEARCH_TIMEOUT  # a loose bound: unbounded, this search never returned
    # an ordinary search of the same file is unaffected
    assert call(box, "grep", pattern="a!$").content.startswith("3 matching lines in 1 file")


def test_ripgrep_is_killed_at_the_deadline(tmp_path: Path, monkeypatch):
    # A FIFO nobody writes to: rg blocks reading it, the slowest input there is.
    scripts = sysconfig.get_path("scripts")
    monkeypatch.setenv("PATH", os.pathsep.join([scripts, os.environ.get("PATH", "")]))
    if rg_binary() is None:
        pytest.skip("ripgrep not installed (the `search` extra ships it)")
    root = tmp_path / "ws"
    root.mkdir()
    os.mkfifo(root / "pipe")
    with pytest.raises(SearchTimeout, match=r"timed out after 1 s; simplify the pattern"):
        search_text(root, "x", start=root / "pipe", engine="rg", timeout=1.0)
