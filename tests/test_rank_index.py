"""The incremental ranking index ranks exactly as the files' bytes do.

`index_entry` keeps per file what `rank_features` asks of its bytes; `rank_features_indexed`
must give the same features bit for bit, and `FileStore.rank` (through `build_pack`, with the
entries kept in the count cache by content hash) the same ranking as a full ranking of the tree
as it is now, after edits, additions and deletions; an entry that is torn or altered is made
again from the file, and one that is whole is what ranks (the file is not read).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_pack import make_repo

from agent.pack import build_pack
from agent.pack.cache import digest
from agent.pack.corpus import corpus_hashes
from agent.pack.rank import (
    Features, entry_ok, index_corpus, index_entry, order, rank_features, rank_features_corpus, rank_features_indexed, rank_files,
)
from agent.pack.scan import scan_repo
from agent.tokens import get_tokenizer

FILES = {
    "app/billing.py": "class InvoiceRefund:\n    def refund_invoice(self, invoice):\n        raise ValueError('refund failed')\n",
    "app/models.py": "from app.billing import InvoiceRefund\n\nclass Customer:\n    def bulk_create(self, rows):\n        return rows\n",
    "app/naïve.py": "# -*- coding: utf-8 -*-\ndef naïve_sum(xs):\n    return sum(xs)  # é_refund refundé café\ntype Point = tuple\n",
    "app/overlap.py": "def xdef refund_invoice\nundef refund_invoice\nsubclass Customer(object): pass\n",
    "app/camel.js": "function createTable(opts) { return bulkCreateTable(opts); }\nstruct Row {}\n",
    "app/empty.py": "",
    "app/punct.txt": "--- +++ ... !!! ???\n",
    "app/sqlmigrate.py": "def handle(*args):\n    return 'sqlmigrate'\n",
    "docs/refunds.md": "# Refunds\n\nA refund of an invoice: `refund_invoice` raises ValueError when the refund failed.\n",
    "tests/test_billing.py": "from app.billing import InvoiceRefund\n\ndef test_refund_invoice():\n    InvoiceRefund().refund_invoice(None)\n",
    **{f"app/filler{i}.py": f"def helper_{i}(value):\n    return value + {i}  # refund {'x' * i}\n" for i in range(12)},
}
TASKS = [
    "refund_invoice raises ValueError: refund failed. Traceback: File \"app/billing.py\", line 3, in refund_invoice",
    "`Customer.bulk_create()` should use createTable; see app/models.py and the sqlmigrate command.",
    "naïve_sum gives the wrong café total; Point type and InvoiceRefund subclass Customer",
    "helper_3 and helper_7 return the wrong value for filler inputs",
]


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer("cl100k_base")


def assert_same_features(full: Features, indexed: Features) -> None:
    """Equal bit for bit: every lexical score's bytes, every named signal, and the order."""
    assert full.lexical.keys() == indexed.lexical.keys()
    for name in full.lexical:
        assert full.lexical[name].tobytes() == indexed.lexical[name].tobytes(), name
    assert full.named == indexed.named
    assert np.array_equal(order(full), order(indexed))


@pytest.mark.parametrize("task", TASKS)
def test_indexed_features_equal_features_from_the_bytes(task: str) -> None:
    paths = list(FILES)
    datas = [t.encode() for t in FILES.values()]
    entries = [index_entry(d) for d in datas]
    assert all(entry_ok(e) for e in entries)
    full = rank_features(task, paths, datas)
    assert any(v.any() for v in full.lexical.values()) and any(full.named.values())  # the tasks reach the files
    assert_same_features(full, rank_features_indexed(task, paths, entries))


