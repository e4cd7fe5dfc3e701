"""Retrieval on real SWE-bench instances: are all gold-patch files in the pack, in full text?

For each instance (repository at base_commit, problem_statement as the task) this builds tome's
packs at several budgets and, in the same run, a plain BM25 baseline (`bm25s` over path + text of
the Python non-test files, as in the paper; whole files added in score order while they fit the same budget, counted with
the same tokenizer). Ranking sees only the statement and the repository, never the patch.

    python benchmarks/retrieval.py --out /work/scratch/pack/retrieval.jsonl [--shard 0/2]
    python benchmarks/retrieval.py --out /work/scratch/pack/retrieval.jsonl --report

Each shard keeps one working copy per repository and moves it from base commit to base commit
(the same files `git archive` exports; --keep exports each instance instead), and remembers
bm25s's split of files it has seen: a run over ~460 instances takes about 15 minutes on 2 shards.
Results are appended per instance (the run resumes where it stopped); --report prints the
tables: share of instances with every gold file in full text, per repository and overall,
beside the SWE-bench paper's BM25 numbers (Table 3, full test set, 13k/27k/50k).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

SWE = Path("/work/shared/swe")
MIRRORS = Path("/work/.mirror")
MIRROR_NAMES = {"django/django": "apprent1c3+django"}
BUDGETS = [13_000, 27_000, 50_000, 200_000, 1_000_000]
PAPER_ALL = {13_000: 26.09, 27_000: 39.83, 50_000: 45.90}


def instances() -> list[dict]:
    """Lite test rows, then Verified rows not already in Lite."""
    rows: dict[str, dict] = {}
    for name in ("lite.jsonl", "verified.jsonl"):
        for line in (SWE / name).read_text().splitlines():
            r = json.loads(line)
            r.setdefault("source", name.split(".")[0])
            rows.setdefault(r["instance_id"], r)
    return list(rows.values())


def mirror(repo: str) -> Path:
    return MIRRORS / MIRROR_NAMES.get(repo, repo.replace("/", "+")) / "repo"


def gold_files(patch: str) -> tuple[list[str], list[str]]:
    """(files the patch changes that exist at base, files it creates)."""
    changed, created = [], []
    for block in re.split(r"^diff --git ", patch, flags=re.MULTILINE)[1:]:
        m = re.match(r"a/(\S+) b/(\S+)", block)
        if not m:
            continue
        (created if re.search(r"^--- /dev/null", block, re.MULTILINE) else changed).append(m.group(2))
    return changed, created


def checkout(repo: str, commit: str, work: Path, name: str = "") -> Path:
    # One directory per instance: instances share base commits and runs may overlap.
    target = work / repo.replace("/", "__") / (name or commit[:12])
    if target.exists():
        return target
    tmp = target.with_suffix(".part")
    excluded: list[str] = []
    for _ in range(5):
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        spec = ["--", ".", *(f":(exclude){p}" for p in excluded)] if excluded else []
        archive = subprocess.Popen(["git", f"--git-dir={mirror(repo)}", "archive", commit, *spec],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        tar = subprocess.run(["tar", "-x", "--no-same-owner", "-C", str(tmp)], stdin=archive.stdout,
                             capture_output=True, check=False)
        err = archive.stderr.read().decode(errors="replace") if archive.stderr else ""
        if archive.wait() == 0 and tar.returncode == 0:
            break
        # Snapshots lack blobs of 4 MiB and more: export the tree without them.
        missing = re.findall(r"invalid object \S+ \S+ for '([^']+)'", err)
        if not missing:
            raise RuntimeError(f"git archive {repo}@{commit} failed: {err[-300:]}")
        excluded += missing
    else:
        raise RuntimeError(f"git archive {repo}@{commit} kept failing")
    tmp.rename(target)
    return target


class Trees:
    """One working copy per repository, moved between commits by writing only what differs.

    It holds the same files `git archive` would export (blobs the snapshot lacks are left out,
    symlinks stay symlinks); repositories whose .gitattributes rewrite the export
    (export-subst, export-ignore) use `checkout` instead. The copy is renamed to the
    instance's name while it is packed, so the pack header is the same as with `checkout`.
    """

    def __init__(self, work: Path) -> None:
        self.work = work
        self.state: dict[str, dict[str, tuple[str, str]]] = {}
        self.lent: dict[str, Path] = {}

    def _home(self, repo: str) -> Path:
        return self.work / repo.replace("/", "__") / f"_tree{os.getpid()}"

    def _listing(self, repo: str, commit: str) -> dict[str, tuple[str, str]]:
        out = subprocess.run(["git", f"--git-dir={mirror(repo)}", "ls-tree", "-r", "-z", commit],
                             capture_output=True, check=True).stdout
        rows = {}
        for entry in out.split(b"\0"):
            if entry:
                meta, path = entry.split(b"\t", 1)
                mode, kind, sha = meta.split()
                if kind == b"blob":
                    rows[os.fsdecode(path)] = (mode.decode(), sha.decode())
        return rows

    def _exportable(self, repo: str, commit: str) -> bool:
        attrs = subprocess.run(["git", f"--git-dir={mirror(repo)}", "grep", "-l", "-E", "export-(subst|ignore)",
                                commit, "--", ".gitattributes", "**/.gitattributes"],
                               capture_output=True, check=False).stdout
        return not attrs.strip()

    def enter(self, repo: str, commit: str, name: str) -> Path:
        """The tree of `repo` at `commit`, in a directory called `name`."""
        if not self._exportable(repo, commit):
            return checkout(repo, commit, self.work, name)
        home = self._home(repo)
        if repo not in self.state:
            shutil.rmtree(home, ignore_errors=True)
            home.mkdir(parents=True)
            self.state[repo] = {}
        old, new = self.state[repo], self._listing(repo, commit)
        for path, entry in old.items():
            if new.get(path) != entry:
                (home / path).unlink(missing_ok=True)
                parent = (home / path).parent
                while parent != home and not any(parent.iterdir()):
                    parent.rmdir()
                    parent = parent.parent
        todo = sorted(p for p, e in new.items() if old.get(p) != e)
        shas = sorted({new[p][1] for p in todo})
        blobs: dict[str, bytes] = {}
        if shas:
            cat = subprocess.run(["git", f"--git-dir={mirror(repo)}", "cat-file", "--batch"],
                                 input="".join(s + "\n" for s in shas).encode(), capture_output=True, check=True).stdout
            pos = 0
            while pos < len(cat):
                eol = cat.index(b"\n", pos)
                head = cat[pos:eol].split()
                pos = eol + 1
                if head[1] == b"missing":
                    continue
                size = int(head[2])
                blobs[head[0].decode()] = cat[pos : pos + size]
                pos += size + 1
        written = {}
        for path in todo:
            mode, sha = new[path]
            if sha not in blobs:  # the snapshot lacks it: git archive would fail on it too
                continue
            dest = home / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            if mode == "120000":
                os.symlink(os.fsdecode(blobs[sha]), dest)
            else:
                dest.write_bytes(blobs[sha])
                if mode == "100755":
                    dest.chmod(0o755)
            written[path] = new[path]
        self.state[repo] = {p: e for p, e in new.items() if old.get(p) == e or p in written}
        target = home.parent / name
        shutil.rmtree(target, ignore_errors=True)
        home.rename(target)
        self.lent[repo] = target
        return target

    def close(self) -> None:
        """Remove the working copies."""
        for repo in self.state:
            shutil.rmtree(self._home(repo), ignore_errors=True)
        self.state.clear()

    def leave(self, repo: str, root: Path) -> None:
        """Give the directory back to the repository's working copy (or drop an export)."""
        if self.lent.get(repo) == root:
            root.rename(self._home(repo))
            del self.lent[repo]
        else:
            shutil.rmtree(root, ignore_errors=True)


