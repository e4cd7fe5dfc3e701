"""The persistent count cache: exact token counts keyed by what was counted.

One SQLite file per tokenizer under the user cache directory. `counts` maps the blake2b hash
of a counted text to its token count (content-addressed, so renames and other checkouts of the
same content hit). `stats` is the fast path: (root, path, size, mtime_ns, kind) -> the hash of
the text last counted for that file, so an unchanged file is neither hashed nor counted again.
The same table keeps the scan's verdict per file (kind "scan:<rules key>": packable, or why
skipped), so an unchanged file is not even read to be classified. `outlines` keeps outline
text by content hash, and `memo` small derived results (the ranking of a task over an
unchanged tree; only the newest MEMO_KEEP are kept, since a ranking of a large tree is about
half a megabyte). `rank_index` keeps each file's ranking index entry by content hash, with the
digest of the ranking code that made it (`agent.pack.rank.index_entry`), and `corpus` one
tree's entries joined (`agent.pack.rank.index_corpus`), by root, under the key of what made it.
A cache file of an older layout is emptied on open; one past PRUNE_ABOVE live bytes is pruned
on close.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from agent.pack.corpus import CORPUS, CORPUS_MAGIC, HASH, prefix_hashes

__all__ = ["CountCache", "digest"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counts (h BLOB PRIMARY KEY, tokens INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats (
    root TEXT, path TEXT, kind TEXT, size INTEGER, mtime INTEGER, h BLOB,
    PRIMARY KEY (root, path, kind)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outlines (h BLOB PRIMARY KEY, text TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS memo (id INTEGER PRIMARY KEY, k BLOB UNIQUE, v BLOB);
CREATE TABLE IF NOT EXISTS rank_index (h BLOB PRIMARY KEY, code BLOB, v BLOB);
CREATE TABLE IF NOT EXISTS corpus (root TEXT PRIMARY KEY, k BLOB, v BLOB);  -- rowid: rows of megabytes
"""
_VERSION = 3  # PRAGMA user_version; an older cache file is emptied (it is only a cache)
MEMO_KEEP = 64  # newest memo entries kept: a ranking of a large tree is ~0.5 MB
# Live bytes of a cache file past which closing it prunes (see `CountCache.prune`): trees come
# and go (worktrees, temp checkouts) and every edit leaves counts of texts no file has any more.
PRUNE_ABOVE = 256 * 2**20


