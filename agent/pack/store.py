"""`FileStore`: what a pack derives from file contents, behind its fast paths.

The phases in `agent.pack.build` ask it for a file's exact count, its verified block, its
outline and the task's ranking; it answers from the persistent cache when it can:

* a file counted clean before (same size, mtime and secret rules) takes its count from the
  cache unread; if it is packed, its block is rebuilt from its bytes and re-hashed, and counted
  again if the hash moved (`block`);
* an outline is kept by the hash of the clean text it was made from; a file unchanged since it
  was outlined clean is not read again, and parsing starts at the first candidate that needs it;
* the ranking of a task over an unchanged tree comes from the cache (keyed by the task, every
  path/size/mtime and the ranker's own code), and then neither the ranker nor numpy loads; a
  fresh ranking runs in a forked child while the tokenizer loads (both hold the GIL);
* a new task on a known tree ranks from each file's ranking index entry (`rank.index_entry`,
  kept by content hash with the ranker's code digest; a file unchanged since it was indexed is
  not read, a changed or added one is read and indexed, a torn entry is made again), joined
  once per tree (`rank.index_corpus`: one blob, the changed files' entries replacing theirs),
  in a child forked before the scan for a task new on a large tree (`rank_ahead`): the same
  ranking as from the bytes. A tree mostly unknown ranks from its bytes, and is then indexed
  whole (`index`, `outline_all`; when and where: agent.pack.index). A file with a secret in it
  is not kept in the index.

What it derives in one run is kept per path for the run (every budget of `build_packs` shares
it); the phases' own records stay immutable.
"""

from __future__ import annotations

import contextlib
import functools
import json
import pickle
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from agent.pack.cache import CountCache, digest
from agent.pack.counting import Ahead, ExactCounter, in_child
from agent.pack.render import Format, file_block
from agent.pack.scan import SourceFile
from agent.records import SecretFinding
from agent.secrets import SecretScanner

if TYPE_CHECKING:
    from agent.pack.outline import Outliner

__all__ = ["OUTLINE_FROM_BYTES", "Candidate", "FileStore", "Scored", "rank_ahead"]

_T = TypeVar("_T")
_RANK_VERSION = b"rank-5"
_STALE_SHARE = 0.125  # a joined index with more files changed since is made again
_FORK_RANK_FROM = 1000  # files: below this, ranking here is quicker than forking for it
_INDEX_KIND = "rank-index"  # fast-path rows: (size, mtime) -> the content hash its index entry is kept by
OUTLINE_FROM_BYTES = 200  # smaller files are never outlined (their outline would save nothing)
_TASK_KIND = "rank-task"  # fast-path rows: a task ranked fresh on the tree before (see `rank_ahead`)
_SEEN = ""  # the path of the row that says a tree was ranked before (no file has it)


@dataclass(frozen=True, slots=True)
class Scored:
    """A file's rank score and reasons (as agent.pack.rank.Ranked, without importing it: a
    ranking served from the cache needs neither the ranker nor numpy)."""

    path: str
    score: float
    reasons: list[str]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A packable file as the scan found it (its bytes read lazily: an unchanged file is not
    read unless packed), with its rank for the task when there is one."""

    source: SourceFile
    path: str
    size: int
    mtime_ns: int
    rank: Scored | None = None


@dataclass(slots=True)
class _Derived:
    """What this run derived from one file's contents (kept across the budgets of one run)."""

    secrets_checked: bool = False  # looked for secrets in this run's bytes
    redacted: str | None = None  # the text, when secrets were redacted from it
    found: tuple[SecretFinding, ...] = ()  # the secrets redacted from it
    block: str | None = None
    block_hash: bytes | None = None  # hash of the full block that `tokens` counts
    block_from_bytes: bool = False  # block_hash was computed from this run's bytes
    tokens: int | None = None
    outline_block: str | None = None
    outline_tokens: int | None = None


