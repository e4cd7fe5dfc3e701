"""The layout of a tree's joined ranking index (`agent.pack.rank.index_corpus`), readable
without the ranker: the store reads which file entries a corpus holds before it forks the
ranking, and the ranker's imports (numpy) would cost that much longer.

Header: magic, files, bytes of runs, bytes of definitions, number of run counts; then each
file's content hash (HASH bytes, zeros where none), runs, definitions, both texts' starts
(int64), the run counts (uint32), the files' sizes (int64), and a blake2b digest of all that.
"""

from __future__ import annotations

import struct

__all__ = ["CORPUS", "CORPUS_MAGIC", "HASH", "corpus_hashes", "corpus_head", "prefix_hashes"]

CORPUS = struct.Struct("<4sQQQQ")
CORPUS_MAGIC = b"rcx1"
HASH = 16


def corpus_head(blob: bytes) -> tuple[int, int, int, int] | None:
    """(files, bytes of runs, bytes of definitions, run counts) of a corpus whose length
    agrees with its header; None for anything else."""
    if len(blob) < CORPUS.size + 16 or blob[:4] != CORPUS_MAGIC:
        return None
    _, n, ntok, ndefs, ntimes = CORPUS.unpack_from(blob)
    if len(blob) != CORPUS.size + HASH * n + ntok + ndefs + 16 * (n + 1) + 4 * ntimes + 8 * n + 16:
        return None
    return n, ntok, ndefs, ntimes


def corpus_hashes(corpus: bytes) -> list[bytes | None] | None:
    """The content hash each file's entry in `corpus` was made from (None where it has none),
    without checking the digest (the ranker does, before it trusts the rest); None if it is
    not a corpus."""
    head = corpus_head(corpus)
    return None if head is None else prefix_hashes(corpus, head[0])


def prefix_hashes(prefix: bytes, files: int) -> list[bytes | None] | None:
    """The `files` content hashes from the start of a corpus (its header and hashes at least);
    None if it is cut shorter."""
    at, zero = CORPUS.size, bytes(HASH)
    if len(prefix) < at + HASH * files:
        return None
    out = [prefix[at + HASH * i : at + HASH * (i + 1)] for i in range(files)]
    return [h if h != zero else None for h in out]
