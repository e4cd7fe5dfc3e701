"""Rank a repository's files for a task, from the statement and the repository alone.

BM25 is the base order: whole-file BM25 over path and content with bm25s's parameters (the
same-run baseline of benchmarks/retrieval.py), plus the same over code-shaped query terms
(snake_case and CamelCase split into parts) matched at identifier boundaries; code first, tests
and docs after. What the task names is a boost on top: files in stack-trace frames, paths and
file names it names, identifiers it names that the repository defines. `rank_features` finds
all of it once, unweighted; `score` weighs it with `Weights` (data, fitted on the tuning part of
benchmarks/retrieval.py only). Each signal's gain is measured on the report part; those that did
not earn their place there (dotted module names, the best few-KB window, the imports and tests
of the top files) were removed. Every score comes with the reasons that made it, for the
manifest and the relevant-files block.

Query terms are found with one Aho-Corasick pass over the lowercased bytes of the whole tree,
kept where they start and end on a word boundary (plain BM25) or on an identifier boundary
(`create` finds `bulk_create` and `createTable`, not `created`). A token-level index over 36 MB
costs seconds; this costs a fraction of one. A new task on a known tree searches each file's
index entry instead (`index_entry`: its distinct identifier runs with their counts, and its
definitions), which answers every query above exactly as the bytes do (`rank_features_indexed`).
"""

from __future__ import annotations

import builtins
import hashlib
import re
import struct
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Protocol

import ahocorasick_rs
import numpy as np

from agent.pack.corpus import CORPUS, CORPUS_MAGIC, HASH, corpus_head

__all__ = ["STOPWORDS", "WEIGHTS", "Features", "Ranked", "Weights", "entry_ok", "index_corpus", "index_entry", "query_weights", "kinds", "order", "points",
           "rank_features", "rank_features_corpus", "rank_features_indexed", "rank_features_joined", "rank_files", "score", "task_terms", "word_query"]

STOPWORDS = frozenset(
    ["a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are", "aren", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "cannot", "could", "did", "do", "does", "doing", "don", "down", "during", "each", "few", "for", "from", "further", "get", "got", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "isn", "it", "its", "itself", "just", "let", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "ought", "our", "ours", "ourselves", "out", "over", "own", "same", "shall", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "use", "used", "using", "very", "want", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves", "self", "none", "true", "false", "def", "class", "return", "import", "from", "pass", "raise", "elif", "else", "try", "except", "finally", "lambda", "yield", "assert", "del", "global", "nonlocal", "print", "one", "two", "new", "like", "way", "make", "see", "seems", "seem", "work", "works", "thing", "things", "still", "even", "however", "though", "example", "following", "currently", "issue", "problem", "bug", "expected", "actual", "behavior", "behaviour", "case", "cases", "instead", "since", "already", "might", "must", "need", "needs", "think", "thanks", "hi", "hello"]
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
_FRAME = re.compile(
    r'File "([^"\n]+)", line (\d+)'  # Python
    r"|\bat (?:[^\s()]+ \()?((?:[A-Za-z]:)?[^\s():]+\.[A-Za-z]{1,5}):(\d+)"  # JS/Java-ish
    r"|((?:[\w.-]+/)+[\w.-]+\.[A-Za-z]{1,5}):(\d+)"  # path:line
)
_PATH = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-][\w.-]*\.[A-Za-z][A-Za-z0-9]{0,4})(?![\w/-])")
_CODE_SPAN = re.compile(r"`([^`\n]+)`|```.*?```", re.DOTALL)
_TEST_NAME = re.compile(r"(?:^|/)(?:tests?/|test_[^/]*$|[^/]*_tests?\.[a-z]+$|[^/]*\.test\.[a-z]+$|conftest\.py$)")
_BUILTINS = frozenset(dir(builtins))
_CODE_SUFFIXES = frozenset(
    [".py", ".pyi", ".pyx", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".go", ".rs", ".java", ".c", ".h", ".cc", ".cpp", ".hpp", ".cs", ".rb", ".php", ".kt", ".swift", ".scala", ".lua", ".sh", ".pl", ".m", ".r", ".jl", ".ex", ".exs", ".erl", ".clj", ".dart", ".vue", ".svelte"]
)


@dataclass(slots=True)
class Ranked:
    """A file's score for a task and why."""

    path: str
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)
    signals: dict[str, float] = field(default_factory=dict)

    def add(self, signal: str, score: float, reason: str) -> None:
        """Raise one signal to `score` (signals do not stack with themselves)."""
        if score <= self.signals.get(signal, 0.0):
            return
        self.signals[signal] = score
        self.reasons = [r for r in self.reasons if not r.startswith(signal + ":")] + [f"{signal}: {reason}"]


