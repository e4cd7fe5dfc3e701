"""Lexical ranking: identifier-boundary matches, code-shaped query terms, version dumps left out.

Each test builds a small real git repository, packs it for a task with `build_pack` and checks
which file the ranking puts first (the pack's relevant-files order), plus direct checks of the
query weights.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from agent.pack import build_pack
from agent.pack.rank import _without_version_dumps, query_weights, rank_files
from agent.tokens import get_tokenizer

_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
}


def _repo(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *cmd], cwd=root, check=True, capture_output=True, env=_ENV)
    return root


def _first(root: Path, task: str, tmp_path: Path) -> str:
    pack = build_pack(root, task=task, budget=200_000, tokenizer=get_tokenizer("cl100k_base"),
                      cache_dir=tmp_path / "cache", environ={})
    ranked = sorted((i for i in pack.items if i.rank is not None), key=lambda i: i.rank)
    return ranked[0].path


def _filler(n: int, seed: str) -> str:
    return "".join(f"def {seed}_{i}(value):\n    return value + {i}\n\n\n" for i in range(n))


def test_a_term_counts_at_identifier_boundaries_not_inside_words(tmp_path: Path) -> None:
    # `create` is part of bulk_create and createTable, but not of `created` or `recreate`.
    root = _repo(tmp_path / "repo", {
        "app/log.py": "# created, created and recreated: the record was created\nSTATE = 'created'\n" * 3,
        "app/store.py": _filler(20, "store") + "def save_all(items):\n    return bulk_create(items)\n",
        "app/other.py": _filler(5, "helper"),
    })
    assert _first(root, "Calling create fails", tmp_path) == "app/store.py"


def test_the_source_outranks_the_test_that_repeats_its_names(tmp_path: Path) -> None:
    root = _repo(tmp_path / "repo", {
        "pkg/units.py": "def to_metres(feet):\n    return feet * 0.3048\n",
        "tests/test_units.py": "from pkg.units import to_metres\n\n\n"
                               + "".join(f"def test_to_metres_{i}():\n    assert to_metres({i}) >= 0\n\n\n"
                                         for i in range(30)),
    })
    assert _first(root, "to_metres rounds feet wrongly for large values", tmp_path) == "pkg/units.py"


def test_a_pasted_version_dump_does_not_rank_the_version_printer(tmp_path: Path) -> None:
    # Issue templates ask for `show_versions()` output: every package and platform by name. The
    # module that prints those names must not outrank the code the report is about.
    packages = ["numpy", "pandas", "scipy", "netCDF4", "h5py", "dask", "matplotlib", "setuptools", "pip"]
    root = _repo(tmp_path / "repo", {
        "xr/util/print_versions.py": "".join(f'    ("{n}", lambda mod: mod.__version__),\n' for n in packages)
        + "def show_versions():\n    print('INSTALLED VERSIONS', 'python', 'OS', 'machine', 'processor')\n",
        "xr/core/resample.py": _filler(30, "bin") + "def resample_mean(data, freq):\n    return data.mean()  # drops attrs\n",
        "xr/core/misc.py": _filler(20, "misc"),
    })
    dump = "".join(f"{n}: {i}.{i + 2}.1\n" for i, n in enumerate(packages))
    task = ("resample_mean drops the attrs of the data.\n\n<details>\nINSTALLED VERSIONS\n------------------\n"
            "python: 3.10.4\nOS: Linux\nmachine: x86_64\nprocessor: x86_64\n\n" + dump + "</details>\n")
    assert _first(root, task, tmp_path) == "xr/core/resample.py"
    # Lines of settings are only dropped in a run that looks like versions.
    assert _without_version_dumps("a: 1\nb: 2\nkeep this\nc: 3\nd: 4\ne: x") == "a: 1\nb: 2\nkeep this\nc: 3\nd: 4\ne: x"
    assert _without_version_dumps("before\n" + dump + "after") == "before\nafter"


def test_query_weights_favour_code_shaped_words_and_split_them() -> None:
    w = query_weights("The `FilePathField` path must accept a callable; see get_queryset too.")
    assert w["filepathfield"] == 2.0 and w["get_queryset"] == 2.0
    assert w["callable"] == 1.0
    assert w["file"] == w["queryset"] == 0.5  # parts of code words, weaker than the words
    assert "the" not in w and "see" not in w


def test_rank_files_without_a_match_keeps_path_order() -> None:
    paths = ["b.py", "a.py"]
    ranked = rank_files("nothing relevant here zzz", paths, [b"x = 1\n", b"y = 2\n"])
    assert [r.path for r in ranked] == ["a.py", "b.py"] and all(r.score == 0 for r in ranked)