def _is_test(path: str) -> bool:
    words = set(re.split(r"[/_.]", path.lower()))
    return bool(words & {"test", "tests", "testing"})


class Words:
    """bm25s.tokenize's split of each text (lowercase, its token pattern, English stopwords),
    remembered by content: most files are the same from one base commit to the next."""

    def __init__(self) -> None:
        import bm25s.tokenization as bt

        self.split = re.compile(r"(?u)\b\w\w+\b").findall
        self.stop = set(bt._infer_stopwords("en"))
        self.seen: dict[bytes, list[str]] = {}

    def tokenize(self, texts: list[str]):
        """Exactly `bm25s.tokenize(texts, stopwords="en")`: the same ids and vocabulary."""
        from bm25s.tokenization import Tokenized

        from agent.pack.cache import digest

        vocab: dict[str, int] = {}
        ids = []
        for text in texts:
            key = digest(text)
            words = self.seen.get(key)
            if words is None:
                words = [w for w in self.split(text.lower()) if w not in self.stop]
                self.seen[key] = words
            ids.append([vocab.setdefault(w, len(vocab)) for w in words])
        return Tokenized(ids=ids, vocab=vocab)


def bm25_baseline(files: list, statement: str, budgets: list[int], gold: list[str], count,
                  words: Words | None = None) -> tuple[dict, int | None]:
    """Plain whole-file BM25 (bm25s, its own tokenizer and English stopwords), filled greedily."""
    import bm25s

    # As the SWE-bench paper's retrieval: Python files that are not tests, path + contents.
    files = [f for f in files if f.path.endswith(".py") and not _is_test(f.path)]
    corpus = [f"{f.path}\n{f.text}" for f in files]
    retriever = bm25s.BM25()
    tokens = words.tokenize(corpus) if words is not None else bm25s.tokenize(corpus, stopwords="en", show_progress=False)
    retriever.index(tokens, show_progress=False)
    query = bm25s.tokenize([statement], stopwords="en", show_progress=False)
    k = len(corpus)
    docs, _ = retriever.retrieve(query, k=k, show_progress=False)
    order = [files[int(i)] for i in docs[0]]
    gold_rank = min((i for i, f in enumerate(order) if f.path in gold), default=None)
    result = {}
    for budget in budgets:
        remaining, chosen = budget, set()
        pos = 0
        while pos < len(order) and remaining > 8:
            batch = []
            while pos < len(order) and len(batch) < 256 and sum(f.size for f in batch) < 6 * remaining:
                if order[pos].size / 16 <= remaining:
                    batch.append(order[pos])
                pos += 1
            if not batch:
                break
            for f, n in zip(batch, count(batch)):
                if n <= remaining:
                    chosen.add(f.path)
                    remaining -= n
        result[budget] = all(g in chosen for g in gold)
    return result, gold_rank


