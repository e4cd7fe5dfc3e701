"""A tree indexed ahead for the tasks to come: every file's count, outline and ranking entry.

A new task on a known tree ranks other files high than the tasks before it did: their exact
counts, outlines and ranking index entries are what no earlier pack needed. `index_tree`
derives them for every packable file, through the same `FileStore` and cache rows a pack
reads, so the next task's pack finds them all:

    full blocks (counted) -> scan -> ranking index entries -> outlines (parsed, counted)

After a fresh ranking from the files' bytes (a tree mostly not indexed), `build_packs` has the
tree indexed (`after_ranking`): a large tree in a detached process started after the pack is
written (`start`), as git runs `gc --auto` detached after the command's own work (git-gc(1),
gc.autoDetach, default true), at the lowest CPU priority, so the pack's user waits for none of
it; a small tree from its second fresh ranking, in this process (its first task is often its
only one, and indexing costs more than ranking). `PackOptions.index`, else the `pack_index`
setting (TOME_PACK_INDEX), says "background" (the default), "here" (in this process, every
tree) or "off".

One indexer per tree and cache at a time: the starting process takes an flock on
`<cache>/pack/index-<tree>.lock` and hands the locked descriptor to the indexer, which holds it
to its end (flock(2): the lock belongs to the open file description both share), so `wait`
can wait for it without a race; its report (what it made, its phases' seconds, its CPU
seconds and peak memory) is written beside the lock as JSON, and what went wrong to `.log`. The indexer's input is its spec on
stdin (environment values the secret scanner needs never go on a command line).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import os
import pickle
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.errors import ConfigError
from agent.pack.cache import CountCache, digest
from agent.pack.counting import ExactCounter, Laps, in_child
from agent.pack.render import Format

__all__ = ["INDEX_AHEAD_FROM", "IndexMode", "IndexReport", "IndexSpec", "index_mode", "index_tree", "start", "wait"]

IndexMode = Literal["background", "here", "off"]
INDEX_AHEAD_FROM = 1000  # files: a tree this large is indexed in the background after its first task
_MODES: tuple[IndexMode, ...] = ("background", "here", "off")
_STARTED: list[subprocess.Popen[bytes]] = []  # indexers started here: polled (reaped) on each start


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """What to index and how, as the pack that asks for it counted: the tree, the tokenizer
    (by name: counts are cached under it), the cache, the format of the blocks, the scan's
    size limit and the secret scanner's environment (None: the process's own)."""

    root: str
    tokenizer: str
    cache_dir: str
    format: Format
    max_file_bytes: int
    environ: dict[str, str] | None
    scanner: str  # the secret rules' fingerprint the pack had: an indexer with others stops


@dataclass(frozen=True, slots=True)
class IndexReport:
    """What `index_tree` made: files seen, ranking entries and outlines made, tokens counted
    (what the cache did not have), and each phase's seconds."""

    root: str
    files: int
    entries: int
    outlines: int
    tokens_counted: int
    seconds: dict[str, float]


def index_mode(option: IndexMode | None, environ: Mapping[str, str] | None = None) -> IndexMode:
    """The indexing mode: the option, else TOME_PACK_INDEX, else "background"."""
    value = option or (environ if environ is not None else os.environ).get("TOME_PACK_INDEX") or "background"
    if value not in _MODES:
        raise ConfigError(f"TOME_PACK_INDEX={value!r}: use one of {', '.join(_MODES)}")
    return value  # type: ignore[return-value]