def digest(text: str | bytes) -> bytes:
    """16-byte blake2b of text (UTF-8) or bytes."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return hashlib.blake2b(data, digest_size=16).digest()


class CountCache:
    """Token counts for one tokenizer, persisted in `directory`; None keeps it in memory."""

    def __init__(self, directory: Path | None, tokenizer: str, *, prune_above: int = PRUNE_ABOVE) -> None:
        self.tokenizer = tokenizer
        self.prune_above = prune_above
        if directory is None:
            target = ":memory:"
        else:
            directory = Path(directory) / "pack"
            directory.mkdir(parents=True, exist_ok=True)
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in tokenizer)
            target = str(directory / f"counts-{safe}.sqlite3")
        self.path = None if directory is None else target  # the database file (None: in memory)
        self._db = sqlite3.connect(target, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        if self._db.execute("PRAGMA user_version").fetchone()[0] != _VERSION:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                if self._db.execute("PRAGMA user_version").fetchone()[0] != _VERSION:
                    for table in ("counts", "stats", "outlines", "memo", "rank_index", "corpus"):
                        self._db.execute(f"DROP TABLE IF EXISTS {table}")
                    self._db.execute(f"PRAGMA user_version={_VERSION}")
        self._db.executescript(_SCHEMA)
        self._pending_counts: dict[bytes, int] = {}
        self._pending_stats: list[tuple[str, str, str, int, int, bytes]] = []
        self._pending_outlines: dict[bytes, str] = {}
        self._pending_index: dict[bytes, tuple[bytes, bytes]] = {}
        self._memory: dict[bytes, int] = {}

    def close(self) -> None:
        """Write pending entries, prune past `prune_above` live bytes, close the database."""
        self.flush()
        if self.live_bytes() > self.prune_above:
            self.prune()
        self._db.close()

    def live_bytes(self) -> int:
        """Bytes of the database's pages in use (freed pages are reused, not counted)."""

        def pragma(name: str) -> int:
            return int(self._db.execute(f"PRAGMA {name}").fetchone()[0])

        return (pragma("page_count") - pragma("freelist_count")) * pragma("page_size")

    def prune(self) -> dict[str, int]:
        """Drop what no tree refers to: the fast-path rows of trees that are gone, then counts
        and outlines no fast-path row names (old versions of files, documents, trees). Each is
        only a cache: what is dropped is counted again when needed. Rows deleted, by table."""
        roots = [r for (r,) in self._db.execute("SELECT DISTINCT root FROM stats")]
        gone = [(r,) for r in roots if not Path(r).is_dir()]
        deleted: dict[str, int] = {}
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            before = self._db.total_changes
            self._db.executemany("DELETE FROM stats WHERE root=?", gone)
            deleted["stats"] = self._db.total_changes - before
            before = self._db.total_changes
            self._db.executemany("DELETE FROM corpus WHERE root=?", gone)
            deleted["corpus"] = self._db.total_changes - before
            for table in ("counts", "outlines", "rank_index"):
                cur = self._db.execute(f"DELETE FROM {table} WHERE h NOT IN (SELECT h FROM stats)")
                deleted[table] = cur.rowcount
        self._memory.clear()
        return deleted

    def __enter__(self) -> CountCache:  # noqa: PYI034 - Python 3.10 has no typing.Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self, root: str, kind: str) -> dict[str, tuple[int, int, bytes]]:
        """Fast-path rows of one tree: path -> (size, mtime_ns, hash)."""
        rows = self._db.execute("SELECT path, size, mtime, h FROM stats WHERE root=? AND kind=?", (root, kind))
        return {p: (s, m, h) for p, s, m, h in rows}

    def has_stat(self, root: str, path: str, kind: str) -> bool:
        """Whether a fast-path row for (root, path, kind) exists."""
        q = "SELECT 1 FROM stats WHERE root=? AND path=? AND kind=?"
        return self._db.execute(q, (root, path, kind)).fetchone() is not None

    def count_stats(self, root: str, kind: str) -> int:
        """How many fast-path rows of `kind` one tree has."""
        return int(self._db.execute("SELECT count(*) FROM stats WHERE root=? AND kind=?", (root, kind)).fetchone()[0])

    def remember_stat(self, root: str, path: str, kind: str, size: int, mtime: int, h: bytes) -> None:
        """Record that `path` at (size, mtime) rendered to the text hashed `h`."""
        self._pending_stats.append((root, path, kind, size, mtime, h))

    def verdicts(self, root: str, rules: str) -> dict[str, tuple[int, int, str]]:
        """The scan's verdicts for one tree under one `rules` key (`agent.pack.scan.rules_key`):
        path -> (size, mtime_ns, "" or the skip reason)."""
        return {p: (s, m, h.decode("utf-8")) for p, (s, m, h) in self.stats(root, f"scan:{rules}").items()}

    def remember_verdicts(self, root: str, rows: Iterable[tuple[str, int, int, str]], rules: str) -> None:
        """Record scan verdicts (see `agent.pack.scan.scan_repo`'s `known`)."""
        kind = f"scan:{rules}"
        self._pending_stats.extend((root, p, kind, s, m, v.encode("utf-8")) for p, s, m, v in rows)

    def lookup(self, hashes: Sequence[bytes]) -> dict[bytes, int]:
        """Known counts among `hashes`."""
        found = {h: self._memory[h] for h in hashes if h in self._memory}
        missing = [h for h in hashes if h not in found]
        for i in range(0, len(missing), 900):
            chunk = missing[i : i + 900]
            q = f"SELECT h, tokens FROM counts WHERE h IN ({','.join('?' * len(chunk))})"
            for h, n in self._db.execute(q, chunk):
                found[h] = n
        self._memory.update(found)
        return found

    def store(self, pairs: Iterable[tuple[bytes, int]]) -> None:
        """Add counts (written on flush)."""
        for h, n in pairs:
            self._memory[h] = n
            self._pending_counts[h] = n

    def outlines(self, hashes: Sequence[bytes]) -> dict[bytes, str]:
        """Cached outline texts by content hash."""
        found: dict[bytes, str] = {}
        for i in range(0, len(hashes), 900):
            chunk = list(hashes[i : i + 900])
            q = f"SELECT h, text FROM outlines WHERE h IN ({','.join('?' * len(chunk))})"
            found.update(self._db.execute(q, chunk))
        return found

    def store_outline(self, h: bytes, text: str) -> None:
        """Keep an outline (empty text: the file has none)."""
        self._pending_outlines[h] = text

    def index_entries(self, hashes: Sequence[bytes], code: bytes) -> dict[bytes, bytes]:
        """Ranking index entries by content hash, among those made by the ranking code `code`."""
        found: dict[bytes, bytes] = {}
        for i in range(0, len(hashes), 900):
            chunk = list(hashes[i : i + 900])
            q = f"SELECT h, v FROM rank_index WHERE code=? AND h IN ({','.join('?' * len(chunk))})"
            found.update(self._db.execute(q, [code, *chunk]))
        return found

    def store_index(self, h: bytes, code: bytes, entry: bytes) -> None:
        """Keep a file's ranking index entry (written on flush)."""
        self._pending_index[h] = (code, entry)

    def corpus_hashes(self, root: str, key: bytes) -> list[bytes | None] | None:
        """The content hashes the tree's joined index was made from (`agent.pack.corpus`),
        read without the rest of it (sqlite3 blobopen: incremental blob I/O), if it is the one
        made for `key`; None otherwise."""
        row = self._db.execute("SELECT rowid FROM corpus WHERE root=? AND k=?", (root, key)).fetchone()
        if row is None:
            return None
        with self._db.blobopen("corpus", "v", row[0], readonly=True) as blob:
            head = blob.read(CORPUS.size)
            if len(head) < CORPUS.size or head[:4] != CORPUS_MAGIC:
                return None
            n = CORPUS.unpack(head)[1]
            return prefix_hashes(head + blob.read(HASH * n), n)

    def store_corpus(self, root: str, key: bytes, corpus: bytes) -> None:
        """Keep the tree's joined ranking index (one a tree: it replaces the last)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO corpus VALUES (?, ?, ?)", (root, key, corpus))

    def drop_corpus(self, root: str) -> None:
        """Forget the tree's joined ranking index (it was found torn)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM corpus WHERE root=?", (root,))

    def memo_get(self, key: bytes) -> bytes | None:
        """A small derived result stored under `key`."""
        row = self._db.execute("SELECT v FROM memo WHERE k=?", (key,)).fetchone()
        return row[0] if row else None

    def memo_put(self, key: bytes, value: bytes) -> None:
        """Store a small derived result; only the newest MEMO_KEEP are kept."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO memo (k, v) VALUES (?, ?)", (key, value))
            self._db.execute(
                "DELETE FROM memo WHERE id <= (SELECT id FROM memo ORDER BY id DESC LIMIT 1 OFFSET ?)", (MEMO_KEEP,)
            )

    def flush(self) -> None:
        """Write pending counts, stats and outlines in one transaction."""
        if not (self._pending_counts or self._pending_stats or self._pending_outlines or self._pending_index):
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO counts VALUES (?, ?)", self._pending_counts.items())
            self._db.executemany("INSERT OR REPLACE INTO stats VALUES (?, ?, ?, ?, ?, ?)", self._pending_stats)
            self._db.executemany("INSERT OR REPLACE INTO outlines VALUES (?, ?)", self._pending_outlines.items())
            self._db.executemany(
                "INSERT OR REPLACE INTO rank_index VALUES (?, ?, ?)", ((h, c, v) for h, (c, v) in self._pending_index.items())
            )
        self._pending_counts.clear()
        self._pending_stats.clear()
        self._pending_outlines.clear()
        self._pending_index.clear()
