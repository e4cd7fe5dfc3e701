"""How well does tome's difficulty score track human difficulty labels? (issue 5, point 5)

Reads SWE-bench task statements and OpenAI's human difficulty labels (../shared/swe), computes
agent.modes.difficulty_features for each (statement only: never the gold patch or the tests; repo
size from `git ls-tree` on bare mirrors when present), and prints:

  1. Spearman between score and label: the shipped model (in-sample), the same model refitted
     under 10-fold cross-validation (folds by instance) and leave-one-repository-out, with and
     without repository features, next to the statement-length baseline.
  2. The starting mode choose_mode picks, per difficulty label.

`--fit` prints the refitted weights as a DifficultyModel literal for agent/modes.py.

    python benchmarks/difficulty.py [--swe ../shared/swe] [--mirrors /work/.mirror] [--fit]

Needs numpy and scipy (benchmark only; agent.modes itself is pure Python).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from agent.modes import (
    DIFFICULTY_MODEL,
    DifficultyFeatures,
    DifficultyModel,
    choose_mode,
    design_vector,
    difficulty_features,
    difficulty_score,
)
from agent.records import Mode, Task

LABELS = ["<15 min fix", "15 min - 1 hour", "1-4 hours", ">4 hours"]
# Mirrors whose directory name is not owner+name (too big to fetch, or a fork holds the history).
MIRROR_NAMES = {
    "django/django": "apprent1c3+django",
    "matplotlib/matplotlib": "williamlus+matplotlib",
    "scikit-learn/scikit-learn": "thomasjpfan+scikit-learn",
}
L2 = 3.0  # ridge strength on standardized inputs, chosen once by 10-fold CV on the statement model


def load(swe: Path) -> list[dict]:
    """Labelled instances: statement, repo, base commit, label index, whether in Verified."""
    rows: dict[str, dict] = {}
    for name in ("verified.jsonl", "lite.jsonl"):
        for line in (swe / name).read_text().splitlines():
            r = json.loads(line)
            rows.setdefault(r["instance_id"], r)
    out = []
    for line in (swe / "difficulty.jsonl").read_text().splitlines():
        d = json.loads(line)
        r = rows[d["instance_id"]]
        out.append(
            {
                "id": d["instance_id"],
                "repo": r["repo"],
                "commit": r["base_commit"],
                "statement": r["problem_statement"],
                "label": LABELS.index(d["difficulty"]),
                "verified": bool(d["in_verified"]),
            }
        )
    return out


def repo_file_count(mirrors: Path, repo: str, commit: str) -> int | None:
    """Files in `repo` at `commit`, from a bare mirror; None when the mirror or commit is missing."""
    git_dir = mirrors / MIRROR_NAMES.get(repo, repo.replace("/", "+")) / "repo"
    if not git_dir.exists():
        return None
    p = subprocess.run(
        ["git", "-C", str(git_dir), "ls-tree", "-r", "--name-only", commit], capture_output=True, text=True
    )
    return len(p.stdout.splitlines()) if p.returncode == 0 else None


def fit(feats: list[DifficultyFeatures], y: np.ndarray, *, repo_terms: bool) -> DifficultyModel:
    """Ridge regression of the label on standardized inputs, folded back into raw-unit weights."""
    keys = list(design_vector(feats[0]))
    X = np.array([[design_vector(f)[k] for k in keys] for f in feats])
    cols = [X]
    logn = np.array([math.log1p(f.repo_files) if f.repo_files else np.nan for f in feats])
    centre = float(np.nanmean(logn)) if repo_terms and not np.all(np.isnan(logn)) else 0.0
    repos = sorted({f.repo for f in feats if f.repo}) if repo_terms else []
    if repo_terms:
        cols.append(np.nan_to_num(logn - centre)[:, None])
        cols.append(np.array([[float(f.repo == r) for r in repos] for f in feats]).reshape(len(feats), -1))
    A = np.hstack(cols)
    mu, sd = A.mean(0), A.std(0)
    sd[sd == 0] = 1.0
    Z = (A - mu) / sd
    ym = y.mean()
    w = np.linalg.solve(Z.T @ Z + L2 * len(y) / 100 * np.eye(Z.shape[1]), Z.T @ (y - ym))
    raw = w / sd
    # Score = sigmoid(linear): centre so that a typical task sits near 0.5, stretch label units.
    scale = 2.0
    intercept = float((ym - raw @ mu - 0.75) * scale)
    n = len(keys)
    return DifficultyModel(
        intercept=intercept,
        weights={k: round(float(v * scale), 5) for k, v in zip(keys, raw[:n])},
        repo_files_weight=round(float(raw[n] * scale), 5) if repo_terms else 0.0,
        repo_files_centre=round(centre, 5),
        repo_offsets={r: round(float(v * scale), 5) for r, v in zip(repos, raw[n + 1 :])},
        fitted_on=f"ridge on {len(y)} labelled SWE-bench statements, benchmarks/difficulty.py",
    )


def held_out(feats, y, folds, *, repo_terms: bool) -> np.ndarray:
    """Scores for each instance from a model fitted without its fold."""
    pred = np.zeros(len(y))
    for fold in sorted(set(folds)):
        test = np.array([f == fold for f in folds])
        model = fit([f for f, t in zip(feats, test) if not t], y[~test], repo_terms=repo_terms)
        pred[test] = [difficulty_score(f, model=model) for f, t in zip(feats, test) if t]
    return pred


def rho(x, y) -> float:
    return float(spearmanr(x, y).statistic)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--swe", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "swe")
    ap.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--fit", action="store_true", help="print the refitted DifficultyModel")
    args = ap.parse_args()

    data = load(args.swe)
    feats = []
    for d in data:
        n_files = repo_file_count(args.mirrors, d["repo"], d["commit"])
        feats.append(difficulty_features(Task(statement=d["statement"], repo=d["repo"]), repo_files=n_files))
    y = np.array([d["label"] for d in data], float)
    ver = np.array([d["verified"] for d in data])
    missing = sum(f.repo_files is None for f in feats)
    print(f"{len(data)} labelled instances ({ver.sum()} in Verified); repo size unknown for {missing}")

    rng = np.random.default_rng(0)
    kfold = list(rng.permutation(len(y)) % args.folds)
    loro = [d["repo"] for d in data]
    length = np.array([f.chars for f in feats], float)
    shipped = np.array([difficulty_score(f) for f in feats])

    print("\nSpearman(score, human label)            all labelled   Verified only")
    table = [("statement length (baseline)", length), ("shipped model, in-sample", shipped)]
    for repo_terms in (False, True):
        tag = "with repo" if repo_terms else "statement only"
        table.append((f"{tag}: refit in-sample", np.array([difficulty_score(f, model=fit(feats, y, repo_terms=repo_terms)) for f in feats])))
        table.append((f"{tag}: {args.folds}-fold CV", held_out(feats, y, kfold, repo_terms=repo_terms)))
        table.append((f"{tag}: leave-one-repo-out", held_out(feats, y, loro, repo_terms=repo_terms)))
    for name, s in table:
        print(f"  {name:38s} {rho(s, y):+.3f}        {rho(s[ver], y[ver]):+.3f}")

    print("\nStarting mode per label (shipped model, no pack, no profile limits; in-sample)")
    counts = Counter((d["label"], choose_mode(Task(statement=d["statement"], repo=d["repo"]), repo_files=f.repo_files).mode) for d, f in zip(data, feats))
    print(f"  {'label':18s} {'n':>4s} " + " ".join(f"{m.label:>11s}" for m in Mode))
    for i, label in enumerate(LABELS):
        n = sum(v for (lab, _), v in counts.items() if lab == i)
        print(f"  {label:18s} {n:4d} " + " ".join(f"{counts[(i, m)]:11d}" for m in Mode))
    if args.fit:
        model = fit(feats, y, repo_terms=True)
        print("\nDIFFICULTY_MODEL =", repr(model))
        print("score quantiles 35/90%:", np.quantile([difficulty_score(f, model=model) for f in feats], [0.35, 0.9]))


if __name__ == "__main__":
    main()
