"""BM25 as the ranking's floor, each kept signal as a boost, and the benchmark's honest split.

The base order is checked against the real `bm25s` library (the same-run baseline of
benchmarks/retrieval.py); the signals on small in-memory repositories, each with the signal
switched off too (it must be that signal that lifts the file); the benchmark's replay of the
packer against a real pack of a real git repository.
"""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import bm25s
import numpy as np
import pytest

from agent.pack import build_packs
from agent.pack.rank import WEIGHTS, rank_features, score
from agent.tokens import get_tokenizer

_ROOT = Path(__file__).resolve().parents[1]
_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin",
}


def _retrieval():
    spec = importlib.util.spec_from_file_location("retrieval", _ROOT / "benchmarks" / "retrieval.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["retrieval"] = module  # dataclasses look their module up while they are built
    spec.loader.exec_module(module)
    return module


def test_the_base_order_is_bm25s_whole_file_bm25() -> None:
    # Files of equal length (same number of 5-letter words): then length normalisation is the
    # same for all and the scores must equal bm25s's (Lucene idf, k1 1.5, b 0.75, a repeated
    # query word counting twice), up to the scale.
    rnd = random.Random(7)
    vocab = ["".join(rnd.choice("bcdfghjkmnpqrstvwxz") for _ in range(5)) for _ in range(40)]
    paths = [f"m/f{i:03d}.py" for i in range(30)]
    texts = [" ".join(rnd.choice(vocab[: 10 + i]) for _ in range(60)) for i in range(30)]
    query = [vocab[0], vocab[3], vocab[3], vocab[12], vocab[25], vocab[33]]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([f"{p}\n{t}" for p, t in zip(paths, texts)], stopwords="en", show_progress=False),
                    show_progress=False)
    theirs = retriever.get_scores(query)
    features = rank_features(" ".join(query), paths, [t.encode() for t in texts])
    assert features.lexical["words"] == pytest.approx(theirs / theirs.max(), rel=1e-6)
    ranked = score(features, replace(WEIGHTS, words=1.0).without("code", "frame", "inner_frame", "path", "file", "defines"))
    expected = sorted(range(30), key=lambda i: (-round(float(theirs[i] / theirs.max()), 3), paths[i]))
    assert [r.path for r in ranked] == [paths[i] for i in expected]


def test_the_split_is_fixed_by_the_id_hash_and_halves_each_repository() -> None:
    retrieval = _retrieval()
    rows = [{"instance_id": f"{o}__{o}-{n}", "repo": f"{o}/{o}"} for o in ("aa", "bb") for n in range(101, 112)]
    parts = retrieval.split(rows)
    for o in ("aa", "bb"):
        mine = [parts[r["instance_id"]] for r in rows if r["repo"] == f"{o}/{o}"]
        assert sorted(set(mine)) == ["report", "tune"] and abs(mine.count("tune") - mine.count("report")) <= 1
    assert retrieval.split(list(reversed(rows))) == parts  # the order of the rows does not matter


def test_undated_instances_are_placed_in_time_by_their_number() -> None:
    retrieval = _retrieval()
    rows = [
        {"instance_id": "x__x-100", "repo": "x/x", "created_at": "2020-01-01T00:00:00Z"},
        {"instance_id": "x__x-300", "repo": "x/x", "created_at": "2022-01-01T00:00:00Z"},
        {"instance_id": "x__x-200", "repo": "x/x"},
    ]
    when = retrieval.dates(rows)
    assert when["x__x-100"] < when["x__x-200"] < when["x__x-300"]
    assert retrieval.periods(rows, newer=0.34) == {"x__x-100": "old", "x__x-200": "old", "x__x-300": "new"}
    with pytest.raises(ValueError, match="no dated instance"):
        retrieval.dates([{"instance_id": "y__y-1", "repo": "y/y"}])


