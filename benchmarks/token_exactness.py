"""Prove the fast DeepSeek-V4 counter exact: count every text file with it and with the reference.

    python benchmarks/token_exactness.py DIR [DIR...] [--ids N] [--seed S]

Every UTF-8 text file under each DIR (files that do not decode, or hold NUL bytes, are skipped
and counted as such) is counted by each fast counter (`deepseek-v4`, and `deepseek-v4-bulk` where
fastokens is installed) and by `deepseek-v4-reference`; every file whose counts differ is listed
with both counts. For a random sample of `--ids` files per DIR (default
all) the token id sequences are compared too, and the first differing position is shown.
Exit status 1 when any file differs.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agent.tokens import Tokenizer, bulk_engine, get_tokenizer

__all__ = ["main", "read_texts"]


def read_texts(root: Path) -> tuple[list[Path], list[str], int]:
    """Every UTF-8 text file under `root`, sorted by path; also the number of files skipped."""
    paths: list[Path] = []
    texts: list[str] = []
    skipped = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            skipped += 1
            continue
        if "\x00" in text:
            skipped += 1
            continue
        paths.append(path)
        texts.append(text)
    return paths, texts, skipped


def _batch_ids(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of `texts` through the counter's own engine."""
    if hasattr(tok, "encoding"):  # the tiktoken fold
        return tok.encoding.encode_batch(texts, allowed_special="all")
    return [list(e.ids) for e in tok.tokenizer.encode_batch(texts)]  # type: ignore[attr-defined]


def _first_difference(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; print differences and a summary table; 1 if anything differs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--ids", type=int, default=None, help="files per DIR whose ids are compared (default all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    console = Console(width=200)
    ref = get_tokenizer("deepseek-v4-reference")
    ref_tok = ref.tokenizer  # type: ignore[attr-defined]
    engines = [get_tokenizer(name) for name in ("deepseek-v4", bulk_engine("deepseek-v4")) if name]
    summary = Table(title="fast DeepSeek-V4 counters vs deepseek-v4-reference (HF tokenizers)")
    for col in ("dir", "counter", "files", "skipped", "equal", "different", "tokens (ref)", "ids compared", "ids different"):
        summary.add_column(col, justify="left" if col in ("dir", "counter") else "right")
    any_diff = False
    for root in args.dirs:
        paths, texts, skipped = read_texts(root)
        ref_counts = ref.count_batch(texts)
        picks = list(range(len(texts)))
        if args.ids is not None and args.ids < len(picks):
            picks = sorted(random.Random(args.seed).sample(picks, args.ids))
        sample = [texts[i] for i in picks]
        ref_ids = [e.ids for e in ref_tok.encode_batch(sample, add_special_tokens=False)]
        for fast in engines:
            fast_counts = fast.count_batch(texts)
            diffs = [(p, f, r) for p, f, r in zip(paths, fast_counts, ref_counts) if f != r]
            for path, f, r in diffs:
                console.print(f"[red]count differs[/] {fast.name} {path}: fast {f}, reference {r} ({f - r:+d})")
            id_diffs = 0
            for i, a, b in zip(picks, _batch_ids(fast, sample), ref_ids):
                if a != b:
                    id_diffs += 1
                    at = _first_difference(a, b)
                    console.print(
                        f"[red]ids differ[/] {fast.name} {paths[i]} at token {at}: "
                        f"fast {a[at:at + 5]}, reference {b[at:at + 5]}"
                    )
            any_diff = any_diff or bool(diffs) or bool(id_diffs)
            summary.add_row(
                str(root), fast.name, f"{len(texts):,}", f"{skipped:,}", f"{len(texts) - len(diffs):,}",
                f"{len(diffs):,}", f"{sum(ref_counts):,}", f"{len(picks):,}", f"{id_diffs:,}",
            )
    console.print(summary)
    return 1 if any_diff else 0


if __name__ == "__main__":
    sys.exit(main())
