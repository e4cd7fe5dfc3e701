"""apply_patch vs `git apply` on the gold patches of the SWE-bench instances in ../shared/swe.

For every instance: extract the files its gold patch touches at the base commit from a bare
mirror (../.mirror/<owner>+<name>/repo, made by the `fetch` tool), apply the patch in one
copy with `git apply` and in another with tome's apply_patch tool (through a Toolbox, as the
model calls it), then compare the two trees byte for byte (contents and the executable bit).
Prints a table per repository and lists every difference and failure.

    python benchmarks/apply_patch_vs_git.py [--perturb] [--swe DIR] [--mirrors DIR] [--scratch DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from tools.base import Toolbox, ToolContext
from tools.patch import apply_patch, parse_patch
from tools.workspace import Workspace

CHECKOUT = Path(__file__).resolve().parents[1]

# Mirrors to try for a repository, in order: its own, then forks that hold its history.
MIRROR_ALIASES = {
    "django/django": ["django+django", "apprent1c3+django"],
    "scikit-learn/scikit-learn": ["scikit-learn+scikit-learn", "thomasjpfan+scikit-learn"],
    "matplotlib/matplotlib": ["matplotlib+matplotlib", "williamlus+matplotlib"],
}


def git(
    *args: str, git_dir: Path | None = None, cwd: Path | None = None, data: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run git without prompts or user config."""
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
    }
    cmd = ["git"] + ([f"--git-dir={git_dir}"] if git_dir else []) + list(args)
    return subprocess.run(cmd, check=False, cwd=cwd, env=env, input=data, capture_output=True)


def mirror_for(repo: str, mirrors: Path, commit: str) -> Path | None:
    """The first mirror that holds `commit`."""
    names = MIRROR_ALIASES.get(repo, [repo.replace("/", "+")])
    for name in names:
        d = mirrors / name / "repo"
        if d.is_dir() and git("cat-file", "-e", f"{commit}^{{commit}}", git_dir=d).returncode == 0:
            return d
    return None


def extract(git_dir: Path, commit: str, paths: set[str], dest: Path) -> None:
    """Write `paths` as they are at `commit` (those that exist) under `dest`, with exec bits."""
    if not paths:
        return
    out = git("ls-tree", "-z", commit, "--", *sorted(paths), git_dir=git_dir).stdout
    entries = []
    for item in out.split(b"\0"):
        if not item:
            continue
        meta, path = item.split(b"\t", 1)
        mode, kind, sha = meta.split()
        if kind == b"blob":
            entries.append((mode.decode(), sha.decode(), path.decode("utf-8", "surrogateescape")))
    if not entries:
        return
    batch = git(
        "cat-file",
        "--batch",
        git_dir=git_dir,
        data="".join(f"{s}\n" for _, s, _ in entries).encode(),
    ).stdout
    pos = 0
    for mode, sha, path in entries:
        header_end = batch.index(b"\n", pos)
        size = int(batch[pos:header_end].split()[2])
        blob = batch[header_end + 1 : header_end + 1 + size]
        pos = header_end + 1 + size + 1
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "120000":
            target.symlink_to(blob.decode())
            continue
        target.write_bytes(blob)
        os.chmod(target, 0o755 if mode == "100755" else 0o644)


