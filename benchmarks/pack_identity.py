"""Byte identity of packs across a refactor: sha256 of every pack of django and sympy at the
budgets the benchmarks use (retrieval.py's 13k to 1M, and `tome pack`'s 1048576), with and
without a task, in both formats, built cold (empty count cache), warm (the same cache again) and
indexed (after the background indexer the cold packs started has ended, with the cache's
rankings forgotten: the task is ranked again, from the tree's joined index).

    python benchmarks/pack_identity.py --write BASELINE.json    # from the code before the change
    python benchmarks/pack_identity.py --check BASELINE.json    # after: prints every difference

Each repository is a shared clone (`git clone --shared`: nothing is written into the snapshot)
of a bare snapshot under --mirrors (`<owner>+<name>/repo`) checked out at a fixed commit under
--scratch, so the header's commit and the scan's git listing are the real ones. A pack is
identified by its document, its relevant-files block and its manifest totals.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
REPOS = {
    "django": ("apprent1c3+django", "b6ad8b687adf011245270df17a38c1a42792e3d7",
               "QuerySet.bulk_create() crashes on mixed case columns in unique_fields/update_fields: "
               "the ON CONFLICT clause uses the field name instead of db_column. See "
               "django/db/models/sql/compiler.py and django/db/backends/postgresql/operations.py."),
    "sympy": ("sympy+sympy", "e950d313a932bc6cccbc95376b3821cd2f8b5af4",
              "`Matrix.col_insert()` no longer seems to work correctly: inserting columns into a 6x6 "
              "identity matrix shifts the identity block. Traceback: File \"sympy/matrices/common.py\", "
              "line 215, in _eval_col_insert"),
}
# The checkout's neighbours: the first ancestor holding the snapshots (a worktree sits deeper).
WORK = next((d for d in HERE.parents if (d / ".mirror").is_dir()), HERE.parent)
BUDGETS = [13_000, 27_000, 50_000, 200_000, 1_000_000, 1_048_576]


def checkout(name: str, mirrors: Path, scratch: Path) -> Path:
    """The repository at its fixed commit (cloned once, reused after)."""
    snapshot, commit, _ = REPOS[name]
    root = scratch / name
    if not (root / ".git").is_dir():
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["git", "clone", "-q", "--shared", "--no-checkout", str(mirrors / snapshot / "repo"), str(root)],
                       check=True)
    subprocess.run(["git", "-C", str(root), "checkout", "-q", "--detach", "-f", commit], check=True)
    subprocess.run(["git", "-C", str(root), "clean", "-qfdx"], check=True)
    return root


def fingerprints(root: Path, task: str, cache: Path) -> dict[str, str]:
    """sha256 of each pack, keyed by repo/task/format/budget."""
    sys.path.insert(0, str(HERE))
    from agent.pack import build_packs

    out = {}
    for with_task in (False, True):
        for fmt in ("xml", "markdown"):
            packs = build_packs(root, budgets=BUDGETS, task=task if with_task else None, format=fmt,
                                model="deepseek-v4-pro", cache_dir=cache, environ={})
            for budget, p in zip(BUDGETS, packs):
                h = hashlib.sha256()
                for part in (p.document, "\0", p.relevant, "\0", p.totals.model_dump_json()):
                    h.update(part.encode("utf-8", "surrogatepass"))
                out[f"{root.name}/{'task' if with_task else 'none'}/{fmt}/{budget}"] = h.hexdigest()
    return out


def wait_for_index(cache: Path) -> None:
    """Wait for the background indexer of a cache (agent/pack/index.py) to end."""
    sys.path.insert(0, str(HERE))
    from agent.pack import index

    if cache.exists():
        index.wait(cache)


def forget_rankings(cache: Path) -> None:
    """Drop the cache's remembered rankings (the memo), so the next pack ranks again."""
    import sqlite3

    for db in (cache / "pack").glob("counts-*.sqlite3"):
        with sqlite3.connect(db) as con:
            con.execute("DELETE FROM memo")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirrors", type=Path, default=WORK / ".mirror")
    ap.add_argument("--scratch", type=Path, default=WORK / "scratch" / "pack" / "identity")
    ap.add_argument("--repo", action="append", choices=sorted(REPOS), help="default: all")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, help="write the fingerprints here")
    mode.add_argument("--check", type=Path, help="compare with the fingerprints written here")
    args = ap.parse_args()
    found: dict[str, str] = {}
    for name in args.repo or sorted(REPOS):
        root = checkout(name, args.mirrors, args.scratch)
        cache = args.scratch / f"cache-{name}"
        wait_for_index(cache)
        shutil.rmtree(cache, ignore_errors=True)
        for state in ("cold", "warm", "indexed"):
            if state == "indexed":
                wait_for_index(cache)
                forget_rankings(cache)
            t = time.perf_counter()
            got = fingerprints(root, REPOS[name][2], cache)
            print(f"{name} {state}: {len(got)} packs in {time.perf_counter() - t:.1f} s", flush=True)
            for k, v in got.items():
                if found.setdefault(k, v) != v:
                    print(f"  {k}: {state} differs from cold")
    if args.write:
        args.write.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        print(f"{len(found)} fingerprints written to {args.write}")
        return
    base = json.loads(args.check.read_text())
    differ = sorted(k for k in base.keys() & found.keys() if base[k] != found[k])
    for k in differ:
        print(f"DIFFERS {k}")
    same = len(base.keys() & found.keys()) - len(differ)
    print(f"{same} identical, {len(differ)} differ, {len(found.keys() - base.keys())} new, "
          f"{len(base.keys() - found.keys())} missing")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
