"""Modes: the table walk, --mode parsing, the difficulty features and score, and choose_mode's rules."""

from __future__ import annotations

import itertools

import pytest
from pydantic import BaseModel, ValidationError

from agent.errors import ConfigError
from agent.modes import (
    LARGE_PACK_TOKENS,
    MODE_CHOICES,
    MODE_TABLE,
    DifficultyModel,
    ModeChoice,
    choose_mode,
    difficulty_features,
    difficulty_score,
    escalate,
    parse_mode,
)
from agent.profiles import get_profile
from agent.records import Mode, Pack, PackItem, PackTotals, Task

DEEPSEEK = get_profile("deepseek-v4-pro")

NARROW_BUG = """\
Typo in error message of Field.check()

Running `manage.py check` raises:

Traceback (most recent call last):
  File "manage.py", line 22, in <module>
    main()
  File "django/core/management/__init__.py", line 419, in execute_from_command_line
    utility.execute()
  File "django/db/models/fields/__init__.py", line 212, in check
    raise ValueError("max_lenght must be positive")
ValueError: max_lenght must be positive

The wrong error message says "max_lenght"; it should be "max_length".
"""

DESIGN_CHANGE = """\
Support pluggable storage backends for the cache

It would be nice if the caching layer should support custom serializers and allow users to \
choose a backend per view. We should probably refactor the existing cache framework, add an \
option to the settings, deprecate the old CACHE_BACKEND string, and keep backwards compatibility \
for third-party backends. Maybe the middleware, the template fragment cache and the low-level API \
all need a new hook? I think several parts of the framework would need rework, and we should \
consider adding a proposal for how to generalize the interface in the future.
"""


def pack_of(tokens: int, scores: list[float], *, files: int = 100) -> Pack:
    """A real Pack record of `tokens` tokens whose items carry `scores`."""
    per = tokens // max(len(scores), 1)
    items = [
        PackItem(path=f"f{i}.py", level="full", tokens=per, score=s) for i, s in enumerate(scores)
    ]
    totals = PackTotals(files=files, full=len(items), tokens=tokens, repo_tokens=tokens * 4)
    return Pack(
        document="",
        repo="demo",
        root="/tmp/demo",
        model="deepseek-v4-pro",
        tokenizer="deepseek-v4",
        budget=1_000_000,
        totals=totals,
        items=items,
    )


# ---------------------------------------------------------------------------- table and parsing


def test_escalation_walks_the_table_to_the_top() -> None:
    walk, mode = [], Mode.NON_THINK
    while mode is not None:
        walk.append(mode)
        mode = escalate(mode)
    assert walk == [Mode.NON_THINK, Mode.HIGH, Mode.MAX]
    assert escalate(Mode.MAX) is None


def test_escalation_skips_modes_the_profile_cannot_run() -> None:
    small = get_profile("deepseek-v4-pro", context_window=200_000)
    assert escalate(Mode.NON_THINK, profile=small) is Mode.HIGH
    assert escalate(Mode.HIGH, profile=small) is None  # Think Max wants 384K available
    assert escalate(Mode.HIGH, profile=DEEPSEEK, pack_tokens=700_000) is None
    assert escalate(Mode.HIGH, profile=DEEPSEEK, pack_tokens=100_000) is Mode.MAX


def test_the_table_grows_budgets_as_it_climbs() -> None:
    specs = [MODE_TABLE[m] for m in (Mode.NON_THINK, Mode.HIGH, Mode.MAX)]
    for lower, upper in itertools.pairwise(specs):
        assert lower.max_output_tokens < upper.max_output_tokens
        assert lower.max_steps < upper.max_steps
        assert lower.cost_share < upper.cost_share
    assert all(0 < s.cost_share <= 1 for s in specs)
    with pytest.raises(ValidationError):
        specs[0].max_steps = 1  # frozen: the table is data, not state


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("auto", None),
        ("non-think", Mode.NON_THINK),
        ("Non-Think", Mode.NON_THINK),
        ("high", Mode.HIGH),
        ("think-high", Mode.HIGH),
        ("max", Mode.MAX),
        (" Think Max ", Mode.MAX),
    ],
)
def test_parse_mode(text: str, expected: Mode | None) -> None:
    assert parse_mode(text) is expected


def test_parse_mode_rejects_unknown_values_and_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match="auto, non-think, high, max"):
        parse_mode("medium")
    assert all(c == "auto" or parse_mode(c) is not None for c in MODE_CHOICES)


# ---------------------------------------------------------------------------- features and score