_PIECES = st.sampled_from(["def ", "class ", "func ", "type ", "fn ", "_", "é", "\u00e9t", "9", "x", "Refund", "refund",
                           "Invoice", "invoice_", "bulk", "Create", " ", "\n", "(", ".", "ab", "AB", "café", "ü"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(st.lists(_PIECES, max_size=40).map("".join), min_size=1, max_size=6),
       words=st.lists(st.sampled_from(["refund", "invoice_refund", "RefundInvoice", "bulk_create", "create", "xab",
                                       "Invoice", "ab9", "`refund()`", "invoice.py", "é", "ab_x", "CreateBulk"]),
                      min_size=1, max_size=6))
def test_indexed_features_equal_on_any_mix_of_boundaries(texts: list[str], words: list[str]) -> None:
    # Identifier runs next to underscores, digits, case steps, non-ASCII letters and definers.
    paths = [f"pkg/invoice{i}.py" if i % 2 else f"pkg/refund_{i}.txt" for i in range(len(texts))]
    datas = [t.encode() for t in texts]
    task = " ".join(words)
    assert_same_features(rank_features(task, paths, datas), rank_features_indexed(task, paths, [index_entry(d) for d in datas]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(st.lists(_PIECES, max_size=40).map("".join), min_size=1, max_size=6), data=st.data())
def test_a_corpus_with_entries_replaced_ranks_as_the_entries_now(texts: list[str], data) -> None:
    # The joined index of a tree, with some files' entries replaced by their edited ones (and
    # some files never kept: an empty entry in their place), ranks as the edited files do.
    n = len(texts)
    kept = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    datas = [t.encode() for t in texts]
    corpus = index_corpus([index_entry(d) for d in datas], [digest(d) if k else None for d, k in zip(datas, kept)])
    assert corpus_hashes(corpus) == [digest(d) if k else None for d, k in zip(datas, kept)]
    edited = data.draw(st.sets(st.integers(0, n - 1)))
    now = [data.draw(st.lists(_PIECES, max_size=40).map("".join)).encode() if i in edited else d for i, d in enumerate(datas)]
    fresh = {i: index_entry(now[i]) for i in range(n) if i in edited or not kept[i]}
    paths = [f"pkg/invoice{i}.py" for i in range(n)]
    task = "refund invoice_refund RefundInvoice bulk_create Create ab9 invoice.py é"
    assert_same_features(rank_features(task, paths, now), rank_features_corpus(task, paths, corpus, fresh))  # type: ignore[arg-type]
    assert rank_features_corpus(task, paths + ["one/more.py"], corpus, fresh) is None


def _pack(root: Path, tok, cache: Path, task: str):
    return build_pack(root, task=task, budget=20_000, tokenizer=tok, cache_dir=cache, environ={})


def _ranks(pack) -> list[tuple[str, float, list[str]]]:
    ranked = sorted((i for i in pack.items if i.rank is not None), key=lambda i: i.rank)
    return [(i.path, i.score, i.reasons) for i in ranked]


def _full(root: Path, task: str) -> list[tuple[str, float, list[str]]]:
    files = scan_repo(root).files
    return [(r.path, r.score, r.reasons) for r in rank_files(task, [f.path for f in files], [f.data for f in files])]


def _indexed_tree(root: Path, tok, cache: Path) -> None:
    """Two tasks on the tree: the second indexes it."""
    for task in TASKS[:2]:
        _pack(root, tok, cache, task)


def _index_rows(cache: Path) -> dict[bytes, bytes]:
    (db,) = (cache / "pack").glob("counts-*.sqlite3")
    with sqlite3.connect(db) as con:
        return dict(con.execute("SELECT h, v FROM rank_index"))


def _set_entry(cache: Path, h: bytes, entry: bytes) -> None:
    """Replace a file's entry, and drop the tree's joined index (which would answer first)."""
    (db,) = (cache / "pack").glob("counts-*.sqlite3")
    with sqlite3.connect(db) as con:
        assert con.execute("UPDATE rank_index SET v=? WHERE h=?", (entry, h)).rowcount == 1
        assert con.execute("DELETE FROM corpus").rowcount == 1


def _corpus(cache: Path) -> bytes | None:
    (db,) = (cache / "pack").glob("counts-*.sqlite3")
    with sqlite3.connect(db) as con:
        row = con.execute("SELECT v FROM corpus").fetchone()
    return row[0] if row else None


def _edit(path: Path, text: str) -> None:
    """Rewrite `path`, with an mtime that surely moved (the index trusts size and mtime as the
    count cache does)."""
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(old + 10**9, old + 10**9))


def test_incremental_ranking_after_edits_additions_and_deletions_equals_a_full_ranking(tmp_path: Path, tok) -> None:
    root = make_repo(tmp_path / "repo", FILES)
    cache = tmp_path / "cache"
    assert _ranks(_pack(root, tok, cache, TASKS[0])) == _full(root, TASKS[0])  # ranked from the bytes
    assert _index_rows(cache) == {}  # a tree's first task may be its only one: not indexed yet
    assert _ranks(_pack(root, tok, cache, TASKS[1])) == _full(root, TASKS[1])  # from the bytes, then indexed
    rows = _index_rows(cache)
    assert set(rows) == {digest(t.encode()) for t in FILES.values()}
    assert _ranks(_pack(root, tok, cache, TASKS[2])) == _full(root, TASKS[2])  # ranked from the index
    _edit(root / "app/models.py", FILES["app/models.py"] + "\ndef naïve_sum(rows):\n    return createTable(rows)\n")
    _edit(root / "app/filler3.py", "def helper_3(value):\n    return value - 3  # InvoiceRefund\n")
    _edit(root / "app/added.py", "class Point:\n    def refund_invoice(self):\n        return 'sqlmigrate'\n")
    _edit(root / "tests/test_added.py", "def test_helper_7():\n    assert helper_7(1) == 8\n")
    (root / "app/billing.py").unlink()
    (root / "docs/refunds.md").unlink()
    for task in TASKS[1:] + TASKS[:1]:
        assert _ranks(_pack(root, tok, cache, task)) == _full(root, task)
    now = {digest(f.data) for f in scan_repo(root).files}
    assert now <= set(_index_rows(cache))  # the changed and added files were indexed as they are now


def test_the_index_is_what_ranks_a_known_file(tmp_path: Path, tok) -> None:
    # A whole entry planted for an unchanged file is believed: its bytes are not read again.
    root = make_repo(tmp_path / "repo", FILES)
    cache = tmp_path / "cache"
    _indexed_tree(root, tok, cache)
    _set_entry(cache, digest(FILES["app/punct.txt"].encode()), index_entry(b"def planted_marker_name(x):\n    pass\n"))
    task = "planted_marker_name is broken"
    ranked = _ranks(_pack(root, tok, cache, task))
    assert ranked[0][0] == "app/punct.txt" and "planted_marker_name" in " ".join(ranked[0][2])
    assert ranked != _full(root, task)


@pytest.mark.parametrize("damage", ["torn", "altered", "empty", "other code"])
def test_a_torn_or_altered_entry_is_made_again_from_the_file(tmp_path: Path, tok, damage: str) -> None:
    root = make_repo(tmp_path / "repo", FILES)
    cache = tmp_path / "cache"
    _indexed_tree(root, tok, cache)
    h = digest(FILES["app/billing.py"].encode())
    good = _index_rows(cache)[h]
    if damage == "other code":
        (db,) = (cache / "pack").glob("counts-*.sqlite3")
        with sqlite3.connect(db) as con:
            con.execute("UPDATE rank_index SET code=? WHERE h=?", (b"older ranking code", h))
            con.execute("DELETE FROM corpus")
    else:
        bad = {"torn": good[: len(good) // 2], "altered": good[:40] + bytes([good[40] ^ 1]) + good[41:], "empty": b""}[damage]
        assert not entry_ok(bad)
        _set_entry(cache, h, bad)
    for task in TASKS[2:]:
        assert _ranks(_pack(root, tok, cache, task)) == _full(root, task)
    assert _index_rows(cache)[h] == good  # made again and kept


def test_a_file_that_may_hold_a_secret_is_ranked_but_not_kept_in_the_index(tmp_path: Path, tok) -> None:
    secret = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z" * 2
    files = {**FILES, "app/settings.py": f"OPENAI_API_KEY = '{secret}'\ndef refund_settings():\n    pass\n"}
    root = make_repo(tmp_path / "repo", files)
    cache = tmp_path / "cache"
    for task in TASKS[:2] + ["refund_settings is missing"]:
        assert _ranks(_pack(root, tok, cache, task)) == _full(root, task)
    rows = _index_rows(cache)
    assert digest(files["app/settings.py"].encode()) not in rows
    assert not any(secret.encode() in v for v in rows.values())
    corpus = _corpus(cache)  # nor in the tree's joined index: it holds an empty entry in its place
    assert corpus is not None and secret.encode() not in corpus and b"refund_settings" not in corpus
    assert digest(files["app/settings.py"].encode()) not in corpus and digest(FILES["app/models.py"].encode()) in corpus
    assert digest(FILES["app/models.py"].encode()) in rows


_PACK_IN_CHILD = """
import sys
from pathlib import Path
from agent.pack import build_pack
from agent.tokens import get_tokenizer
build_pack(sys.argv[1], task=sys.argv[3], budget=20_000, tokenizer=get_tokenizer("cl100k_base"), cache_dir=Path(sys.argv[2]), environ={})
"""


def test_packs_writing_the_index_at_once_leave_it_whole(tmp_path: Path, tok) -> None:
    # SQLite commits each writer's transaction whole (WAL: https://www.sqlite.org/wal.html), so
    # two processes indexing the same tree at once leave whole entries, and the next task ranks
    # as the bytes do.
    root = make_repo(tmp_path / "repo", FILES)
    cache = tmp_path / "cache"
    _pack(root, tok, cache, TASKS[3])  # the tree's first task
    procs = [subprocess.Popen([sys.executable, "-c", _PACK_IN_CHILD, str(root), str(cache), task]) for task in TASKS[:2]]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    rows = _index_rows(cache)
    assert set(rows) == {digest(t.encode()) for t in FILES.values()} and all(entry_ok(v) for v in rows.values())
    for task in TASKS[2:]:
        assert _ranks(_pack(root, tok, cache, task)) == _full(root, task)


def test_an_unchanged_tree_ranks_from_its_joined_index_and_a_torn_one_is_made_again(tmp_path: Path, tok) -> None:
    root = make_repo(tmp_path / "repo", FILES)
    cache = tmp_path / "cache"
    _indexed_tree(root, tok, cache)
    good = _corpus(cache)
    assert good is not None
    # A whole corpus is believed: one made from planted entries ranks the planted name first.
    paths = sorted(FILES)
    planted = [index_entry(b"def planted_marker_name(x):\n    pass\n") if p == "app/punct.txt" else index_entry(FILES[p].encode()) for p in paths]
    (db,) = (cache / "pack").glob("counts-*.sqlite3")
    with sqlite3.connect(db) as con:
        con.execute("UPDATE corpus SET v=?", (index_corpus(planted, [digest(FILES[p].encode()) for p in paths]),))
    task = "planted_marker_name is broken"
    assert _ranks(_pack(root, tok, cache, task))[0][0] == "app/punct.txt"
    # A torn one is not (cut short, or altered inside: its digest): the ranking is made from
    # the entries instead, and so is the joined index again.
    for torn in (good[: len(good) // 2], good[:-40] + bytes([good[-40] ^ 1]) + good[-39:], good[:30]):
        with sqlite3.connect(db) as con:
            con.execute("UPDATE corpus SET v=?", (torn,))
        assert _ranks(_pack(root, tok, cache, f"{task} ({len(torn)})")) == _full(root, f"{task} ({len(torn)})")
        assert _corpus(cache) == good
    # A file edited since: its entry takes the place of the one the corpus holds, which stays.
    _edit(root / "app/models.py", FILES["app/models.py"] + "\ndef refund_all(rows):\n    return rows\n")
    assert _ranks(_pack(root, tok, cache, TASKS[0])) == _full(root, TASKS[0])
    assert _corpus(cache) == good
    # More than an eighth of the files edited: the corpus is made again, the tree's as it is now.
    for name in ("app/filler1.py", "app/filler2.py", "app/filler3.py"):
        _edit(root / name, "def refund_everything():\n    return 0\n")
    assert _ranks(_pack(root, tok, cache, TASKS[1] + " again")) == _full(root, TASKS[1] + " again")
    assert _corpus(cache) not in (None, good)
    assert _ranks(_pack(root, tok, cache, TASKS[2] + " again")) == _full(root, TASKS[2] + " again")
