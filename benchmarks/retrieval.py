"""Retrieval on real SWE-bench instances: are all gold-patch files in the pack, in full text?

For each instance (repository at base_commit, problem_statement as the task) this builds tome's
packs at several budgets and, in the same run, a plain BM25 baseline (`bm25s` over path + text of
the Python non-test files, as in the paper; whole files added in score order while they fit the
same budget, counted with the same tokenizer). Ranking sees only the statement and the
repository, never the patch.

The visible instances (lite.jsonl + verified.jsonl, `--swe`) are split two ways, fixed by data
and not by anyone's choice (`split`, `periods`):
* a tuning part and a report part: within each repository, ids in order of their sha256, taken
  alternately, so each repository is halved;
* a time split: the newest 30% by date (`created_at`; Verified-only rows, which lack it, are placed
  by their pull-request number among the same repository's dated rows).
Weights are fitted (`--fit`) on the tuning part's older instances only, from the features a
tuning run stores (`--cases`); every reported figure is the report part's, with 95% Wilson
intervals, beside the same-run BM25. The ablation replays the packer's full-text step (`fill`,
checked against the real pack: the report prints how often they agree) with each signal off.

    python benchmarks/retrieval.py --part tune --period old --cases DIR --shard 0/2   # and 1/2
    python benchmarks/retrieval.py --fit --cases DIR
    python benchmarks/retrieval.py --part report --shard 0/2                           # and 1/2
    python benchmarks/retrieval.py --report

Paths default to the checkout's neighbours (../shared/swe, ../.mirror: bare snapshots named
<owner>+<name>/repo) and the user cache (~/.cache/tome/retrieval: results, working trees,
counts); each is an option. Each shard keeps one working copy per repository and moves it from
base commit to base commit (the same files `git archive` exports; --keep exports each instance
instead), and remembers bm25s's split of files it has seen. Results are appended per instance
(a run resumes where it stopped).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

CHECKOUT = Path(__file__).resolve().parents[1]
SWE = CHECKOUT.parent / "shared" / "swe"  # beside the checkout, as on the team machine
MIRRORS = CHECKOUT.parent / ".mirror"  # bare snapshots: <owner>+<name>/repo
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tome" / "retrieval"
MIRROR_NAMES = {"django/django": "apprent1c3+django"}
BUDGETS = [13_000, 27_000, 50_000, 200_000, 1_000_000]
PAPER_ALL = {13_000: 26.09, 27_000: 39.83, 50_000: 45.90}
NEWER = 0.3  # the time split reports on the newest 30% of instances by date


def instances(swe: Path = SWE) -> list[dict]:
    """Lite test rows, then Verified rows not already in Lite."""
    rows: dict[str, dict] = {}
    for name in ("lite.jsonl", "verified.jsonl"):
        for line in (swe / name).read_text().splitlines():
            r = json.loads(line)
            r.setdefault("source", name.split(".")[0])
            rows.setdefault(r["instance_id"], r)
    return list(rows.values())


def mirror(repo: str, mirrors: Path = MIRRORS) -> Path:
    """The bare snapshot of `repo` under `mirrors`."""
    return mirrors / MIRROR_NAMES.get(repo, repo.replace("/", "+")) / "repo"


def gold_files(patch: str) -> tuple[list[str], list[str]]:
    """(files the patch changes that exist at base, files it creates)."""
    changed, created = [], []
    for block in re.split(r"^diff --git ", patch, flags=re.MULTILINE)[1:]:
        m = re.match(r"a/(\S+) b/(\S+)", block)
        if not m:
            continue
        (created if re.search(r"^--- /dev/null", block, re.MULTILINE) else changed).append(m.group(2))
    return changed, created


def checkout(repo: str, commit: str, work: Path, name: str = "", mirrors: Path = MIRRORS) -> Path:
    """`git archive` of `repo` at `commit` under `work` (blobs the snapshot lacks left out)."""
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
        archive = subprocess.Popen(["git", f"--git-dir={mirror(repo, mirrors)}", "archive", commit, *spec],
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

    def __init__(self, work: Path, mirrors: Path = MIRRORS) -> None:
        self.work = work
        self.mirrors = mirrors
        self.state: dict[str, dict[str, tuple[str, str]]] = {}
        self.lent: dict[str, Path] = {}

    def _home(self, repo: str) -> Path:
        return self.work / repo.replace("/", "__") / f"_tree{os.getpid()}"

    def _listing(self, repo: str, commit: str) -> dict[str, tuple[str, str]]:
        out = subprocess.run(["git", f"--git-dir={mirror(repo, self.mirrors)}", "ls-tree", "-r", "-z", commit],
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
        attrs = subprocess.run(["git", f"--git-dir={mirror(repo, self.mirrors)}", "grep", "-l", "-E", "export-(subst|ignore)",
                                commit, "--", ".gitattributes", "**/.gitattributes"],
                               capture_output=True, check=False).stdout
        return not attrs.strip()

    def enter(self, repo: str, commit: str, name: str) -> Path:
        """The tree of `repo` at `commit`, in a directory called `name`."""
        if not self._exportable(repo, commit):
            return checkout(repo, commit, self.work, name, self.mirrors)
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
            cat = subprocess.run(["git", f"--git-dir={mirror(repo, self.mirrors)}", "cat-file", "--batch"],
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


def _number(instance_id: str) -> int:
    return int(instance_id.rsplit("-", 1)[1])


def split(rows: list[dict]) -> dict[str, str]:
    """Instance id -> "tune" or "report": within each repository, ids in order of their
    sha256, alternately (so each repository is halved, and no one chose which half)."""
    parts: dict[str, str] = {}
    by_repo: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_repo[r["repo"]].append(r["instance_id"])
    for ids in by_repo.values():
        for i, iid in enumerate(sorted(ids, key=lambda x: hashlib.sha256(x.encode()).hexdigest())):
            parts[iid] = "tune" if i % 2 == 0 else "report"
    return parts


def dates(rows: list[dict]) -> dict[str, float]:
    """Instance id -> creation time (POSIX seconds): `created_at` where the row has it (Lite);
    Verified-only rows lack it and get the time interpolated from their pull-request number
    among the same repository's dated rows (numbers grow with time within a repository)."""
    known: dict[str, list[tuple[int, float]]] = defaultdict(list)
    out: dict[str, float] = {}
    for r in rows:
        if r.get("created_at"):
            t = datetime.fromisoformat(r["created_at"].replace("Z", "+00:00")).timestamp()
            out[r["instance_id"]] = t
            known[r["repo"]].append((_number(r["instance_id"]), t))
    for r in rows:
        if r["instance_id"] not in out:
            pts = sorted(known[r["repo"]])
            if not pts:
                raise ValueError(f"no dated instance of {r['repo']} to place {r['instance_id']} in time")
            out[r["instance_id"]] = float(np.interp(_number(r["instance_id"]), [p[0] for p in pts], [p[1] for p in pts]))
    return out


