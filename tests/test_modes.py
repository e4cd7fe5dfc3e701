"""Modes: the table walk, --mode parsing, the difficulty features, the triage ratings and the
fallback rule, and choose_mode's rules."""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from agent.errors import ConfigError
from agent.modes import (
    FALLBACK_RULE,
    LARGE_PACK_TOKENS,
    MODE_CHOICES,
    MODE_TABLE,
    LengthRule,
    ModeChoice,
    choose_mode,
    difficulty_features,
    escalate,
    mode_for_rating,
    output_cap,
    parse_mode,
    triage_mode,
)
from agent.pack import build_pack
from agent.profiles import get_profile
from agent.records import TRIAGE_RATINGS, Mode, Pack, PackItem, PackTotals, Task
from agent.tokens import get_tokenizer

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
        PackItem(path=f"f{i}.py", level="full", tokens=per, score=s)
        for i, s in enumerate(scores)
    ]
    totals = PackTotals(
        files=files, full=len(items), tokens=tokens, repo_tokens=tokens * 4
    )
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
    with pytest.raises(ConfigError, match="auto, non-think, low, high, max"):
        parse_mode("medium")
    assert all(c == "auto" or parse_mode(c) is not None for c in MODE_CHOICES)


# ---------------------------------------------------------------------------- features and score


def test_features_read_the_statement() -> None:
    f = difficulty_features(Task(statement=NARROW_BUG, repo="django/django"))
    assert f.traceback_frames == 3
    assert f.exception_types == 1
    assert (
        f.files_mentioned == 3
    )  # manage.py and two __init__.py paths, each counted once
    assert f.narrow_words >= 2 and f.design_words == 0
    assert f.repo == "django/django"
    g = difficulty_features(DESIGN_CHANGE)
    assert g.design_words >= 5 and g.traceback_frames == 0 and g.repo is None


def test_features_are_deterministic() -> None:
    pack = pack_of(50_000, [5.0, 1.0, 0.5, 0.0])
    a = difficulty_features(Task(statement=NARROW_BUG), pack, repo_files=1200)
    b = difficulty_features(
        Task(statement=NARROW_BUG), pack.model_copy(deep=True), repo_files=1200
    )
    assert a == b and a.model_dump_json() == b.model_dump_json()


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
    loose = _LooseRecord(
        total_tokens=200_000, items=[_Item(score=2.0), _Item(score=2.0)]
    )
    f = difficulty_features("x", loose)  # type: ignore[arg-type]
    assert f.pack_tokens == 200_000 and f.pack_top_share == pytest.approx(0.5)
    assert f.pack_entropy == pytest.approx(1.0) and f.pack_fraction is None


ONE_LINER = "Typo in the admin docs: 'recieve' should be 'receive'.\n"

REPRODUCED_BUG = """\
QuerySet.union() drops the ordering of a combined queryset

To reproduce:

```python
from django.db.models import F
from myapp.models import Author
qs1 = Author.objects.filter(age__gt=30).order_by("name")
qs2 = Author.objects.filter(book__rating__gte=4)
combined = qs1.union(qs2).order_by(F("name").desc(nulls_last=True))
print(list(combined.values_list("name", flat=True)))
print(combined.query)
```

The compiled SQL has no ORDER BY, and `SQLCompiler.get_combinator_sql()` ignores
`query.order_by` when `combinator_all` is set. I expected the rows sorted by `name`.
`QuerySet._combinator_query()` clears the ordering of each part and `Query.clear_ordering()`
is called with `force=True`, so the outer ordering is lost as well.
"""


def test_the_fallback_starts_short_statements_in_non_think_and_long_ones_in_high() -> None:
    assert len(ONE_LINER) < FALLBACK_RULE.high_from <= len(REPRODUCED_BUG)
    assert choose_mode(Task(statement=ONE_LINER)).mode is Mode.NON_THINK
    long = choose_mode(Task(statement=REPRODUCED_BUG))
    assert long.mode is Mode.HIGH and f"{len(REPRODUCED_BUG):,} characters" in long.reasons[0]
    # Stack traces and named files do not move it: they did not hold on unseen labels.
    traced = NARROW_BUG + "\n" * (FALLBACK_RULE.high_from - len(NARROW_BUG))
    assert choose_mode(Task(statement=traced)).mode is Mode.HIGH


def test_every_triage_rating_has_exactly_one_row_and_ratings_climb_the_ladder() -> None:
    rows = [m for r in TRIAGE_RATINGS for m in MODE_TABLE if r in MODE_TABLE[m].ratings]
    assert len(rows) == len(TRIAGE_RATINGS)
    assert [mode_for_rating(r) for r in TRIAGE_RATINGS] == [Mode.NON_THINK, Mode.HIGH, Mode.MAX, Mode.MAX]
    rated = choose_mode(Task(statement=ONE_LINER), profile=DEEPSEEK, rating="1-4 hours")
    assert rated.mode is Mode.MAX and rated.reasons == ["triage rated it 1-4 hours"]


