"""A tree indexed ahead (agent.pack.index): the next task's pack finds every count, outline and
ranking entry it needs, and packs exactly as without the index.

The detached indexer is a real process (`python -m agent.pack.index`) holding a real flock;
git runs `gc --auto` the same way, detached after the command's own work (git-gc(1),
gc.autoDetach).
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from test_pack import make_repo

from agent.errors import ConfigError
from agent.pack import build_pack, count_repo, index
from agent.pack.cache import CountCache, digest
from agent.pack.counting import Ahead, ExactCounter
from agent.pack.rank import rank_files
from agent.pack.scan import rules_key, scan_repo
from agent.pack.store import _FORK_RANK_FROM, Candidate, FileStore, rank_ahead
from agent.secrets import SecretScanner
from agent.settings import Settings
from agent.tokens import get_tokenizer

FILES = {
    "app/billing.py": (
        '"""Billing."""\n\n\nclass InvoiceRefund:\n    """Refunds an invoice."""\n\n'
        "    def refund_invoice(self, invoice):\n        return invoice.total * -1\n\n"
        "    def credit_note(self, invoice):\n        return {'invoice': invoice, 'kind': 'credit'}\n"
    ),
    "app/models.py": (
        "class Invoice:\n    def __init__(self, total):\n        self.total = total\n\n"
        "    def paid(self):\n        return self.total <= 0\n\n\nclass Customer:\n    name = 'x' * 40\n"
    ),
    "app/shipping.py": "def ship_order(order):\n    '''Ship it.'''\n    return order.address.strip() + ' ' * 30\n" * 4,
    "app/ledger.py": "".join(
        f'def post_entry_{k}(book, amount):\n    """Post entry {k} to the book."""\n' + "    total = book.balance + amount\n" * 12
        + "    return total\n\n\n" for k in range(20)
    ),
    "docs/refunds.md": "# Refunds\n\nHow refunds work, in some detail for the reader.\n\n## Credit notes\n\nMore.\n",
    "README.md": "# Shop\n\nA shop with invoices, refunds and shipping, described at some length here.\n",
}
TASKS = [
    "InvoiceRefund.refund_invoice returns a negative total in app/billing.py",
    "ship_order crashes when the address is None",
    "Customer names are cut short",
]


class Recording:
    """cl100k_base, recording every text it is asked to count (under the same name, so the
    cache is the one the indexer fills)."""

    name = "cl100k_base"

    def __init__(self) -> None:
        self._tok = get_tokenizer("cl100k_base")
        self.texts: list[str] = []

    def count(self, text: str) -> int:
        self.texts.append(text)
        return self._tok.count(text)

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        self.texts.extend(texts)
        return self._tok.count_batch(texts)


def _spec(root: Path, cache: Path, **kw) -> index.IndexSpec:
    fields = {
        "root": str(root.resolve()), "tokenizer": "cl100k_base", "cache_dir": str(cache), "format": "xml",
        "max_file_bytes": 1_000_000, "environ": {}, "scanner": SecretScanner({}).fingerprint,
    }
    return index.IndexSpec(**(fields | kw))


def _pack(root: Path, cache: Path, task: str, tokenizer=None, **kw):
    kw.setdefault("budget", 2_000)  # small: most files are outlines or paths
    return build_pack(root, task=task, tokenizer=tokenizer or get_tokenizer("cl100k_base"), cache_dir=cache, environ={}, **kw)


def _rows(cache: Path, table: str) -> int:
    (db,) = (cache / "pack").glob("counts-*.sqlite3")
    with sqlite3.connect(db) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_after_indexing_a_new_task_counts_only_its_own_header_and_relevant_block(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", FILES)
    cache = tmp_path / "cache"
    _pack(root, cache, TASKS[0], index="off")
    report = index.index_tree(_spec(root, cache))
    assert report.files == len(FILES) and report.entries == len(FILES)
    assert report.outlines == sum(len(t.encode()) >= 200 for t in FILES.values())
    recording = Recording()
    new = _pack(root, cache, TASKS[1], tokenizer=recording, index="off")
    # Nothing of a file is counted again: not its full block, not its outline.
    assert recording.texts and all(t.startswith(("<repository", "<relevant_files")) for t in recording.texts), recording.texts
    assert {i.level for i in new.items} == {"full", "outline"}  # the outline came from the index too
    # And the pack is the one a cold cache makes.
    cold = _pack(root, tmp_path / "cold", TASKS[1], index="off")
    assert (new.document, new.relevant, new.totals) == (cold.document, cold.relevant, cold.totals)


def test_after_indexing_the_whole_count_needs_no_tokenizer(tmp_path: Path) -> None:
    class Refusing(Recording):
        def count(self, text: str) -> int:
            raise AssertionError(f"counted {text[:40]!r}")

        count_batch = count  # type: ignore[assignment]

    root = make_repo(tmp_path / "repo", FILES)
    cache = tmp_path / "cache"
    index.index_tree(_spec(root, cache))
    counts = count_repo(root, tokenizer=Refusing(), cache_dir=cache, environ={})
    assert counts == count_repo(root, tokenizer=get_tokenizer("cl100k_base"), cache_dir=tmp_path / "cold", environ={})


def test_a_small_tree_is_indexed_at_its_second_task_and_here_or_off_say_otherwise(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", FILES)
    for mode, after_one, after_two in (("background", 0, len(FILES)), ("here", len(FILES), len(FILES)), ("off", 0, 0)):
        cache = tmp_path / f"cache-{mode}"
        _pack(root, cache, TASKS[0], index=mode)
        assert _rows(cache, "rank_index") == after_one, mode
        _pack(root, cache, TASKS[1], index=mode)
        assert _rows(cache, "rank_index") == after_two, mode


def test_the_mode_comes_from_the_option_then_the_environment(tmp_path: Path, monkeypatch) -> None:
    assert index.index_mode(None, {}) == "background"
    assert index.index_mode(None, {"TOME_PACK_INDEX": "off"}) == "off"
    assert index.index_mode("here", {"TOME_PACK_INDEX": "off"}) == "here"
    with pytest.raises(ConfigError, match="TOME_PACK_INDEX='sometimes'"):
        index.index_mode(None, {"TOME_PACK_INDEX": "sometimes"})
    root = make_repo(tmp_path / "repo", FILES)
    monkeypatch.setenv("TOME_PACK_INDEX", "later")
    with pytest.raises(ConfigError, match="TOME_PACK_INDEX='later'"):  # before any work, not after it
        _pack(root, tmp_path / "cache", TASKS[0])
    assert not (tmp_path / "cache").exists()
    monkeypatch.setenv("TOME_PACK_INDEX", "here")
    _pack(root, tmp_path / "cache", TASKS[0])
    assert _rows(tmp_path / "cache", "rank_index") == len(FILES)  # indexed at the first task
    # The caller's settings (loaded with the environment) come before the environment.
    _pack(root, tmp_path / "other", TASKS[0], settings=Settings(pack_index="off"))
    _pack(root, tmp_path / "other", TASKS[1], settings=Settings(pack_index="off"))
    assert _rows(tmp_path / "other", "rank_index") == 0


def test_an_indexer_with_other_secret_rules_stops(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", FILES)
    with pytest.raises(ConfigError, match="secret rules changed"):
        index.index_tree(_spec(root, tmp_path / "cache", scanner="another fingerprint"))


def test_a_large_tree_is_indexed_by_a_detached_process_after_its_first_task(tmp_path: Path) -> None:
    files = {f"pkg/mod{i:04d}.py": f"def helper_{i}(x):\n    '''Help {i}.'''\n    return x + {i}\n" * 3 for i in range(_FORK_RANK_FROM)}
    files["pkg/billing.py"] = FILES["app/billing.py"]
    root = make_repo(tmp_path / "repo", files)
    cache = tmp_path / "cache"
    secret = "sk-proj-" + "Zq3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z" * 2
    build_pack(root, task=TASKS[0], budget=20_000, tokenizer=get_tokenizer("cl100k_base"), cache_dir=cache,
               environ={"SHOP_API_KEY": secret}, index="background")
    proc = index._STARTED[-1]
    assert secret not in " ".join(map(str, proc.args))  # the environment goes on stdin, never argv
    (report,) = index.wait(cache, root, timeout=120)
    assert proc.wait(timeout=10) == 0
    assert report["files"] == len(files) and report["entries"] == len(files)
    assert _rows(cache, "rank_index") == len(files)
    # While one indexes the tree, another does not start; after it, one may.
    spec = _spec(root, cache, environ={"SHOP_API_KEY": secret}, scanner=SecretScanner({"SHOP_API_KEY": secret}).fingerprint)
    assert index.start(spec)
    assert not index.start(spec)
    (again,) = index.wait(cache, root, timeout=120)
    assert again["entries"] == 0 and again["tokens_counted"] == 0  # nothing left to make


def test_indexing_does_not_change_a_pack(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", FILES)
    cache = tmp_path / "cache"
    index.index_tree(_spec(root, cache))
    for task in TASKS:
        for budget in (600, 2_000, 50_000):
            indexed = _pack(root, cache, task, budget=budget, index="off")
            cold = _pack(root, tmp_path / f"cold-{budget}-{digest(task).hex()}", task, budget=budget, index="off")
            assert (indexed.totals, indexed.document, indexed.relevant) == (cold.totals, cold.document, cold.relevant), (task, budget)


def _pid() -> bytes:
    return str(os.getpid()).encode()


def _fail() -> bytes:
    raise RuntimeError("fails in the child")


def test_a_child_forked_ahead_runs_the_job_sent_or_none(tmp_path: Path) -> None:
    marker = tmp_path / "warmed"
    ahead = Ahead.start(functools.partial(marker.write_text, "yes"))
    assert ahead is not None
    big = b"x" * (3 * Ahead.PIPE_BYTES)  # more than the pipe holds: the send waits for the child
    out = ahead.send(functools.partial(bytes.__add__, big, str(os.getpid()).encode()))()
    assert out == big + str(os.getpid()).encode() and marker.read_text() == "yes"
    ahead = Ahead.start(lambda: None)
    assert ahead is not None and int(ahead.send(_pid)()) != os.getpid()  # not here
    failing = Ahead.start(lambda: None)
    assert failing is not None
    with pytest.raises(RuntimeError, match="fails in the child"):  # failed there: run here, and so raised here
        failing.send(_fail)()
    idle = Ahead.start(functools.partial(time.sleep, 30))
    assert idle is not None
    t = time.monotonic()
    idle.close()  # no job: stopped and reaped, not waited for
    assert time.monotonic() - t < 10


def test_a_new_task_on_a_large_indexed_tree_ranks_in_the_child_forked_ahead(tmp_path: Path) -> None:
    files = {f"pkg/mod{i:04d}.py": f"def helper_{i}(x):\n    return x + {i}\n" for i in range(_FORK_RANK_FROM)}
    files["pkg/billing.py"] = FILES["app/billing.py"]
    root = make_repo(tmp_path / "repo", files)
    cache = tmp_path / "cache"
    _pack(root, cache, TASKS[0], index="here")
    task = "refund_invoice in InvoiceRefund returns a negative total"
    kind = f"scan:{rules_key(1_000_000)}"
    with CountCache(cache, "cl100k_base") as counts:
        assert counts.count_stats(str(root.resolve()), kind) == len(files)
        assert rank_ahead(counts, str(root.resolve()), TASKS[0], kind) is None  # ranked before: a repeat
        assert rank_ahead(counts, str(root.resolve()), task, "scan:other rules") is None  # not known this large
        with CountCache(None, "cl100k_base") as memory:
            assert rank_ahead(memory, str(root.resolve()), task, kind) is None  # nothing to read it from
        ahead = rank_ahead(counts, str(root.resolve()), task, kind)
        assert ahead is not None
        scan = scan_repo(root)
        store = FileStore(counts, ExactCounter(get_tokenizer("cl100k_base"), counts), SecretScanner({}), str(root.resolve()), "xml")
        ranked = store.rank(task, [Candidate(f, f.path, f.size, f.mtime_ns) for f in scan.files], ahead)
    full = rank_files(task, [f.path for f in scan.files], [f.data for f in scan.files])
    assert [(r.path, r.reasons) for r in ranked] == [(r.path, r.reasons) for r in full]
    assert [r.score for r in ranked] == pytest.approx([r.score for r in full])
    assert ranked[0].path == "pkg/billing.py" and store.ranked_from_bytes == 0
    with CountCache(cache, "cl100k_base") as counts:
        assert rank_ahead(counts, str(root.resolve()), task, kind) is None  # now ranked before