def test_features_read_the_statement() -> None:
    f = difficulty_features(Task(statement=NARROW_BUG, repo="django/django"))
    assert f.traceback_frames == 3
    assert f.exception_types == 1
    assert f.files_mentioned == 3  # manage.py and two __init__.py paths, each counted once
    assert f.narrow_words >= 2 and f.design_words == 0
    assert f.repo == "django/django"
    g = difficulty_features(DESIGN_CHANGE)
    assert g.design_words >= 5 and g.traceback_frames == 0 and g.repo is None


def test_features_are_deterministic() -> None:
    pack = pack_of(50_000, [5.0, 1.0, 0.5, 0.0])
    a = difficulty_features(Task(statement=NARROW_BUG), pack, repo_files=1200)
    b = difficulty_features(Task(statement=NARROW_BUG), pack.model_copy(deep=True), repo_files=1200)
    assert a == b and a.model_dump_json() == b.model_dump_json()
    assert difficulty_score(a) == difficulty_score(b)


def test_pack_concentration_features() -> None:
    peaked = difficulty_features("x", pack_of(10_000, [10.0, 0.1, 0.1, 0.0]))
    flat = difficulty_features("x", pack_of(10_000, [1.0, 1.0, 1.0, 1.0]))
    assert peaked.pack_top_share > 0.9 and flat.pack_top_share == pytest.approx(0.25)
    assert flat.pack_entropy == pytest.approx(1.0) and peaked.pack_entropy < 0.2
    assert peaked.pack_files_implicated == 3 and peaked.pack_tokens == 10_000
    assert peaked.pack_fraction == pytest.approx(0.25) and peaked.repo_files == 100


class _Item(BaseModel):
    score: float


class _LooseRecord(BaseModel):
    """A pack-like record with its counts at the top level: only what modes.py reads."""

    total_tokens: int
    items: list[_Item]


def test_pack_features_are_read_duck_typed() -> None:
    loose = _LooseRecord(total_tokens=200_000, items=[_Item(score=2.0), _Item(score=2.0)])
    f = difficulty_features("x", loose)  # type: ignore[arg-type]
    assert f.pack_tokens == 200_000 and f.pack_top_share == pytest.approx(0.5)
    assert f.pack_entropy == pytest.approx(1.0) and f.pack_fraction is None


def test_narrow_stack_trace_bug_scores_below_vague_design_change() -> None:
    narrow = difficulty_score(difficulty_features(Task(statement=NARROW_BUG, repo="django/django")))
    design = difficulty_score(
        difficulty_features(Task(statement=DESIGN_CHANGE, repo="django/django"))
    )
    assert 0.0 <= narrow < design <= 1.0


# ---------------------------------------------------------------------------- choose_mode

# Models that find every task very easy / very hard, so the rules are tested apart from the fit.
ALWAYS_EASY = DifficultyModel(intercept=-10.0)
ALWAYS_HARD = DifficultyModel(intercept=10.0)


def test_never_non_think_with_a_large_pack() -> None:
    task = Task(statement=NARROW_BUG)
    small = choose_mode(task, pack_of(20_000, [3.0, 1.0]), profile=DEEPSEEK, model=ALWAYS_EASY)
    assert small.mode is Mode.NON_THINK, small.reasons  # the easy task starts cheap...
    large = choose_mode(
        task, pack_of(LARGE_PACK_TOKENS + 1, [3.0, 1.0]), profile=DEEPSEEK, model=ALWAYS_EASY
    )
    assert large.mode is not Mode.NON_THINK  # ...until the pack is long
    assert any("Non-think" in r for r in large.reasons)


def test_think_max_refused_where_the_window_is_too_small() -> None:
    hard = Task(statement=DESIGN_CHANGE)
    assert choose_mode(hard, profile=DEEPSEEK, model=ALWAYS_HARD).mode is Mode.MAX
    small = get_profile("deepseek-v4-pro", context_window=256_000)
    choice = choose_mode(hard, profile=small, model=ALWAYS_HARD)
    assert choice.mode is Mode.HIGH and any("384,000" in r for r in choice.reasons)
    crowded = choose_mode(hard, pack_of(800_000, [1.0]), profile=DEEPSEEK, model=ALWAYS_HARD)
    assert crowded.mode is Mode.HIGH  # 1M window minus an 800K pack leaves too little


def test_a_profile_with_only_non_think_gets_non_think_with_a_reason() -> None:
    choice = choose_mode(
        Task(statement=DESIGN_CHANGE), profile=get_profile("gpt-4.1"), model=ALWAYS_HARD
    )
    assert choice.mode is Mode.NON_THINK and len(choice.reasons) >= 2
    assert isinstance(choice, ModeChoice)
