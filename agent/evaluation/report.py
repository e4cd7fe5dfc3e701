"""Outputs: SWE-bench predictions JSONL, the report JSON with SWE-bench's lists, and a rich table."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agent.records import EvalReport, Prediction, Score, Usage

__all__ = [
    "build_report",
    "group_rows",
    "print_report",
    "report_table",
    "write_predictions",
    "write_report",
]


def build_report(scores: Sequence[Score], *, run_id: str, model: str, total: int | None = None,
                 wall_time: float = 0.0) -> EvalReport:
    """SWE-bench's lists and counts from per-instance scores (empty patches are also scored)."""
    resolved = [s.instance_id for s in scores if s.status == "resolved"]
    unresolved = [s.instance_id for s in scores if s.status == "unresolved"]
    errors = [s.instance_id for s in scores if s.status == "error"]
    empty = [s.instance_id for s in scores if s.empty_patch]
    return EvalReport(
        run_id=run_id, model=model, total_instances=len(scores) if total is None else total,
        submitted_instances=len(scores), submitted_ids=sorted(s.instance_id for s in scores),
        completed_instances=len(resolved) + len(unresolved), completed_ids=sorted(resolved + unresolved),
        resolved_instances=len(resolved),
        unresolved_instances=len(unresolved), empty_patch_instances=len(empty),
        error_instances=len(errors), resolved_ids=sorted(resolved), unresolved_ids=sorted(unresolved),
        error_ids=sorted(errors), empty_patch_ids=sorted(empty), wall_time=wall_time,
        excluded_tests={s.instance_id: s.excluded for s in sorted(scores, key=lambda s: s.instance_id)
                        if s.excluded},
        scores=list(scores),
    )


def write_predictions(path: Path, predictions: Iterable[Prediction]) -> None:
    """SWE-bench predictions JSONL: instance_id, model_name_or_path, model_patch (one a line)."""
    with path.open("w", encoding="utf-8") as fh:
        for p in predictions:
            fh.write(json.dumps({"instance_id": p.instance_id, "model_name_or_path": p.model_name_or_path,
                                 "model_patch": p.model_patch}) + "\n")


def write_report(path: Path, report: EvalReport) -> None:
    """The report as JSON (SWE-bench's keys first, then tome's per-instance scores)."""
    path.write_text(report.model_dump_json(indent=1), encoding="utf-8")


def _usage(scores: Sequence[Score]) -> Usage:
    total = Usage()
    for s in scores:
        total = total + s.usage
    return total


def group_rows(scores: Sequence[Score]) -> list[tuple[str, str, list[Score]]]:
    """(section, label, scores) rows: overall, then by repository, difficulty label and mode."""
    keys: list[tuple[str, Callable[[Score], str]]] = [
        ("repository", lambda s: s.repo or "?"),
        ("difficulty", lambda s: s.difficulty or "unlabelled"),
        ("mode", lambda s: s.mode or "-"),
    ]
    rows: list[tuple[str, str, list[Score]]] = [("all", "all", list(scores))]
    for section, key in keys:
        groups: dict[str, list[Score]] = {}
        for s in scores:
            groups.setdefault(key(s), []).append(s)
        rows += [(section, label, groups[label]) for label in sorted(groups)]
    return rows


def report_table(report: EvalReport, *, title: str | None = None) -> Table:
    """Resolved % overall, by repository, by difficulty and by mode, with cost, tokens, cache hits, time."""
    table = Table(title=title or f"tome eval {report.run_id} ({report.model})")
    for col, just in [("group", "left"), ("", "left"), ("n", "right"), ("resolved", "right"),
                      ("%", "right"), ("errors", "right"), ("cost $", "right"), ("tokens", "right"),
                      ("cache hit", "right"), ("solve s", "right"), ("setup s", "right"), ("test s", "right")]:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    last = None
    for section, label, group in group_rows(report.scores):
        if section != last and last is not None:
            table.add_section()
        last = section
        n = len(group)
        ok = sum(s.status == "resolved" for s in group)
        usage = _usage(group)
        prompt = usage.cache_hit_tokens + usage.cache_miss_tokens
        hit = f"{100 * usage.cache_hit_tokens / prompt:.0f}%" if prompt else "-"
        tokens = usage.prompt_tokens + usage.completion_tokens
        table.add_row(
            section, label, str(n), str(ok), f"{100 * ok / n:.1f}" if n else "-",
            str(sum(s.status == "error" for s in group)), f"{sum(s.cost for s in group):.2f}",
            f"{tokens:,}", hit, f"{sum(s.solve_time for s in group):.0f}",
            f"{sum(s.setup_time for s in group):.0f}", f"{sum(s.test_time for s in group):.0f}",
        )
    return table


def print_report(report: EvalReport, console: Console | None = None) -> None:
    """Print the table and the ids of errors (with their first message) to the console."""
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    console.print(report_table(report))
    for s in report.scores:
        if s.status == "error":
            console.print(f"[red]error[/] {s.instance_id}: {s.error}", markup=True, highlight=False)
        elif s.note:
            console.print(f"[yellow]note[/] {s.instance_id}: {s.note}", markup=True, highlight=False)
    for iid, tests in report.excluded_tests.items():
        reasons = sorted(set(tests.values()))
        console.print(f"excluded {iid}: {len(tests)} known failure(s) ({'; '.join(reasons)}): "
                      f"{', '.join(tests)}", highlight=False)
    console.print(f"resolved {report.resolved_instances}/{report.total_instances}, "
                  f"errors {report.error_instances}, wall {report.wall_time:.0f}s")