class FileStore:
    """Exact counts, blocks, outlines and rankings of one tree's files, through the cache."""

    def __init__(self, cache: CountCache, counter: ExactCounter, scanner: SecretScanner, root: str, fmt: Format) -> None:
        self.cache = cache
        self.counter = counter
        self.scanner = scanner
        self.root = root
        self.format: Format = fmt
        self._kind = f"full:{fmt}:{scanner.fingerprint}"
        self._stats = cache.stats(root, self._kind)
        # The same for outlines: (size, mtime) -> the hash of the clean text that was outlined.
        self._outline_kind = f"outline:{scanner.fingerprint}"
        self._outline_stats = cache.stats(root, self._outline_kind)
        self._derived: dict[str, _Derived] = {}
        # Set by a fresh ranking from the files' bytes: 1 the tree's first, 2 a later one (else 0).
        self.ranked_from_bytes = 0

    def _of(self, c: Candidate) -> _Derived:
        d = self._derived.get(c.path)
        if d is None:
            d = self._derived[c.path] = _Derived()
        return d

    def count(self, texts: Sequence[str]) -> list[int]:
        """Exact counts of texts the renderer made (header, tree, blocks)."""
        return self.counter.count(texts)

    def tokens(self, c: Candidate) -> int | None:
        """The file's full block's count, once `count_full` has counted it."""
        return self._of(c).tokens

    def outline_tokens(self, c: Candidate) -> int | None:
        """The file's outline block's count, once an outline was placed or tried."""
        return self._of(c).outline_tokens

    def found(self, c: Candidate) -> tuple[SecretFinding, ...]:
        """The secrets redacted from what the pack shows of the file."""
        return self._of(c).found

    def has_outline(self, c: Candidate) -> bool:
        """Whether the file's outline block was made in this run."""
        return self._of(c).outline_block is not None

    def _text(self, c: Candidate) -> str:
        self._check(c)
        d = self._of(c)
        return d.redacted if d.redacted is not None else c.source.text

    def _check(self, c: Candidate) -> None:
        """Redact secrets from the file's text once per run (a file that stays a path is never
        shown, so never needs scanning)."""
        d = self._of(c)
        if d.secrets_checked:
            return
        d.secrets_checked = True
        data = c.source.data
        if self.scanner.may_contain(data, path=c.path):
            text, found = self.scanner.redact(c.source.text, path=c.path, data=data)
            if found:
                d.found, d.redacted = tuple(found), text

    def _make_block(self, c: Candidate) -> None:
        d = self._of(c)
        d.block = file_block(c.path, self._text(c), self.format)
        d.block_hash = digest(d.block)
        d.block_from_bytes = True
        if d.redacted is None:
            self.cache.remember_stat(self.root, c.path, self._kind, c.size, c.mtime_ns, d.block_hash)

    def count_full(self, batch: Sequence[Candidate]) -> None:
        """Count the full blocks of `batch` (those not counted yet). A file unchanged since it
        was last counted clean (same size and mtime, same secret rules and values) is neither
        read, hashed nor counted; its bytes are checked against that hash if it is packed."""
        todo = [c for c in batch if self._of(c).tokens is None]
        texts, hashes = [], []
        for c in todo:
            d = self._of(c)
            row = self._stats.get(c.path)
            if row is not None and row[0] == c.size and row[1] == c.mtime_ns:
                d.block_hash = row[2]
                texts.append("")  # only needed on a cache miss (then counted from the file)
            else:
                self._make_block(c)
                texts.append(d.block)  # type: ignore[arg-type]
            hashes.append(d.block_hash)
        known = self.cache.lookup(hashes)  # type: ignore[arg-type]
        for i, (c, h) in enumerate(zip(todo, hashes)):
            if h not in known and not texts[i]:
                self._make_block(c)  # a fast-path hash whose count is gone from the cache
                texts[i], hashes[i] = self._of(c).block, self._of(c).block_hash  # type: ignore[assignment]
        for c, n in zip(todo, self.counter.count(texts, hashes)):  # type: ignore[arg-type]
            self._of(c).tokens = n

    def block(self, c: Candidate) -> tuple[str, int]:
        """The full block as the pack shows it, from this run's bytes, and its count (counted
        again if the bytes moved since the count). Bytes that hash as counted are the bytes
        that were found clean: no second secrets scan."""
        d = self._of(c)
        if not d.block_from_bytes:
            expected = d.block_hash
            block = None if d.secrets_checked else file_block(c.path, c.source.text, self.format)
            if block is not None and digest(block) == expected:
                d.block, d.secrets_checked, d.block_from_bytes = block, True, True
            else:
                self._make_block(c)
                if d.block_hash != expected:
                    (d.tokens,) = self.counter.count([d.block], [d.block_hash])  # type: ignore[list-item]
        return d.block, d.tokens  # type: ignore[return-value]

    def outline_block(self, c: Candidate) -> str:
        """The outline block made by `outlines` (only for files that have one)."""
        return self._of(c).outline_block  # type: ignore[return-value]

    @contextlib.contextmanager
    def outlines(self, candidates: Sequence[Candidate], outliner: Outliner) -> Iterator[Callable[[Candidate], int | None]]:
        """A function giving each candidate's outline count in turn (None: it has no outline),
        making and keeping its block. The outlines not in the cache are parsed ahead on the
        workers from the first one asked for, and what was parsed ahead and not asked for is
        cancelled on exit: a repeat pack stops before any and forks no workers."""
        todo = [c for c in candidates if self._of(c).outline_block is None]
        hashes: dict[str, bytes] = {}
        for c in todo:
            row = self._outline_stats.get(c.path)
            if row is not None and row[0] == c.size and row[1] == c.mtime_ns:
                hashes[c.path] = row[2]  # unchanged and clean when outlined: not read again
                continue
            self._check(c)
            d = self._of(c)
            hashes[c.path] = digest(d.redacted if d.redacted is not None else c.source.data)
            if d.redacted is None:
                self.cache.remember_stat(self.root, c.path, self._outline_kind, c.size, c.mtime_ns, hashes[c.path])
        cached = self.cache.outlines(list(hashes.values()))
        misses = [c for c in todo if hashes[c.path] not in cached]
        missing = {c.path for c in misses}
        parsed: Iterator[str | None] | None = None

        def outline(c: Candidate) -> int | None:
            nonlocal parsed
            d = self._of(c)
            if d.outline_block is None:
                h = hashes[c.path]
                if c.path in missing:
                    if parsed is None:  # the first miss reached: misses[0]
                        parsed = iter(outliner.stream([(g.path, self._text(g)) for g in misses]))
                    cached[h] = next(parsed) or ""
                    self.cache.store_outline(h, cached[h])
                if not cached[h]:
                    return None
                d.outline_block = file_block(c.path, cached[h], self.format, level="outline")
            if d.outline_tokens is None:
                (d.outline_tokens,) = self.counter.count([d.outline_block])
            return d.outline_tokens

        try:
            yield outline
        finally:
            close = getattr(parsed, "close", None)
            if close is not None:
                close()  # cancels what was parsed ahead and is no longer needed

    def rank(self, task: str, files: Sequence[Candidate], ahead: Ahead | None = None) -> list[Scored]:
        """Every file's score for `task`, best first, from the cache when the tree is unchanged
        (`ahead`: a child forked for a fresh ranking, see `rank_ahead`)."""
        key = _rank_key(task, files)
        try:
            stored = self.cache.memo_get(key)
            if stored is None:
                stored = self._rank(task, files, ahead)
                self.cache.memo_put(key, stored)
                self.cache.remember_stat(self.root, _task_mark(task), _TASK_KIND, 0, 0, b"")
        finally:
            if ahead is not None:
                ahead.close()
        return [Scored(p, s, r) for p, s, r in json.loads(stored)]

    def _rank(self, task: str, files: Sequence[Candidate], ahead: Ahead | None) -> bytes:
        """A fresh ranking: from the tree's joined index where few files changed since it was
        made (their entries replace theirs), else from the files' entries where most have one
        (the changed ones are read and indexed, and the joined index made again), else from
        the files' bytes (`ranked_from_bytes` says so)."""
        code = _rank_code()
        stats = self.cache.stats(self.root, _INDEX_KIND)
        hashes = _entry_hashes(files, stats)
        key = _corpus_key(code, files)
        stale = _stale(self._read(lambda: self.cache.corpus_hashes(self.root, key)), hashes) if self.cache.path else None
        if stale is not None:
            known = self._index_entries([hashes[i] for i in stale], code)
            changed = {i: (e, files[i].source.data) for i, e in zip(stale, known)}
            job = functools.partial(_ranking_from_corpus, self.cache.path, self.root, key, task, [f.path for f in files], changed)
            out = pickle.loads(self._fresh(job, len(files), ahead))
            if out is not None:
                ranking, made = out
                self._keep_index([row for i, e in made.items() for row in _persistable(files[i], e, self.scanner)], code)
                return ranking
            self.cache.drop_corpus(self.root)  # torn: made again from the entries below
        entries = self._index_entries(hashes, code)
        full = sum(e is None for e in entries) * 2 > len(files)
        job = functools.partial(_ranking, task, files, hashes, None if full else entries, self.scanner)
        ranking, new, corpus = pickle.loads(self._fresh(job, len(files), None))
        self._keep_index(new, code)
        if corpus is not None:
            self.cache.store_corpus(self.root, key, corpus)
        # Ranked from the bytes: the tree is to be indexed for the tasks to come, now or after
        # its next task (agent.pack.index: a first task is often the only one).
        self.ranked_from_bytes = 0 if not full else 2 if _SEEN in stats else 1
        if full and _SEEN not in stats:
            self.cache.remember_stat(self.root, _SEEN, _INDEX_KIND, 0, 0, b"")
        return ranking

    def _fresh(self, job: Callable[[], bytes], files: int, ahead: Ahead | None) -> bytes:
        """Run a ranking job while the tokenizer loads: a fresh ranking means fresh counts, and
        both hold the GIL, so the job runs in a child (the one forked ahead, else one forked
        now) when it can."""
        if ahead is not None:
            result: Callable[..., bytes] | None = ahead.send(job)
        else:
            result = in_child(job) if files >= _FORK_RANK_FROM else None
        try:
            self.counter.tokenizer  # noqa: B018 - loads it
        except BaseException:
            if result is not None and ahead is None:
                result(fallback=False)  # reap the child, then let the error through
            raise
        return result() if result is not None else job()

    def index(self, files: Sequence[Candidate]) -> int:
        """Make and keep the ranking index entries that `files` lack (or have torn), and the
        tree's joined index; how many entries were made."""
        from agent.pack.rank import index_corpus

        code = _rank_code()
        hashes = _entry_hashes(files, self.cache.stats(self.root, _INDEX_KIND))
        whole, kept, new = _complete(files, hashes, self._index_entries(hashes, code), self.scanner)
        self._keep_index(new, code)
        self.cache.store_corpus(self.root, _corpus_key(code, files), index_corpus(whole, kept))
        return len(new) + sum(h is None for h in kept)

    def outline_all(self, files: Sequence[Candidate], outliner: Outliner) -> int:
        """Make, count and keep the outline of every file a pack may outline (see
        `agent.pack.build.fit_outlines`); how many files that is."""
        tries = [f for f in files if f.size >= OUTLINE_FROM_BYTES]
        with self.outlines(tries, outliner) as outline:
            for f in tries:
                outline(f)
                self._derived.pop(f.path, None)  # nothing of it is needed again here
        return len(tries)

    def _index_entries(self, hashes: list[bytes | None], code: bytes) -> list[bytes | None]:
        """Each file's index entry made by `code`, by its content hash (None: not indexed,
        changed, or the cache cannot be read)."""
        known = self._read(lambda: self.cache.index_entries([h for h in hashes if h is not None], code)) or {}
        return [known.get(h) if h is not None else None for h in hashes]

    def _read(self, query: Callable[[], _T]) -> _T | None:
        """What the cache answers, or None where it cannot be read (a damaged file is only a cache)."""
        try:
            return query()
        except sqlite3.DatabaseError:
            return None

    def _keep_index(self, new: list[tuple[str, int, int, bytes, bytes]], code: bytes) -> None:
        for path, size, mtime_ns, h, entry in new:
            self.cache.store_index(h, code, entry)
            self.cache.remember_stat(self.root, path, _INDEX_KIND, size, mtime_ns, h)


