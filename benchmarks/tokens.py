"""Token counting speed on a directory of real code.

    nice python benchmarks/tokens.py DIR [--repeat N]

Reads every UTF-8 text file under DIR once, then times each counter over all of them (best of
`--repeat` runs) and prints files, bytes, tokens, seconds, MB/s and tokens/s per counter.
Wall-clock figures move with the load on a shared machine; CPU seconds (all threads of this
process) move much less, so compare counters by MB/CPU-s.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agent.tokens import get_tokenizer

__all__ = ["main"]


def _time(run: Callable[[], list[int]], repeat: int) -> tuple[float, float, int]:
    best, cpu, tokens = float("inf"), float("inf"), 0
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        tokens = sum(run())
        best = min(best, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return best, cpu, tokens


def main(argv: list[str] | None = None) -> int:
    """Time each counter on DIR and print the table."""
    sys.path.insert(0, str(Path(__file__).parent))
    from token_exactness import read_texts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)

    _, texts, _ = read_texts(args.dir)
    size = sum(len(t.encode("utf-8")) for t in texts)
    runs: list[tuple[str, str, bool]] = [
        ("deepseek-v4 (count)", "deepseek-v4", False),
        ("deepseek-v4 (count_batch)", "deepseek-v4", True),
        ("deepseek-v4-reference (count)", "deepseek-v4-reference", False),
        ("deepseek-v4-reference (count_batch)", "deepseek-v4-reference", True),
        ("cl100k_base (count)", "cl100k_base", False),
        ("cl100k_base (count_batch)", "cl100k_base", True),
    ]
    table = Table(title=f"token counters on {args.dir} (best of {args.repeat})")
    for col in ("counter", "files", "bytes", "tokens", "seconds", "MB/s", "tokens/s", "CPU s", "MB/CPU-s"):
        table.add_column(col, justify="left" if col == "counter" else "right")
    for label, name, batch in runs:
        tok = get_tokenizer(name)  # loaded before the clock starts
        run = (lambda tok=tok: tok.count_batch(texts)) if batch else (lambda tok=tok: [tok.count(t) for t in texts])
        seconds, cpu, tokens = _time(run, args.repeat)
        table.add_row(
            label, f"{len(texts):,}", f"{size:,}", f"{tokens:,}", f"{seconds:.2f}",
            f"{size / seconds / 1e6:.1f}", f"{tokens / seconds / 1e6:.2f}M", f"{cpu:.2f}", f"{size / cpu / 1e6:.1f}",
        )
    Console(width=160).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
