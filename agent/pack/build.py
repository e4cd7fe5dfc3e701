"""`build_pack`: the repository rendered for the model under an exact token budget, in phases.

    scan -> candidates -> rank -> frame (header, tree) -> fit full -> fit outlines -> render

Each phase is a function below over immutable records (`Candidate`, `Frame`, `Fit`, `Render`);
what they derive from file contents (exact counts, verified blocks, outlines, the ranking) comes
from one `FileStore`, which holds every fast path (see agent/pack/store.py). The scan reuses
each file's verdict while its size and mtime hold, so unchanged files are not read to be
classified; the tokenizer loads only on the first cache miss; the document's count is the sum
of its pieces' exact counts (`ExactCounter.count_document`). The budget bounds everything
written: the document and the relevant-files block after it.

A cold pack forks where the work holds the GIL: the ranking runs in a child while the tokenizer
loads, and outlines are parsed on worker processes.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import ConfigError
from agent.pack.budget import default_budget
from agent.pack.cache import CountCache, digest
from agent.pack.counting import BULK_BYTES, BULK_FILES, Ahead, ExactCounter, Laps, chunks, collector_paused, count_parts
from agent.pack.index import IndexMode, index_mode
from agent.pack.outline import Outliner
from agent.pack.render import TREE_LEVELS, Format, file_block, footer, header, relevant_block, tree
from agent.pack.scan import MAX_FILE_BYTES, ScanResult, SourceFile, rules_key, scan_repo
from agent.pack.store import OUTLINE_FROM_BYTES, Candidate, FileStore, rank_ahead
from agent.records import Pack, PackItem, PackTotals, SecretFinding, Skipped, Task
from agent.secrets import SecretScanner

if TYPE_CHECKING:
    from agent.settings import Settings
    from agent.tokens import Tokenizer

__all__ = [
    "RELEVANT_FILES", "Fit", "Frame", "PackOptions", "Progress", "Render", "build_pack", "build_packs", "candidates",
    "count_repo", "default_budget", "fit_full", "fit_outlines", "frame_budget", "manifest", "rank", "relevant_room", "render",
]

Progress = Callable[[str, int, int], None]
RELEVANT_FILES = 25
_TREE_SHARE = 0.1  # the tree may take this share of a budget that cannot hold the whole repo
_BYTES_PER_TOKEN_MIN = 16  # a file under budget*16 bytes may fit; larger ones are not counted
_OUTLINE_TRIES = 192
_LEADERS = 3  # top-ranked files that may use the outline share to fit in full
# Filling the last of the budget with small low-ranked files stops after this many counted
# candidates did not fit (a tree of 50,000 small files otherwise counts most of them, a few at a
# time); candidates are counted at least _MIN_BATCH at a time.
_FILL_MISSES = 256
_MIN_BATCH = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class PackOptions:
    """How to pack, beside the repository, the task and the budget: the one set of options of
    `build_pack`, `build_packs` and `count_repo` (a dataclass, not a record: it carries live
    objects, a tokenizer and a callback, and is never serialized)."""

    model: str | None = None  # picks the tokenizer and the default budget (else settings.model)
    format: Format = "xml"
    settings: Settings | None = None  # fills in what is left out (read from files when needed)
    tokenizer: Tokenizer | None = None  # counts with this instead of the model's
    cache_dir: Path | None = None  # where counts are cached (else settings.cache_dir)
    max_file_bytes: int = MAX_FILE_BYTES  # larger files are skipped
    environ: dict[str, str] | None = None  # where secret-looking values are taken from
    progress: Progress | None = None  # told (stage, done, total) as the work goes on
    index: IndexMode | None = None  # where to index a tree for the next tasks (else settings.pack_index)


def _options(options: PackOptions | None, fields: dict[str, Any]) -> PackOptions:
    """`options` with `fields` (PackOptions' field names) replaced; an unknown name is a TypeError."""
    return dataclasses.replace(options or PackOptions(), **fields)


@dataclass(frozen=True, slots=True)
class _Run:
    """What every budget of one `build_packs` call shares."""

    scan: ScanResult
    files: list[Candidate]  # path order
    order: list[Candidate]  # rank order (path order without a task)
    task: str | None
    skipped: list[Skipped]
    excluded: list[SecretFinding]  # files skipped for their secrets
    store: FileStore
    model: str
    tokenizer: str
    progress: Progress | None

    def tick(self, stage: str, done: int, total: int) -> None:
        """Tell the progress callback, if any."""
        if self.progress is not None:
            self.progress(stage, done, total)


@dataclass(frozen=True, slots=True)
class Frame:
    """What a budget keeps outside the files: header, footer and relevant-files block (the
    reserve), and the tree at its level."""

    budget: int
    reserve: int
    tree_level: str
    tree_text: str
    tree_tokens: int
    might_fit_all: bool


@dataclass(frozen=True, slots=True)
class Fit:
    """Files placed (path -> "full" or "outline"; the rest are paths in the tree), the tokens
    left, and the share kept back for outlines."""

    levels: dict[str, str]
    remaining: int
    outline_reserve: int = 0


@dataclass(frozen=True, slots=True)
class Render:
    """The document, its exact count, the relevant-files block and the levels it shows."""

    document: str
    tokens: int
    relevant: str
    relevant_tokens: int
    levels: dict[str, str]
    counts: dict[str, int]


def build_packs(
    repo: str | Path,
    *,
    budgets: Sequence[int | None],
    task: str | Task | None = None,
    options: PackOptions | None = None,
    **fields: Any,
) -> list[Pack]:
    """One pack per budget from a single scan and ranking (see `build_pack`); `fields` are
    PackOptions' fields, for a call that does not build the record."""
    opts = _options(options, fields)
    timings: dict[str, float] = {}
    lap = Laps(timings)
    if opts.format not in ("xml", "markdown"):
        raise ConfigError(f"unknown pack format {opts.format!r} (xml or markdown)")
    settings = opts.settings
    if settings is None and (opts.model is None or opts.cache_dir is None or None in budgets):
        # Settings only fill in what the call leaves out (an API call that names all three
        # skips reading config files and building the settings model).
        from agent.settings import Settings

        settings = Settings()
    model_name, tokenizer_name, window_budget = _resolve_model(opts.model, settings)
    resolved = [b if b is not None else (getattr(settings, "pack_budget", None) or window_budget) for b in budgets]
    for b in resolved:
        if b <= 0:
            raise ConfigError(f"pack budget must be positive, got {b}")
    tokenizer_name, loader, bulk = _tokenizer_loader(opts.tokenizer, tokenizer_name)
    cache_root = opts.cache_dir if opts.cache_dir is not None else getattr(settings, "cache_dir", None)
    # Where to index after (agent.pack.index): the option, else the caller's settings (loaded
    # with the environment; not defaults made up here), else TOME_PACK_INDEX. Read now: a bad
    # value fails before the work, not after it.
    mode = index_mode(opts.index or getattr(opts.settings, "pack_index", None))
    with CountCache(cache_root, tokenizer_name) as cache, collector_paused():
        counter = ExactCounter(loader, cache, bulk=bulk)
        lap("setup")
        run = _prepare(Path(repo), _task_text(task), cache, counter, opts, model_name, tokenizer_name, lap)
        with Outliner() as outliner:
            packs = [_pack(run, budget, outliner, dict(timings)) for budget in resolved]
    if run.store.ranked_from_bytes and cache_root is not None:
        _index_ahead(run, opts, mode, tokenizer_name, Path(cache_root))
    return packs


def _index_ahead(run: _Run, opts: PackOptions, mode: IndexMode, tokenizer: str, cache_dir: Path) -> None:
    """After a fresh ranking from the files' bytes, index the tree for the tasks to come
    (where and when: agent.pack.index). The pack is made: an index that cannot be written
    (a read-only or full cache) is left for another time, not raised."""
    import sqlite3

    from agent.pack import index
    from agent.tokens import available_tokenizers

    if mode == "off" or tokenizer not in available_tokenizers():  # a tokenizer given as an object only
        return
    spec = index.IndexSpec(
        root=run.store.root, tokenizer=tokenizer, cache_dir=str(cache_dir), format=run.store.format,
        max_file_bytes=opts.max_file_bytes, environ=opts.environ, scanner=run.store.scanner.fingerprint,
    )
    try:
        if len(run.files) >= index.INDEX_AHEAD_FROM and mode == "background":
            index.start(spec)
        elif run.store.ranked_from_bytes > 1 or mode == "here":
            index.index_tree(spec)
    except (OSError, sqlite3.DatabaseError):
        pass


def build_pack(
    repo: str | Path,
    *,
    task: str | Task | None = None,
    budget: int | None = None,
    options: PackOptions | None = None,
    **fields: Any,
) -> Pack:
    """Pack the repository at `repo` for `task` (text or Task) under `budget` tokens.

    The budget defaults to settings.pack_budget, else the model's window less a reserve
    (`agent.pack.budget`); counts are exact for the model's tokenizer and cached under
    settings.cache_dir. `options` (or its fields as keywords) say how (see PackOptions).
    """
    return build_packs(repo, budgets=[budget], task=task, options=_options(options, fields))[0]


def _prepare(
    repo: Path, task: str | None, cache: CountCache, counter: ExactCounter, opts: PackOptions,
    model: str, tokenizer: str, lap: Laps,
) -> _Run:
    """Scan, candidates and ranking: what every budget shares."""
    progress = opts.progress
    if progress is not None:
        progress("scan", 0, 1)
    # A new task on a large known tree: the ranker's child starts now and imports while we scan.
    root = str(repo.expanduser().resolve())
    ahead = rank_ahead(cache, root, task, f"scan:{rules_key(opts.max_file_bytes)}")
    try:
        scan = _scan(repo, cache, opts.max_file_bytes)
    except BaseException:
        if ahead is not None:
            ahead.close()
        raise
    files = candidates(scan)
    lap("scan")
    if progress is not None:
        progress("scan", 1, 1)
    # Secrets: denylisted paths were skipped by the scan; values are redacted from each file
    # as it is packed. A pack reports the files it excluded and the redactions in what it shows.
    scanner = SecretScanner(opts.environ)
    # Records built from our own typed values: construct without re-validating thousands.
    skipped = [Skipped.trusted({"path": p, "reason": r, "size": s}) for p, r, s in scan.skipped]
    excluded = [
        SecretFinding(rule=s.reason.split("matches ", 1)[-1], path=s.path, action="excluded")
        for s in skipped
        if s.reason.startswith("secret:")
    ]
    store = FileStore(cache, counter, scanner, str(scan.root), opts.format)
    files, order = rank(task, files, store, ahead)
    lap("rank")
    return _Run(scan, files, order, task, skipped, excluded, store, model, tokenizer, progress)


def candidates(scan: ScanResult) -> list[Candidate]:
    """The packable files of a scan, in path order."""
    return [Candidate(sf, sf.path, sf.size, sf.mtime_ns) for sf in scan.files]


def rank(
    task: str | None, files: list[Candidate], store: FileStore, ahead: Ahead | None = None
) -> tuple[list[Candidate], list[Candidate]]:
    """The files with their ranks for `task`, in path order and best first (without a task,
    unranked and in path order both); `ahead` is a child forked to rank (`rank_ahead`)."""
    if task is None:
        return files, list(files)
    scored = store.rank(task, files, ahead)
    by_path = {f.path: f for f in files}
    ranked = {s.path: dataclasses.replace(by_path[s.path], rank=s) for s in scored}
    return [ranked[f.path] for f in files], [ranked[s.path] for s in scored]


def _pack(run: _Run, budget: int, outliner: Outliner, common: dict[str, float]) -> Pack:
    """One budget's pack: frame, fit full, fit outlines, render, manifest."""
    timings: dict[str, float] = {}
    lap = Laps(timings)
    frame = frame_budget(run, budget)
    lap("tree")
    fit = fit_full(run, frame)
    lap("full")
    fit = fit_outlines(run, fit, outliner)
    lap("outline")
    rendered = render(run, frame, fit)
    lap("render")
    return manifest(run, frame, rendered, lap, common)


def frame_budget(run: _Run, budget: int) -> Frame:
    """Reserve the header and footer (with the widest numbers they can hold) and the relevant
    block, then take the most detailed tree that fits its share (all of it when the repository
    may fit whole)."""
    store, files, fmt, commit = run.store, run.files, run.store.format, run.scan.commit
    n = len(files)
    wide = {k: n for k in ("files", "full", "outline", "path_only")} | {"skipped": len(run.skipped)}
    reserve = sum(store.count([header(run.scan.root.name, commit, budget, wide, fmt), footer(fmt)])) + 2
    reserve += relevant_room([(f.path, f.rank.reasons) for f in _top(run)], fmt, store.counter)  # type: ignore[union-attr]
    paths = [f.path for f in files]
    level, text = TREE_LEVELS[0], tree(paths, TREE_LEVELS[0], fmt)
    (tokens,) = store.count([text])
    might_fit_all = sum(f.size for f in files) / _BYTES_PER_TOKEN_MIN + tokens + reserve <= budget
    limit = budget - reserve if might_fit_all else max(int(budget * _TREE_SHARE), 1)
    if tokens > limit:
        smallest = tokens
        for level in TREE_LEVELS[1:]:
            text = tree(paths, level, fmt)
            (tokens,) = store.count([text])
            smallest = min(smallest, tokens)
            if tokens <= limit:
                break
        if tokens + reserve > budget:
            raise ConfigError(
                f"budget {budget:,} tokens is too small for even the tree: the smallest tree "
                f"({level}) and header take {smallest + reserve:,} tokens"
            )
    return Frame(budget, reserve, level, text, tokens, might_fit_all)


def _top(run: _Run) -> list[Candidate]:
    """The files the relevant-files block names: the best ranked with a score."""
    if run.task is None:
        return []
    return [f for f in run.order[:RELEVANT_FILES] if f.rank is not None and f.rank.score > 0]


def relevant_room(top: Sequence[tuple[str, list[str]]], format: Format, counter: ExactCounter) -> int:
    """Tokens to reserve for the relevant-files block of the `top` ranked files (path, reasons):
    it is written with the document and shares its budget. Each is put at the longest level
    name; the block is counted again as it is in the end."""
    if not top:
        return 0
    (n,) = counter.count([relevant_block(((path, "outline", reasons) for path, reasons in top), format)])
    return n


def fit_full(run: _Run, frame: Frame) -> Fit:
    """Full text in rank order, counting only files that can still make the cut; when the
    repository cannot fit, a tenth is kept for outlines of the next-ranked files (which the
    top-ranked files may dip into to fit in full)."""
    order, store = run.order, run.store
    remaining = frame.budget - frame.reserve - frame.tree_tokens
    outline_reserve = 0 if frame.might_fit_all or run.task is None else min(remaining // 10, 50_000)
    remaining -= outline_reserve
    leaders = {f.path for f in order[:_LEADERS]} if run.task is not None else set()
    levels: dict[str, str] = {}
    pos = misses = 0
    while pos < len(order) and (remaining > 8 or (pos < _LEADERS and outline_reserve > 8)) and misses < _FILL_MISSES:
        batch: list[Candidate] = []
        estimate = 0.0
        while pos < len(order) and len(batch) < 512 and (estimate < 1.1 * remaining or len(batch) < _MIN_BATCH):
            f = order[pos]
            pos += 1
            if f.size / _BYTES_PER_TOKEN_MIN <= remaining + (outline_reserve if f.path in leaders else 0):
                batch.append(f)
                estimate += f.size / 4
        if not batch:
            break
        store.count_full(batch)
        for f in batch:
            tokens = store.tokens(f)
            assert tokens is not None
            if tokens <= remaining:
                levels[f.path] = "full"
                remaining -= tokens
            elif f.path in leaders and tokens <= remaining + outline_reserve:
                levels[f.path] = "full"
                outline_reserve -= tokens - remaining
                remaining = 0
            else:
                misses += 1
        run.tick("count", pos, len(order))
    run.tick("count", len(order), len(order))
    return Fit(levels, remaining, outline_reserve)


def fit_outlines(run: _Run, fit: Fit, outliner: Outliner) -> Fit:
    """Then outlines, in rank order, for what did not fit in full, until the budget is spent:
    the next _OUTLINE_TRIES candidates (see `FileStore.outlines`)."""
    store, levels = run.store, dict(fit.levels)
    remaining = fit.remaining + fit.outline_reserve
    tries = [f for f in run.order if f.path not in levels and f.size >= OUTLINE_FROM_BYTES][:_OUTLINE_TRIES]
    with store.outlines(tries, outliner) as outline:
        for f in tries:
            if remaining <= 8:
                break
            tokens = outline(f)
            if tokens is None:
                continue
            full = store.tokens(f)
            if tokens <= remaining and (full is None or tokens < full):
                levels[f.path] = "outline"
                remaining -= tokens
    return Fit(levels, remaining)


def render(run: _Run, frame: Frame, fit: Fit) -> Render:
    """The document in path order and the relevant-files block, counted exactly (see
    `ExactCounter.count_document`); the lowest-ranked pieces are shed if a changed file or the
    header ever tips them over the budget."""
    store, fmt, files = run.store, run.store.format, run.files
    levels = dict(fit.levels)
    rank_of = {f.path: i for i, f in enumerate(run.order)}
    blocks = {f.path: store.block(f) for f in files if levels.get(f.path) == "full"}
    top = _top(run)
    for _ in range(50):
        chosen = [f for f in files if f.path in levels]
        counts = {
            "files": len(files),
            "full": sum(levels[f.path] == "full" for f in chosen),
            "outline": sum(levels[f.path] == "outline" for f in chosen),
            "skipped": len(run.skipped),
        }
        counts["path_only"] = counts["files"] - counts["full"] - counts["outline"]
        head, end = header(run.scan.root.name, run.scan.commit, frame.budget, counts, fmt), footer(fmt)
        pieces = [head, frame.tree_text]
        sizes = [*store.count([head]), frame.tree_tokens]
        for f in chosen:
            if levels[f.path] == "full":
                block, tokens = blocks[f.path]
            else:
                block, tokens = store.outline_block(f), store.outline_tokens(f) or 0
            pieces.append(block)
            sizes.append(tokens or 0)
        pieces.append(end)
        sizes += store.count([end])
        total = store.counter.count_document(pieces, sizes)
        relevant = relevant_block(((f.path, levels.get(f.path, "path"), f.rank.reasons) for f in top), fmt)  # type: ignore[union-attr]
        relevant_tokens = store.count([relevant])[0] if relevant else 0
        if total + relevant_tokens <= frame.budget:
            return Render("".join(pieces), total, relevant, relevant_tokens, levels, counts)
        victim = max(chosen, key=lambda f: (levels[f.path] == "outline", rank_of[f.path]))
        if levels[victim.path] == "outline" or not store.has_outline(victim):
            del levels[victim.path]
        else:
            levels[victim.path] = "outline"
    raise ConfigError(f"could not fit the pack under {frame.budget} tokens")  # pragma: no cover - would need a tokenizer far from additive


def manifest(run: _Run, frame: Frame, rendered: Render, lap: Laps, common: dict[str, float]) -> Pack:
    """The pack record: document, relevant block, per-file items, totals, skips, secrets, and
    the timings of this budget's phases (`lap`) after those all budgets shared (`common`)."""
    store, levels = run.store, rendered.levels
    rank_of = {f.path: i for i, f in enumerate(run.order)}

    def tokens(f: Candidate) -> int:
        level = levels.get(f.path)
        return (store.tokens(f) if level == "full" else store.outline_tokens(f) if level == "outline" else 0) or 0

    items = [
        PackItem.trusted(
            {
                "path": f.path,
                "level": levels.get(f.path, "path"),
                "tokens": tokens(f),
                "score": f.rank.score if f.rank else 0.0,
                "rank": (rank_of[f.path] + 1) if f.rank else None,
                "reasons": list(f.rank.reasons) if f.rank else [],
            }
        )
        for f in run.files
    ]
    counted = [store.tokens(f) for f in run.files]
    repo_tokens = sum(n or 0 for n in counted) if all(n is not None for n in counted) else None
    lap("manifest")
    findings = [*run.excluded, *(x for f in run.files if f.path in levels for x in store.found(f))]
    counts = rendered.counts
    # Our own typed values again: built without validation (which would walk every item).
    totals = PackTotals.trusted(
        {
            "files": len(run.files),
            "full": counts["full"],
            "outline": counts["outline"],
            "path_only": counts["path_only"],
            "skipped": len(run.skipped),
            "tokens": rendered.tokens,
            "full_tokens": sum(i.tokens for i in items if i.level == "full"),
            "outline_tokens": sum(i.tokens for i in items if i.level == "outline"),
            "tree_tokens": frame.tree_tokens,
            "repo_tokens": repo_tokens,
            "secrets_redacted": len(findings) - len(run.excluded),
            "secrets_excluded": len(run.excluded),
        }
    )
    timings = {**common, **lap.timings}
    timings["total"] = round(sum(timings.values()), 4)
    return Pack.trusted(
        {
            "document": rendered.document,
            "relevant": rendered.relevant,
            "format": store.format,
            "repo": run.scan.root.name,
            "root": store.root,
            "commit": run.scan.commit,
            "model": run.model,
            "tokenizer": run.tokenizer,
            "budget": frame.budget,
            "tree_level": frame.tree_level,
            "totals": totals,
            "items": items,
            "skipped": run.skipped,
            "secrets": findings,
            "relevant_tokens": rendered.relevant_tokens,
            "timings": timings,
        }
    )


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


def count_repo(repo: str | Path, *, options: PackOptions | None = None, **fields: Any) -> dict[str, int]:
    """Exact tokens of every packable file as it would be packed in full (secrets redacted);
    `fields` are PackOptions' fields."""
    opts = _options(options, fields)
    settings = opts.settings
    if settings is None and (opts.model is None or opts.cache_dir is None):
        from agent.settings import Settings

        settings = Settings()
    _, tokenizer_name, _ = _resolve_model(opts.model, settings)
    tokenizer_name, loader, bulk = _tokenizer_loader(opts.tokenizer, tokenizer_name)
    cache_root = opts.cache_dir if opts.cache_dir is not None else getattr(settings, "cache_dir", None)
    counts, _ = _count_tree(
        Path(repo), cache_root, tokenizer_name, loader, bulk, SecretScanner(opts.environ), opts.format, opts.max_file_bytes
    )
    return counts


def _count_tree(
    repo: Path, cache_root: Path | None, tokenizer_name: str, loader: Tokenizer | Callable[[], Tokenizer],
    bulk: str | None, scanner: SecretScanner, fmt: Format, max_file_bytes: int,
) -> tuple[dict[str, int], int]:
    """Every packable file's full-block count by path, and the tokens counted (not cached)."""
    kind = f"full:{fmt}:{scanner.fingerprint}"
    counts: dict[str, int] = {}
    with CountCache(cache_root, tokenizer_name) as cache:
        counter = ExactCounter(loader, cache, bulk=bulk)

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
        for part in chunks(todo, 2_000_000, size=lambda sf: sf.size):
            texts, hashes = [], []
            for sf in part:
                found = []
                if scanner.may_contain(sf.data, path=sf.path):
                    text, found = scanner.redact(sf.text, path=sf.path, data=sf.data)
                else:
                    text = sf.text
                block = file_block(sf.path, text, fmt)
                h = digest(block)
                if not found:
                    cache.remember_stat(root, sf.path, kind, sf.size, sf.mtime_ns, h)
                texts.append(block)
                hashes.append(h)
                sf.release()
            waiting.append((part, texts, hashes))
            if counter.ready:
                count_parts(waiting, counter, counts)
        count_parts(waiting, counter, counts)
    return {sf.path: counts[sf.path] for sf in scan.files}, counter.counted_tokens