# A version dump pasted from an issue template (`xr.show_versions()`, `pip freeze`, an
# "Environment" list): five or more `name: value` or `name==value` lines, three of them with a
# digit in the value. It names every package and platform, and so pulled a repository's own
# version-printing module into the top three (xarray's util/print_versions.py).
_SETTING = re.compile(r"^[ \t]*(?:[-*+][ \t]+)?[A-Za-z][\w.\- ]{0,30}?[ \t]*(?::|==|>=)[ \t]*(\S.{0,60})$")


def _without_version_dumps(text: str) -> str:
    """`text` without its runs of `name: version` lines (a blank line may sit inside a run)."""
    lines = text.split("\n")
    keep = [True] * len(lines)
    i = 0
    while i < len(lines):
        j = i
        numeric = 0
        while j < len(lines):
            m = _SETTING.match(lines[j])
            if m is None and (lines[j].strip() or j + 1 == len(lines) or not _SETTING.match(lines[j + 1])):
                break
            numeric += m is not None and any(c.isdigit() for c in m.group(1))
            j += 1
        if j - i >= 5 and numeric >= 3:
            keep[i:j] = [False] * (j - i)
        i = max(j, i + 1)  # a run too short holds no longer run: go on after it
    return "\n".join(line for line, k in zip(lines, keep) if k)


def task_terms(text: str) -> list[str]:
    """Lowercased query terms of a statement (stopwords and very short words dropped)."""
    seen: dict[str, None] = {}
    for w in _WORD.findall(text):
        low = w.lower()
        if low not in STOPWORDS and len(low) >= 3:
            seen.setdefault(low, None)
            if "_" in low.strip("_"):
                for part in low.strip("_").split("_"):
                    if len(part) >= 4 and part not in STOPWORDS:
                        seen.setdefault(part, None)
    return list(seen)


def _match_path(fragment: str, by_name: dict[str, list[str]]) -> tuple[list[str], bool]:
    """Repo paths that `fragment` (a path as written in a task or a traceback) refers to."""
    frag = fragment.replace("\\", "/").lstrip("./")
    name = frag.rsplit("/", 1)[-1]
    candidates = by_name.get(name, [])
    if not candidates:
        return [], False
    exact = [c for c in candidates if frag == c or frag.endswith("/" + c)]
    if exact:
        return exact, True
    if "/" in frag:
        # Longest shared suffix of path components (site-packages/..., a fork's layout).
        fparts = frag.split("/")
        best, best_len = [], 1
        for c in candidates:
            cparts = c.split("/")
            n = 0
            while n < min(len(cparts), len(fparts)) and cparts[-1 - n] == fparts[-1 - n]:
                n += 1
            if n > best_len:
                best, best_len = [c], n
            elif n == best_len and n > 1:
                best.append(c)
        if best:
            return best, True
    return candidates, False


_CAMEL_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_WORD_BYTE = np.zeros(256, dtype=bool)
_WORD_BYTE[np.frombuffer(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)] = True
def query_weights(text: str) -> dict[str, float]:
    """Lowercased query terms with weights: 2 when written like code, 1 for words, 0.5 for parts."""
    code = " ".join(m.group(0) for m in _CODE_SPAN.finditer(text))
    out: dict[str, float] = {}
    for w in _WORD.findall(text):
        low = w.lower()
        if low in STOPWORDS or len(low) < 3:
            continue
        camel = any(c.isupper() for c in w[1:]) and any(c.islower() for c in w)
        snake = "_" in low.strip("_")
        out[low] = max(out.get(low, 0.0), 2.0 if snake or camel or w in code else 1.0)
        parts = low.strip("_").split("_") if snake else [p.lower() for p in _CAMEL_PART.findall(w)] if camel else []
        for part in parts:
            if len(part) >= 4 and part not in STOPWORDS:
                out.setdefault(part, 0.5)
    return out