def _ranking(
    task: str, files: Sequence[Candidate], hashes: list[bytes | None], entries: list[bytes | None] | None,
    scanner: SecretScanner,
) -> bytes:
    """The ranking as the memo keeps it, the index entries made for it, and the joined index
    made from the entries (None: ranked from the bytes), pickled: from the entries when given
    (those missing or torn are made from the files), else from the files' bytes."""
    from agent.pack.rank import rank_features, rank_features_joined

    paths = [f.path for f in files]
    new: list[tuple[str, int, int, bytes, bytes]] = []
    corpus: bytes | None = None
    if entries is None:
        # Ranking reads the unredacted bytes: it only scores; what a pack shows is redacted.
        features = rank_features(task, paths, [f.source.data for f in files])
    else:
        whole, kept, new = _complete(files, hashes, entries, scanner)
        features, corpus = rank_features_joined(task, paths, whole, kept)
    return pickle.dumps((_ranked(features), new, corpus))


def _ranking_from_corpus(
    db: str, root: str, key: bytes, task: str, paths: list[str], changed: dict[int, tuple[bytes | None, bytes]]
) -> bytes:
    """The ranking from the tree's joined index, read here from the cache file `db`, with the
    entries of the files `changed` names (index -> (its kept entry or None, its bytes)) in
    place of theirs, and the entries made (index -> entry), pickled; None when the joined index
    is gone or torn."""
    from agent.pack.rank import entry_ok, index_entry, rank_features_corpus

    try:
        # A read-only connection of its own (https://www.sqlite.org/uri.html, mode=ro): a
        # connection must not cross a fork (https://www.sqlite.org/howtocorrupt.html, 2.6), and a
        # WAL reader needs the -shm file, which the parent's open connection keeps
        # (https://www.sqlite.org/wal.html, "Read-Only Databases").
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as con:
            row = con.execute("SELECT v FROM corpus WHERE root=? AND k=?", (root, key)).fetchone()
    except sqlite3.DatabaseError:
        row = None  # gone or unreadable: ranked another way
    fresh: dict[int, bytes] = {}
    made: dict[int, bytes] = {}
    for i, (entry, data) in changed.items():
        if entry is None or not entry_ok(entry):
            entry = made[i] = index_entry(data)
        fresh[i] = entry
    features = rank_features_corpus(task, paths, row[0], fresh) if row is not None else None
    return pickle.dumps(None if features is None else (_ranked(features), made))