def periods(rows: list[dict], newer: float = NEWER) -> dict[str, str]:
    """Instance id -> "old" or "new": the newest `newer` share of all instances by date."""
    when = dates(rows)
    cut = float(np.quantile(list(when.values()), 1.0 - newer))
    return {iid: "new" if t >= cut else "old" for iid, t in when.items()}


@dataclass(frozen=True)
class Room:
    """What a pack of `budget` leaves for full text (build.py's `frame_budget`, replayed)."""

    budget: int
    reserve: int  # header, footer and the relevant-files block
    tree: int
    fits_all: bool
    outline_share: bool = True
    miss_cut: int = 256


def fill(order: list[int], sizes: list[int], tokens: list[int], room: Room, leaders: int = 3) -> set[int]:
    """Files the packer gives in full, in `order`: build.py's `fit_full`, replayed on exact
    counts (the files whose size cannot fit are not counted there, and are not here)."""
    remaining = room.budget - room.reserve - room.tree
    outline_reserve = 0 if room.fits_all or not room.outline_share else min(remaining // 10, 50_000)
    remaining -= outline_reserve
    lead = set(order[:leaders])
    full: set[int] = set()
    pos = misses = 0
    while pos < len(order) and (remaining > 8 or (pos < leaders and outline_reserve > 8)) and misses < room.miss_cut:
        batch: list[int] = []
        estimate = 0.0
        while pos < len(order) and len(batch) < 512 and (estimate < 1.1 * remaining or len(batch) < 32):
            f = order[pos]
            pos += 1
            if sizes[f] / 16 <= remaining + (outline_reserve if f in lead else 0):
                batch.append(f)
                estimate += sizes[f] / 4
        if not batch:
            break
        for f in batch:
            if tokens[f] <= remaining:
                full.add(f)
                remaining -= tokens[f]
            elif f in lead and tokens[f] <= remaining + outline_reserve:
                full.add(f)
                outline_reserve -= tokens[f] - remaining
                remaining = 0
            else:
                misses += 1
    return full


@dataclass
class Case:
    """One instance as the tuner needs it: features, exact counts and room per budget."""

    instance_id: str
    repo: str
    gold: list[int]
    features: object  # agent.pack.rank.Features without its file bytes
    sizes: list[int]
    tokens: list[int]
    rooms: list[Room]
    bm25: dict[int, bool]


def ablations(weights) -> dict[str, object]:
    """Each kept signal switched off (and the plain-BM25 base alone), by name."""
    from dataclasses import replace

    out = {
        "stack trace": weights.without("frame", "inner_frame"), "path named": weights.without("path"),
        "file named": weights.without("file"), "defines": weights.without("defines"),
        "code terms": weights.without("code"),
        "base only": replace(weights, words=weights.words or 1.0).without("code", "frame", "inner_frame", "path",
                                                                           "file", "defines"),
    }
    return {k: v for k, v in out.items() if v != weights}


def _miss_reason(i: int, order: list[int], sizes: list[int], tokens: list[int], room: Room, tests=None) -> str:
    """Why file `i` is not in full at this room: which packing rule, lifted, would let it in
    (or, given which files are `tests`, whether the tests ranked above it took its place)."""
    from dataclasses import replace

    if tests is not None:
        above = order[: order.index(i)]
        if i in fill([j for j in above if not tests[j]] + [i], sizes, tokens, room):
            return f"tests ranked above it ({sum(tokens[j] for j in above if tests[j]):,} tokens)"
    for change, lifted in (("outline reserve", replace(room, outline_share=False)),
                           ("tree share", replace(room, tree=0)),
                           ("miss cut", replace(room, miss_cut=10**9)),
                           ("tree + outline reserve", replace(room, tree=0, outline_share=False))):
        if i in fill(order, sizes, tokens, lifted):
            return change
    return "rank (the budget is full before it)"


def rooms(
    name: str, commit: str | None, paths: list[str], sizes: list[int], skipped: int, counter, budgets: list[int] = BUDGETS,
    *, ranked: list | None = None,
) -> list[Room]:
    """The room each budget leaves for full text: header, tree and the relevant-files block of
    `ranked` (agent.pack.rank.Ranked, best first) as build.py chooses them (the most detailed
    tree level within a tenth of a budget the repo overflows)."""
    from agent.pack.build import RELEVANT_FILES, relevant_room
    from agent.pack.render import TREE_LEVELS, footer, header, tree

    wide = {k: len(paths) for k in ("files", "full", "outline", "path_only")} | {"skipped": skipped}
    relevant = relevant_room([(r.path, r.reasons) for r in (ranked or [])[:RELEVANT_FILES] if r.score > 0], "xml", counter)
    trees = {}
    out = []
    for budget in budgets:
        reserve = sum(counter.count([header(name, commit, budget, wide, "xml"), footer("xml")])) + 2 + relevant
        for level in TREE_LEVELS:
            if level not in trees:
                (trees[level],) = counter.count([tree(paths, level, "xml")])
            if level == TREE_LEVELS[0]:
                fits = sum(sizes) / 16 + trees[level] + reserve <= budget
                limit = budget - reserve if fits else max(int(budget * 0.1), 1)
            if trees[level] <= limit:
                break
        out.append(Room(budget, reserve, trees[level], fits))
    return out


def run(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(CHECKOUT))
    from agent.pack import build_packs
    from agent.pack.counting import ExactCounter
    from agent.pack.cache import CountCache, digest
    from agent.pack.rank import WEIGHTS, rank_features, score
    from agent.pack.rank import order as order_of
    from agent.pack.render import file_block
    from agent.pack.scan import scan_repo
    from agent.tokens import get_tokenizer

    tok = get_tokenizer(args.tokenizer)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        done = {json.loads(l)["instance_id"] for l in out.read_text().splitlines() if l.strip()}
    everything = instances(Path(args.swe))
    part, period = split(everything), periods(everything)
    mirrors = Path(args.mirrors)
    rows = [r for r in everything if mirror(r["repo"], mirrors).exists()]
    if args.part != "all":
        rows = [r for r in rows if part[r["instance_id"]] == args.part]
    if args.period != "all":
        rows = [r for r in rows if period[r["instance_id"]] == args.period]
    if args.repos:
        rows = [r for r in rows if r["repo"].split("/")[1] in args.repos.split(",")]
    if args.source:
        rows = [r for r in rows if r["source"] == args.source]
    # Round-robin over repositories so that a partial run covers them all.
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["repo"]].append(r)
    for g in groups.values():  # by issue number: neighbouring base commits share most files
        g.sort(key=lambda r: (r["source"] != "lite", _number(r["instance_id"])))
    mixed = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
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
    cases = Path(args.cases) if args.cases else None
    if cases is not None:
        cases.mkdir(parents=True, exist_ok=True)
    print(f"{len(rows)} instances to run (shard {args.shard}, part {args.part}), {len(done)} done", flush=True)
    trees, words = Trees(work, mirrors), Words()
    variants = ablations(WEIGHTS)
    for r in rows:
        t0 = time.perf_counter()
        gold, created = gold_files(r["patch"])
        if not gold:
            continue
        try:
            if args.keep:
                root = checkout(r["repo"], r["base_commit"], work, r["instance_id"], mirrors)
            else:
                root = trees.enter(r["repo"], r["base_commit"], r["instance_id"])
        except (RuntimeError, subprocess.CalledProcessError) as e:
            print(f"{r['instance_id']}: skipped: {e}", flush=True)
            continue
        t1 = time.perf_counter()
        lean = cases is not None  # a tuning run: features and counts only, no packs
        packs = [] if lean else build_packs(root, budgets=BUDGETS, task=r["problem_statement"], tokenizer=tok,
                                            cache_dir=cache_dir, environ={})
        t2 = time.perf_counter()
        levels = {i.path: i for i in packs[0].items} if packs else {}
        ours = {b: all(lv.get(g) == "full" for g in gold)
                for b, p in zip(BUDGETS, packs) for lv in [{i.path: i.level for i in p.items}]}
        ranks = [levels[g].rank if g in levels else None for g in gold]
        if args.packs_only:  # real packs to set beside an --evaluate of stored cases
            with out.open("a") as fh:
                fh.write(json.dumps({"instance_id": r["instance_id"], "repo": r["repo"], "ours": ours,
                                     "gold_ranks": ranks, "pack_timings_1m": packs[-1].timings}) + "\n")
            if not args.keep:
                trees.leave(r["repo"], root)
            print(f"{r['instance_id']}: packs {[int(v) for v in ours.values()]} {t2 - t0:.1f}s", flush=True)
            continue

        scan = scan_repo(root)
        with CountCache(cache_dir, tok.name) as cache:
            counter = ExactCounter(tok, cache)

            def count(batch, counter=counter):
                blocks = [file_block(f.path, f.text, "xml") for f in batch]
                return counter.count(blocks, [digest(b) for b in blocks])

            base, base_rank = bm25_baseline(scan.files, r["problem_statement"], BUDGETS, gold, count, words)
            t3 = time.perf_counter()
            paths = [f.path for f in scan.files]
            sizes = [f.size for f in scan.files]
            tokens = count(scan.files)
            # The same ranking replayed on exact counts, and each signal switched off.
            features = rank_features(r["problem_statement"], paths, [f.data for f in scan.files])
            ranked = score(features, WEIGHTS)
            room = rooms(root.name, scan.commit, paths, sizes, len(scan.skipped), counter, ranked=ranked)
        index = {p: i for i, p in enumerate(paths)}
        gold_ix = [index[g] for g in gold if g in index]
        order = [index[x.path] for x in ranked]
        fulls = {rm.budget: fill(order, sizes, tokens, rm) for rm in room}
        replay = {b: len(gold_ix) == len(gold) and all(g in fulls[b] for g in gold_ix) for b in BUDGETS}
        ablation = {}
        for name, w in ({} if lean else variants).items():
            o = order_of(features, w).tolist()
            ablation[name] = {rm.budget: len(gold_ix) == len(gold) and all(g in fill(o, sizes, tokens, rm) for g in gold_ix)
                              for rm in room}
        misses = []
        for g in gold:
            if g not in index:
                skipped = next((s[1] for s in scan.skipped if s[0] == g), "not in the snapshot")
                misses.append({"path": g, "reason": f"not scanned: {skipped}"})
            elif index[g] not in fulls[BUDGETS[-1]]:
                misses.append({"path": g, "rank": order.index(index[g]) + 1, "tokens": tokens[index[g]],
                               "reason": _miss_reason(index[g], order, sizes, tokens, room[-1])})
        t4 = time.perf_counter()
        if lean:
            features.datas = None
            case = Case(r["instance_id"], r["repo"], gold_ix if len(gold_ix) == len(gold) else [-1],
                        features, sizes, tokens, room, {b: bool(v) for b, v in base.items()})
            (cases / f"{r['instance_id']}.pkl").write_bytes(pickle.dumps(case))
        rec = {
            "instance_id": r["instance_id"], "repo": r["repo"], "source": r["source"], "gold": gold,
            "part": part[r["instance_id"]], "period": period[r["instance_id"]],
            "created": created, "ours": ours or replay, "bm25": base, "replay": replay, "ablation": ablation,
            "gold_ranks": ranks, "bm25_first_gold_rank": base_rank, "misses_1m": misses,
            "missing_gold": [g for g in gold if g not in index],
            "seconds": {"checkout": round(t1 - t0, 2), "packs": round(t2 - t1, 2), "bm25": round(t3 - t2, 2),
                        "replay": round(t4 - t3, 2)},
            "pack_timings_1m": packs[-1].timings if packs else {},
        }
        with out.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        if not args.keep:
            trees.leave(r["repo"], root)
        print(f"{r['instance_id']}: ours {[int(v) for v in (ours or replay).values()]} bm25 {[int(v) for v in base.values()]} "
              f"{t4 - t0:.1f}s", flush=True)
    trees.close()


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a share k/n, in percent."""
    if n == 0:
        return 0.0, 0.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5 / (1 + z * z / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def _cell(values: list[bool]) -> str:
    k, n = sum(values), len(values)
    lo, hi = wilson(k, n)
    return f"{100 * k / n:.1f} [{lo:.0f}-{hi:.0f}]"


def _table(title: str, groups: list[tuple[str, list[dict]]]) -> None:
    print(f"\n{title}")
    header_ = ["", "n", "ranker"] + [f"{k // 1000}k" if k < 1_000_000 else "1M" for k in BUDGETS]
    print("| " + " | ".join(header_) + " |")
    print("|" + "---|" * len(header_))
    for name, group in groups:
        if not group:
            continue
        for label, key in (("tome", "ours"), ("BM25", "bm25")):
            cells = [name if label == "tome" else "", str(len(group)) if label == "tome" else "", label]
            cells += [_cell([g[key][str(b)] for g in group]) for b in BUDGETS]
            print("| " + " | ".join(cells) + " |")


def report(path: Path, packs: Path | None = None) -> None:
    """Print the report part's table, the time-split table, the ablation and the 1M misses;
    with `packs` (a run's records with real packs), tome's figures are the real packs' where
    there is one, and the report says how often the replay agreed with them."""
    recs = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    real = {}
    if packs is not None:
        real = {r["instance_id"]: r["ours"] for l in packs.read_text().splitlines() if l.strip()
                for r in [json.loads(l)] if r.get("pack_timings_1m")}
    agree = [r["replay"][str(b)] == real[r["instance_id"]][str(b)] for r in recs if r["instance_id"] in real
             for b in BUDGETS]
    for r in recs:
        if r["instance_id"] in real:
            r["ours"] = real[r["instance_id"]]
    rep = [r for r in recs if r["part"] == "report"]
    print("All gold-patch files in full text, % of instances, with 95% Wilson intervals; tome's pack and "
          "the same-run BM25 (bm25s over Python non-test files, whole files while they fit)")
    by_repo: dict[str, list[dict]] = defaultdict(list)
    for r in rep:
        by_repo[r["repo"]].append(r)
    _table(f"Report part ({len(rep)} instances; weights fitted on the tuning part only)",
           [(repo, by_repo[repo]) for repo in sorted(by_repo)] + [("**all**", rep)])
    new = [r for r in recs if r["period"] == "new"]
    _table(f"Time split: the newest {NEWER:.0%} by date ({len(new)} here; weights fitted on older tuning-part "
           "instances only)", [("report part", [r for r in new if r["part"] == "report"]),
                               ("tuning part", [r for r in new if r["part"] == "tune"]), ("**all new**", new)])
    ab = [r for r in rep if r.get("ablation")]
    if ab:
        print(f"\nAblation on the report part ({len(ab)} instances; the ranking replayed on exact counts): "
              "points lost without each signal (+ = the signal helps), instances it wins / loses at each budget")
        names = sorted({k for r in ab for k in r["ablation"]})
        header_ = ["without", *(f"{k // 1000}k" if k < 1_000_000 else "1M" for k in BUDGETS)]
        print("| " + " | ".join(header_) + " |")
        print("|" + "---|" * len(header_))
        cells = ["(replay = pack)"] + [f"{100 * sum(r['replay'][str(b)] for r in ab) / len(ab):.1f}" for b in BUDGETS]
        print("| " + " | ".join(cells) + " |")
        for name in names:
            cells = [name]
            for b in BUDGETS:
                win = sum(r["replay"][str(b)] and not r["ablation"][name][str(b)] for r in ab)
                lose = sum(r["ablation"][name][str(b)] and not r["replay"][str(b)] for r in ab)
                cells.append(f"{100 * (win - lose) / len(ab):+.1f} ({win}/{lose})")
            print("| " + " | ".join(cells) + " |")
    if agree:
        print(f"the replayed fill agrees with the real pack on {100 * sum(agree) / len(agree):.1f}% of "
              f"{len(agree)} (instance, budget) pairs; tome's figures above are the real packs' for "
              f"{len(real)} instances, the replay's for the other {len(recs) - len(real)}")
    misses = [(r["instance_id"], m) for r in rep for m in r.get("misses_1m", [])]
    k = sum(r["ours"][str(BUDGETS[-1])] for r in rep)
    print(f"\n1M on the report part: {k}/{len(rep)} = {100 * k / max(len(rep), 1):.1f}%; gold files not in full:")
    for iid, m in misses:
        where = f"rank {m['rank']}, {m['tokens']:,} tokens; " if "rank" in m else ""
        print(f"- {iid}: {m['path']} ({where}{m['reason']})")
    print("\nSWE-bench paper BM25, full test set (Table 3, 'All'): "
          + ", ".join(f"{k // 1000}k {v}%" for k, v in PAPER_ALL.items()))


class _StoredFeatures:
    """Features as pickled, whatever fields they had then (made into today's on loading)."""

    def __setstate__(self, state) -> None:
        self.state = state[1] if isinstance(state, tuple) else state


class _Cases(pickle.Unpickler):
    """Cases pickled by a run of this file as a script (`__main__.Case`) load here too, and
    features stored with fields since removed."""

    def find_class(self, module: str, name: str):
        if module == "__main__" and name in ("Case", "Room"):
            return {"Case": Case, "Room": Room}[name]
        if (module, name) == ("agent.pack.rank", "Features"):
            return _StoredFeatures
        return super().find_class(module, name)

    def load(self) -> Case:
        """The case, its features as today's `Features`."""
        from agent.pack.rank import Features

        case = super().load()
        state = case.features.state
        case.features = Features(state["paths"], state["lexical"], state["named"])
        return case


def load_cases(folder: Path, ids: set[str], *, unscanned: bool = False) -> list[Case]:
    """The stored cases of these instance ids (with `unscanned`, also those with a gold file
    the scan left out, marked by a gold index of -1: no ranking can reach it)."""
    out = []
    for f in sorted(folder.glob("*.pkl")):
        if f.stem in ids:
            with f.open("rb") as fh:
                case = _Cases(fh).load()
            if unscanned or -1 not in case.gold:
                out.append(case)
    return out


def _hits(cases: list[Case], weights, kinds: list) -> np.ndarray:
    """cases x budgets: all gold in full under `weights` (the ranking replayed, as `Case.hits`)."""
    from agent.pack.rank import order

    out = np.zeros((len(cases), len(BUDGETS)), dtype=bool)
    for c, case in enumerate(cases):
        o = order(case.features, weights, kind=kinds[c]).tolist()
        for b, room in enumerate(case.rooms):
            full = fill(o, case.sizes, case.tokens, room)
            out[c, b] = all(g in full for g in case.gold)
    return out


def _objective(hits: np.ndarray, base: np.ndarray) -> float:
    # Instances won over all budgets, less three times every point below BM25 at any budget.
    per = hits.sum(axis=0) - base.sum(axis=0)
    return float(hits.sum() + 3 * np.minimum(per, 0).sum())


# Values tried for each weight, one weight at a time, for a few rounds (coordinate ascent).
GRID = {
    "words": [0.0, 50.0, 100.0, 200.0, 400.0], "code": [0.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0],
    "test": [0.0, 0.1, 0.3, 0.6], "not_code": [0.0, 0.1, 0.4], "frame": [0.0, 25.0, 50.0, 100.0, 200.0, 400.0],
    "inner_frame": [0.0, 70.0, 140.0, 280.0], "path": [0.0, 25.0, 50.0, 100.0, 200.0, 400.0],
    "file": [0.0, 25.0, 50.0, 100.0, 210.0, 400.0], "defines": [0.0, 10.0, 25.0, 50.0, 75.0, 150.0, 300.0],
    "test_named": [0.25, 0.5, 1.0],
}


def fit(args: argparse.Namespace) -> None:
    """Fit the weights on the tuning part's older instances (coordinate ascent over GRID)."""
    sys.path.insert(0, str(CHECKOUT))
    from dataclasses import replace

    from agent.pack.rank import WEIGHTS, kinds

    everything = instances(Path(args.swe))
    part, period = split(everything), periods(everything)
    ids = {i for i in part if part[i] == "tune" and period[i] == "old"}
    cases = load_cases(Path(args.cases), ids)
    kind = [kinds(c.features.paths) for c in cases]
    base = np.array([[c.bm25[b] for b in BUDGETS] for c in cases])
    print(f"fitting on {len(cases)} tuning-part instances older than the time cut", flush=True)
    best, best_hits = WEIGHTS, _hits(cases, WEIGHTS, kind)
    best_score = _objective(best_hits, base)
    for round_ in range(args.rounds):
        changed = False
        for name, values in GRID.items():
            for v in values:
                if v == getattr(best, name):
                    continue
                w = replace(best, **{name: v})
                h = _hits(cases, w, kind)
                s = _objective(h, base)
                if s > best_score:
                    best, best_hits, best_score, changed = w, h, s, True
                    print(f"round {round_}: {name}={v} -> {s:.0f}", flush=True)
        if not changed:
            break
    print("fitted:", best)
    print("tuning part (fit set), tome / BM25 %:", " ".join(
        f"{b // 1000}k {100 * best_hits[:, i].mean():.1f}/{100 * base[:, i].mean():.1f}" for i, b in enumerate(BUDGETS)))


def evaluate(args: argparse.Namespace) -> None:
    """Records for the stored cases of `--part` under the ranker's current weights: the ranking
    replayed on exact counts, each signal off, and why 1M misses a gold file."""
    sys.path.insert(0, str(CHECKOUT))
    from agent.pack.rank import WEIGHTS, kinds, order

    everything = instances(Path(args.swe))
    part, period = split(everything), periods(everything)
    rows = {r["instance_id"]: r for r in everything}
    ids = {i for i in part if args.part in ("all", part[i]) and args.period in ("all", period[i])}
    out = Path(args.out)
    variants = ablations(WEIGHTS)
    with out.open("w") as fh:
        for case in load_cases(Path(args.cases), ids, unscanned=True):
            kind = kinds(case.features.paths)
            ranked = order(case.features, WEIGHTS, kind=kind).tolist()
            fulls = [fill(ranked, case.sizes, case.tokens, room) for room in case.rooms]
            replay = {b: all(g in f for g in case.gold) for b, f in zip(BUDGETS, fulls)}
            ablation = {}
            for name, w in variants.items():
                o = order(case.features, w, kind=kind).tolist()
                ablation[name] = {room.budget: all(g in fill(o, case.sizes, case.tokens, room) for g in case.gold)
                                  for room in case.rooms}
            misses = [{"path": case.features.paths[g], "rank": ranked.index(g) + 1, "tokens": case.tokens[g],
                       "reason": _miss_reason(g, ranked, case.sizes, case.tokens, case.rooms[-1], kind[0])}
                      if g >= 0 else {"path": "(a gold file)", "reason": "not in the scan (the scanner left it out)"}
                      for g in case.gold if g not in fulls[-1]]
            iid = case.instance_id
            rec = {"instance_id": iid, "repo": case.repo, "source": rows[iid]["source"], "part": part[iid],
                   "period": period[iid], "gold": [case.features.paths[g] for g in case.gold if g >= 0], "ours": replay,
                   "replay": replay, "bm25": case.bm25, "ablation": ablation, "misses_1m": misses,
                   "gold_ranks": [ranked.index(g) + 1 if g >= 0 else None for g in case.gold], "from": "replay"}
            fh.write(json.dumps(rec) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--swe", default=str(SWE), help="folder with lite.jsonl and verified.jsonl")
    ap.add_argument("--mirrors", default=str(MIRRORS), help="bare repository snapshots, <owner>+<name>/repo")
    ap.add_argument("--out", default=str(CACHE / "retrieval.jsonl"))
    ap.add_argument("--work", default=str(CACHE / "trees"))
    ap.add_argument("--cache", default=str(CACHE / "counts"))
    ap.add_argument("--cases", default="", help="also keep each instance's features here (for tune_weights)")
    ap.add_argument("--part", default="report", choices=["report", "tune", "all"])
    ap.add_argument("--packs-only", action="store_true", help="only the real packs (for --report --packs)")
    ap.add_argument("--period", default="all", choices=["old", "new", "all"], help="by date (see `periods`)")
    ap.add_argument("--tokenizer", default="deepseek-v4")
    ap.add_argument("--shard", default="0/1")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--repos", default="")
    ap.add_argument("--source", default="", help="lite or verified")
    ap.add_argument("--keep", action="store_true", help="keep the extracted checkouts")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--packs", default="", help="with --report: a run's records whose real packs replace the replay")
    ap.add_argument("--fit", action="store_true", help="fit the weights on the tuning part's stored cases")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--evaluate", action="store_true", help="records from the stored cases of --part (replayed)")
    args = ap.parse_args()
    if args.fit:
        fit(args)
    elif args.evaluate:
        evaluate(args)
    elif args.report:
        report(Path(args.out), Path(args.packs) if args.packs else None)
    else:
        run(args)


if __name__ == "__main__":
    main()
