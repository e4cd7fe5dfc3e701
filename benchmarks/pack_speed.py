"""Packing speed on large real repositories, beside repomix, gitingest and files-to-prompt.

Each measurement is a fresh process, timed with os.wait4: wall seconds, CPU seconds (user +
system, all threads and child processes) and peak resident memory. "cold" starts from an empty
count cache (and, for repomix, an empty cache directory); "warm" repeats the same command.
tome's rows are the Python API in a fresh process (imports included; the tokenizer loads only
when a count misses the cache) with `build_pack`'s own time in brackets, and the `tome pack`
command itself. Run it on a quiet machine: other work on the cores shows up in every figure.
The whole-repo count is `count_repo`, which on a large tree it has not seen loads the bulk
counter (fastokens, where installed) on a thread while it scans; both counters are exact
(`benchmarks/token_exactness.py`). After the timings, the last `tome pack` file (at
`--budget 1048576`) is counted whole with the reference tokenizer: its real count must equal the
pack's reported total and stay within the budget ("exact" column), the relevant-files block
included. "new task" is a pack for another task on the tree and cache the warm row left.

After each cold pack the tree is indexed for the tasks to come by a detached low-priority
process (agent/pack/index.py); the benchmark waits for it before the warm run, so no row runs
beside it, and its own cost is the "index (background, after cold)" row: its wall seconds,
CPU seconds and peak memory as it reports them.

    python benchmarks/pack_speed.py --repo ../scratch/pack/identity/django

Setup used here (nothing of it is committed): django from `pack_identity.py`'s checkout; repomix
from npm (`--tools`/npm) and gitingest / files-to-prompt from PyPI in a separate venv
(`--tools`/venv-others), `--tools` defaulting to ../scratch/pack beside the checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
TOOLS = HERE.parent / "scratch" / "pack"  # --tools: npm/ (repomix) and venv-others/ (gitingest, files-to-prompt)
TASK = (
    "QuerySet.bulk_create() crashes on mixed case columns in unique_fields/update_fields: "
    "the ON CONFLICT clause uses the field name instead of db_column. See "
    "django/db/models/sql/compiler.py and django/db/backends/postgresql/operations.py."
)
# "new task, known tree": after the warm run, another task on the same unchanged tree and cache
# (one per repeat, so none is a repeat of an earlier one); it indexes the tree for ranking
# (agent/pack/store.py), and "third task" after it ranks from that index.
NEW_TASKS = [
    "QuerySet.update_or_create() ignores db_default when it creates the row; see "
    "django/db/models/query.py and the Field.db_default handling in django/db/models/fields/__init__.py.",
    "The admin changelist crashes with a TypeError when list_display names a property decorated "
    "with admin.display and the ordering uses a related field lookup.",
    "ManifestStaticFilesStorage raises ValueError for a CSS url() that points at a data: URI "
    "inside a @font-face rule; collectstatic stops.",
]

PACK_SNIPPET = """
import json, sys, time
from pathlib import Path
t = time.perf_counter()
from agent.pack import build_pack, count_repo
loaded = time.perf_counter() - t
t = time.perf_counter()
if sys.argv[1] == "pack":
    p = build_pack(sys.argv[2], task=sys.argv[5], budget=1_000_000, model=sys.argv[3], cache_dir=Path(sys.argv[4]), environ={})
    Path(sys.argv[6]).write_text(p.document + p.relevant)
    out = {"tokens": p.totals.tokens, "full": p.totals.full, "outline": p.totals.outline, "timings": p.timings}
else:
    counts = count_repo(sys.argv[2], model=sys.argv[3], cache_dir=Path(sys.argv[4]), environ={})
    out = {"tokens": sum(counts.values()), "files": len(counts)}
