"""Packing on small real git repositories: scan rules, secrets, budgets, ranking, layout, cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.pack import build_pack
from agent.pack.cache import CountCache
from agent.pack.outline import outline
from agent.pack.scan import scan_repo
from agent.records import Task
from agent.secrets import SecretScanner
from agent.tokens import get_tokenizer

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(scope="session")
def tok():
    return get_tokenizer("cl100k_base")


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, env={**os.environ, **GIT_ENV})


def make_repo(root: Path, files: dict[str, str | bytes], *, commit: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write(root, files)
    git(root, "init", "-q", "-b", "main")
    if commit:
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "init")
    return root


def pack(root: Path, tok, tmp_path: Path, **kw):
    kw.setdefault("budget", 1_000_000)
    return build_pack(root, tokenizer=tok, cache_dir=tmp_path / "cache", environ={}, **kw)


SMALL = {
    "README.md": "# Demo\n\nA demo project.\n",
    "pkg/__init__.py": "",
    "pkg/core.py": 'def add(a, b):\n    """Add two numbers."""\n    return a + b\n',
    "pkg/util.py": "from pkg.core import add\n\n\ndef twice(x):\n    return add(x, x)\n",
    "tests/test_core.py": "from pkg.core import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n",
}

IGNORE_TREE = {
    ".gitignore": "*.log\n!keep.log\nbuild/\n/root_only.txt\n",
    "a.log": "x\n",
    "keep.log": "kept\n",
    "build/out.py": "x = 1\n",
    "root_only.txt": "hidden\n",
    "sub/root_only.txt": "visible: the pattern is anchored to the root\n",
    "sub/.gitignore": "*.tmp\n!important.tmp\n",
    "sub/x.tmp": "hidden\n",
    "sub/important.tmp": "kept\n",
    "sub/deep/y.tmp": "hidden by the parent folder's rule\n",
    "sub/deep/.gitignore": "!y.tmp\n",
    ".tomeignore": "secret_plans/\n*.draft\n",
    "secret_plans/plan.md": "hidden by tomeignore\n",
    "notes.draft": "hidden by tomeignore\n",
    "src/main.py": "print('hi')\n",
}
IGNORE_EXPECTED = [".gitignore", "keep.log", "src/main.py", "sub/.gitignore", "sub/deep/.gitignore",
                   "sub/deep/y.tmp", "sub/important.tmp", "sub/root_only.txt"]


@pytest.mark.parametrize("use_git", [True, False], ids=["git", "plain-directory"])
def test_gitignore_semantics_with_negations_nested_files_and_tomeignore(tmp_path: Path, use_git: bool) -> None:
    root = tmp_path / "repo"
    if use_git:
        make_repo(root, IGNORE_TREE, commit=False)  # untracked, not ignored files count too
        (root / ".git" / "info").mkdir(parents=True, exist_ok=True)
        (root / ".git" / "info" / "exclude").write_text("src/excluded.py\n")
        write(root, {"src/excluded.py": "hidden by info/exclude\n"})
    else:
        root.mkdir()
        write(root, IGNORE_TREE)
    result = scan_repo(root)
    assert result.git is use_git
    assert sorted(f.path for f in result.files) == IGNORE_EXPECTED


def test_binary_size_lock_vendored_and_minified_files_are_skipped_with_reasons(tmp_path: Path, tok) -> None:
    root = make_repo(tmp_path / "repo", {
        "app.py": "print('ok')\n",
        "logo.dat": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
        "data.txt": b"looks like text but \x00 has a NUL",
        "big.py": "x = 1\n" * 50_000,
        "poetry.lock": "[[package]]\n",
        "node_modules/lib/index.js": "module.exports = 1\n",
        "static/app.min.js": "var a=1;",
        "static/bundle.js": "var a=1;" * 2000,
        ".env": "OPENAI_API_KEY=whatever\n",
        "latin1.txt": "caf\xe9".encode("latin-1"),
    })
    p = pack(root, tok, tmp_path, max_file_bytes=100_000)
    reasons = {s.path: s.reason for s in p.skipped}
    assert reasons == {
        "logo.dat": "binary",
        "data.txt": "binary",
        "big.py": "too large: 300,000 bytes > 100,000",
        "poetry.lock": "lock file",
        "node_modules/lib/index.js": "vendored: node_modules/",
        "static/app.min.js": "generated: minified or compiled",
        "static/bundle.js": "minified bundle",
        ".env": "secret: path matches .env",
        "latin1.txt": "binary: not UTF-8 text",
    }
    assert [i.path for i in p.items] == ["app.py"]
    assert [(f.path, f.rule, f.action) for f in p.secrets] == [(".env", ".env", "excluded")]


def test_secret_values_never_appear_in_the_pack_bytes(tmp_path: Path, tok) -> None:
    github = "ghp_" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8"
    openai = "sk-" + "proj-" + "Q1w2E3r4T5y6U7i8O9p0Aa1Ss2Dd3Ff4"
    env_value = "tenant-77-Hx9Lq2Vb"
    password = "Qx7!mZ2kP9"
    root = make_repo(tmp_path / "repo", {
        "settings.py": f"GITHUB_TOKEN = '{github}'\nDB = 'postgres://svc:{password}@db:5432/main'\n",
        "client.py": f"# uses {openai}\nTENANT = '{env_value}'\n",
        "config/app.yaml": f"service:\n  api_key: {openai}\n",
        ".env.local": f"OPENAI_API_KEY={openai}\n",
        "id_rsa": "-----BEGIN OPENSSH " + "PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n",
    })
    p = build_pack(root, task="why does settings.py leak the token?", tokenizer=tok, budget=50_000,
                   cache_dir=tmp_path / "cache", environ={"TENANT_SECRET": env_value})
    blob = (p.document + p.relevant + p.model_dump_json()).encode()
    for value in (github, openai, env_value, password):
        assert value.encode() not in blob
    assert "[REDACTED:github-token]" in p.document
    rules = sorted((f.path, f.rule, f.action) for f in p.secrets)
    assert rules == [
        (".env.local", ".env.*", "excluded"),
        ("client.py", "env:TENANT_SECRET", "redacted"),
        ("client.py", "openai-api-key", "redacted"),
        ("config/app.yaml", "openai-api-key", "redacted"),
        ("id_rsa", "id_rsa*", "excluded"),
        ("settings.py", "github-token", "redacted"),
        ("settings.py", "url-credentials", "redacted"),
    ]


def test_whole_repo_fits_gives_the_same_bytes_for_different_tasks(tmp_path: Path, tok) -> None:
    root = make_repo(tmp_path / "repo", SMALL)
    a = pack(root, tok, tmp_path, task="add() returns the wrong sum")
    b = pack(root, tok, tmp_path, task=Task(statement="README typo in the demo project"))
    c = pack(root, tok, tmp_path)
    assert a.document == b.document == c.document
    assert a.relevant != b.relevant and c.relevant == ""
    assert "add() returns" not in a.document
    assert all(i.level == "full" for i in a.items)
    assert a.totals.repo_tokens is not None
    # Files in path order, each delimited with its path.
    starts = [line for line in a.document.splitlines() if line.startswith("<file ")]
    assert starts == [f'<file path="{p}" lines="{max(1, SMALL[p].count(chr(10)))}">' for p in sorted(SMALL)]
    # Same input, same bytes, from a cold cache too.
    d = build_pack(root, task="add() returns the wrong sum", tokenizer=tok, budget=1_000_000,
                   cache_dir=tmp_path / "other-cache", environ={})
    assert d.document == a.document and d.relevant == a.relevant


def test_document_count_is_real_and_markdown_works(tmp_path: Path, tok) -> None:
    root = make_repo(tmp_path / "repo", {**SMALL, "doc.md": "```python\nx = 1\n```\n"})
    for fmt in ("xml", "markdown"):
        p = pack(root, tok, tmp_path, format=fmt, task="twice")
        assert p.totals.tokens == tok.count(p.document) <= p.budget
        assert p.relevant_tokens == tok.count(p.relevant)
    assert "````markdown\n```python" in p.document  # a longer fence around a fenced file


def test_file_in_a_stack_trace_ranks_first(tmp_path: Path, tok) -> None:
    files = {f"pkg/mod{i}.py": f"def f{i}(value):\n    return value + {i}\n" * 30 for i in range(30)}
    files["pkg/parser.py"] = "def parse(text):\n    return int(text)\n"
    files["pkg/zero_division.py"] = "# division by zero, ZeroDivisionError, parse, traceback\n" * 20
    root = make_repo(tmp_path / "repo", files)
    task = (
        "Parsing crashes with ZeroDivisionError on a traceback:\n"
        "Traceback (most recent call last):\n"
        '  File "/usr/lib/python3/site-packages/pkg/parser.py", line 2, in parse\n'
        "    return int(text)\nZeroDivisionError: division by zero\n"
    )
    p = pack(root, tok, tmp_path, task=task, budget=1_500)
    ranked = sorted((i for i in p.items if i.rank), key=lambda i: i.rank)
    assert ranked[0].path == "pkg/parser.py"
    assert ranked[0].level == "full"
    assert any(r.startswith("stack trace") for r in ranked[0].reasons)
    assert p.relevant.splitlines()[2].startswith("1. pkg/parser.py [full]: stack trace")


def test_degrades_to_outlines_then_paths_under_a_small_budget(tmp_path: Path, tok) -> None:
    body = "".join(
        f'def function_{i}(alpha, beta):\n    """Compute thing {i}."""\n' + "    x = alpha * beta\n" * 20
        for i in range(40)
    )
    files = {f"lib/m{i:02}.py": body for i in range(12)}
    root = make_repo(tmp_path / "repo", files)
    p = pack(root, tok, tmp_path, budget=12_000, task="function_3 in lib/m05.py computes the wrong thing")
    levels = {i.path: i.level for i in p.items}
    assert levels["lib/m05.py"] == "full"
    assert "outline" in levels.values() and "path" in levels.values()
    assert p.totals.tokens == tok.count(p.document) <= 12_000
    assert '<file path="lib/m03.py" level="outline"' in p.document or levels["lib/m03.py"] != "outline"


def test_python_outline_keeps_signatures_and_first_docstring_lines() -> None:
    src = (
        '"""Module doc.\n\nMore."""\nimport os\n\n\n@decorator\nclass Shape(Base):\n'
        '    """A shape.\n\n    Long text."""\n\n    def area(self, *, scale: float = 1.0) -> float:\n'
        '        # a comment\n        return 0.0\n\n    async def fetch(\n        self, url\n    ):\n'
        '        """Fetch it."""\n        pass\n\n\ndef helper(x): return x\n'
    )
    assert outline("shape.py", src) == (
        '"""Module doc."""\nclass Shape(Base):\n    """A shape."""\n'
        "    def area(self, *, scale: float = 1.0) -> float:\n"
        "    async def fetch(\n        self, url\n    ):\n"
        '        """Fetch it."""\n'
        "def helper(x): ...\n"
    )
    assert outline("broken.py", "def (:\n") is None
    assert outline("notes.md", "# Title\ntext\n## Part\n") == "# Title\n## Part\n"


def test_count_cache_is_invalidated_by_a_content_change(tmp_path: Path, tok) -> None:
    root = make_repo(tmp_path / "repo", SMALL)
    first = pack(root, tok, tmp_path)
    before = {i.path: i.tokens for i in first.items}
    target = root / "pkg" / "core.py"
    stat = target.stat()
    new = target.read_text().replace("Add two numbers.", "Sum of two given numbers, as a float.")
    target.write_text(new)
    # Even with the old mtime restored, a different size defeats the fast path.
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = pack(root, tok, tmp_path)
    after = {i.path: i.tokens for i in second.items}
    assert after["pkg/core.py"] != before["pkg/core.py"]
    assert after["pkg/core.py"] == tok.count(f'<file path="pkg/core.py" lines="3">\n{new}</file>\n')
    assert {k: v for k, v in after.items() if k != "pkg/core.py"} == {
        k: v for k, v in before.items() if k != "pkg/core.py"}
    with CountCache(tmp_path / "cache", tok.name) as cache:
        kind = f"full:xml:{SecretScanner({}).fingerprint}"
        assert len(cache.stats(str(root.resolve()), kind)) == len(SMALL)


def test_clear_errors_for_missing_path_unreadable_file_and_tiny_budget(tmp_path: Path, tok) -> None:
    with pytest.raises(ConfigError, match="no such directory"):
        pack(tmp_path / "nope", tok, tmp_path)
    root = make_repo(tmp_path / "repo", SMALL)
    (root / "pkg" / "util.py").unlink()  # still tracked, no longer readable
    p = pack(root, tok, tmp_path)
    assert [(s.path, s.reason) for s in p.skipped] == [("pkg/util.py", "unreadable: No such file or directory")]
    with pytest.raises(ConfigError, match="too small for even the tree"):
        pack(root, tok, tmp_path, budget=20)


def test_cli_writes_the_pack_and_prints_a_json_manifest(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", SMALL)
    out = tmp_path / "pack.xml"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "TOME_MODEL": "gpt-4-turbo"}
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "pack", str(root), "--task", "twice is wrong",
         "--budget", "50k", "-o", str(out), "--json"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    assert manifest["budget"] == 50_000 and manifest["tokenizer"] == "cl100k_base"
    assert "document" not in manifest and manifest["totals"]["full"] == len(SMALL)
    text = out.read_text()
    assert text.startswith("<repository") and "<relevant_files>" in text
    # --count: the whole repository's exact tokens too, when the pack did not count them all.
    from agent.pack import count_repo

    big = make_repo(tmp_path / "big", {**SMALL, "pkg/data.py": "".join(f"N{i} = {i}\n" for i in range(5_000))})
    counted = subprocess.run(
        [sys.executable, "-m", "agent.cli", "pack", str(big), "--budget", "300", "--count", "--json"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert counted.returncode == 0, counted.stderr
    totals = json.loads(counted.stdout)["totals"]
    whole = sum(count_repo(big, tokenizer=get_tokenizer("cl100k_base"), environ={}).values())
    assert totals["tokens"] <= 300 < whole == totals["repo_tokens"]
    bad = subprocess.run([sys.executable, "-m", "agent.cli", "pack", str(root), "--budget", "lots"],
                         capture_output=True, text=True, env=env, timeout=60, check=False)
    assert bad.returncode == 2 and "budget" in bad.stderr


def test_build_packs_matches_single_builds_and_count_repo_is_exact(tmp_path: Path, tok) -> None:
    from agent.pack import build_packs, count_repo

    body = "".join(f"def f{i}(x):\n    return x * {i}\n" for i in range(60))
    root = make_repo(tmp_path / "repo", {**SMALL, **{f"lib/m{i}.py": body for i in range(6)}})
    task = "f7 in lib/m3.py multiplies wrong"
    packs = build_packs(root, budgets=[1_500, 4_000, 100_000], task=task, tokenizer=tok,
                        cache_dir=tmp_path / "cache", environ={})
    for p in packs:
        single = build_pack(root, task=task, budget=p.budget, tokenizer=tok, cache_dir=tmp_path / "c2", environ={})
        assert single.document == p.document and single.relevant == p.relevant
    # (file counts need not grow: at 4K the large files displace the small ones)
    assert [p.totals.full_tokens for p in packs] == sorted(p.totals.full_tokens for p in packs)
    counts = count_repo(root, tokenizer=tok, cache_dir=tmp_path / "cache", environ={})
    assert counts["lib/m3.py"] == tok.count(f'<file path="lib/m3.py" lines="120">\n{body}</file>\n')
    assert sum(counts.values()) == packs[-1].totals.repo_tokens


def test_a_pack_reports_the_secrets_of_what_it_shows_the_same_every_time(tmp_path: Path, tok) -> None:
    # A redaction is reported by the pack that shows the file: not by a smaller pack built
    # beside it where the file stays a path, and the same on a warm run as on a cold one.
    from agent.pack import build_packs

    token = "ghp_" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8"
    body = "".join(f"def f{i}(x):\n    return x * {i}\n" for i in range(60))
    root = make_repo(tmp_path / "repo", {
        **SMALL, **{f"lib/m{i}.py": body for i in range(6)},
        "lib/keys.py": f"TOKEN = '{token}'\n" + body, ".env": "X=1\n",
    })
    task = "f7 in lib/m3.py multiplies wrong"

    def build() -> list:
        return build_packs(root, budgets=[100_000, 1_500], task=task, tokenizer=tok,
                           cache_dir=tmp_path / "cache", environ={})

    for large, small in (build(), build()):  # cold, then warm
        levels = {i.path: i.level for i in small.items}
        assert levels["lib/keys.py"] == "path" and {i.path: i.level for i in large.items}["lib/keys.py"] == "full"
        assert [(f.path, f.action) for f in large.secrets] == [(".env", "excluded"), ("lib/keys.py", "redacted")]
        assert [(f.path, f.action) for f in small.secrets] == [(".env", "excluded")]
        assert (large.totals.secrets_redacted, small.totals.secrets_redacted) == (1, 0)


def test_tree_sitter_outlines_keep_signatures_without_bodies() -> None:
    # The grammars ship in tree-sitter-language-pack's wheel (0.x): no download, works offline.
    js = (
        'import x from "y";\nexport class Store {\n  constructor(a) { this.a = a; }\n'
        "  get(key) { return this.a[key]; }\n}\nexport function makeStore(a) {\n  return new Store(a);\n}\n"
    )
    assert outline("store.js", js) == "class Store\n    constructor(a)\n    get(key)\nfunction makeStore(a)\n"
    go = "package main\n\nfunc (p Point) Norm() int {\n\treturn p.X\n}\n\nfunc main() {}\n"
    assert outline("main.go", go) == "func (p Point) Norm() int\nfunc main()\n"
    rs = "pub struct A { x: i32 }\nimpl A {\n    pub fn new() -> Self { A { x: 1 } }\n}\n"
    assert outline("lib.rs", rs) == "pub struct A\nimpl A\n    pub fn new() -> Self\n"


_TRICKY_PYTHON = [
    '"""Mod."""\nimport x\n\n\nclass A(B):\n    @classmethod\n    def make(cls):  # c\n        # note\n        """Make one.\n\n        More."""\n'
    "        return cls()\n\n    async def run(self): return 1\n\n    if X:\n        def hidden(self): pass\n\n"
    "    class Inner:\n        class Deeper:\n            def too_deep(self): ...\n",
    'def f(\n    a,\n    b=")",\n) -> int:\n    f"""not a {docstring}"""\n    return a\n\n\ndef g():\n    b"bytes are not docs"\n\n\n'
    'def h():\n    "one" "two"\n',
    "@decorator(\n    arg=1,\n)\ndef decorated():\n    '''Single quotes.'''\n",
    "def broken(:\n    pass\n",
    "x = 1\n",
]


@pytest.mark.parametrize("source", _TRICKY_PYTHON)
def test_python_outlines_from_tree_sitter_equal_those_from_ast(source: str) -> None:
    from agent.pack.outline import _python_ast

    assert outline("m.py", source) == _python_ast(source)


def test_a_class_header_stops_before_its_first_methods_decorator() -> None:
    assert outline("m.py", _TRICKY_PYTHON[0]) == (
        '"""Mod."""\nclass A(B):\n    def make(cls):  # c\n        """Make one."""\n    async def run(self): ...\n'
        "    class Inner:\n        class Deeper:\n"
    )


@pytest.mark.parametrize("mode", ["auto", "non-think"])
def test_tome_pack_and_solve_pack_under_the_same_default_budget(tmp_path: Path, mode: str) -> None:
    # One rule (agent.pack.budget): `start_run` reserved Think Max's output and 128K, `tome pack`
    # a quarter and an eighth of the window, so the two packed the same tree differently.
    from agent.modes import parse_mode
    from agent.pack import default_budget
    from agent.profiles import get_profile
    from agent.run import plan_run
    from agent.settings import Settings

    root = make_repo(tmp_path / "repo", SMALL)
    settings = Settings(model="deepseek-v4-pro", api_key="sk-x", state_dir=tmp_path / "state",
                        cache_dir=tmp_path / "cache", mode=mode)
    alone = build_pack(root, settings=settings, environ={})
    planned = plan_run("add returns the wrong sum", settings, repo=root)
    assert alone.budget == planned.pack.budget
    assert alone.budget == default_budget(get_profile("deepseek-v4-pro"), parse_mode(mode))
    assert 0 < default_budget(get_profile("gpt-4-turbo")) < get_profile("gpt-4-turbo").context_window


@pytest.mark.parametrize("fmt", ["xml", "markdown"])
def test_tomes_own_outputs_in_the_tree_are_never_packed(tmp_path: Path, tok, fmt: str) -> None:
    # `tome pack . -o pack.xml` inside the repository packed its own output the next time
    # (168K -> 336K tokens on django); a run's state kept inside the tree would be packed too.
    # Both are known by what they hold: any name, and the same names with other contents pack.
    from agent.records import Mode, RunStarted

    root = make_repo(tmp_path / "repo", SMALL)
    first = pack(root, tok, tmp_path, task="add is wrong", format=fmt)
    started = RunStarted(run_id="r1", task=Task(statement="add is wrong"), model="m", mode=Mode.HIGH,
                         repo=str(root), prefix_sha256="0" * 64)
    write(root, {
        "notes/context.txt": first.document + first.relevant,  # a pack under any name
        "state/runs/r1/trajectory.jsonl": started.model_dump_json() + "\n",
        "state/runs/r1/prefix.json": '{"pack": "..."}\n',
        "state/runs/r1/spill/0001-shell.txt": "def add(a, b): output of a tool\n",
        "logs/trajectory.jsonl": '{"type": "something else"}\n',  # named like a run, is not one
        "docs/about.md": "Our packs start like this:\n" + first.document[:300] + "\n",
    })
    second = pack(root, tok, tmp_path, task="add is wrong", format=fmt)
    skipped = {s.path: s.reason for s in second.skipped}
    assert skipped["notes/context.txt"] == "tome output: a pack document"
    run_files = ["state/runs/r1/prefix.json", "state/runs/r1/spill/0001-shell.txt", "state/runs/r1/trajectory.jsonl"]
    assert all(skipped[p] == "tome output: run state" for p in run_files)
    packed = {i.path for i in second.items}
    assert {"logs/trajectory.jsonl", "docs/about.md"} <= packed
    assert packed.isdisjoint(skipped) and packed - {"logs/trajectory.jsonl", "docs/about.md"} == {i.path for i in first.items}
    third = pack(root, tok, tmp_path, task="add is wrong", format=fmt)  # from the cached verdicts
    assert third.document == second.document and {s.path for s in third.skipped} == set(skipped)
