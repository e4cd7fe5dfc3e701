"""`tome pack`: pack a repository, show where the tokens went, write the document."""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

from agent.errors import ConfigError
from agent.records import Pack

__all__ = ["configure", "manifest", "parse_budget", "run"]

_BUDGET = re.compile(r"^\s*(\d+(?:[._]\d+)*(?:\.\d+)?)\s*([kKmM]?)\s*$")


def parse_budget(text: str) -> int:
    """`1m`, `200k`, `150_000` or `1.5M` as a token count."""
    m = _BUDGET.match(text)
    if not m:
        raise ConfigError(f"budget {text!r}: use a number of tokens like 200k, 1m or 150000")
    value = float(m.group(1).replace("_", ""))
    value *= {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2).lower()]
    if value < 1:
        raise ConfigError(f"budget {text!r} must be at least one token")
    return int(value)


def _budget_arg(text: str) -> int:
    try:
        return parse_budget(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    """Add pack's options."""
    parser.add_argument("path", nargs="?", default=".", help="repository or directory (default: .)")
    task = parser.add_mutually_exclusive_group()
    task.add_argument("--task", help="task statement to rank files for")
    task.add_argument("--task-file", dest="task_file", type=Path, help="read the task statement from a file")
    parser.add_argument("--budget", type=_budget_arg, help="token budget: 1m, 200k or N (default: window less reserve)")
    parser.add_argument("--model", help="model name; picks the tokenizer and default budget")
    parser.add_argument("-o", "--output", type=Path, help="write the pack document (and relevant-files block) here")
    parser.add_argument("--format", choices=["xml", "markdown"], default="xml", help="document format")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")
    parser.add_argument("--count", action="store_true",
                        help="also count the whole repository exactly, every packable file as packed in full")
    parser.add_argument("--max-file-bytes", dest="max_file_bytes", type=int, default=1_000_000,
                        help="skip files larger than this (default 1,000,000)")


def manifest(pack: Pack, output: Path | None = None) -> dict[str, object]:
    """The pack's manifest: everything but the document text."""
    data = pack.model_dump(exclude={"document", "relevant"})
    data["output"] = str(output) if output else None
    return data


def folder_tokens(pack: Pack, depth: int = 2) -> dict[str, dict[str, int]]:
    """Tokens and file counts per folder (to `depth`), by level."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for item in pack.items:
        parts = item.path.split("/")[:-1][:depth]
        for i in range(len(parts) + 1):
            key = "/".join(parts[:i]) or "."
            row = out[key]
            row["tokens"] += item.tokens
            row[item.level] += 1
    return out


def _show(pack: Pack, output: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.tree import Tree

    console = Console(stderr=False)
    folders = folder_tokens(pack)
    root = Tree(f"[bold]{pack.repo}[/] {folders['.']['tokens']:,} tokens in files")
    nodes = {".": root}
    for key in sorted(k for k in folders if k != "."):
        row = folders[key]
        if row["tokens"] == 0 and "/" in key:
            continue
        parent = nodes.get(key.rsplit("/", 1)[0] if "/" in key else ".")
        if parent is None:
            continue
        label = (f"{key.rsplit('/', 1)[-1]}/  [cyan]{row['tokens']:,}[/] tokens  "
                 f"{row['full']} full, {row['outline']} outline, {row['path']} path")
        nodes[key] = parent.add(label)
    console.print(root)

    t = pack.totals
    table = Table(title=f"tome pack: {pack.repo} @ {(pack.commit or 'no commit')[:12]}  ({pack.tokenizer})")
    table.add_column("")
    table.add_column("files", justify="right")
    table.add_column("tokens", justify="right")
    table.add_row("full text", f"{t.full:,}", f"{t.full_tokens:,}")
    table.add_row("outline", f"{t.outline:,}", f"{t.outline_tokens:,}")
    table.add_row("path only (tree)", f"{t.path_only:,}", f"{t.tree_tokens:,} (tree, {pack.tree_level})")
    reasons: dict[str, int] = defaultdict(int)
    for s in pack.skipped:
        reasons[s.reason.split(":")[0]] += 1
    for reason, n in sorted(reasons.items()):
        table.add_row(f"skipped: {reason}", f"{n:,}", "")
    table.add_row("secrets", f"{t.secrets_excluded} excluded, {t.secrets_redacted} redacted", "")
    table.add_row("[bold]pack[/]", f"{t.files:,}", f"[bold]{t.tokens:,}[/] / {pack.budget:,}")
    if pack.relevant:
        table.add_row("relevant-files block", "", f"{pack.relevant_tokens:,}")
    if t.repo_tokens is not None:
        table.add_row("whole repository", "", f"{t.repo_tokens:,}")
    console.print(table)
    for f in pack.secrets:
        console.print(f"[yellow]secret[/] {f.action}: {f.path}:{f.line} ({f.rule})")
    secs = pack.timings.get("total", 0.0)
    where = f"written to {output}" if output else "not written (use -o FILE)"
    console.print(f"{secs:.2f} s; pack {where}")


def run(args: argparse.Namespace) -> int:
    """Build the pack, write it, print the summary or the JSON manifest."""
    from agent.cli import settings_from_args
    from agent.pack import build_pack

    root = Path(args.path)
    if not root.exists():
        raise ConfigError(f"{root}: no such directory")
    task = args.task
    if args.task_file is not None:
        try:
            task = args.task_file.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{args.task_file}: cannot read the task file: {e.strerror}") from e
    settings = settings_from_args(args, root if root.is_dir() else None)

    if args.json or not sys.stderr.isatty():
        pack = build_pack(root, task=task, budget=args.budget, model=args.model, format=args.format,
                          settings=settings, max_file_bytes=args.max_file_bytes)
    else:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        # Refreshed by hand, not by rich's thread: with no other thread alive the packer may fork.
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), transient=True, auto_refresh=False) as bar:
            ids: dict[str, object] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in ids:
                    ids[stage] = bar.add_task({"scan": "scanning", "count": "counting"}.get(stage, stage), total=total)
                bar.update(ids[stage], completed=done, total=total)  # type: ignore[arg-type]
                bar.refresh()

            pack = build_pack(root, task=task, budget=args.budget, model=args.model, format=args.format,
                              settings=settings, max_file_bytes=args.max_file_bytes, progress=progress)
    if args.count and pack.totals.repo_tokens is None:  # known already when the whole repo fit
        import time

        from agent.pack import count_repo

        start = time.perf_counter()
        counts = count_repo(root, model=args.model, format=args.format, settings=settings,
                            max_file_bytes=args.max_file_bytes)
        took = round(time.perf_counter() - start, 4)
        totals = pack.totals.model_copy(update={"repo_tokens": sum(counts.values())})
        timings = {**pack.timings, "whole_count": took, "total": round(pack.timings.get("total", 0.0) + took, 4)}
        pack = pack.model_copy(update={"totals": totals, "timings": timings})
    if args.output is not None:
        try:
            args.output.write_text(pack.document + pack.relevant, encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{args.output}: cannot write: {e.strerror}") from e
    if args.json:
        from pydantic_core import to_json

        # UTF-8 JSON, indented by pydantic-core: the stdlib indents in pure Python (0.085 s
        # for django's manifest, a third of what the warm pack itself takes).
        sys.stdout.flush()
        sys.stdout.buffer.write(to_json(manifest(pack, args.output), indent=1) + b"\n")
        sys.stdout.flush()
    else:
        _show(pack, args.output)
    return 0