def snapshot(root: Path) -> dict[str, tuple[bytes, bool]]:
    """path -> (bytes, executable) for every file (and empty directory) under root, .git aside."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        if not dirnames and not filenames and Path(dirpath) != root:
            out[Path(dirpath).relative_to(root).as_posix() + "/"] = (b"(empty directory)", False)
        for f in filenames:
            p = Path(dirpath) / f
            out[p.relative_to(root).as_posix()] = (
                p.read_bytes() if not p.is_symlink() else b"->" + os.readlink(p).encode(),
                bool(p.lstat().st_mode & 0o100),
            )
    return out


def describe(a: dict[str, tuple[bytes, bool]], b: dict[str, tuple[bytes, bool]]) -> list[str]:
    """The paths where two snapshots differ, and how."""
    diffs = []
    for path in sorted(set(a) | set(b)):
        if path not in a:
            diffs.append(f"{path}: only apply_patch has it")
        elif path not in b:
            diffs.append(f"{path}: only git apply has it")
        elif a[path][0] != b[path][0]:
            la, lb = a[path][0].splitlines(), b[path][0].splitlines()
            first = next(
                (i for i, (x, y) in enumerate(zip(la, lb)) if x != y), min(len(la), len(lb))
            )
            diffs.append(
                f"{path}: contents differ from line {first + 1} ({len(la)} vs {len(lb)} lines)"
            )
        elif a[path][1] != b[path][1]:
            diffs.append(f"{path}: executable bit differs (git {a[path][1]}, ours {b[path][1]})")
    return diffs


def load_instances(swe: Path) -> list[dict]:
    """Unique instances (by id) from lite, lite_dev and verified, in file order."""
    seen: dict[str, dict] = {}
    for name in ("lite.jsonl", "lite_dev.jsonl", "verified.jsonl"):
        path = swe / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row.get("patch") and row["instance_id"] not in seen:
                row["_source"] = name
                seen[row["instance_id"]] = row
    return list(seen.values())


_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")


def perturb(patch: str) -> str:
    """A hand-written-looking copy: hunk headers shifted with wrong counts, and trailing
    whitespace dropped from the lines the patch expects (context and removed lines)."""
    out, k = [], 0
    for line in patch.splitlines(keepends=True):
        m = _HEADER.match(line.rstrip("\n"))
        if m and int(m.group(1)) > 0:
            k += 1
            shift = 7 if k % 2 else -5
            a, c = max(1, int(m.group(1)) + shift), max(1, int(m.group(3)) + shift)
            out.append(
                f"@@ -{a},{int(m.group(2) or 1) + 1} +{c},{int(m.group(4) or 1) + 2} @@{m.group(5)}\n"
            )
        elif line[:1] in (" ", "-") and not line.startswith("--- "):
            out.append(line.rstrip() + "\n" if line.strip() else line)
        else:
            out.append(line)
    return "".join(out)


def run_one(row: dict, git_dir: Path, work: Path, *, perturbed: bool = False) -> tuple[str, str]:
    """(outcome, detail) for one instance: identical, differing, failed, git_failed, both_failed."""
    patch: str = row["patch"]
    files = parse_patch(patch)
    paths = {p for f in files for p in (f.old_path, f.new_path) if p}
    if work.exists():
        shutil.rmtree(work)
    g, ours = work / "git", work / "ours"
    g.mkdir(parents=True)
    extract(git_dir, row["base_commit"], paths, g)
    shutil.copytree(g, ours, symlinks=True)
    git("init", "-q", cwd=g)
    (work / "gold.patch").write_text(patch)
    gres = git("apply", "--whitespace=nowarn", str(work / "gold.patch"), cwd=g)
    ctx = ToolContext(workspace=Workspace(ours), state_dir=work / "state")
    box = Toolbox([apply_patch], ctx)
    ours_patch = perturb(patch) if perturbed else patch
    result = box.run("gold", "apply_patch", json.dumps({"patch": ours_patch}))
    git_ok = gres.returncode == 0
    if not git_ok and not result.ok:
        return "both_failed", gres.stderr.decode(errors="replace").strip()[:300]
    if not git_ok:
        return "git_failed", gres.stderr.decode(errors="replace").strip()[:300]
    if not result.ok:
        return "failed", result.content[:600]
    diffs = describe(snapshot(g), snapshot(ours))
    if diffs:
        return "differing", "; ".join(diffs)
    notes = [l.strip() for l in result.content.splitlines() if l.startswith("      ")]
    return "identical", "; ".join(notes)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table; exit 1 if any patch differs or fails."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--swe", type=Path, default=CHECKOUT.parent / "shared" / "swe")  # beside the checkout
    ap.add_argument("--mirrors", type=Path, default=CHECKOUT.parent / ".mirror")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "tome-applybench")
    ap.add_argument("--json", type=Path, help="write per-instance outcomes here")
    ap.add_argument("--limit", type=int, help="only the first N instances")
    ap.add_argument(
        "--perturb",
        action="store_true",
        help="give apply_patch a hand-written-looking copy (shifted headers, wrong counts, "
        "trailing whitespace dropped); git apply still gets the gold patch",
    )
    args = ap.parse_args(argv)

    rows = load_instances(args.swe)[: args.limit]
    table: dict[str, Counter[str]] = defaultdict(Counter)
    details: list[tuple[str, str, str]] = []
    outcomes = {}
    started = time.monotonic()
    for row in rows:
        repo = row["repo"]
        git_dir = mirror_for(repo, args.mirrors, row["base_commit"])
        table[repo]["patches"] += 1
        if git_dir is None:
            table[repo]["not_available"] += 1
            outcomes[row["instance_id"]] = "not_available"
            continue
        outcome, detail = run_one(
            row, git_dir, args.scratch / row["instance_id"], perturbed=args.perturb
        )
        shutil.rmtree(args.scratch / row["instance_id"], ignore_errors=True)
        table[repo][outcome] += 1
        outcomes[row["instance_id"]] = outcome
        if outcome != "identical" or detail:
            details.append((row["instance_id"], outcome, detail))
    elapsed = time.monotonic() - started

    cols = [
        "patches",
        "identical",
        "differing",
        "failed",
        "git_failed",
        "both_failed",
        "not_available",
    ]
    print(f"{'repository':32}" + "".join(f"{c:>14}" for c in cols))
    total: Counter[str] = Counter()
    for repo in sorted(table):
        total.update(table[repo])
        print(f"{repo:32}" + "".join(f"{table[repo][c]:>14}" for c in cols))
    print(f"{'TOTAL':32}" + "".join(f"{total[c]:>14}" for c in cols))
    print(f"\n{len(rows)} unique instances from lite, lite_dev and verified; {elapsed:.1f}s.")
    problems = [d for d in details if d[1] != "identical"]
    print(f"\nDifferences and failures ({len(problems)}):")
    for iid, outcome, detail in problems:
        print(f"  {iid}: {outcome}: {detail}")
    fuzzy = [d for d in details if d[1] == "identical"]
    if fuzzy:
        print(f"\nIdentical, but apply_patch noted a shift or looser match ({len(fuzzy)}):")
        for iid, _, detail in fuzzy:
            print(f"  {iid}: {detail}")
    if args.json:
        args.json.write_text(json.dumps(outcomes, indent=1))
    return 1 if total["differing"] or total["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
