"""Exact token counts through the persistent cache (`ExactCounter`), and the process helpers a
cold pack uses: a forked child for work that holds the GIL, the collector paused.

The tokenizer loads only on the first cache miss; `count_repo` on a large tree it has not seen
loads the bulk counter (fastokens, ~20x faster; see `agent.tokens`) on a thread while it
scans, since that load holds no GIL; a pack counts too little for the slower load to pay.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from agent.pack.cache import CountCache, digest

if TYPE_CHECKING:
    from concurrent.futures import Future

    from agent.pack.scan import SourceFile
    from agent.tokens import Tokenizer

__all__ = ["BULK_BYTES", "BULK_FILES", "Ahead", "ExactCounter", "Laps", "chunks", "collector_paused", "count_parts", "in_child"]

# The bulk counter (`ExactCounter.expect`) loads in ~1.3 s and then counts ~20x faster: it pays from
# about 8 MB of misses on. `count_repo` also starts it before scanning a never-seen tree of
# BULK_FILES or more. A pack counts only what can make its cut (~5 MB at 1M tokens): tried
# there, the load outlasted scan and ranking and the cold pack got no faster.
BULK_BYTES = 8_000_000
BULK_FILES = 2_000


class Laps:
    """Stage timings: each call records the seconds since the previous one under a name."""

    def __init__(self, into: dict[str, float]) -> None:
        self.timings = into
        self._clock = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._clock, 4)
        self._clock = now


_T = TypeVar("_T")


def count_parts(
    waiting: list[tuple[list[SourceFile], list[str], list[bytes]]], counter: ExactCounter, counts: dict[str, int]
) -> None:
    """Count the waiting blocks into `counts` by path, and empty `waiting`."""
    for files, texts, hashes in waiting:
        counts.update(zip((sf.path for sf in files), counter.count(texts, hashes)))
    waiting.clear()


def chunks(items: Sequence[_T], limit: int = 2_000_000, size: Callable[[_T], int] = len) -> list[list[_T]]:
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


class ExactCounter:
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
        """Exact counts of `texts` (hashed as `hashes` when given), the misses counted now."""
        hs = list(hashes) if hashes is not None else [digest(t) for t in texts]
        known = self.cache.lookup(hs)
        missing = [i for i, h in enumerate(hs) if h not in known]
        if missing:
            counts = []
            for part in chunks([texts[i] for i in missing]):
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



@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a pack is built: the build makes few cycles,
    and each full collection would walk every file's bytes and record again."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _forkable() -> bool:
    """Whether forking a child to work in is safe and worth it: Linux, no other threads alive,
    two cores or more."""
    return sys.platform.startswith("linux") and threading.active_count() == 1 and (os.cpu_count() or 1) >= 2


def _fork(body: Callable[[], None]) -> int:
    """Fork a child that runs `body` and exits (0 when it returned); its pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child leaves through os._exit
        code = 1
        try:
            gc.freeze()  # collections would walk (and copy) the whole inherited heap
            body()
            code = 0
        finally:
            os._exit(code)
    return pid


def in_child(work: Callable[..., bytes]) -> Callable[..., bytes] | None:
    """Start `work` in a forked child; the returned function waits for its bytes (and, unless
    told `fallback=False`, runs `work` here if the child failed). None where forking is unsafe:
    not Linux, or other threads alive."""
    if not _forkable():
        return None
    read_end, write_end = os.pipe()

    def child() -> None:
        os.close(read_end)
        with os.fdopen(write_end, "wb") as out:
            out.write(work())

    pid = _fork(child)
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


class Ahead:
    """A child forked before the work that will need it: it runs `warm` (imports, say) while
    this process goes on, then one job sent to it (`send`), or none (`close`). A job is a
    picklable callable returning bytes, sent whole without waiting where it fits the pipe
    (F_SETPIPE_SZ, fcntl(2)); where it fails in the child it runs here. `start` gives None
    where forking is unsafe (as `in_child`)."""

    PIPE_BYTES = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size

    def __init__(self, pid: int, jobs: int, results: int) -> None:
        self._pid, self._jobs, self._results = pid, jobs, results

    @classmethod
    def start(cls, warm: Callable[[], object]) -> Ahead | None:
        """Fork the child and have it run `warm`."""
        if not _forkable():
            return None
        import fcntl

        job_read, job_write = os.pipe()
        result_read, result_write = os.pipe()
        with contextlib.suppress(OSError):
            fcntl.fcntl(job_write, fcntl.F_SETPIPE_SZ, cls.PIPE_BYTES)

        def child() -> None:
            os.close(job_write)
            os.close(result_read)
            warm()
            with os.fdopen(job_read, "rb") as inp:
                data = inp.read()
            if data:
                import pickle

                out = pickle.loads(data)()
                with os.fdopen(result_write, "wb") as res:
                    res.write(out)

        pid = _fork(child)
        os.close(job_read)
        os.close(result_write)
        return cls(pid, job_write, result_read)

    def send(self, job: Callable[[], bytes]) -> Callable[[], bytes]:
        """Send the job; the returned function waits for its bytes (run here where the child
        failed)."""
        import pickle

        jobs, self._jobs = self._jobs, -1
        try:
            with os.fdopen(jobs, "wb") as out:
                out.write(pickle.dumps(job))
        except BrokenPipeError:
            pass  # the child is gone: the job runs here

        def wait() -> bytes:
            results, self._results = self._results, -1
            with os.fdopen(results, "rb") as inp:
                data = inp.read()
            _, status = os.waitpid(self._pid, 0)
            self._pid = 0
            return data if os.waitstatus_to_exitcode(status) == 0 and data else job()

        return wait

    def close(self) -> None:
        """No job after all (or one not waited for): the child is stopped and reaped."""
        for fd in (self._jobs, self._results):
            if fd >= 0:
                os.close(fd)
        self._jobs = self._results = -1
        if self._pid:
            os.kill(self._pid, signal.SIGKILL)
            os.waitpid(self._pid, 0)
            self._pid = 0