def index_tree(spec: IndexSpec) -> IndexReport:
    """Index every packable file of the tree: ranking entries, outlines (and their counts) and
    full-block counts, kept in the cache by content hash (see the module's docstring)."""
    from agent.pack.build import _scan, _tokenizer_loader, candidates
    from agent.pack.outline import Outliner
    from agent.pack.store import FileStore
    from agent.secrets import SecretScanner

    timings: dict[str, float] = {}
    lap = Laps(timings)
    scanner = SecretScanner(spec.environ)
    if scanner.fingerprint != spec.scanner:
        raise ConfigError("the secret rules changed since the pack that asked for this index")
    name, loader, bulk = _tokenizer_loader(None, spec.tokenizer)
    root, cache_dir = Path(spec.root), Path(spec.cache_dir)
    # The counts first, in a forked child where it can: they take the most memory (the bulk
    # counter, blocks a few MB at a time), which the child gives back when it ends.
    count = functools.partial(_counts, root, cache_dir, name, loader, bulk, scanner, spec.format, spec.max_file_bytes)
    child = in_child(count)
    files_counted, counted = pickle.loads(child() if child is not None else count())
    lap("counts")
    with CountCache(cache_dir, name) as cache:
        counter = ExactCounter(loader, cache, bulk=None)
        files = candidates(_scan(root, cache, spec.max_file_bytes))
        store = FileStore(cache, counter, scanner, spec.root, spec.format)
        lap("scan")
        entries = store.index(files)
        for f in files:
            f.source.release()  # read again by the outlines, which keep only their texts
        lap("entries")
        with Outliner() as outliner:
            outlines = store.outline_all(files, outliner)
        lap("outlines")
    return IndexReport(spec.root, files_counted, entries, outlines, counted + counter.counted_tokens, timings)


def _counts(*args: object) -> bytes:
    """`_count_tree`'s files and tokens counted, pickled (for a forked child)."""
    from agent.pack.build import _count_tree

    counts, counted = _count_tree(*args)  # type: ignore[arg-type]
    return pickle.dumps((len(counts), counted))


def start(spec: IndexSpec) -> bool:
    """Index the tree in a detached process at the lowest priority (see the module's
    docstring); False when one is indexing it already or it could not start."""
    for proc in list(_STARTED):
        if proc.poll() is not None:
            _STARTED.remove(proc)
    lock = _lock_path(spec)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        try:
            with open(lock.with_suffix(".log"), "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "agent.pack.index", str(fd)],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log, pass_fds=(fd,),
                    start_new_session=True, cwd=spec.cache_dir, env=env,
                )
        except OSError:
            return False
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(json.dumps(dataclasses.asdict(spec)).encode())
            proc.stdin.close()
        _STARTED.append(proc)
        return True
    finally:
        os.close(fd)  # the indexer holds the lock through its own copy


def wait(cache_dir: Path | str, root: Path | str | None = None, *, timeout: float = 600.0) -> list[dict[str, object]]:
    """Wait for the indexers of `root` (every tree, when None) under `cache_dir` to end, and
    return their reports (a report is a dict of IndexReport's fields; an indexer that failed
    has none)."""
    pattern = f"index-{_tree_id(str(Path(root).resolve()))}.lock" if root is not None else "index-*.lock"
    deadline = time.monotonic() + timeout
    reports = []
    for lock in sorted((Path(cache_dir) / "pack").glob(pattern)):
        with _locked(lock, deadline):
            with contextlib.suppress(OSError, ValueError):
                reports.append(json.loads(lock.with_suffix(".json").read_text(encoding="utf-8")))
    return reports


@contextlib.contextmanager
def _locked(lock: Path, deadline: float) -> Iterator[None]:
    fd = os.open(lock, os.O_RDWR)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{lock}: the indexer is still running") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _tree_id(root: str) -> str:
    return digest(root).hex()[:16]


def _lock_path(spec: IndexSpec) -> Path:
    directory = Path(spec.cache_dir) / "pack"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"index-{_tree_id(spec.root)}.lock"


def _main(argv: list[str]) -> int:  # pragma: no cover - runs as the detached indexer (tested through start)
    """The detached indexer: the spec on stdin, the inherited locked descriptor in argv."""
    fd = int(argv[1])
    with contextlib.suppress(OSError):
        os.nice(19)
    spec = IndexSpec(**json.loads(sys.stdin.read()))
    out = _lock_path(spec).with_suffix(".json")
    out.unlink(missing_ok=True)  # an earlier run's report is not this one's
    report = dataclasses.asdict(index_tree(spec))
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    report["cpu"] = round(own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime, 3)
    report["peak_mb"] = round(max(own.ru_maxrss, workers.ru_maxrss) / 1024, 1)  # Linux: KiB
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    tmp.write_text(json.dumps(report), encoding="utf-8")
    os.replace(tmp, out)
    os.close(fd)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main(sys.argv))
