"""`build_pack`: scan, rank, count, choose levels under the budget, redact, render, count again.

What a second pack of a mostly unchanged tree skips, and what keeps it exact:

* the scan reuses each file's verdict (packable, or why skipped) while its size and mtime hold,
  so unchanged files are not read to be classified; bytes are read when first needed;
* the ranking of a task over an unchanged tree comes from the cache (keyed by the task, every
  path/size/mtime and the ranker's own code), and then neither the ranker nor numpy loads;
* a file counted clean before (same size, mtime and secret rules) takes its count from the
  cache unread; if it is packed, its block is rebuilt from its bytes and re-hashed, and counted
  again if the hash moved;
* the tokenizer loads only on the first cache miss; the document's count is the sum of its
  pieces' exact counts (see `_Counter.count_document`).

A cold pack forks where the work holds the GIL: the ranking runs in a child while the tokenizer
loads, and outlines are parsed on worker processes. `count_repo` on a large tree it has not
seen loads the bulk counter (fastokens, ~20x faster; see `agent.tokens`) on a thread while it
scans, since that load holds no GIL; a pack counts too little for the slower load to pay.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from agent.errors import ConfigError
from agent.pack.budget import default_budget
from agent.pack.cache import CountCache, digest
from agent.pack.outline import Outliner
from agent.pack.render import (
    TREE_LEVELS,
    Format,
    file_block,
    footer,
    header,
    relevant_block,
    tree,
)
from agent.pack.scan import MAX_FILE_BYTES, ScanResult, SourceFile, rules_key, scan_repo
from agent.records import Pack, PackItem, PackTotals, SecretFinding, Skipped, Task
from agent.secrets import SecretScanner

if TYPE_CHECKING:
    from concurrent.futures import Future

    from agent.settings import Settings
    from agent.tokens import Tokenizer

__all__ = ["RELEVANT_FILES", "Progress", "build_pack", "build_packs", "count_repo", "default_budget", "relevant_room"]

Progress = Callable[[str, int, int], None]
RELEVANT_FILES = 25
_TREE_SHARE = 0.1  # the tree may take this share of a budget that cannot hold the whole repo
_BYTES_PER_TOKEN_MIN = 16  # a file under budget*16 bytes may fit; larger ones are not counted
_OUTLINE_TRIES = 192
_RANK_VERSION = b"rank-5"
_LEADERS = 3  # top-ranked files that may use the outline share to fit in full
# Filling the last of the budget with small low-ranked files stops after this many counted
# candidates did not fit (a tree of 50,000 small files otherwise counts most of them, a few at a
# time); candidates are counted at least _MIN_BATCH at a time.
_FILL_MISSES = 256
_MIN_BATCH = 32
_FORK_RANK_FROM = 1000  # files: below this, ranking here is quicker than forking for it
# The bulk counter (`_Counter.expect`) loads in ~1.3 s and then counts ~20x faster: it pays from
# about 8 MB of misses on. `count_repo` also starts it before scanning a never-seen tree of
# BULK_FILES or more. A pack counts only what can make its cut (~5 MB at 1M tokens): tried
# there, the load outlasted scan and ranking and the cold pack got no faster.
BULK_BYTES = 8_000_000
BULK_FILES = 2_000


@dataclass(slots=True)
class _Scored:
    """A file's rank score and reasons (as agent.pack.rank.Ranked, without importing it:
    a ranking served from the cache needs neither the ranker nor numpy)."""

    path: str
    score: float
    reasons: list[str]


@dataclass(slots=True)
class _File:
    source: SourceFile  # bytes read lazily: an unchanged file is not read unless packed
    path: str
    size: int
    mtime_ns: int
    redacted: str | None = None  # the text when secrets were redacted from it
    checked: bool = False  # secrets looked for in this run
    block: str | None = None
    block_hash: bytes | None = None  # hash of the full block that `tokens` counts
    verified: bool = False  # block_hash was computed from this run's bytes
    tokens: int | None = None
    rank: _Scored | None = None
    level: str = "path"
    outline_block: str | None = None
    outline_tokens: int | None = None
    found: tuple[SecretFinding, ...] = ()  # the secrets redacted from `text`

    @property
    def text(self) -> str:
        return self.redacted if self.redacted is not None else self.source.text


class _Laps:
    """Stage timings: each call records the seconds since the previous one under a name."""

    def __init__(self, into: dict[str, float]) -> None:
        self.timings = into
        self._clock = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._clock, 4)
        self._clock = now


_T = TypeVar("_T")


def _count_parts(
    waiting: list[tuple[list[SourceFile], list[str], list[bytes]]], counter: _Counter, counts: dict[str, int]
) -> None:
    """Count the waiting blocks into `counts` by path, and empty `waiting`."""
    for files, texts, hashes in waiting:
        counts.update(zip((sf.path for sf in files), counter.count(texts, hashes)))
    waiting.clear()


def _chunks(items: Sequence[_T], limit: int = 2_000_000, size: Callable[[_T], int] = len) -> list[list[_T]]:
    """Batches of about `limit` in `size` (characters of texts by default): token ids of a whole
    repository at once would cost hundreds of MB before they are counted."""
    out: list[list[_T]] = [[]]
    total = 0
    for item in items:
        n = size(item)
        if total + n > limit and out[-1]:
            out.append([])
            total = 0
        out[-1].append(item)
        total += n
    return out


class _Counter:
    """Exact counts through the persistent cache; misses are counted in parallel.

    The tokenizer may be given as a loader: a run whose counts all come from the cache never
    loads it. `bulk` names a counter with the same counts that loads slower and counts much
    faster (`agent.tokens.bulk_engine`): `expect` starts loading it on a thread when a large
    job is coming, and every count after that uses it.
    """

    def __init__(
        self, tokenizer: Tokenizer | Callable[[], Tokenizer], cache: CountCache, *, bulk: str | None = None
    ) -> None:
        self._tokenizer = tokenizer
        self._bulk = bulk
        self._loading: Future[Tokenizer] | None = None
        self.cache = cache
        self.counted_tokens = 0

    @property
    def loading(self) -> bool:
        """Whether the bulk counter is loading on its thread (or loaded and not yet taken)."""
        return self._loading is not None

    @property
    def ready(self) -> bool:
        """Whether counting now would not wait for a load on the thread."""
        return self._loading is None or self._loading.done()

    def expect(self, nbytes: int) -> None:
        """About `nbytes` of text will be counted: from BULK_BYTES on, load the bulk counter on a
        thread (it loads without the GIL: scanning and ranking go on meanwhile)."""
        if self._bulk is not None and self._loading is None and callable(self._tokenizer) and nbytes >= BULK_BYTES:
            from agent.tokens import load_in_background

            self._loading = load_in_background(self._bulk)

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer, loaded on first use."""
        if self._loading is not None:
            self._tokenizer, self._loading = self._loading.result(), None
        elif callable(self._tokenizer):
            self._tokenizer = self._tokenizer()
        return self._tokenizer

    def count(self, texts: Sequence[str], hashes: Sequence[bytes] | None = None) -> list[int]:
        hs = list(hashes) if hashes is not None else [digest(t) for t in texts]
        known = self.cache.lookup(hs)
        missing = [i for i, h in enumerate(hs) if h not in known]
        if missing:
            counts = []
            for part in _chunks([texts[i] for i in missing]):
                if len(part) == 1:  # a thread pool costs more than one small text
                    counts.append(self.tokenizer.count(part[0]))
                else:
                    counts.extend(self.tokenizer.count_batch(part))
            self.cache.store((hs[i], n) for i, n in zip(missing, counts))
            known.update((hs[i], n) for i, n in zip(missing, counts))
            self.counted_tokens += sum(counts)
        return [known[h] for h in hs]

    def count_document(self, pieces: Sequence[str], counts: Sequence[int] | None = None) -> int:
        """Tokens of the document `"".join(pieces)`, exactly.

        Every piece the renderer makes starts at a line start with `<` or `#` and ends with a
        newline. No alternative of the tokenizers' pre-token patterns crosses such a seam (a
        run ending in a newline is one piece in both contexts; nothing joins a newline to the
        `<` or `#` after it; no lookbehind) and no special token spans a newline, so the pieces
        are tokenized exactly as in the whole: the document's count is the sum of the pieces'
        exact counts (`counts`, when known, else counted now). A piece not of that shape sends
        the whole document to the tokenizer instead.
        """
        if not all(p[:1] in ("<", "#") and p.endswith("\n") for p in pieces):
            (n,) = self.count(["".join(pieces)])
            return n
        return sum(counts if counts is not None else self.count(pieces))