def run(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from agent.pack import build_packs
    from agent.pack.build import _Counter
    from agent.pack.cache import CountCache, digest
    from agent.pack.render import file_block
    from agent.pack.scan import scan_repo
    from agent.tokens import get_tokenizer

    tok = get_tokenizer(args.tokenizer)
    out = Path(args.out)
    done = set()
    if out.exists():
        done = {json.loads(l)["instance_id"] for l in out.read_text().splitlines() if l.strip()}
    rows = [r for r in instances() if mirror(r["repo"]).exists()]
    if args.repos:
        rows = [r for r in rows if r["repo"].split("/")[1] in args.repos.split(",")]
    if args.source:
        rows = [r for r in rows if r["source"] == args.source]
    # Round-robin over repositories so that a partial run covers them all.
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["repo"]].append(r)
    for g in groups.values():  # by issue number: neighbouring base commits share most files
        g.sort(key=lambda r: (r["source"] != "lite", int(r["instance_id"].rsplit("-", 1)[1])))
    mixed = []
    for i in range(max(len(g) for g in groups.values())):
        for repo in sorted(groups):
            if i < len(groups[repo]):
                mixed.append(groups[repo][i])
    rows = sorted(mixed, key=lambda r: r["source"] != "lite")  # stable: Lite first
    shard, shards = (int(x) for x in args.shard.split("/"))
    rows = [r for i, r in enumerate(rows) if i % shards == shard and r["instance_id"] not in done]
    if args.limit:
        rows = rows[: args.limit]
    work = Path(args.work)
    cache_dir = Path(args.cache)
    print(f"{len(rows)} instances to run (shard {args.shard}), {len(done)} done", flush=True)
    trees, words = Trees(work), Words()
    for r in rows:
        t0 = time.perf_counter()
        gold, created = gold_files(r["patch"])
        if not gold:
            continue
        try:
            if args.keep:
                root = checkout(r["repo"], r["base_commit"], work, r["instance_id"])
            else:
                root = trees.enter(r["repo"], r["base_commit"], r["instance_id"])
        except (RuntimeError, subprocess.CalledProcessError) as e:
            print(f"{r['instance_id']}: skipped: {e}", flush=True)
            continue
        t1 = time.perf_counter()
        packs = build_packs(root, budgets=BUDGETS, task=r["problem_statement"], tokenizer=tok,
                            cache_dir=cache_dir, environ={})
        t2 = time.perf_counter()
        ours = {}
        levels = {i.path: i for i in packs[0].items}
        for budget, p in zip(BUDGETS, packs):
            lv = {i.path: i.level for i in p.items}
            ours[budget] = all(lv.get(g) == "full" for g in gold)
        ranks = [levels[g].rank if g in levels else None for g in gold]

        scan = scan_repo(root)
        with CountCache(cache_dir, tok.name) as cache:
            counter = _Counter(tok, cache)

            def count(batch, counter=counter):
                blocks = [file_block(f.path, f.text, "xml") for f in batch]
                return counter.count(blocks, [digest(b) for b in blocks])

            base, base_rank = bm25_baseline(scan.files, r["problem_statement"], BUDGETS, gold, count, words)
        t3 = time.perf_counter()
        rec = {
            "instance_id": r["instance_id"], "repo": r["repo"], "source": r["source"], "gold": gold,
            "created": created, "ours": ours, "bm25": base, "gold_ranks": ranks, "bm25_first_gold_rank": base_rank,
            "missing_gold": [g for g in gold if g not in levels],
            "seconds": {"checkout": round(t1 - t0, 2), "packs": round(t2 - t1, 2), "bm25": round(t3 - t2, 2)},
            "pack_timings_1m": packs[-1].timings,
        }
        with out.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        if not args.keep:
            trees.leave(r["repo"], root)
        print(f"{r['instance_id']}: ours {[int(v) for v in ours.values()]} bm25 {[int(v) for v in base.values()]} "
              f"{t3 - t0:.1f}s", flush=True)
    trees.close()