def test_triage_asks_in_non_think_or_the_cheapest_mode_the_profile_runs() -> None:
    assert triage_mode(DEEPSEEK) is Mode.NON_THINK
    thinking_only = DEEPSEEK.model_copy(update={"mode_fields": {
        m: f for m, f in DEEPSEEK.mode_fields.items() if m is not Mode.NON_THINK}})
    assert triage_mode(thinking_only) is Mode.LOW


# ---------------------------------------------------------------------------- choose_mode

# Rules that find every task easy (Non-think) / hard, so the rules are tested apart from the cut.
ALWAYS_EASY = LengthRule(high_from=10**9)


def test_never_non_think_with_a_large_pack() -> None:
    task = Task(statement=NARROW_BUG)
    small = choose_mode(
        task, pack_of(20_000, [3.0, 1.0]), profile=DEEPSEEK, rule=ALWAYS_EASY
    )
    assert small.mode is Mode.NON_THINK, small.reasons  # the easy task starts cheap...
    large = choose_mode(
        task,
        pack_of(LARGE_PACK_TOKENS + 1, [3.0, 1.0]),
        profile=DEEPSEEK,
        rule=ALWAYS_EASY,
    )
    assert large.mode is not Mode.NON_THINK  # ...until the pack is long
    assert any("Non-think" in r for r in large.reasons)


def test_think_max_refused_where_the_window_is_too_small() -> None:
    hard = Task(statement=DESIGN_CHANGE)
    assert choose_mode(hard, profile=DEEPSEEK, rating=">4 hours").mode is Mode.MAX
    small = get_profile("deepseek-v4-pro", context_window=256_000)
    choice = choose_mode(hard, profile=small, rating=">4 hours")
    assert choice.mode is Mode.HIGH and any("384,000" in r for r in choice.reasons)
    crowded = choose_mode(
        hard, pack_of(800_000, [1.0]), profile=DEEPSEEK, rating=">4 hours"
    )
    assert crowded.mode is Mode.HIGH  # 1M window minus an 800K pack leaves too little


def test_a_profile_with_only_non_think_gets_non_think_with_a_reason() -> None:
    choice = choose_mode(
        Task(statement=DESIGN_CHANGE), profile=get_profile("gpt-4.1"), rating="1-4 hours"
    )
    assert choice.mode is Mode.NON_THINK and len(choice.reasons) >= 2
    assert isinstance(choice, ModeChoice)


# ---------------------------------------------------------------------------- ranking features


def ranked_pack(rows: list[tuple[str, float, list[str]]]) -> Pack:
    """A real Pack record whose items carry paths, scores and the ranker's reason strings."""
    items = [
        PackItem(
            path=p,
            level="full",
            tokens=100,
            score=s,
            reasons=[f"{r}: why" for r in reasons],
        )
        for p, s, reasons in rows
    ]
    return Pack(
        document="",
        repo="demo",
        root="/tmp/demo",
        model="m",
        tokenizer="t",
        budget=10_000,
        items=items,
    )


def test_ranking_features_read_scores_reasons_and_paths() -> None:
    pack = ranked_pack(
        [
            ("pkg/core.py", 160.0, ["stack trace", "defines", "bm25"]),
            ("pkg/tests/test_core.py", 32.0, ["test beside"]),
            ("pkg/util.py", 90.0, ["path named"]),
            ("docs/index.rst", 3.0, ["bm25"]),
            ("pkg/other.py", 0.0, []),
        ]
    )
    f = difficulty_features("x", pack)
    assert f.pack_top_score == 160.0 and f.pack_strong_files == 2
    assert f.pack_defining_files == 1 and f.pack_named_files == 1
    assert f.pack_stack_trace is True and f.pack_top_is_test is False
    assert f.pack_top_dirs == 3  # pkg, pkg/tests, docs among the four positive files
    assert 0.0 < f.pack_top_entropy < 1.0
    test_first = difficulty_features(
        "x", ranked_pack([("tests/test_a.py", 5.0, ["bm25"])])
    )
    assert test_first.pack_top_is_test is True and test_first.pack_stack_trace is False
    assert test_first.pack_top_entropy == 0.0
    assert (
        difficulty_features("x").pack_top_score is None
    )  # no pack, no ranking features