def _ranked(features: object) -> bytes:
    """The ranking of these features as the memo keeps it (JSON: path, score, reasons)."""
    from agent.pack.rank import WEIGHTS, score

    return json.dumps([[r.path, r.score, r.reasons] for r in score(features, WEIGHTS)]).encode()  # type: ignore[arg-type]


def _complete(
    files: Sequence[Candidate], hashes: Sequence[bytes | None], entries: Sequence[bytes | None], scanner: SecretScanner
) -> tuple[list[bytes], list[bytes | None], list[tuple[str, int, int, bytes, bytes]]]:
    """Every file's entry (those missing or torn made from the file), the content hash each
    is kept by (None: a file that may hold a secret, not kept), and the cache rows of those
    made."""
    from agent.pack.rank import entry_ok, index_entry

    whole: list[bytes] = []
    kept: list[bytes | None] = []
    new: list[tuple[str, int, int, bytes, bytes]] = []
    for f, h, e in zip(files, hashes, entries):
        if e is None or not entry_ok(e):
            e = index_entry(f.source.data)
            rows = _persistable(f, e, scanner)
            new += rows
            h = rows[0][3] if rows else None
        whole.append(e)
        kept.append(h)
    return whole, kept, new


def _persistable(f: Candidate, entry: bytes, scanner: SecretScanner) -> list[tuple[str, int, int, bytes, bytes]]:
    """The cache row of a file's index entry; none for a file that holds a secret (its
    identifiers would be written to the cache: it is indexed from its bytes each time)."""
    data = f.source.data
    if scanner.may_contain(data, path=f.path) and scanner.scan(f.source.text, path=f.path, data=data):
        return []
    return [(f.path, f.size, f.mtime_ns, digest(data), entry)]