def report(path: Path) -> None:
    recs = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    by_repo: dict[str, list[dict]] = defaultdict(list)
    for r in recs:
        by_repo[r["repo"]].append(r)
    header = ["repo", "n"] + [f"{k // 1000}k" if k < 1_000_000 else "1M" for k in BUDGETS]
    print("Share of instances with every gold-patch file in full text: tome pack / same-run BM25 (%)")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))

    def row(name: str, group: list[dict]) -> str:
        cells = [name, str(len(group))]
        for b in BUDGETS:
            ours = 100 * sum(g["ours"][str(b)] for g in group) / len(group)
            base = 100 * sum(g["bm25"][str(b)] for g in group) / len(group)
            cells.append(f"{ours:.1f} / {base:.1f}")
        return " | ".join(cells)

    for repo in sorted(by_repo):
        print(row(repo, by_repo[repo]))
    print(row("**all**", recs))
    for source in ("lite", "verified"):
        group = [r for r in recs if r["source"] == source]
        if group:
            print(row(f"all ({source})", group))
    print("SWE-bench paper BM25, full test set (Table 3, 'All'): "
          + ", ".join(f"{k // 1000}k {v}%" for k, v in PAPER_ALL.items()))
    missing = sum(bool(r["missing_gold"]) for r in recs)
    print(f"instances whose gold file is absent from the scan (skipped or missing): {missing}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/work/scratch/pack/retrieval.jsonl")
    ap.add_argument("--work", default="/work/scratch/pack/swe")
    ap.add_argument("--cache", default="/work/scratch/pack/cache")
    ap.add_argument("--tokenizer", default="deepseek-v4")
    ap.add_argument("--shard", default="0/1")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--repos", default="")
    ap.add_argument("--source", default="", help="lite or verified")
    ap.add_argument("--keep", action="store_true", help="keep the extracted checkouts")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if args.report:
        report(Path(args.out))
    else:
        run(args)


if __name__ == "__main__":
    main()
