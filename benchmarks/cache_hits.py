"""Prefix-cache benchmark: the cache-hit share of every request of a 30-step run with a large pack,
and of a second task's first request on the same commit, on the scripted server's model of
DeepSeek's cache units (api-docs.deepseek.com/guides/kv_cache; agent.testing.server.PrefixCache).

    python benchmarks/cache_hits.py --repo PATH [--work DIR] [--steps 30] [--cache-interval 4096]

--repo is copied (its tracked files) into a fresh git repository under --work (a temporary
directory by default, removed afterwards). The scripted model views a different file each step
in Think High, then submits; a second task on the same commit then makes one request. The
figures are the server's usage fields, the ones tome reports and bills against.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.records import Task  # noqa: E402
from agent.run import RunSpec, finish_run, start_run  # noqa: E402
from agent.testing.server import DEFAULT_CACHE_INTERVAL, ScriptedServer, ScriptedToolCall, Turn  # noqa: E402
from loop import bench_settings, copy_repo  # noqa: E402  (benchmarks/loop.py)


def _turns(files: list[str], steps: int) -> list[Turn]:
    views = [Turn(content="Goal: read.\nFiles: many.\nVerify: none." if i == 0 else None,
                  reasoning_content=f"Step {i}: the next file to read is {files[i % len(files)]}.",
                  tool_calls=[ScriptedToolCall(name="view", arguments={"path": files[i % len(files)]})])
             for i in range(steps - 1)]
    # No test command is known, so the first submit is answered with a reminder to test.
    submit = Turn(tool_calls=[ScriptedToolCall(name="submit", arguments={"summary": "done"})])
    return [*views, submit, submit, Turn(content="the second task's first answer")]


def _share(usage: dict) -> float:
    return usage["prompt_cache_hit_tokens"] / usage["prompt_tokens"] if usage["prompt_tokens"] else 0.0


def main() -> int:
    """Run both measurements and print the per-request table and the two figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help="repository to pack (its tracked files are copied)")
    parser.add_argument("--work", type=Path, default=None, help="working directory (default: a temporary one)")
    parser.add_argument("--steps", type=int, default=30, help="model calls of the first run")
    parser.add_argument("--cache-interval", type=int, default=DEFAULT_CACHE_INTERVAL,
                        help="tokens between the cache units cut inside a long prompt (undocumented)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="tome-cache-bench-"))
    try:
        repo = copy_repo(args.repo.resolve(), work / "repo")
        files = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*.py") if ".git" not in p.parts)
        with ScriptedServer(_turns(files, args.steps), cache_interval=args.cache_interval) as server:
            settings = bench_settings(server, work, steps=args.steps)
            run = start_run(RunSpec(task=Task(statement="read the code"), settings=settings, repo=repo))
            result = finish_run(run, run.agent.run())
            first_run = [r.usage for r in server.chat_requests if r.usage]
            second = start_run(RunSpec(task=Task(statement="another task entirely, on the same commit"),
                                       settings=settings.model_copy(update={"max_steps": 1}), repo=repo))
            finish_run(second, second.agent.run())
            second_first = [r.usage for r in server.chat_requests if r.usage][len(first_run)]
            pack_tokens = run.trajectory.started.pack_tokens
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    console = Console()
    table = Table(title=f"cache hits per request (pack {pack_tokens:,} tokens, cache units every "
                        f"{args.cache_interval:,} tokens and at input/output ends)")
    for col in ("request", "prompt tokens", "cache hit tokens", "hit share"):
        table.add_column(col, justify="right")
    for i, u in enumerate(first_run, 1):
        table.add_row(str(i), f"{u['prompt_tokens']:,}", f"{u['prompt_cache_hit_tokens']:,}", f"{_share(u):.2%}")
    console.print(table)
    later = [_share(u) for u in first_run[1:]]
    total_hit = sum(u["prompt_cache_hit_tokens"] for u in first_run)
    total = sum(u["prompt_tokens"] for u in first_run)
    console.print(
        f"first run ({result.status}, {len(first_run)} requests): requests after the first hit "
        f"min {min(later):.2%}, median {statistics.median(later):.2%}; whole run {total_hit / total:.2%} "
        f"of prompt tokens.\nsecond task on the same commit, first request: {_share(second_first):.2%} "
        f"({second_first['prompt_cache_hit_tokens']:,} of {second_first['prompt_tokens']:,} prompt tokens)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