def test_ranking_features_from_a_real_pack(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    files = {
        "shop/cart.py": "def total(items):\n    return sum(i.price for i in items)\n",
        "shop/tax.py": "RATE = 0.2\n\ndef with_tax(x):\n    return x * (1 + RATE)\n",
        "README.md": "# shop\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    for cmd in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-q", "-m", "init"],
    ):
        subprocess.run(
            ["git", *cmd], cwd=root, check=True, capture_output=True, env=env
        )
    statement = (
        "total() crashes on an empty cart:\n\nTraceback (most recent call last):\n"
        '  File "shop/cart.py", line 2, in total\n    return sum(i.price for i in items)\n'
        "TypeError: bad\n"
    )
    pack = build_pack(
        root,
        task=statement,
        budget=50_000,
        tokenizer=get_tokenizer("cl100k_base"),
        cache_dir=tmp_path / "cache",
        environ={},
    )
    f = difficulty_features(Task(statement=statement), pack)
    assert f.pack_stack_trace is True and f.pack_top_is_test is False
    assert f.pack_top_score is not None and f.pack_top_score >= 80.0
    assert f.pack_strong_files >= 1 and f.pack_defining_files >= 1
    choose_mode(
        Task(statement=statement), pack, profile=DEEPSEEK
    )  # runs on a real pack


# ---- issue 13: effort tiers and output caps as profile data -----------------------------------


def test_think_low_is_selectable_and_the_default_ladder_is_unchanged() -> None:


    assert parse_mode("low") is Mode.LOW and parse_mode("Think Low") is Mode.LOW
    assert Mode.LOW.label == "Think Low"
    profile = get_profile("deepseek-v4-pro")
    ladder, mode = [Mode.NON_THINK], Mode.NON_THINK
    while (mode := escalate(mode, profile=profile)) is not None:
        ladder.append(mode)
    assert ladder == [Mode.NON_THINK, Mode.HIGH, Mode.MAX]
    assert escalate(Mode.LOW, profile=profile) is Mode.HIGH and MODE_TABLE[Mode.LOW].next is Mode.HIGH
    # The profile asks for the tier with the literal the API documents (guides/thinking_mode).
    assert profile.request_fields(Mode.LOW)["reasoning_effort"] == "low"


def test_every_mode_effort_is_one_the_api_accepts() -> None:
    from agent.profiles import DEEPSEEK_EFFORTS, PROFILES

    for profile in PROFILES.values():
        for mode, fields in profile.mode_fields.items():
            effort = fields.get("reasoning_effort")
            if effort is not None:
                assert effort in profile.reasoning_efforts, (profile.name, mode)
                assert profile.reasoning_efforts[effort] == effort  # no silent remapping
    assert set(DEEPSEEK_EFFORTS.values()) == {"low", "high", "max"}


def test_output_caps_come_from_the_profile_and_are_clamped() -> None:


    pro = get_profile("deepseek-v4-pro")
    assert output_cap(Mode.MAX, pro) == 262_144 <= pro.max_output == 384_000
    assert output_cap(Mode.MAX, get_profile("deepseek-v4-pro", max_output=100_000)) == 100_000
    assert output_cap(Mode.NON_THINK, get_profile("gpt-4-turbo")) == 4_096  # the table's 16K, clamped


def test_retired_deepseek_names_say_what_replaces_them() -> None:
    for name, mode in (("deepseek-chat", "non-think"), ("deepseek-reasoner", "high")):
        with pytest.raises(ConfigError, match=rf"retired.*2026-07-24.*deepseek-flash --mode {mode}"):
            get_profile(name)


def test_strict_is_enforced_only_under_deepseeks_beta_url() -> None:
    pro = get_profile("deepseek-v4-pro")
    assert not pro.enforces_strict("https://api.deepseek.com")
    assert pro.enforces_strict("https://api.deepseek.com/beta/")
    assert get_profile("gpt-4.1").enforces_strict("https://api.openai.com/v1")
    local = get_profile("some-local-model", base_url="http://127.0.0.1:8000/v1")
    assert not local.enforces_strict("http://127.0.0.1:8000/v1")


def test_a_pack_that_fills_its_budget_leaves_think_max_its_context() -> None:
    # solve.start_run reserves the Max cap plus the conversation out of the window before packing;
    # with the old 128K cap a full pack left 259K, under the 384K Think Max wants, and
    # escalation skipped Max.
    from agent.modes import mode_allowed
    from agent.pack.budget import CONVERSATION_RESERVE

    budget = DEEPSEEK.context_window - output_cap(Mode.MAX, DEEPSEEK) - CONVERSATION_RESERVE
    assert mode_allowed(Mode.MAX, DEEPSEEK, pack_tokens=budget) is None
    assert escalate(Mode.HIGH, profile=DEEPSEEK, pack_tokens=budget) is Mode.MAX