def rank_ahead(cache: CountCache, root: str, task: str | None, scan_kind: str) -> Ahead | None:
    """A child forked before the scan to rank `task`, importing the ranker while this process
    scans (it is most of a ranking from the tree's joined index): where the cache is a file,
    the task is new on the tree (one ranked on it before is a repeat: the memo answers, or the
    tree changed) and the tree is large (as the last scan found it: its `scan_kind` rows)."""
    if task is None or cache.path is None or cache.has_stat(root, _task_mark(task), _TASK_KIND):
        return None
    if cache.count_stats(root, scan_kind) < _FORK_RANK_FROM:
        return None
    return Ahead.start(_import_ranker)


def _import_ranker() -> None:
    import agent.pack.rank  # noqa: F401 - numpy and the automata, ahead


def _task_mark(task: str) -> str:
    return digest(task).hex()


def _entry_hashes(files: Sequence[Candidate], stats: dict[str, tuple[int, int, bytes]]) -> list[bytes | None]:
    """Each file's content hash its index entry is kept by, where the file is unchanged since
    it was indexed (None: not indexed, or changed)."""
    out: list[bytes | None] = []
    for f in files:
        row = stats.get(f.path)
        out.append(row[2] if row is not None and row[0] == f.size and row[1] == f.mtime_ns else None)
    return out