def relevant_room(top: Sequence[tuple[str, list[str]]], format: Format, counter: _Counter) -> int:
    """Tokens to reserve for the relevant-files block of the `top` ranked files (path, reasons):
    it is written with the document and shares its budget. Each is put at the longest level
    name; the block is counted again as it is in the end."""
    if not top:
        return 0
    (n,) = counter.count([relevant_block(((path, "outline", reasons) for path, reasons in top), format)])
    return n


def _resolve_model(model: str | None, settings: Settings | None) -> tuple[str, str, int]:
    from agent.modes import parse_mode
    from agent.profiles import get_profile
    from agent.tokens import effective_tokenizer

    name = model or (getattr(settings, "model", None) if settings is not None else None) or "deepseek-v4-pro"
    if settings is not None and getattr(settings, "model", None) == name:
        profile = settings.profile()
    else:
        profile = get_profile(name)
    mode = getattr(settings, "mode", None)
    return name, effective_tokenizer(profile.tokenizer), default_budget(profile, parse_mode(mode) if mode else None)


def _tokenizer_loader(
    tokenizer: Tokenizer | None, name: str
) -> tuple[str, Tokenizer | Callable[[], Tokenizer], str | None]:
    """The tokenizer's name, the tokenizer or a loader for it (an unknown name fails now), and
    the name of its bulk counter if it has one. Counts are cached under `name` either way: the
    bulk counter's counts are the same."""
    if tokenizer is not None:
        return getattr(tokenizer, "name", name), tokenizer, None
    from agent.tokens import available_tokenizers, bulk_engine, get_tokenizer

    if name not in available_tokenizers():
        get_tokenizer(name)  # raises the ConfigError that says what is available
    return name, functools.partial(get_tokenizer, name), bulk_engine(name)


