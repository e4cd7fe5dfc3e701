"""The packer's phases one by one (agent/pack/build.py), on small real git repositories:
candidates and ranking, the frame (header, relevant block, tree), full text, outlines, render."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_pack import make_repo

from agent.errors import ConfigError
from agent.pack import build_pack, count_repo
from agent.pack.build import (
    Fit,
    PackOptions,
    _prepare,
    _Run,
    fit_full,
    fit_outlines,
    frame_budget,
    relevant_room,
    render,
)
from agent.pack.cache import CountCache
from agent.pack.counting import ExactCounter, Laps
from agent.pack.outline import Outliner
from agent.pack.render import relevant_block
from agent.tokens import get_tokenizer

TASK = "lib/m3.py: f7 multiplies wrong"


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer("cl100k_base")


def _module(i: int) -> str:
    return "".join(f'def f{k}(x):\n    """Multiply by {k}."""\n    return x * {k} + {i}\n\n\n' for k in range(40))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    files = {f"lib/m{i}.py": _module(i) for i in range(8)}
    files |= {"README.md": "# lib\n\nMultiplication helpers.\n", "tests/test_m3.py": "from lib.m3 import f7\n"}
    return make_repo(tmp_path / "repo", files)


@contextlib.contextmanager
def prepared(root: Path, tmp_path: Path, tok, task: str | None) -> Iterator[_Run]:
    with CountCache(tmp_path / "cache", tok.name) as cache:
        counter = ExactCounter(tok, cache)
        yield _prepare(root, task, cache, counter, PackOptions(tokenizer=tok, environ={}), "m", tok.name, Laps({}))


def test_candidates_are_immutable_and_come_in_path_and_rank_order(repo: Path, tmp_path: Path, tok) -> None:
    with prepared(repo, tmp_path, tok, TASK) as run:
        assert [f.path for f in run.files] == sorted(f.path for f in run.files)
        assert run.order[0].path == "lib/m3.py" and {f.path for f in run.order} == {f.path for f in run.files}
        scores = [f.rank.score for f in run.order]
        assert scores == sorted(scores, reverse=True)
        with pytest.raises(dataclasses.FrozenInstanceError):
            run.files[0].size = 0  # type: ignore[misc]
    with prepared(repo, tmp_path, tok, None) as run:
        assert run.order == run.files and all(f.rank is None for f in run.files)


def test_the_frame_reserves_the_relevant_block_and_shrinks_the_tree_to_its_share(repo: Path, tmp_path: Path, tok) -> None:
    with prepared(repo, tmp_path, tok, None) as bare, prepared(repo, tmp_path, tok, TASK) as ranked:
        top = [(f.path, f.rank.reasons) for f in ranked.order if f.rank.score > 0]
        widest = tok.count(relevant_block(((p, "outline", r) for p, r in top), "xml"))
        assert relevant_room(top, "xml", ranked.store.counter) == widest > 0
        assert frame_budget(ranked, 100_000).reserve - frame_budget(bare, 100_000).reserve == widest
        roomy, tight = frame_budget(bare, 100_000), frame_budget(bare, 400)
        assert roomy.might_fit_all and roomy.tree_level == "files" and tok.count(roomy.tree_text) == roomy.tree_tokens
        assert not tight.might_fit_all and tight.tree_level != "files" and tight.tree_tokens < roomy.tree_tokens
        with pytest.raises(ConfigError, match="too small for even the tree"):
            frame_budget(bare, 60)


def test_full_text_goes_in_rank_order_within_the_room(repo: Path, tmp_path: Path, tok) -> None:
    with prepared(repo, tmp_path, tok, TASK) as run:
        frame = frame_budget(run, 3_000)
        fit = fit_full(run, frame)
        full = [f for f in run.order if fit.levels.get(f.path) == "full"]
        assert set(fit.levels.values()) == {"full"} and full[0] is run.order[0]
        used = sum(run.store.tokens(f) for f in full)
        room = frame.budget - frame.reserve - frame.tree_tokens
        assert used + fit.remaining + fit.outline_reserve == room and fit.remaining >= 0
        assert len(full) < len(run.files)  # the room cut the ranking


def test_outlines_fill_what_full_text_left_and_only_where_smaller(repo: Path, tmp_path: Path, tok) -> None:
    with prepared(repo, tmp_path, tok, TASK) as run, Outliner() as outliner:
        full = fit_full(run, frame_budget(run, 3_000))
        fit = fit_outlines(run, full, outliner)
        outlined = [f for f in run.files if fit.levels.get(f.path) == "outline"]
        assert outlined and {p: lv for p, lv in fit.levels.items() if lv == "full"} == full.levels
        for f in outlined:
            n = run.store.outline_tokens(f)
            assert n == tok.count(run.store.outline_block(f)) and (run.store.tokens(f) is None or n < run.store.tokens(f))
        spent = sum(run.store.outline_tokens(f) for f in outlined)
        assert spent + fit.remaining == full.remaining + full.outline_reserve


def test_render_counts_exactly_and_sheds_the_lowest_ranked_over_the_budget(repo: Path, tmp_path: Path, tok) -> None:
    with prepared(repo, tmp_path, tok, TASK) as run:
        frame = frame_budget(run, 3_000)
        run.store.count_full(run.files)
        everything = Fit({f.path: "full" for f in run.files}, 0)  # far over the budget
        out = render(run, frame, everything)
        assert tok.count(out.document) == out.tokens and tok.count(out.relevant) == out.relevant_tokens
        assert out.tokens + out.relevant_tokens <= 3_000
        kept = [f.path for f in run.order if f.path in out.levels]
        assert kept == [f.path for f in run.order[: len(kept)]]  # shed from the bottom of the ranking
        assert out.counts["full"] == len(kept) < len(run.files)


def test_one_options_record_for_build_pack_build_packs_and_count_repo(repo: Path, tmp_path: Path, tok) -> None:
    options = PackOptions(tokenizer=tok, cache_dir=tmp_path / "cache", environ={}, format="markdown")
    by_record = build_pack(repo, task=TASK, budget=3_000, options=options)
    by_fields = build_pack(repo, task=TASK, budget=3_000, tokenizer=tok, cache_dir=tmp_path / "cache", environ={},
                           format="markdown")
    assert by_record.document == by_fields.document and by_record.format == "markdown"
    # Fields given beside the record replace its own.
    assert build_pack(repo, budget=3_000, options=options, format="xml").document.startswith("<repository")
    assert sum(count_repo(repo, options=options).values()) == sum(count_repo(repo, **{
        "tokenizer": tok, "cache_dir": tmp_path / "c2", "environ": {}, "format": "markdown"}).values())
    with pytest.raises(TypeError, match="budgett"):
        build_pack(repo, budgett=3_000, options=options)