out["build"] = time.perf_counter() - t
out["load"] = loaded
print(json.dumps(out))
"""


def measure_wait4(cmd: list[str], *, cwd: Path | None = None, env: dict | None = None) -> dict:
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=so, stderr=se)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        so.seek(0)
        se.seek(0)
        return {
            "wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024,
            "rc": proc.returncode, "stdout": so.read().decode(errors="replace"),
            "stderr": se.read().decode(errors="replace")[-800:], "load": load,
        }


def tome(kind: str, repo: Path, cache: Path, model: str, out: Path, task: str = TASK) -> dict:
    r = measure_wait4([sys.executable, "-c", PACK_SNIPPET, kind, str(repo), model, str(cache), task, str(out)], cwd=HERE)
    if r["rc"] != 0:
        raise RuntimeError(r["stderr"])
    r["info"] = json.loads(r["stdout"].strip().splitlines()[-1])
    return r


def cli_rows(repo: Path, work: Path, model: str, repeat: int) -> list[tuple[str, str, str, dict]]:
    """`tome pack` as a user runs it (rich progress off: output goes to files)."""
    cmd = [sys.executable, "-m", "agent.cli", "pack", str(repo), "--task", TASK, "--budget", "1048576",
           "--model", model, "-o", str(work / "tome-cli.xml"), "--json"]
    env = {**os.environ, "TOME_CACHE_DIR": str(work / "cache-cli"), "NO_COLOR": "1"}
    colds, warms = [], []
    for _ in range(repeat):
        index_wait(work / "cache-cli")
        shutil.rmtree(work / "cache-cli", ignore_errors=True)
        for runs in (colds, warms):
            r = measure_wait4(cmd, cwd=HERE, env=env)
            (work / "tome-cli.json").write_text(r["stdout"])
            runs.append(r)
            index_wait(work / "cache-cli")  # the cold run's indexer: not beside the warm run
    return [(repo.name, "tome pack (command)", "cold", _summary(colds)), (repo.name, "tome pack (command)", "warm", _summary(warms))]


def exact(document: Path, manifest: Path, model: str) -> str:
    """Count the written pack whole with the model's reference tokenizer (where there is one:
    `deepseek-v4-reference`, HF tokenizers) and compare with its manifest."""
    sys.path.insert(0, str(HERE))
    from agent.profiles import get_profile
    from agent.tokens import available_tokenizers, get_tokenizer

    info = json.loads(manifest.read_text())
    # The file holds the document, then the relevant-files block (counted on its own).
    reported = info["totals"]["tokens"] + info["relevant_tokens"]
    name = get_profile(model).tokenizer
    name = f"{name}-reference" if f"{name}-reference" in available_tokenizers() else name
    real = get_tokenizer(name).count(document.read_text(encoding="utf-8"))
    ok = real == reported <= info["budget"]  # the budget bounds everything written
    return f"{'yes' if ok else 'NO'}: {real:,} counted whole, {reported:,} reported (document + relevant block)"


def others(repo: Path, out: Path, tools: Path) -> dict[str, list[str]]:
    bin_ = tools / "venv-others" / "bin"
    return {
        "repomix": [str(tools / "npm" / "node_modules" / ".bin" / "repomix"), str(repo), "-o", str(out / "repomix.xml"), "--style", "xml", "--quiet"],
        "gitingest": [str(bin_ / "gitingest"), str(repo), "-o", str(out / "gitingest.txt")],
        "files-to-prompt": [str(bin_ / "files-to-prompt"), str(repo), "-o", str(out / "ftp.txt")],
    }


def indexed(cache: Path) -> dict:
    """Wait for the background indexer the cold pack started, and take its own report."""
    sys.path.insert(0, str(HERE))
    from agent.pack import index

    reports = index.wait(cache)
    if not reports:
        return {"wall": float("nan"), "cpu": float("nan"), "rss_mb": float("nan"), "rc": 1, "load": os.getloadavg()[0],
                "stderr": "no index report (see the .log beside the cache's index lock)"}
    r = reports[-1]
    return {"wall": sum(r["seconds"].values()), "cpu": r["cpu"], "rss_mb": r["peak_mb"], "rc": 0, "load": os.getloadavg()[0],
            "info": {"tokens": r["tokens_counted"], "files": r["files"], "build": sum(r["seconds"].values())}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", action="append", type=Path, required=True)
    ap.add_argument("--model", default="deepseek-v4-pro", help="its profile names the tokenizer")
    ap.add_argument("--repeat", type=int, default=2, help="runs per cell; the table shows the median")
    ap.add_argument("--tools", type=Path, default=TOOLS, help=f"where the other tools are installed (default {TOOLS})")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()), help="for outputs and caches (default: the temp dir)")
    ap.add_argument("--skip-others", action="store_true")
    args = ap.parse_args()
    rows: list[tuple[str, str, str, dict]] = []
    checks: list[tuple[Path, Path]] = []
    for repo in args.repo:
        work = Path(tempfile.mkdtemp(prefix="pack-speed-", dir=args.scratch))
        for kind, label in (("pack", "tome: build_pack, task-ranked, 1M budget"), ("count", "tome: exact whole-repo count")):
            colds, indexes, warms, news, thirds = [], [], [], [], []
            for i in range(args.repeat):
                cache = work / f"cache-{kind}"
                index_wait(cache)
                shutil.rmtree(cache, ignore_errors=True)
                colds.append(tome(kind, repo, cache, args.model, work / "tome.xml"))
                if kind == "pack":
                    indexes.append(indexed(cache))
                warms.append(tome(kind, repo, cache, args.model, work / "tome.xml"))
                if kind == "pack":
                    news.append(tome(kind, repo, cache, args.model, work / "tome.xml", NEW_TASKS[i % len(NEW_TASKS)]))
                    thirds.append(tome(kind, repo, cache, args.model, work / "tome.xml", NEW_TASKS[(i + 1) % len(NEW_TASKS)]))
            rows.append((repo.name, label, "cold", _summary(colds)))
            if indexes:
                rows.append((repo.name, label, "index (background, after cold)", _summary(indexes)))
            rows.append((repo.name, label, "warm", _summary(warms)))
            if news:
                rows.append((repo.name, label, "new task", _summary(news)))
                rows.append((repo.name, label, "third task", _summary(thirds)))
        rows += cli_rows(repo, work, args.model, args.repeat)
        if not args.skip_others:
            for name, cmd in others(repo, work, args.tools).items():
                colds, warms = [], []
                for _ in range(args.repeat):
                    for d in (Path.home() / ".cache" / "repomix", Path(tempfile.gettempdir()) / "repomix"):
                        shutil.rmtree(d, ignore_errors=True)
                    colds.append(measure_wait4(cmd))
                    warms.append(measure_wait4(cmd))
                rows.append((repo.name, name, "cold", _summary(colds)))
                rows.append((repo.name, name, "warm", _summary(warms)))
        keep = Path(tempfile.mkdtemp(prefix="pack-speed-written-", dir=args.scratch))
        for name in ("tome-cli.xml", "tome-cli.json"):
            shutil.copy(work / name, keep / name)
        checks.append((repo, keep))
        for cache in work.glob("cache-*"):
            index_wait(cache)
        shutil.rmtree(work, ignore_errors=True)
    # Every process is measured before this one loads anything large: Linux starts a child's
    # ru_maxrss at the spawning process's high-water RSS (fs/exec.c, exec_mmap:
    # setmax_mm_hiwater_rss), and the reference tokenizer with a whole pack counted in it is
    # most of a gigabyte.
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for (repo, keep), (_, tool, cache, s) in zip(checks, [r for r in rows if r[1] == "tome pack (command)" and r[2] == "warm"]):
        s["exact"] = exact(keep / "tome-cli.xml", keep / "tome-cli.json", args.model)
        shutil.rmtree(keep, ignore_errors=True)
    print("\nSecrets scanner throughput (this process, all packable text of the repository):")
    for repo in args.repo:
        print(f"  {repo.name}: {_scanner_speed(repo)}")
    print(f"\n{os.cpu_count()} CPUs; median of {args.repeat} runs; load average shown per cell (1-min, at start); "
          f"a peak below {floor:.0f} MB reads as {floor:.0f} (this process's peak while it measured)\n")
    print("| repo | tool | cache | wall s | (build_pack s) | CPU s | peak MB | load | tokens / result | exact |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for repo, tool, cache, s in rows:
        print(f"| {repo} | {tool} | {cache} | {s['wall']:.2f} | {s.get('build', '')} | {s['cpu']:.2f} | "
              f"{s['rss_mb']:.0f} | {s['load']:.1f} | {s.get('result', '')} | {s.get('exact', '')} |")
    print("\nSame-run ratios (wall medians):")
    for line in _ratios(rows):
        print(f"  {line}")


def index_wait(cache: Path) -> None:
    """Wait for any indexer still writing under `cache` (before it is removed or timed)."""
    if cache.exists():
        sys.path.insert(0, str(HERE))
        from agent.pack import index

        index.wait(cache)


def _ratios(rows: list[tuple[str, str, str, dict]]) -> list[str]:
    """The issue's targets as same-run ratios: new task / repeat pack, repomix cold / tome cold."""
    wall = {(repo, tool, cache): s["wall"] for repo, tool, cache, s in rows}
    out = []
    for (repo, tool, cache), seconds in wall.items():
        if tool.startswith("tome: build_pack") and cache in ("new task", "third task"):
            out.append(f"{repo}: {cache} on the known tree / repeat pack = {seconds / wall[repo, tool, 'warm']:.2f}")
        if tool == "repomix" and cache == "cold" and (repo, "tome pack (command)", "cold") in wall:
            out.append(f"{repo}: repomix cold / tome pack cold = {seconds / wall[repo, 'tome pack (command)', 'cold']:.2f}")
    return out