def _task_text(task: str | Task | None) -> str | None:
    if task is None:
        return None
    text = task.statement if isinstance(task, Task) else str(task)
    return text if text.strip() else None


def _rank_key(task: str, files: Sequence[_File]) -> bytes:
    # The ranking code's own bytes are in the key: a changed ranking never reuses old results.
    code = (Path(__file__).parent / "rank.py").read_bytes()
    h = digest(_RANK_VERSION + digest(code) + task.encode("utf-8", "surrogatepass"))
    state = "\0".join(f"{f.path}\1{f.size}\1{f.mtime_ns}" for f in files)
    return b"rank:" + digest(h + digest(state))


def _rank(task: str, files: list[_File], cache: CountCache, counter: _Counter) -> list[_Scored]:
    key = _rank_key(task, files)
    stored = cache.memo_get(key)
    if stored is None:

        def rank() -> bytes:
            from agent.pack.rank import rank_files

            # Ranking reads the unredacted bytes: it only scores; what a pack shows is redacted.
            ranked = rank_files(task, [f.path for f in files], [f.source.data for f in files])
            return json.dumps([[r.path, r.score, r.reasons] for r in ranked]).encode()

        # A fresh ranking means fresh counts: the tokenizer loads meanwhile (both hold the GIL,
        # so the ranking runs in a forked child when it can).
        result = _in_child(rank) if len(files) >= _FORK_RANK_FROM else None
        try:
            counter.tokenizer  # noqa: B018 - loads it
        except BaseException:
            if result is not None:
                result(fallback=False)  # reap the child, then let the error through
            raise
        stored = result() if result is not None else rank()
        cache.memo_put(key, stored)
    return [_Scored(p, s, r) for p, s, r in json.loads(stored)]


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a pack is built: the build makes few cycles,
    and each full collection would walk every file's bytes and record again."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _in_child(work: Callable[..., bytes]) -> Callable[..., bytes] | None:
    """Start `work` in a forked child; the returned function waits for its bytes (and, unless
    told `fallback=False`, runs `work` here if the child failed). None where forking is unsafe:
    not Linux, or other threads alive."""
    if not sys.platform.startswith("linux") or threading.active_count() > 1 or (os.cpu_count() or 1) < 2:
        return None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child leaves through os._exit
        code = 1
        try:
            gc.freeze()  # collections would walk (and copy) the whole inherited heap
            os.close(read_end)
            with os.fdopen(write_end, "wb") as out:
                out.write(work())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)

    def wait(*, fallback: bool = True) -> bytes:
        with os.fdopen(read_end, "rb") as inp:
            data = b"" if not fallback else inp.read()
        if not fallback:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) == 0 or not fallback:
            return data
        return work()

    return wait


