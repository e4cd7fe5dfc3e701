"""The shortcuts that make a second pack fast must never change what a pack says.

A warm pack classifies unchanged files from the last scan's verdicts, takes counts from the
cache without reading files, loads no tokenizer when nothing misses, ranks in a forked child and
parses outlines on forked workers; each test here checks that the result is what the slow way
gives, and that a changed file is seen as changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_pack import make_repo

from agent.pack import build_pack
from agent.pack.cache import CountCache
from agent.pack.counting import ExactCounter
from agent.pack.outline import Outliner, outline
from agent.pack.rank import rank_files
from agent.pack.render import file_block, footer, header, tree
from agent.pack.scan import scan_repo
from agent.pack.store import _FORK_RANK_FROM
from agent.tokens import get_tokenizer


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer("cl100k_base")


def _pack(root: Path, tok, cache: Path, **kw):
    kw.setdefault("budget", 1_000_000)
    return build_pack(root, tokenizer=tok, cache_dir=cache, environ={}, **kw)


def _keep_stat(path: Path, write) -> None:
    """Rewrite `path` with `write(path)` and put its old mtime back (same size is the caller's job)."""
    st = path.stat()
    write(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_scan_verdicts_are_reused_until_the_file_changes(tmp_path: Path) -> None:
    from agent.pack.scan import rules_key

    root = make_repo(tmp_path / "repo", {"a.py": "x = 1\n", "blob.bin": b"\0\1\2\3" * 8,
                                         "poetry.lock": "[[package]]\n", "node_modules/x/i.js": "1\n"})
    first = scan_repo(root)
    assert {v[0]: v[3] for v in first.verdicts} == {
        "a.py": "", "blob.bin": "binary", "poetry.lock": "lock file", "node_modules/x/i.js": "vendored: node_modules/"}
    known = {p: (s, m, v) for p, s, m, v in first.verdicts}
    again = scan_repo(root, known=known)
    assert again.verdicts == []  # nothing needed reading, nor judging by name again
    assert sorted(again.skipped) == sorted(first.skipped)
    assert [f.path for f in again.files] == ["a.py"] and not again.files[0].loaded
    # Verdicts are kept per rules key: the classifying code and the size limit.
    assert rules_key(1_000_000) == rules_key(1_000_000) != rules_key(10)
    assert again.files[0].data == b"x = 1\n"  # read on first use
    # A new mtime means a new look: the binary file became text.
    (root / "blob.bin").write_text("now text\n")
    third = scan_repo(root, known=known)
    assert [f.path for f in third.files] == ["a.py", "blob.bin"]
    assert [v[0] for v in third.verdicts] == ["blob.bin"]


def test_a_changed_file_under_the_same_size_and_mtime_is_recounted(tmp_path: Path, tok) -> None:
    root = make_repo(tmp_path / "repo", {"pkg/core.py": "def add(a, b):\n    return a + b\n", "README.md": "# r\n"})
    cache = tmp_path / "cache"
    before = _pack(root, tok, cache)
    # Same byte length and the old mtime: the fast path trusts its row, the render checks it.
    target = root / "pkg" / "core.py"
    _keep_stat(target, lambda p: p.write_text("def add(a, b):\n    return a - b\n"))
    after = _pack(root, tok, cache)
    assert target.read_text() in after.document
    assert tok.count(after.document) == after.totals.tokens
    assert before.document != after.document


def test_a_warm_pack_loads_no_tokenizer_and_gives_the_same_bytes(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {f"m{i}.py": f"def f{i}():\n    return {i}\n" for i in range(20)})
    script = (
        "import json, sys\nfrom pathlib import Path\nfrom agent.pack import build_pack\n"
        "p = build_pack(sys.argv[1], task='f3 returns the wrong value', budget=5000, model='gpt-4-turbo', "
        "cache_dir=Path(sys.argv[2]), environ={})\n"
        "print(json.dumps({'doc': p.document, 'relevant': p.relevant, 'tokens': p.totals.tokens, "
        "'tiktoken': 'tiktoken' in sys.modules, 'ranker': 'agent.pack.rank' in sys.modules,\n"
        " 'settings': 'agent.settings' in sys.modules}))\n"
    )

    def run() -> dict:
        proc = subprocess.run([sys.executable, "-c", script, str(root), str(tmp_path / "cache")],
                              capture_output=True, text=True, timeout=120, check=True,
                              cwd=Path(__file__).resolve().parents[1])
        return json.loads(proc.stdout)

    cold, warm = run(), run()
    assert cold["tiktoken"] and cold["ranker"]
    assert not warm["tiktoken"] and not warm["ranker"]
    assert not cold["settings"] and not warm["settings"]  # model, budget and cache all given
    assert (warm["doc"], warm["relevant"], warm["tokens"]) == (cold["doc"], cold["relevant"], cold["tokens"])


def test_ranking_in_a_forked_child_equals_ranking_here(tmp_path: Path, tok) -> None:
    files = {f"pkg/mod{i:04d}.py": f"def helper_{i}(x):\n    return x + {i}\n" for i in range(_FORK_RANK_FROM)}
    files["pkg/billing.py"] = "def refund_invoice(invoice):\n    raise ValueError('refund failed')\n"
    root = make_repo(tmp_path / "repo", files)
    task = "refund_invoice raises ValueError: refund failed in pkg/billing.py"
    pack = _pack(root, tok, tmp_path / "cache", budget=20_000, task=task)
    scan = scan_repo(root)
    here = rank_files(task, [f.path for f in scan.files], [f.data for f in scan.files])
    ranked = sorted((i for i in pack.items if i.rank is not None), key=lambda i: i.rank)
    assert [i.path for i in ranked] == [r.path for r in here]
    assert [i.score for i in ranked] == pytest.approx([r.score for r in here])
    assert ranked[0].path == "pkg/billing.py"


def test_outlines_on_workers_equal_outlines_here() -> None:
    items = [
        (f"m{i}.py", f'"""Module {i}."""\n\n\nclass C{i}:\n    """A class."""\n\n    def m(self, x={i}):\n        return x\n')
        for i in range(12)
    ] + [("notes.md", "# Title\n\ntext\n## Part\n"), ("broken.py", "def (:\n")]
    with Outliner(workers=2) as outliner:
        assert outliner(items) == [outline(p, t) for p, t in items]


def test_a_repeat_pack_parses_no_outlines(tmp_path: Path, tok, monkeypatch) -> None:
    # Outlines are parsed ahead for the candidates, and only those reached are kept. The small
    # ones fill the budget to its last few tokens, so the first pack stops with parsed outlines
    # left over; a repeat pack stops at the same place, before any it would parse again.
    def module(i: int) -> str:
        return "".join(f'def op_{i}_{k}(x, y):\n    """Apply op {k}."""\n    return x * {k} + y\n\n\n' for k in range(1 + i * 7 % 40))

    files = {f"pkg/m{i:02d}.py": module(i) for i in range(30)}
    files |= {f"pkg/tiny{i:03d}.py": f"def t{i}({'a, ' * (i % 13)}z):\n    return {'1 + ' * 60}1\n" for i in range(120)}
    root = make_repo(tmp_path / "repo", files, commit=False)  # no commit hash: the same fill each run
    streamed: list[int] = []
    stream = Outliner.stream

    def recording(self, items):
        streamed.append(len(items))
        return stream(self, items)

    monkeypatch.setattr(Outliner, "stream", recording)
    task = "op_3_7 in pkg/m03.py returns the wrong value"
    first = _pack(root, tok, tmp_path / "cache", budget=4_000, task=task)
    # (the fill ends within a few tokens of the budget: 13 short under BM25 ranking, whose scores
    # order the tiny files by length; what matters is that outlines were parsed ahead)
    assert first.totals.outline >= 10 and first.budget - first.totals.tokens - first.relevant_tokens <= 32 and streamed
    streamed.clear()
    second = _pack(root, tok, tmp_path / "cache", budget=4_000, task=task)
    assert streamed == [] and (second.document, second.totals) == (first.document, first.totals)


_PART = st.sampled_from(list("ab \t\n\r<>#`'\"=:{}()/\\_-.,0123456789éß中ひカ😀\u200d\ufeff\x0b")
                        + ["def ", "</file>", "```", "  \n", "<｜end▁of▁sentence｜>"])
_TEXT = st.lists(_PART, max_size=60).map("".join)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(_TEXT, min_size=1, max_size=5), fmt=st.sampled_from(["xml", "markdown"]))
def test_a_document_counts_as_the_sum_of_its_pieces_with_deepseek(texts: list[str], fmt: str) -> None:
    """The seam argument in ExactCounter.count_document, checked against the real tokenizer."""
    ds = get_tokenizer("deepseek-v4")
    paths = [f"d/f{i}.py" for i in range(len(texts))]
    pieces = [header("r", None, 1000, {"files": 1, "full": 1, "outline": 0, "path_only": 0, "skipped": 0}, fmt),
              tree(paths, "files", fmt)]
    pieces += [file_block(p, t, fmt, level="full" if i % 2 else "outline") for i, (p, t) in enumerate(zip(paths, texts))]
    pieces.append(footer(fmt))
    with tempfile.TemporaryDirectory() as tmp, CountCache(Path(tmp), ds.name) as cache:
        counter = ExactCounter(ds, cache)
        assert counter.count_document(pieces) == ds.count("".join(pieces))
        # A piece of another shape is counted with the whole document instead.
        odd = [*pieces, "tail without a newline"]
        assert counter.count_document(odd) == ds.count("".join(odd))


def test_the_cache_keeps_the_newest_rankings_and_empties_an_old_layout(tmp_path: Path) -> None:
    import sqlite3

    from agent.pack.cache import MEMO_KEEP

    (tmp_path / "pack").mkdir()
    old = sqlite3.connect(tmp_path / "pack" / "counts-t.sqlite3")
    old.execute("CREATE TABLE counts (h BLOB PRIMARY KEY, tokens INTEGER NOT NULL) WITHOUT ROWID")
    old.execute("INSERT INTO counts VALUES (x'00', 5)")
    old.commit()
    old.close()
    with CountCache(tmp_path, "t") as cache:
        assert cache.lookup([b"\0"]) == {}  # a cache of another layout starts empty
        for i in range(MEMO_KEEP + 10):
            cache.memo_put(f"task {i}".encode(), b"ranking")
        assert cache.memo_get(b"task 9") is None and cache.memo_get(b"task 10") == b"ranking"
        cache.memo_put(b"task 10", b"again")  # a rewrite is the newest again
        cache.memo_put(b"one more", b"x")
        assert cache.memo_get(b"task 10") == b"again" and cache.memo_get(b"task 11") is None


def test_work_in_a_forked_child_falls_back_here_and_can_be_abandoned() -> None:
    import time

    from agent.pack.counting import in_child

    here = os.getpid()
    wait = in_child(lambda: str(os.getpid()).encode())
    assert wait is not None and int(wait()) != here  # ran in the child
    failing = in_child(lambda: str(1 // (os.getpid() == here)).encode())  # fails only in the child
    assert failing is not None and failing() == b"1"  # so it ran again here
    slow = in_child(lambda: time.sleep(30) or b"late")
    started = time.perf_counter()
    assert slow is not None and slow(fallback=False) == b""
    assert time.perf_counter() - started < 5  # killed and reaped, not waited for


def test_count_repo_with_the_bulk_counter_counts_what_the_quick_one_counts(tmp_path: Path, monkeypatch) -> None:
    import agent.tokens
    from agent.pack import build, count_repo, counting

    if agent.tokens.bulk_engine("deepseek-v4") is None:
        pytest.skip("fastokens has no wheel for this platform (deepseek-v4 counts without it)")
    files = {f"pkg/m{i}.py": f"def f{i}(x):\n    return x + {i}  # ¿qué? 中文 {i * 7}\n" * (i + 1) for i in range(40)}
    files["notes.md"] = "<｜begin▁of▁sentence｜> is one token\n\ufeffBOM\u200b and tabs\t\t\n"
    root = make_repo(tmp_path / "repo", files)
    started: list[str] = []
    real = agent.tokens.load_in_background
    monkeypatch.setattr(agent.tokens, "load_in_background", lambda name: started.append(name) or real(name))
    quick = count_repo(root, model="deepseek-v4-pro", cache_dir=tmp_path / "c1", environ={})
    assert started == []  # a small tree: the quick counter
    # A tree that counts as large: the bulk counter loads while the scan reads the files.
    monkeypatch.setattr(build, "BULK_FILES", 10)
    monkeypatch.setattr(counting, "BULK_BYTES", 1)
    bulk = count_repo(root, model="deepseek-v4-pro", cache_dir=tmp_path / "c2", environ={})
    assert started == ["deepseek-v4-bulk"]
    assert bulk == quick and len(bulk) == 41
    ds = get_tokenizer("deepseek-v4")
    assert bulk["notes.md"] == ds.count(file_block("notes.md", files["notes.md"], "xml"))


def test_a_failed_bulk_load_is_raised_where_counting_starts(tmp_path: Path) -> None:
    from agent.errors import ConfigError
    from agent.pack.counting import BULK_BYTES

    with CountCache(tmp_path / "cache", "deepseek-v4") as cache:
        counter = ExactCounter(lambda: get_tokenizer("deepseek-v4"), cache, bulk="no-such-counter")
        counter.expect(BULK_BYTES - 1)
        assert not counter.loading  # below the threshold nothing starts
        counter.expect(BULK_BYTES)
        assert counter.loading
        with pytest.raises(ConfigError, match="not available offline"):
            counter.count(["x = 1\n"])


def test_pruning_drops_what_no_tree_refers_to_and_packs_stay_the_same(tmp_path: Path, tok) -> None:
    import shutil

    from agent.pack.cache import digest

    lines = "".join(f"    x = x * {k} + {k}\n" for k in range(15))
    body = "".join(f"def f{i}(x):\n    '''Doc {i}.'''\n{lines}    return x + {i}\n\n" for i in range(8))
    files = {f"pkg/m{i}.py": body.replace("Doc", f"Module {i} doc") for i in range(12)}
    a = make_repo(tmp_path / "a", files)
    b = make_repo(tmp_path / "b", {p: t.replace("return", "return -") for p, t in files.items()})
    cache = tmp_path / "cache"
    for root in (a, b):
        _pack(root, tok, cache, budget=3_000, task="f3 in pkg/m3.py is wrong")
    old_block = file_block("pkg/m3.py", files["pkg/m3.py"], "xml")
    (a / "pkg" / "m3.py").write_text(files["pkg/m3.py"] + "# edited\n")
    before = _pack(a, tok, cache, budget=3_000, task="f3 in pkg/m3.py is wrong")
    assert before.totals.outline > 0  # outlines were made and cached too
    shutil.rmtree(b)

    with CountCache(cache, tok.name) as cc:
        assert cc.lookup([digest(old_block)])  # the old version's count is still there
        deleted = cc.prune()
        assert deleted["stats"] > 0 and deleted["counts"] > 0 and deleted["outlines"] > 0
        roots = {r for (r,) in cc._db.execute("SELECT DISTINCT root FROM stats")}
        assert roots == {str(a.resolve())}
        assert not cc.lookup([digest(old_block)])
        new_block = file_block("pkg/m3.py", files["pkg/m3.py"] + "# edited\n", "xml")
        assert cc.lookup([digest(new_block)]) == {digest(new_block): tok.count(new_block)}
    after = _pack(a, tok, cache, budget=3_000, task="f3 in pkg/m3.py is wrong")
    assert (after.document, after.relevant, after.totals) == (before.document, before.relevant, before.totals)

    # Closing a cache past its size limit prunes it.
    with CountCache(cache, tok.name, prune_above=0) as cc:
        cc.store([(b"\1" * 16, 7)])
    with CountCache(cache, tok.name) as cc:
        assert cc.lookup([b"\1" * 16]) == {} and cc.live_bytes() > 0


class _Recording:
    """A real tokenizer that also says how many texts it was given."""

    def __init__(self, tok) -> None:
        self.tok, self.name, self.texts = tok, tok.name, 0

    def count(self, text: str) -> int:
        self.texts += 1
        return self.tok.count(text)

    def count_batch(self, texts) -> list[int]:
        self.texts += len(texts)
        return self.tok.count_batch(texts)


def test_the_last_of_the_budget_is_not_filled_by_counting_every_small_file(tmp_path: Path, tok) -> None:
    import random

    from agent.pack.build import _FILL_MISSES, _MIN_BATCH, _OUTLINE_TRIES

    # 3,000 small files of dense code: once the budget is nearly spent, many of the rest could
    # fit by their size and only their count says no. Unbounded, that tail was counted a few
    # files at a time (2,182 texts here; a tree of 50,000 such files took 27 s).
    rnd = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "theta"]
    files = {
        f"pkg{d // 4}/sub{d}/mod{f}.py": "".join(
            f"def {rnd.choice(words)}_{i}(x):\n    return x + {i}\n\n" for i in range(rnd.randint(2, 30))
        )
        for d in range(12)
        for f in range(250)
    }
    root = make_repo(tmp_path / "repo", files)
    rec = _Recording(tok)
    task = "theta_12 returns the wrong value in pkg1/sub5/mod100.py"
    pack = build_pack(root, task=task, tokenizer=rec, cache_dir=tmp_path / "cache", environ={}, budget=60_000)
    assert 59_000 < pack.totals.tokens <= 60_000 and pack.totals.full > 200 and pack.totals.outline > 0
    # Counted: the full files, the misses allowed, a batch's slack, the outlines tried, header
    # and tree (the commit hash in the header moves the fill a little from run to run).
    assert rec.texts <= pack.totals.full + _FILL_MISSES + _MIN_BATCH + _OUTLINE_TRIES + 16 < 1_000