def _corpus_key(code: bytes, files: Sequence[Candidate]) -> bytes:
    """The key of a tree's joined index: the ranking code and the tree's paths in order."""
    return digest(b"corpus\0" + code + "\0".join(f.path for f in files).encode("utf-8", "surrogatepass"))


def _stale(stored: list[bytes | None] | None, hashes: Sequence[bytes | None]) -> list[int] | None:
    """The files whose entries in the tree's joined index (made from the content hashes
    `stored`) are not theirs now (changed, or never kept), where the index is for these files
    and at most _STALE_SHARE of them are; else None (the index is to be made again)."""
    if stored is None or len(stored) != len(hashes):
        return None
    stale = [i for i, (h, s) in enumerate(zip(hashes, stored)) if h is None or h != s]
    return stale if len(stale) <= len(hashes) * _STALE_SHARE else None


def _rank_code() -> bytes:
    """Digest of the ranking code: an index entry or a ranking made by other code is not reused."""
    return digest((Path(__file__).parent / "rank.py").read_bytes())


def _rank_key(task: str, files: Sequence[Candidate]) -> bytes:
    # The ranking code's own bytes are in the key: a changed ranking never reuses old results.
    h = digest(_RANK_VERSION + _rank_code() + task.encode("utf-8", "surrogatepass"))
    state = "\0".join(f"{f.path}\1{f.size}\1{f.mtime_ns}" for f in files)
    return b"rank:" + digest(h + digest(state))