def build_packs(
    repo: str | Path,
    *,
    budgets: Sequence[int | None],
    task: str | Task | None = None,
    model: str | None = None,
    format: Format = "xml",
    settings: Settings | None = None,
    tokenizer: Tokenizer | None = None,
    cache_dir: Path | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
    environ: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> list[Pack]:
    """One pack per budget from a single scan and ranking (see `build_pack`)."""
    timings: dict[str, float] = {}
    lap = _Laps(timings)

    def tick(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)

    if format not in ("xml", "markdown"):
        raise ConfigError(f"unknown pack format {format!r} (xml or markdown)")
    if settings is None and (model is None or cache_dir is None or None in budgets):
        # Settings only fill in what the call leaves out (an API call that names all three
        # skips reading config files and building the settings model).
        from agent.settings import Settings

        settings = Settings()
    model_name, tokenizer_name, window_budget = _resolve_model(model, settings)
    resolved = [b if b is not None else (getattr(settings, "pack_budget", None) or window_budget) for b in budgets]
    for b in resolved:
        if b <= 0:
            raise ConfigError(f"pack budget must be positive, got {b}")
    tokenizer_name, loader, bulk = _tokenizer_loader(tokenizer, tokenizer_name)
    task_text = _task_text(task)
    cache_root = cache_dir if cache_dir is not None else getattr(settings, "cache_dir", None)
    with CountCache(cache_root, tokenizer_name) as cache, _collector_paused():
        counter = _Counter(loader, cache, bulk=bulk)
        lap("setup")
        return _build(
            Path(repo), resolved, task_text, cache, counter, format=format, model_name=model_name,
            tokenizer_name=tokenizer_name, max_file_bytes=max_file_bytes, environ=environ,
            tick=tick, timings=timings,
        )


def _scan(
    repo: Path, cache: CountCache, max_file_bytes: int, listed: Callable[[int], None] | None = None
) -> ScanResult:
    """Scan `repo` with the verdicts the cache kept from the last scan, and keep the new ones
    (`listed`: see `scan_repo`)."""
    rules = rules_key(max_file_bytes)
    known = cache.verdicts(str(repo.expanduser().resolve()), rules) if repo.exists() else {}
    scan = scan_repo(repo, max_bytes=max_file_bytes, known=known, listed=listed)
    cache.remember_verdicts(str(scan.root), scan.verdicts, rules)
    return scan


def _build(
    repo: Path,
    budgets: list[int],
    task_text: str | None,
    cache: CountCache,
    counter: _Counter,
    *,
    format: Format,
    model_name: str,
    tokenizer_name: str,
    max_file_bytes: int,
    environ: dict[str, str] | None,
    tick: Callable[[str, int, int], None],
    timings: dict[str, float],
) -> list[Pack]:
    lap = _Laps(timings)
    tick("scan", 0, 1)
    scan = _scan(repo, cache, max_file_bytes)
    root = str(scan.root)
    repo_name = scan.root.name
    files = [_File(sf, sf.path, sf.size, sf.mtime_ns) for sf in scan.files]
    lap("scan")
    tick("scan", 1, 1)

    # Secrets: denylisted paths were skipped by the scan; values are redacted from each file
    # as it is packed (a file that stays a path is never shown, so never needs scanning).
    # A pack reports the files it excluded and the redactions in the files it shows.
    scanner = SecretScanner(environ)
    # Records built from our own typed values: construct without re-validating thousands.
    skipped = [Skipped.trusted({"path": p, "reason": r, "size": s}) for p, r, s in scan.skipped]
    excluded = [
        SecretFinding(rule=s.reason.split("matches ", 1)[-1], path=s.path, action="excluded")
        for s in skipped
        if s.reason.startswith("secret:")
    ]

    def check(f: _File) -> None:
        if f.checked:
            return
        f.checked = True
        data = f.source.data
        if scanner.may_contain(data, path=f.path):
            text, found = scanner.redact(f.source.text, path=f.path, data=data)
            if found:
                f.found = tuple(found)
                f.redacted = text

    if task_text is not None:
        ranked = _rank(task_text, files, cache, counter)
        by_path = {f.path: f for f in files}
        order = [by_path[r.path] for r in ranked]
        for r in ranked:
            by_path[r.path].rank = r
    else:
        order = list(files)
    lap("rank")

    # Fast path: a file unchanged since it was last counted clean (same size and mtime, same
    # secret rules and values) is neither read, hashed nor counted; its bytes are read and
    # checked against the counted hash only if it is packed.
    kind = f"full:{format}:{scanner.fingerprint}"
    stats = cache.stats(root, kind)
    # The same for outlines: (size, mtime) -> the hash of the clean text that was outlined.
    outline_kind = f"outline:{scanner.fingerprint}"
    outline_stats = cache.stats(root, outline_kind)

    def full_counts(batch: list[_File]) -> None:
        texts, hashes = [], []
        batch = [f for f in batch if f.tokens is None]  # another budget counted the rest
        for f in batch:
            row = stats.get(f.path)
            if row is not None and row[0] == f.size and row[1] == f.mtime_ns:
                f.block_hash = row[2]
                texts.append("")  # only needed on a cache miss (then counted from the file)
            else:
                make_block(f)
                texts.append(f.block)  # type: ignore[arg-type]
            hashes.append(f.block_hash)
        known = counter.cache.lookup(hashes)
        for i, (f, h) in enumerate(zip(batch, hashes)):
            if h not in known and not texts[i]:
                make_block(f)  # a fast-path hash whose count is gone from the cache
                texts[i], hashes[i] = f.block, f.block_hash  # type: ignore[assignment]
        for f, c in zip(batch, counter.count(texts, hashes)):
            f.tokens = c

    def make_block(f: _File) -> None:
        check(f)
        f.block = file_block(f.path, f.text, format)
        f.block_hash = digest(f.block)
        f.verified = True
        if f.redacted is None:
            cache.remember_stat(root, f.path, kind, f.size, f.mtime_ns, f.block_hash)

    def verify(f: _File) -> None:
        """Build a fast-path file's block from its bytes now; recount if they changed. Bytes
        that hash as counted are the bytes that were found clean: no second secrets scan."""
        if f.verified:
            return
        expected = f.block_hash
        if not f.checked:
            block = file_block(f.path, f.source.text, format)
            if digest(block) == expected:
                f.block, f.checked, f.verified = block, True, True
                return
        make_block(f)
        if f.block_hash != expected:
            (f.tokens,) = counter.count([f.block], [f.block_hash])  # type: ignore[list-item]

    def _select(budget: int) -> Pack:
        timings: dict[str, float] = {}
        lap = _Laps(timings)

        # Header and footer: reserve with the widest numbers they can hold.
        n = len(files)
        wide = {k: n for k in ("files", "full", "outline", "path_only")} | {"skipped": len(skipped)}
        fixed = counter.count([header(repo_name, scan.commit, budget, wide, format), footer(format)])
        reserve = sum(fixed) + 2
        top = [f for f in order[:RELEVANT_FILES] if f.rank is not None and f.rank.score > 0] if task_text else []
        reserve += relevant_room([(f.path, f.rank.reasons) for f in top], format, counter)  # type: ignore[union-attr]

        # Tree: the most detailed level that fits its share (all of it when everything fits).
        paths = [f.path for f in files]
        total_bytes = sum(f.size for f in files)
        trees = [tree(paths, level, format) for level in TREE_LEVELS[:1]]
        tree_counts = counter.count(trees)
        tree_level, tree_text, tree_tokens = TREE_LEVELS[0], trees[0], tree_counts[0]
        might_fit_all = total_bytes / _BYTES_PER_TOKEN_MIN + tree_tokens + reserve <= budget
        limit = budget - reserve if might_fit_all else max(int(budget * _TREE_SHARE), 1)
        if tree_tokens > limit:
            smallest = tree_tokens
            for level in TREE_LEVELS[1:]:
                text = tree(paths, level, format)
                (count,) = counter.count([text])
                smallest = min(smallest, count)
                tree_level, tree_text, tree_tokens = level, text, count
                if count <= limit:
                    break
            if tree_tokens + reserve > budget:
                raise ConfigError(
                    f"budget {budget:,} tokens is too small for even the tree: the smallest tree "
                    f"({tree_level}) and header take {smallest + reserve:,} tokens"
                )
        remaining = budget - reserve - tree_tokens
        lap("tree")

        # Full text in rank order, counting only files that can still make the cut; when the
        # repository cannot fit, a tenth is kept for outlines of the next-ranked files.
        outline_reserve = 0 if might_fit_all or task_text is None else min(remaining // 10, 50_000)
        remaining -= outline_reserve
        leaders = {id(f) for f in order[:_LEADERS]} if task_text is not None else set()
        pos = misses = 0
        while (
            pos < len(order)
            and (remaining > 8 or (pos < _LEADERS and outline_reserve > 8))
            and misses < _FILL_MISSES
        ):
            batch: list[_File] = []
            estimate = 0.0
            while pos < len(order) and len(batch) < 512 and (estimate < 1.1 * remaining or len(batch) < _MIN_BATCH):
                f = order[pos]
                pos += 1
                if f.size / _BYTES_PER_TOKEN_MIN <= remaining + (outline_reserve if id(f) in leaders else 0):
                    batch.append(f)
                    estimate += f.size / 4
            if not batch:
                break
            full_counts(batch)
            for f in batch:
                assert f.tokens is not None
                if f.tokens <= remaining:
                    f.level = "full"
                    remaining -= f.tokens
                elif id(f) in leaders and f.tokens <= remaining + outline_reserve:
                    # The top-ranked files may dip into the outline share.
                    f.level = "full"
                    outline_reserve -= f.tokens - remaining
                    remaining = 0
                else:
                    misses += 1
            tick("count", pos, len(order))
        tick("count", len(order), len(order))
        lap("full")

        # Then outlines, in rank order, for what did not fit in full. Parsing is the cost: the
        # next _OUTLINE_TRIES candidates not in the cache are parsed ahead on the workers while
        # the results are counted and placed here, until the budget is spent.
        remaining += outline_reserve
        candidates = [f for f in order if f.level == "path" and f.size >= 200][:_OUTLINE_TRIES]
        todo = [f for f in candidates if f.outline_block is None]
        hashes: dict[int, bytes] = {}
        for f in todo:
            row = outline_stats.get(f.path)
            if row is not None and row[0] == f.size and row[1] == f.mtime_ns:
                hashes[id(f)] = row[2]  # unchanged and clean when outlined: not read again
                continue
            check(f)
            hashes[id(f)] = digest(f.redacted if f.redacted is not None else f.source.data)
            if f.redacted is None:
                cache.remember_stat(root, f.path, outline_kind, f.size, f.mtime_ns, hashes[id(f)])
        cached = cache.outlines(list(hashes.values()))
        misses = [f for f in todo if hashes[id(f)] not in cached]
        missing = {id(f) for f in misses}
        # Parsing starts at the first candidate that needs it: a repeat pack stops before any
        # (the candidates it placed were stored), so it forks no workers.
        parsed: Iterator[str | None] | None = None
        try:
            for f in candidates:
                if remaining <= 8:
                    break
                if f.outline_block is None:
                    h = hashes[id(f)]
                    if id(f) in missing:
                        if parsed is None:  # the first miss reached: misses[0]
                            for g in misses:
                                check(g)
                            parsed = iter(outliner.stream([(g.path, g.text) for g in misses]))
                        cached[h] = next(parsed) or ""
                        cache.store_outline(h, cached[h])
                    if not cached[h]:
                        continue
                    f.outline_block = file_block(f.path, cached[h], format, level="outline")
                if f.outline_tokens is None:
                    (f.outline_tokens,) = counter.count([f.outline_block])
                if f.outline_tokens <= remaining and (f.tokens is None or f.outline_tokens < f.tokens):
                    f.level = "outline"
                    remaining -= f.outline_tokens
        finally:
            close = getattr(parsed, "close", None)
            if close is not None:
                close()  # cancels what was parsed ahead and is no longer needed
        lap("outline")

        # Render in path order and count the document (exactly: see count_document); shed
        # the lowest-ranked pieces if a changed file or the header ever tips it over.
        rank_of = {f.path: i for i, f in enumerate(order)}
        for f in files:
            if f.level == "full":
                verify(f)
        for _ in range(50):
            chosen = [f for f in files if f.level != "path"]
            counts = {
                "files": len(files),
                "full": sum(f.level == "full" for f in chosen),
                "outline": sum(f.level == "outline" for f in chosen),
                "skipped": len(skipped),
            }
            counts["path_only"] = counts["files"] - counts["full"] - counts["outline"]
            head = header(repo_name, scan.commit, budget, counts, format)
            end = footer(format)
            pieces = [head, tree_text]
            pieces += [f.block if f.level == "full" else f.outline_block for f in chosen]  # type: ignore[misc]
            pieces.append(end)
            sizes = [*counter.count([head]), tree_tokens]
            sizes += [(f.tokens if f.level == "full" else f.outline_tokens) or 0 for f in chosen]
            sizes += counter.count([end])
            total = counter.count_document(pieces, sizes)
            relevant = relevant_block(((f.path, f.level, f.rank.reasons) for f in top), format)  # type: ignore[union-attr]
            relevant_tokens = counter.count([relevant])[0] if relevant else 0
            if total + relevant_tokens <= budget:
                break
            victim = max(chosen, key=lambda f: (f.level == "outline", rank_of[f.path]))
            victim.level = "path" if victim.level == "outline" or victim.outline_block is None else "outline"
        else:  # pragma: no cover - would need a tokenizer far from additive
            raise ConfigError(f"could not fit the pack under {budget} tokens")
        document = "".join(pieces)
        lap("render")

        items = [
            PackItem.trusted(
                {
                    "path": f.path,
                    "level": f.level,
                    "tokens": (f.tokens if f.level == "full" else f.outline_tokens if f.level == "outline" else 0) or 0,
                    "score": f.rank.score if f.rank else 0.0,
                    "rank": (rank_of[f.path] + 1) if f.rank else None,
                    "reasons": list(f.rank.reasons) if f.rank else [],
                }
            )
            for f in files
        ]
        repo_tokens = None
        if all(f.tokens is not None for f in files):
            repo_tokens = sum(f.tokens or 0 for f in files)
        lap("manifest")

        findings = [*excluded, *(x for f in files if f.level != "path" for x in f.found)]
        # Our own typed values again: built without validation (which would walk every item).
        totals = PackTotals.trusted(
            {
                "files": len(files),
                "full": counts["full"],
                "outline": counts["outline"],
                "path_only": counts["path_only"],
                "skipped": len(skipped),
                "tokens": total,
                "full_tokens": sum(i.tokens for i in items if i.level == "full"),
                "outline_tokens": sum(i.tokens for i in items if i.level == "outline"),
                "tree_tokens": tree_tokens,
                "repo_tokens": repo_tokens,
                "secrets_redacted": len(findings) - len(excluded),
                "secrets_excluded": len(excluded),
            }
        )
        timings = {**common, **timings}
        timings["total"] = round(sum(timings.values()), 4)
        return Pack.trusted(
            {
                "document": document,
                "relevant": relevant,
                "format": format,
                "repo": repo_name,
                "root": root,
                "commit": scan.commit,
                "model": model_name,
                "tokenizer": tokenizer_name,
                "budget": budget,
                "tree_level": tree_level,
                "totals": totals,
                "items": items,
                "skipped": skipped,
                "secrets": findings,
                "relevant_tokens": relevant_tokens,
                "timings": timings,
            }
        )

    common = dict(timings)
    packs = []
    with Outliner() as outliner:
        for budget in budgets:
            for f in files:
                f.level = "path"
            packs.append(_select(budget))
    return packs


def build_pack(
    repo: str | Path,
    *,
    task: str | Task | None = None,
    budget: int | None = None,
    model: str | None = None,
    format: Format = "xml",
    settings: Settings | None = None,
    tokenizer: Tokenizer | None = None,
    cache_dir: Path | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
    environ: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> Pack:
    """Pack the repository at `repo` for `task` (text or Task) under `budget` tokens.

    The budget defaults to settings.pack_budget, else the model's window less a reserve;
    counts are exact for the model's tokenizer and cached under settings.cache_dir
    (`cache_dir` overrides it). `environ` is where secret-looking values are taken from.
    """
    return build_packs(
        repo, budgets=[budget], task=task, model=model, format=format, settings=settings,
        tokenizer=tokenizer, cache_dir=cache_dir, max_file_bytes=max_file_bytes, environ=environ,
        progress=progress,
    )[0]


def count_repo(
    repo: str | Path,
    *,
    model: str | None = None,
    format: Format = "xml",
    settings: Settings | None = None,
    tokenizer: Tokenizer | None = None,
    cache_dir: Path | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
    environ: dict[str, str] | None = None,
) -> dict[str, int]:
    """Exact tokens of every packable file as it would be packed in full (secrets redacted)."""
    if settings is None and (model is None or cache_dir is None):
        from agent.settings import Settings

        settings = Settings()
    _, tokenizer_name, _ = _resolve_model(model, settings)
    tokenizer_name, loader, bulk = _tokenizer_loader(tokenizer, tokenizer_name)
    repo = Path(repo)
    scanner = SecretScanner(environ)
    kind = f"full:{format}:{scanner.fingerprint}"
    cache_root = cache_dir if cache_dir is not None else getattr(settings, "cache_dir", None)
    counts: dict[str, int] = {}
    with CountCache(cache_root, tokenizer_name) as cache:
        counter = _Counter(loader, cache, bulk=bulk)

        def listed(unknown: int) -> None:
            # A large tree never scanned before: every file will be counted, so the bulk
            # counter starts loading before the first file is read.
            if unknown >= BULK_FILES:
                counter.expect(BULK_BYTES)

        scan = _scan(repo, cache, max_file_bytes, listed)
        root = str(scan.root)
        stats = cache.stats(root, kind)
        # Unchanged files count from the cache without being read; the rest are read, redacted
        # and counted a few MB at a time (a whole tree of blocks at once costs memory).
        cached: dict[str, bytes] = {}
        for sf in scan.files:
            row = stats.get(sf.path)
            if row is not None and row[0] == sf.size and row[1] == sf.mtime_ns:
                cached[sf.path] = row[2]
        hits = cache.lookup(list(cached.values()))
        todo: list[SourceFile] = []
        for sf in scan.files:
            h = cached.get(sf.path)
            if h is not None and h in hits:
                counts[sf.path] = hits[h]
            else:
                todo.append(sf)
        counter.expect(sum(sf.size for sf in todo))
        # Blocks are made a few MB at a time and counted as soon as the counter is ready: while
        # the bulk counter loads, they wait (bounded by how fast files are read and redacted).
        waiting: list[tuple[list[SourceFile], list[str], list[bytes]]] = []
        for part in _chunks(todo, 2_000_000, size=lambda sf: sf.size):
            texts, hashes = [], []
            for sf in part:
                found = []
                if scanner.may_contain(sf.data, path=sf.path):
                    text, found = scanner.redact(sf.text, path=sf.path, data=sf.data)
                else:
                    text = sf.text
                block = file_block(sf.path, text, format)
                h = digest(block)
                if not found:
                    cache.remember_stat(root, sf.path, kind, sf.size, sf.mtime_ns, h)
                texts.append(block)
                hashes.append(h)
                sf.release()
            waiting.append((part, texts, hashes))
            if counter.ready:
                _count_parts(waiting, counter, counts)
        _count_parts(waiting, counter, counts)
    return {sf.path: counts[sf.path] for sf in scan.files}