def _scanner_speed(repo: Path) -> str:
    sys.path.insert(0, str(HERE))
    from agent.pack.scan import scan_repo
    from agent.secrets import SecretScanner

    files = scan_repo(repo).files
    scanner = SecretScanner({})
    t, c = time.perf_counter(), time.process_time()
    found = sum(len(scanner.scan(f.text, path=f.path, data=f.data)) for f in files)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    mb = sum(f.size for f in files) / 1e6
    return f"{mb:.1f} MB in {wall:.2f} s wall / {cpu:.2f} s CPU = {mb / cpu:.0f} MB per CPU-second; {found} findings"


def _summary(runs: list[dict]) -> dict:
    for r in runs:
        if r["rc"] != 0:
            return {"wall": float("nan"), "cpu": float("nan"), "rss_mb": float("nan"), "load": r["load"],
                    "result": f"failed: {r['stderr'][-120:]!r}"}
    s = {k: statistics.median(r[k] for r in runs) for k in ("wall", "cpu", "rss_mb", "load")}
    info = [r.get("info") for r in runs if r.get("info")]
    if info:
        s["build"] = f"{statistics.median(i['build'] for i in info):.2f}"
        i = info[0]
        s["result"] = f"{i['tokens']:,} tokens" + (f", {i['full']} full, {i['outline']} outline" if "full" in i else f", {i['files']} files")
    return s


if __name__ == "__main__":
    main()