@dataclass(slots=True)
class _Text:
    """Texts joined by newlines (no needle holds one, so no match spans two), once as they are
    and once lowercased, with where each text starts: one automaton pass covers them all."""

    raw: bytes
    low: bytes
    starts: np.ndarray
    needles: dict[bytes, int] = field(default_factory=dict)
    found: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))

    @classmethod
    def join(cls, texts: Sequence[bytes]) -> _Text:
        """Join `texts` and remember their offsets."""
        raw = b"\n".join(texts)
        starts = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts)), out=starts[1:])
        return cls(raw, raw.lower(), starts)

    def replace(self, at: Sequence[int], texts: Sequence[bytes]) -> _Text:
        """These texts in place of those at the indices `at` (ascending), as `join` would
        have joined them."""
        pieces, prev = [], 0
        shift = np.zeros(len(self.starts), dtype=np.int64)
        for i, text in zip(at, texts):
            start, end = int(self.starts[i]), int(self.starts[i + 1]) - 1
            pieces += [self.raw[prev:start], text]
            prev = end
            shift[i + 1] = len(text) - (end - start)
        pieces.append(self.raw[prev:])
        raw = b"".join(pieces)
        return _Text(raw, raw.lower(), self.starts + np.cumsum(shift))

    def search(self, needles: Iterable[bytes]) -> None:
        """Find all these lowercase needles in one pass over the lowercased text (the signals
        gather theirs first: each pass over a whole tree costs tens of milliseconds)."""
        todo = sorted({n for n in needles if n and n not in self.needles})
        if todo:
            base = len(self.needles)
            self.needles.update((n, base + i) for i, n in enumerate(todo))
            # A DFA scans a whole tree about twice as fast as the NFA the library picks itself
            # for a few hundred needles; building it costs milliseconds.
            automaton = ahocorasick_rs.BytesAhoCorasick(todo, implementation=ahocorasick_rs.Implementation.DFA)
            hits = _matches(automaton, self.low)
            hits[:, 0] += base
            self.found = np.concatenate([self.found, hits]) if len(self.found) else hits

    def hits(self, needles: Sequence[bytes]) -> np.ndarray:
        """(index into `needles`, start, end) of every case-insensitive occurrence."""
        self.search(needles)
        lut = np.full(len(self.needles), -1, dtype=np.int64)
        for i, n in enumerate(needles):
            lut[self.needles[n]] = i
        local = lut[self.found[:, 0]] if len(self.found) else np.zeros(0, dtype=np.int64)
        keep = local >= 0
        out = self.found[keep].copy()
        out[:, 0] = local[keep]
        return out

    def owner(self, pos: np.ndarray) -> np.ndarray:
        """Index of the text each byte position falls in."""
        return np.searchsorted(self.starts, pos, side="right") - 1


def _matches(automaton: ahocorasick_rs.BytesAhoCorasick, haystack: bytes) -> np.ndarray:
    """All (needle, start, end) matches, overlapping, as an n x 3 array."""
    found = automaton.find_matches_as_indexes(haystack, overlapping=True)
    return np.fromiter(chain.from_iterable(found), dtype=np.int64, count=3 * len(found)).reshape(-1, 3)


def _term_hits(terms: list[str], text: _Text) -> tuple[np.ndarray, np.ndarray]:
    """(term index, start) of each occurrence that sits on identifier boundaries: a
    non-alphanumeric byte, an underscore, a digit or a lower-to-Upper step on each side."""
    raw = text.raw
    hits = text.hits([t.encode() for t in terms])
    if not len(hits):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    k, start, end = hits[:, 0], hits[:, 1], hits[:, 2]
    arr = np.frombuffer(raw, dtype=np.uint8)
    before, first = arr[np.maximum(start - 1, 0)], arr[start]
    after, last = arr[np.minimum(end, len(arr) - 1)], arr[end - 1]

    def lower(x: np.ndarray) -> np.ndarray:
        return (x >= 97) & (x <= 122)

    def upper(x: np.ndarray) -> np.ndarray:
        return (x >= 65) & (x <= 90)

    def digit(x: np.ndarray) -> np.ndarray:
        return (x >= 48) & (x <= 57)

    left = (start == 0) | ~_WORD_BYTE[before] | digit(before) | (lower(before) & upper(first))
    right = (end >= len(arr)) | ~_WORD_BYTE[after] | digit(after) | (lower(last) & upper(after))
    keep = left & right
    return k[keep], start[keep]


