"""Loop benchmark: per-step overhead of the loop (model and tools excluded) and the prefix-cache
hit share of every request, on a real repository, against the scripted server over HTTP.

    python benchmarks/loop.py [REPO] [--steps 30]

REPO defaults to this checkout (copied to a temporary git repo first). The scripted model views a
different file each step, then submits. Per step: wall time between the end of the previous
step's tools and the start of this step's request (rendering the history, counting it, checking
limits, writing the trajectory), plus the time between the response and the first tool call.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.records import ModelCalled, Task, ToolFinished, ToolStarted  # noqa: E402
from agent.settings import SafetySettings, Settings  # noqa: E402
from agent.run import RunSpec, finish_run, start_run  # noqa: E402
from agent.testing.server import ScriptedServer, ScriptedToolCall, Turn  # noqa: E402


def copy_repo(src: Path, dest: Path) -> Path:
    """A committed copy of the tracked files of `src` (or every file when it is not a git repo)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=src, capture_output=True, text=True)
    names = [n for n in files.stdout.split("\0") if n] if files.returncode == 0 else None
    if names is None:
        shutil.copytree(src, dest)
    else:
        for name in names:
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if (src / name).is_file():
                shutil.copy2(src / name, target)
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "base"]):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
    return dest


def bench_settings(server: ScriptedServer, work: Path, *, steps: int) -> Settings:
    """Think High against `server`, state and caches under `work`, no sandbox, no approvals."""
    return Settings(base_url=server.base_url, api_key="bench", state_dir=work / "state", cache_dir=work / "cache",
                    mode="high", max_steps=steps + 1, safety=SafetySettings(sandbox="off", approval="deny"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", nargs="?", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tome-loop-bench-"))
    try:
        repo = copy_repo(args.repo.resolve(), work / "repo")
        files = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*.py") if ".git" not in p.parts)
        turns = [Turn(content="Goal: read.\nFiles: many.\nVerify: none." if i == 0 else None,
                      tool_calls=[ScriptedToolCall(name="view", arguments={"path": files[i % len(files)]})])
                 for i in range(args.steps - 1)]
        # no test command is known, so the first submit is answered with a reminder to test
        turns += [Turn(tool_calls=[ScriptedToolCall(name="submit", arguments={"summary": "done"})])] * 2
        with ScriptedServer(turns) as server:
            settings = bench_settings(server, work, steps=args.steps)
            run = start_run(RunSpec(task=Task(statement="read the code"), settings=settings, repo=repo))
            result = finish_run(run, run.agent.run())
            usages = [r.usage for r in server.chat_requests if r.usage]
        events = run.trajectory.events
    finally:
        shutil.rmtree(work, ignore_errors=True)

    overheads: list[float] = []
    last_tool_end: float | None = None
    model_t: float | None = None
    for e in events:
        if isinstance(e, ModelCalled):
            request_start = e.t - e.response.elapsed
            if last_tool_end is not None:
                overheads.append(request_start - last_tool_end)
            model_t = e.t
        elif isinstance(e, ToolStarted) and model_t is not None:
            overheads[-1:] = [overheads[-1] + (e.t - model_t)] if overheads else []
            model_t = None
        elif isinstance(e, ToolFinished):
            last_tool_end = e.t

    console = Console()
    table = Table(title=f"loop overhead per step ({len(overheads)} steps, pack {run.trajectory.started.pack_tokens:,} tokens)")
    for col in ("median ms", "p90 ms", "max ms", "first ms", "last ms"):
        table.add_column(col, justify="right")
    ms = [o * 1000 for o in overheads]
    if ms:
        table.add_row(*(f"{v:.1f}" for v in (statistics.median(ms), sorted(ms)[int(0.9 * (len(ms) - 1))],
                                             max(ms), ms[0], ms[-1])))
    console.print(table)

    hits = Table(title="prefix-cache hits per request (scripted server, 64-token blocks)")
    for col in ("request", "prompt tokens", "cache hit tokens", "hit % of prompt", "hit % of previous prompt"):
        hits.add_column(col, justify="right")
    shares, reuse = [], []
    for i, u in enumerate(usages, 1):
        share = u["prompt_cache_hit_tokens"] / u["prompt_tokens"]
        prev = usages[i - 2]["prompt_tokens"] if i > 1 else 0
        kept = u["prompt_cache_hit_tokens"] / prev if prev else 0.0
        if i > 1:
            shares.append(share)
            reuse.append(kept)
        hits.add_row(str(i), f"{u['prompt_tokens']:,}", f"{u['prompt_cache_hit_tokens']:,}", f"{share:.2%}",
                     f"{kept:.2%}" if prev else "-")
    console.print(hits)
    console.print(
        f"requests after the first: hit share of the prompt min {min(shares):.2%}, median "
        f"{statistics.median(shares):.2%} (a step that adds k new tokens caps it at 1 - k/prompt); "
        f"share of the previous prompt served from cache min {min(reuse):.2%}. "
        f"Run {result.status}, {result.steps} steps, cache hit overall {result.cache_hit_ratio:.1%}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