def test_the_replayed_fill_gives_the_files_the_real_pack_gives_in_full(tmp_path: Path) -> None:
    # The ablation replays the packer's full-text step on exact counts: it must agree with
    # build_packs itself, file for file, at budgets that cut the repository at different places.
    retrieval = _retrieval()
    from agent.pack.counting import ExactCounter
    from agent.pack.cache import CountCache, digest
    from agent.pack.render import file_block
    from agent.pack.scan import scan_repo

    rnd = random.Random(3)
    root = tmp_path / "repo"
    for i in range(60):
        words = " ".join(rnd.choice(["parse", "header", "value", "quote", "token", "render"]) for _ in range(rnd.randint(5, 400)))
        (root / "pkg").mkdir(parents=True, exist_ok=True)
        (root / "pkg" / f"m{i:02d}.py").write_text(f'"""{words}"""\n\ndef f{i}(x):\n    return x + {i}\n')
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *cmd], cwd=root, check=True, capture_output=True, env=_ENV)
    task = "the quote in a header value is parsed as a token"
    tok = get_tokenizer("cl100k_base")
    budgets = [1_500, 4_000, 12_000]
    packs = build_packs(root, budgets=budgets, task=task, tokenizer=tok, cache_dir=tmp_path / "cache", environ={})
    scan = scan_repo(root)
    paths, sizes = [f.path for f in scan.files], [f.size for f in scan.files]
    with CountCache(tmp_path / "cache", tok.name) as cache:
        counter = ExactCounter(tok, cache)
        blocks = [file_block(f.path, f.text, "xml") for f in scan.files]
        tokens = counter.count(blocks, [digest(b) for b in blocks])
        ranked = score(rank_features(task, paths, [f.data for f in scan.files]))
        rooms = retrieval.rooms(root.name, scan.commit, paths, sizes, len(scan.skipped), counter, budgets, ranked=ranked)
    order = [paths.index(r.path) for r in ranked]
    seen = set()
    for pack, room in zip(packs, rooms):
        full = {i.path for i in pack.items if i.level == "full"}
        assert {paths[i] for i in retrieval.fill(order, sizes, tokens, room)} == full
        seen.add(len(full))
    assert len(seen) == 3 and 0 < min(seen) and max(seen) < len(paths)  # three different cuts


def test_wilson_interval_brackets_the_share() -> None:
    wilson = _retrieval().wilson
    lo, hi = wilson(45, 50)
    assert lo < 90 < hi and hi <= 100 and (lo, hi) == pytest.approx((78.6, 95.7), abs=0.1)
    assert wilson(0, 10)[0] == 0.0 and np.isclose(wilson(10, 10)[1], 100.0)


def _filler(n: int, seed: str) -> str:
    return "".join(f"def {seed}_{i}(x):\n    return x + {i}\n\n\n" for i in range(n))


# Each case: files, a task, the file the signal should lift, and the Weights fields that make
# the signal. Beside them: a file that quotes the whole task (BM25's best by far, which a single
# signal need not beat) and decoys that quote its first line (which it must beat).
_QUOTER = "pkg/notes.py"
_SIGNALS = {
    "stack trace": (
        {"pkg/load.py": _filler(30, "read") + "def load(text):\n    return int(text)\n"},
        'The parser fails on a quoted header value:\nTraceback (most recent call last):\n'
        '  File "/site-packages/pkg/load.py", line 61, in load\nValueError: bad header\n',
        "pkg/load.py", ("frame", "inner_frame"),
    ),
    "path named": (
        {"pkg/io/wire.py": _filler(30, "read"), "pkg/io/writer.py": _filler(30, "write")},
        "The parser fails on a quoted header value; the code is in pkg/io/wire.py.",
        "pkg/io/wire.py", ("path",),
    ),
    "file named": (
        {"pkg/sqlmigrate.py": _filler(30, "cmd"), "pkg/migrate.py": _filler(30, "mig")},
        "The parser fails on a quoted header value when sqlmigrate prints the statements.",
        "pkg/sqlmigrate.py", ("file",),
    ),
    "defines": (
        {"pkg/text.py": _filler(30, "text") + "def unquote_header(value):\n    return value\n"},
        "`unquote_header` keeps the quotes: the parser fails on a quoted header value.",
        "pkg/text.py", ("defines",),
    ),
}


@pytest.mark.parametrize("signal", sorted(_SIGNALS))
def test_a_kept_signal_lifts_the_file_the_task_names_over_bm25(signal: str) -> None:
    files, task, target, fields = _SIGNALS[signal]
    first = task.splitlines()[0]  # "The parser fails ...": each decoy repeats one of its words
    files = {**files, _QUOTER: "".join(f"# {line}\n" for line in task.splitlines()) * 3,
             **{f"pkg/decoy{i}.py": f"# {word} {word}\n" + _filler(8, f"d{i}") for i, word in enumerate(w.strip("`:;,.") for w in first.split()[:3])}}
    paths = sorted(files)
    features = rank_features(task, paths, [files[p].encode() for p in paths])
    assert all(getattr(WEIGHTS, f) > 0 for f in fields)
    on, off = score(features, WEIGHTS), score(features, WEIGHTS.without(*fields))
    mine = next(r for r in on if r.path == target)
    # The boost adds to the file's BM25 points and nothing else moves: the rest keep BM25's order.
    assert mine.score == pytest.approx(next(r.score for r in off if r.path == target) + mine.signals[signal], abs=1e-3)
    assert [r.path for r in on if r.path != target] == [r.path for r in off if r.path != target]
    assert [r.path for r in on].index(target) < [r.path for r in off].index(target)
    assert [r.path for r in on][0] == _QUOTER and mine.reasons[0].startswith(signal + ":")  # named reasons first