def _document_frequency(words: list[str], text: _Text) -> dict[str, int]:
    """In how many files each (lowercase) word occurs, as a substring, in any case."""
    hits = text.hits([w.encode() for w in words])
    files = len(text.starts)
    pairs = np.unique(hits[:, 0] * files + text.owner(hits[:, 1]))  # one per (word, file)
    df = np.bincount(pairs // files, minlength=len(words))
    return {w: int(c) for w, c in zip(words, df)}


_DEFINERS = (b"def ", b"class ", b"function ", b"func ", b"fn ", b"struct ", b"interface ", b"type ")


def _definition_needles(names: list[str]) -> list[bytes]:
    """What `_definitions` looks for, as written (`def name`, `class name`, ...)."""
    return [kw + name.encode() for name in names for kw in _DEFINERS]


def _definitions(names: list[str], text: _Text) -> dict[str, list[int]]:
    """Which files define each name (def/class/function/struct/... name, case as written)."""
    needles = _definition_needles(names)
    by_lower: dict[bytes, list[int]] = defaultdict(list)
    for j, needle in enumerate(needles):
        by_lower[needle.lower()].append(j)
    keys = list(by_lower)
    if not keys:
        return {}
    hits = text.hits(keys)
    found: dict[str, set[int]] = defaultdict(set)
    raw = text.raw
    for (k, start, end), i in zip(hits.tolist(), text.owner(hits[:, 1]).tolist()):
        nxt = raw[end : end + 1]
        if nxt.isalnum() or nxt == b"_":
            continue
        written = raw[start:end]
        for j in by_lower[keys[k]]:
            if needles[j] == written:
                found[names[j // len(_DEFINERS)]].add(i)
    return {k: sorted(v) for k, v in found.items()}


def _task_identifiers(text: str) -> list[str]:
    """Words in the task that look like code: in backticks, snake_case, CamelCase, or called."""
    code = " ".join(m.group(0) for m in _CODE_SPAN.finditer(text))
    names: dict[str, None] = {}
    for w in _WORD.findall(text):
        if w.lower() in STOPWORDS:
            continue
        inner_upper = any(c.isupper() for c in w[1:]) and any(c.islower() for c in w)
        if "_" in w.strip("_") or inner_upper or w in code or (w[0].isupper() and len(w) > 3):
            names.setdefault(w, None)
    for m in re.finditer(r"\b([A-Za-z_]\w{2,})\(", text):
        names.setdefault(m.group(1), None)
    # Builtins, and names the task's own example code defines, say nothing about the repo.
    own = set(re.findall(r"\b(?:def|class)\s+([A-Za-z_]\w*)", text))
    return [n for n in names if n.lower() not in STOPWORDS and n not in _BUILTINS and n not in own]


_WORDISH = _WORD_BYTE.copy()
_WORDISH[ord("_")] = True
_WORDISH[128:] = True  # UTF-8 bytes of non-ASCII letters: `\w` in bm25s's token pattern


def word_query(text: str) -> dict[str, float]:
    """Plain BM25 query: lowercased words and their count, as a bag of words (bm25s's way)."""
    out: dict[str, float] = defaultdict(float)
    for w in _WORD.findall(text):
        low = w.lower()
        if low not in STOPWORDS:
            out[low] += 1.0
    return dict(out)


def _word_hits(terms: list[str], text: _Text) -> tuple[np.ndarray, np.ndarray]:
    """(term index, start) of each occurrence that is a whole word (`\\w+` on neither side)."""
    hits = text.hits([t.encode() for t in terms])
    if not len(hits):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    k, start, end = hits[:, 0], hits[:, 1], hits[:, 2]
    arr = np.frombuffer(text.raw, dtype=np.uint8)
    left = (start == 0) | ~_WORDISH[arr[np.maximum(start - 1, 0)]]
    right = (end >= len(arr)) | ~_WORDISH[arr[np.minimum(end, len(arr) - 1)]]
    keep = left & right
    return k[keep], start[keep]


class _Corpus(Protocol):
    """What ranking asks of the files' contents: the full bytes (`_Files`) or each file's index
    entry (`_Indexed`) answer alike, bit for bit."""

    sizes: np.ndarray  # bytes per file

    def search(self, words: list[bytes], definitions: list[bytes]) -> None:
        """Find these lowercase needles ahead, in one pass per text."""

    def hits(self, terms: list[str], *, code: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(term index, file index, occurrences or None for one each) of the terms' matches."""

    def document_frequency(self, words: list[str]) -> dict[str, int]:
        """In how many files each word occurs, as a substring, in any case."""

    def definitions(self, names: list[str]) -> dict[str, list[int]]:
        """Which files define each name (see `_definitions`)."""


@dataclass(slots=True)
class _Files:
    """The files' bytes, searched whole."""

    text: _Text

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.text.starts) - 1

    def search(self, words: list[bytes], definitions: list[bytes]) -> None:
        self.text.search(words + definitions)

    def hits(self, terms: list[str], *, code: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        k, pos = (_term_hits if code else _word_hits)(terms, self.text)
        return k, self.text.owner(pos), None

    def document_frequency(self, words: list[str]) -> dict[str, int]:
        return _document_frequency(words, self.text)

    def definitions(self, names: list[str]) -> dict[str, list[int]]:
        return _definitions(names, self.text)


# An index entry keeps, per file, what every query above can ask of it: its distinct runs of
# ASCII identifier bytes (a query term is made of them, so each match lies inside one run and
# the run's edges are boundaries of both kinds) with how often each occurs, a run next to a
# non-ASCII byte marked with 0x80 on that side (a word byte for whole words, a boundary for
# code terms, as the byte itself is); and each definer keyword with the run of word bytes after
# it (`def name`: `_definitions` checks the byte after the name inside it). Serialized as a
# header, runs one a line, a uint32 count per line, definitions one a line, and a digest.
_ENTRY = struct.Struct("<4sIIII")
_ENTRY_MAGIC = b"rix1"
_SPACED = bytes(c if _WORD_BYTE[c] or c == 95 else 32 for c in range(256))
_MARKED = bytes(c if _WORD_BYTE[c] or c == 95 else 128 if c >= 128 else 32 for c in range(256))
_DEFINER_AUTOMATON = ahocorasick_rs.BytesAhoCorasick(list(_DEFINERS))
_NAME_BYTES = re.compile(rb"[A-Za-z0-9_\x80-\xff]+")


def _runs(data: bytes) -> Counter[bytes]:
    """Each distinct run of ASCII identifier bytes with its count (marked next to non-ASCII)."""
    if data.isascii():
        return Counter(data.translate(_SPACED).split())
    runs = Counter(data.translate(_MARKED).split())
    for run in [r for r in runs if b"\x80" in r]:
        times = runs.pop(run)
        parts = run.split(b"\x80")
        for i, part in enumerate(parts):
            if part:
                runs[b"\x80" * (i > 0) + part + b"\x80" * (i < len(parts) - 1)] += times
    return runs


def _definers(data: bytes) -> Iterator[bytes]:
    """Each definer keyword in `data` (anywhere, as `_definitions` finds them) with the run of
    word bytes after it."""
    for _, start, end in _DEFINER_AUTOMATON.find_matches_as_indexes(data, overlapping=True):
        name = _NAME_BYTES.match(data, end)
        if name is not None:
            yield data[start:end] + name.group(0)


def index_entry(data: bytes) -> bytes:
    """What ranking needs of one file's bytes, for `rank_features_indexed` (see `_ENTRY`)."""
    runs = _runs(data)
    tokens = b"\n".join(runs)
    counts = np.array(list(runs.values()) or [0], dtype="<u4").tobytes()
    defs = b"\n".join(dict.fromkeys(_definers(data)))
    body = _ENTRY.pack(_ENTRY_MAGIC, len(data), len(tokens), len(counts), len(defs)) + tokens + counts + defs
    return body + hashlib.blake2b(body, digest_size=16).digest()


def entry_ok(entry: bytes) -> bool:
    """Whether `entry` is whole: an `index_entry` as written (a torn or altered one is not)."""
    if len(entry) < _ENTRY.size + 16 or entry[:4] != _ENTRY_MAGIC:
        return False
    _, _, ntok, ncount, ndefs = _ENTRY.unpack_from(entry)
    body = entry[:-16]
    return (
        len(body) == _ENTRY.size + ntok + ncount + ndefs
        and ncount == 4 * (entry.count(b"\n", _ENTRY.size, _ENTRY.size + ntok) + 1)
        and hashlib.blake2b(body, digest_size=16).digest() == entry[-16:]
    )


@dataclass(slots=True)
class _Indexed:
    """The files as their index entries: runs and definitions searched like the bytes."""

    tokens: _Text  # each file's runs, one a line
    times: np.ndarray  # occurrences of each line of `tokens`
    lines: np.ndarray  # where `tokens` has its newlines
    defs: _Text
    sizes: np.ndarray

    @classmethod
    def of(cls, entries: Sequence[bytes]) -> _Indexed:
        """The corpus of these entries (each `entry_ok`)."""
        heads = [_ENTRY.unpack_from(e) for e in entries]
        parts = [_entry_parts(e, h) for e, h in zip(entries, heads)]
        tokens = _Text.join([t for t, _, _ in parts])
        times = np.frombuffer(b"".join(c for _, c, _ in parts), dtype="<u4")
        defs = _Text.join([d for _, _, d in parts])
        sizes = np.fromiter((h[1] for h in heads), dtype=np.int64, count=len(heads))
        return cls(tokens, times.astype(np.int64), _newlines(tokens.raw), defs, sizes)

    def dumps(self, hashes: Sequence[bytes]) -> bytes:
        """The corpus as `loads` reads it back, with the content hash each file's entry was
        made from (see `index_corpus`)."""
        head = CORPUS.pack(CORPUS_MAGIC, len(self.sizes), len(self.tokens.raw), len(self.defs.raw), len(self.times))
        body = b"".join([
            head, b"".join(hashes), self.tokens.raw, self.defs.raw, self.tokens.starts.astype("<i8").tobytes(),
            self.defs.starts.astype("<i8").tobytes(), self.times.astype("<u4").tobytes(), self.sizes.astype("<i8").tobytes(),
        ])
        return body + hashlib.blake2b(body, digest_size=16).digest()

    @classmethod
    def loads(cls, blob: bytes) -> _Indexed | None:
        """The corpus `dumps` wrote; None when it is torn or altered."""
        if corpus_head(blob) is None:
            return None
        view = memoryview(blob)
        if hashlib.blake2b(view[:-16], digest_size=16).digest() != blob[-16:]:
            return None
        _, n, ntok, ndefs, ntimes = CORPUS.unpack_from(blob)
        at = CORPUS.size + HASH * n

        def take(size: int) -> memoryview:
            nonlocal at
            at += size
            return view[at - size : at]

        raw, defs = bytes(take(ntok)), bytes(take(ndefs))
        starts, def_starts = (np.frombuffer(take(8 * (n + 1)), dtype="<i8").astype(np.int64) for _ in range(2))
        times = np.frombuffer(take(4 * ntimes), dtype="<u4").astype(np.int64)
        sizes = np.frombuffer(take(8 * n), dtype="<i8").astype(np.int64)
        return cls(_Text(raw, raw.lower(), starts), times, _newlines(raw), _Text(defs, defs.lower(), def_starts), sizes)

    def replace(self, fresh: dict[int, bytes]) -> _Indexed:
        """This corpus with the entries of files `fresh` names (index -> an `entry_ok` entry) in
        place of theirs: the same corpus `of` would join from all the entries."""
        if not fresh:
            return self
        at = sorted(fresh)
        heads = [_ENTRY.unpack_from(fresh[i]) for i in at]
        parts = [_entry_parts(fresh[i], h) for i, h in zip(at, heads)]
        # Each file's runs take max(runs, 1) lines of `tokens`, and as many counts in `times`.
        first = np.searchsorted(self.lines, self.tokens.starts[at])
        last = np.searchsorted(self.lines, self.tokens.starts[np.add(at, 1)] - 1) + 1
        pieces, prev = [], 0
        for a, b, (_, counts, _) in zip(first, last, parts):
            pieces += [self.times[prev:a], np.frombuffer(counts, dtype="<u4").astype(np.int64)]
            prev = b
        times = np.concatenate([*pieces, self.times[prev:]])
        tokens = self.tokens.replace(at, [t for t, _, _ in parts])
        sizes = self.sizes.copy()
        sizes[at] = [h[1] for h in heads]
        return _Indexed(tokens, times, _newlines(tokens.raw), self.defs.replace(at, [d for _, _, d in parts]), sizes)

    def search(self, words: list[bytes], definitions: list[bytes]) -> None:
        self.tokens.search(words)
        self.defs.search(definitions)

    def hits(self, terms: list[str], *, code: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        k, pos = (_term_hits if code else _word_hits)(terms, self.tokens)
        return k, self.tokens.owner(pos), self.times[np.searchsorted(self.lines, pos)]

    def document_frequency(self, words: list[str]) -> dict[str, int]:
        return _document_frequency(words, self.tokens)

    def definitions(self, names: list[str]) -> dict[str, list[int]]:
        return _definitions(names, self.defs)


_HOLE = index_entry(b"")


def _entry_parts(entry: bytes, head: tuple) -> tuple[bytes, bytes, bytes]:
    """An entry's runs (one a line), run counts (uint32) and definitions (one a line)."""
    start = _ENTRY.size + head[2]
    return entry[_ENTRY.size : start], entry[start : start + head[3]], entry[start + head[3] : -16]


def _newlines(raw: bytes) -> np.ndarray:
    return np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 10)


def index_corpus(entries: Sequence[bytes], hashes: Sequence[bytes | None]) -> bytes:
    """The files' index entries (each `entry_ok`) joined into one corpus with the content hash
    each was made from, for `rank_features_corpus`. A file without a hash (one not to be
    kept: it may hold a secret) is left out, an empty entry in its place: its entry is given
    fresh each time."""
    return _joined(entries, hashes).dumps([h if h is not None else bytes(HASH) for h in hashes])


def rank_features_joined(
    task: str, paths: Sequence[str], entries: Sequence[bytes], hashes: Sequence[bytes | None]
) -> tuple[Features, bytes]:
    """`rank_features_indexed` of the entries and their `index_corpus`, joined once for both."""
    indexed = _joined(entries, hashes)
    fresh = {i: e for i, (e, h) in enumerate(zip(entries, hashes)) if h is None}
    corpus = indexed.dumps([h if h is not None else bytes(HASH) for h in hashes])
    return _features(task, paths, indexed.replace(fresh), None), corpus


def _joined(entries: Sequence[bytes], hashes: Sequence[bytes | None]) -> _Indexed:
    return _Indexed.of([e if h is not None else _HOLE for e, h in zip(entries, hashes)])


def rank_features_corpus(task: str, paths: Sequence[str], corpus: bytes, fresh: dict[int, bytes]) -> Features | None:
    """`rank_features_indexed` from the entries' `index_corpus`, with the entries of the files
    `fresh` names (index -> entry, each `entry_ok`) in place of theirs: the same, bit for bit.
    None when the corpus is not whole or not for these many files."""
    indexed = _Indexed.loads(corpus)
    if indexed is None or len(indexed.sizes) != len(paths):
        return None
    return _features(task, paths, indexed.replace(fresh), None)


def _bm25_files(
    query: dict[str, float], paths: Sequence[str], corpus: _Corpus, names: _Text, lengths: np.ndarray, *, code: bool
) -> np.ndarray:
    """Whole-file BM25 (k1 1.5, b 0.75, Lucene idf: bm25s's defaults) over path + content,
    0-1. `code` matches terms at identifier boundaries (`create` in `bulk_create`), else as
    whole words only; `names` are the paths joined, `lengths` each file's length in words."""
    n = len(paths)
    terms = list(query)
    if not terms or n == 0:
        return np.zeros(n)
    k, owner, times = corpus.hits(terms, code=code)
    pk, ppos = (_term_hits if code else _word_hits)(terms, names)
    width = len(terms)
    tf = np.bincount(owner * width + k, weights=times, minlength=n * width)
    tf = (tf + np.bincount(names.owner(ppos) * width + pk, minlength=n * width)).reshape(n, width).astype(np.float64)
    k1, b = 1.5, 0.75
    df = (tf > 0).sum(axis=0)
    idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))
    norm = k1 * (1 - b + b * lengths / lengths.mean())
    scores = (tf * (k1 + 1) / (tf + norm[:, None])) @ (idf * np.array([query[t] for t in terms]))
    top = scores.max()
    return scores / top if top > 0 else scores


@dataclass(frozen=True, slots=True)
class Weights:
    """Points per signal at full strength, and how the lexical base is made: facts as data,
    fitted on the tuning part of benchmarks/retrieval.py only (a hash split of the visible
    SWE-bench instances, older half by date); the report part is never fitted on."""

    words: float = 50.0  # plain whole-word BM25 (the baseline's order), for the best file
    code: float = 400.0  # BM25 with code-shaped terms and identifier-boundary matches
    test: float = 0.01  # share of its lexical score a test file keeps (tests after the code)
    not_code: float = 0.0  # share of its lexical score a non-code file keeps
    frame: float = 50.0  # a stack-trace frame ...
    inner_frame: float = 280.0  # ... plus this much for the innermost one
    path: float = 200.0
    file: float = 210.0
    defines: float = 75.0
    test_named: float = 0.5  # share of a named/traced signal a test file keeps

    def without(self, *signals: str) -> Weights:
        """These weights with the given fields set to 0 (an ablation)."""
        from dataclasses import replace

        return replace(self, **{s: 0.0 for s in signals})


WEIGHTS = Weights()
# Signals named by the task (field of Weights that scales each, as `Ranked.signals` names them).
_NAMED = {"stack trace": "frame", "path named": "path", "file named": "file", "defines": "defines"}
_LEXICAL = ("words", "code")  # fields of Weights that scale each lexical score


@dataclass(slots=True)
class Features:
    """What a task says about each file, before weighting: lexical scores (0-1 each) and the
    signals the task names (file index -> strength, reason); `datas` may be dropped."""

    paths: list[str]
    lexical: dict[str, np.ndarray]
    named: dict[str, dict[int, tuple[float, str]]]
    datas: Sequence[bytes] | None = None


def _frames(task: str, by_name: dict[str, list[str]]) -> tuple[set[str], list[tuple[str, str, list[str]]]]:
    """Fragments written as stack-trace frames, and the sure matches (path, line, files)."""
    spans: set[str] = set()
    matched = []
    for m in _FRAME.finditer(task):
        frag = m.group(1) or m.group(3) or m.group(5)
        line = m.group(2) or m.group(4) or m.group(6)
        spans.add(frag)
        hits, sure = _match_path(frag, by_name)
        if sure and len(hits) <= 3:
            matched.append((frag, line, hits))
    return spans, matched


def rank_features(task: str, paths: Sequence[str], datas: Sequence[bytes]) -> Features:
    """Everything the task says about each file, unweighted (see `score`)."""
    return _features(task, paths, _Files(_Text.join(datas)), datas)


def rank_features_indexed(task: str, paths: Sequence[str], entries: Sequence[bytes]) -> Features:
    """`rank_features` from each file's `index_entry` instead of its bytes (the same, bit for
    bit); each entry must be `entry_ok`."""
    return _features(task, paths, _Indexed.of(entries), None)


def _features(task: str, paths: Sequence[str], corpus: _Corpus, datas: Sequence[bytes] | None) -> Features:
    task = _without_version_dumps(task)
    paths = list(paths)
    index = {p: i for i, p in enumerate(paths)}
    query, words = query_weights(task), word_query(task)
    identifiers = _task_identifiers(task)
    long_words = {w.lower() for w in _WORD.findall(task) if len(w) >= 5}
    by_stem: dict[str, list[str]] = defaultdict(list)
    by_name: dict[str, list[str]] = defaultdict(list)
    for p in paths:
        name = p.rsplit("/", 1)[-1]
        by_name[name].append(p)
        stem = name.rsplit(".", 1)[0].lower()
        if stem in long_words and stem not in STOPWORDS and stem not in ("__init__", "models", "utils", "views", "tests"):
            by_stem[stem].append(p)
    corpus.search([t.encode() for t in chain(query, words)] + [s.encode() for s in by_stem],
                  [n.lower() for n in _definition_needles(identifiers)])
    named: dict[str, dict[int, tuple[float, str]]] = {s: {} for s in _NAMED}

    def put(signal: str, path: str, strength: float, reason: str) -> None:
        i = index[path]
        if strength > named[signal].get(i, (0.0, ""))[0]:
            named[signal][i] = (strength, reason)

    # Stack-trace frames: Python prints the innermost frame last, nearest the error.
    spans, matched = _frames(task, by_name)
    for k, (frag, line, hits) in enumerate(matched):
        for h in hits:
            put("stack trace", h, (k + 1) / len(matched), f"frame {frag}:{line}")
    # Paths and file names the task names.
    for m in _PATH.finditer(task):
        frag = m.group(1)
        if frag in spans or frag.count(".") > 3 and "/" not in frag:
            continue
        hits, sure = _match_path(frag, by_name)
        if hits and (sure or len(hits) <= 4):
            for h in hits:
                put("path named", h, 1.0 if sure and "/" in frag else 0.375 / len(hits), frag)
    # Distinctive file stems the task uses as words (`sqlmigrate` -> sqlmigrate.py).
    if by_stem:
        df = corpus.document_frequency(list(by_stem))
        for stem, hits in by_stem.items():
            share = df.get(stem, 0) / max(len(paths), 1)
            strength = 1.0 if df.get(stem, 0) <= 5 or share <= 0.02 else 0.375 if share <= 0.1 else 0.0
            if strength and len(hits) <= 3:
                for h in hits:
                    put("file named", h, strength / len(hits), stem)
    # Identifiers named in the task that the repository defines; each further name a file
    # defines adds less (three names are worth at most 2x one).
    found: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for name, files in corpus.definitions(identifiers).items():
        shaped = "_" in name.strip("_") or any(c.isupper() for c in name[1:])
        if len(files) <= (8 if shaped else 2):
            for i in files:
                found[i].append(((1.0 if shaped else 0.4) / len(files) ** 0.5, name))
    for i, names in found.items():
        names.sort(key=lambda x: (-x[0], x[1]))
        total = sum(w * 0.5**k for k, (w, _) in enumerate(names[:3]))
        named["defines"][i] = (total, ", ".join(n for _, n in names[:4]) + " (named in the task)")
    path_text = _Text.join([p.encode() for p in paths])
    # Length in words, estimated from bytes (counting them costs more than the whole ranking).
    lengths = (corpus.sizes + 1 + np.diff(path_text.starts)) / 6.0 + 1.0
    lexical = {
        "words": _bm25_files(words, paths, corpus, path_text, lengths, code=False),
        "code": _bm25_files(query, paths, corpus, path_text, lengths, code=True),
    }
    return Features(paths, lexical, named, datas)


def kinds(paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(is a test, is code) for each path."""
    tests = np.fromiter((bool(_TEST_NAME.search(p)) for p in paths), dtype=bool, count=len(paths))
    code = np.fromiter((p.rfind(".") > p.rfind("/") and p[p.rfind("."):].lower() in _CODE_SUFFIXES for p in paths),
                       dtype=bool, count=len(paths))
    return tests, code


def points(
    features: Features, weights: Weights = WEIGHTS, *, kind: tuple[np.ndarray, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Points of each signal for each file: BM25 as the base (code first, tests and docs
    after), what the task names as boosts on top."""
    n = len(features.paths)
    tests, code = kind if kind is not None else kinds(features.paths)
    lexical = sum((getattr(weights, name) * features.lexical[name] for name in _LEXICAL), np.zeros(n))
    share = np.where(tests, weights.test, 1.0) * np.where(code, 1.0, weights.not_code)
    out = {"bm25": lexical * share}
    for signal, field_ in _NAMED.items():
        files = features.named.get(signal)
        if not files:
            continue
        ix = np.fromiter(files, dtype=np.int64, count=len(files))
        strength = np.fromiter((v[0] for v in files.values()), dtype=np.float64, count=len(files))
        if signal == "stack trace":
            pts = weights.frame + weights.inner_frame * strength
        else:
            pts = getattr(weights, field_) * strength
        arr = np.zeros(n)
        arr[ix] = np.where(tests[ix], weights.test_named, 1.0) * pts  # named tests point at the code
        out[signal] = arr
    return out


def order(features: Features, weights: Weights = WEIGHTS, *, kind: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """File indices best first, ties in path order (what `score` sorts by, without records)."""
    total = np.round(sum(points(features, weights, kind=kind).values()), 3)
    return np.lexsort((_path_order(features.paths), -total))


def _path_order(paths: Sequence[str]) -> np.ndarray:
    ranks = np.empty(len(paths), dtype=np.int64)
    ranks[sorted(range(len(paths)), key=paths.__getitem__)] = np.arange(len(paths))
    return ranks


def score(features: Features, weights: Weights = WEIGHTS) -> list[Ranked]:
    """Every file with its weighted score and reasons, best first (ties in path order)."""
    paths = features.paths
    pts = points(features, weights)
    ranked = [Ranked(p) for p in paths]
    bm = pts["bm25"]
    best = float(bm.max()) if len(bm) else 0.0
    # Reasons in a fixed order: what the task names, then the words.
    for signal in [*_NAMED, "bm25"]:
        arr = pts.get(signal)
        if arr is None:
            continue
        for i in np.flatnonzero(arr > 0):
            reason = f"{bm[i] / best:.2f} of the best" if signal == "bm25" else features.named[signal][i][1]
            ranked[i].add(signal, float(arr[i]), reason)
    for r in ranked:
        r.score = round(sum(r.signals.values()), 3)
    return sorted(ranked, key=lambda r: (-r.score, r.path))


def rank_files(task: str, paths: Sequence[str], datas: Sequence[bytes]) -> list[Ranked]:
    """Every path with its score for `task`, best first (ties in path order)."""
    return score(rank_features(task, paths, datas), WEIGHTS)
