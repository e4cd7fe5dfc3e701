"""Reasoning modes as data: the mode table, escalation, and the choice of the starting mode.

The profile (agent.profiles) says how a mode is *requested*; this module says how much a mode may
*spend* (output, steps, cost share), which triage rating starts in it, and which mode comes next
when the agent's own check fails:

    Non-think  ->  Think High  ->  Think Max  ->  (none)

Think Low (`--mode low`) is selectable and escalates to Think High; the default ladder does not
pass through it, as nothing measured yet says it earns a rung.

The starting mode comes from the triage turn (agent.triage: the model rates the task on the
SWE-bench Verified rubric with the whole pack in front of it; `ratings` on each row map the
rating to a mode), else from `FALLBACK_RULE`: statement length alone. Then the rules that stay:
never Non-think with a large pack, Think Max only with its context.

What held and what did not (benchmarks/difficulty.py, 468 labelled instances; Spearman on the
part not fitted on, split by repository (fit 140, report 328) and by created_at (fit the older
70%, report the newer 141)): statement length 0.164 / 0.149; the fallback's two modes 0.087 /
0.124 with the shipped cut, 0.150 / 0.124 with the cut refitted on each fitting part. A linear
model over hand-built statement features (shipped before) was designed on all 468 labels, so no
split of them is unseen by its design; on the 170 Verified labels that were (held out of
../shared/swe) it scored 0.036 against 0.121 for length alone, and it is gone. Refitted on each
fitting part the same kind of model reaches 0.206 / 0.160, but the inputs it keeps change with the
split. Stack traces and named files change sign between the parts (frames -0.05 fitting, +0.10
reporting, by repository) and get no weight. The fallback starts no run in Think Max: a Max start
by length put 28 of the 141 newer tasks in Max, 12 of them under 15 minutes. Escalation on a
failed check matters more than any first guess.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.errors import ConfigError
from agent.profiles import ModelProfile
from agent.records import Mode, Pack, Task, TriageRating

__all__ = [
    "FALLBACK_RULE",
    "LARGE_PACK_TOKENS",
    "MODE_CHOICES",
    "MODE_TABLE",
    "STRONG_SCORE",
    "DifficultyFeatures",
    "LengthRule",
    "ModeChoice",
    "ModeSpec",
    "choose_mode",
    "difficulty_features",
    "escalate",
    "mode_allowed",
    "mode_for_rating",
    "output_cap",
    "parse_mode",
    "rated_mode",
    "triage_mode",
    "within_rules",
]


# --------------------------------------------------------------------------------------------
# The mode table
# --------------------------------------------------------------------------------------------


class ModeSpec(BaseModel):
    """One reasoning mode, whole: its name, what a user may type for it, what it may spend, and
    where the loop goes when its check fails. The profiles say only which request fields select
    it on an endpoint; everything else about a mode is this row."""

    model_config = ConfigDict(frozen=True)

    mode: Mode = Field(description="The mode this row describes.")
    label: str = Field(description="Its name for people: Non-think, Think High, ...")
    aliases: tuple[str, ...] = Field(default=(), description="Other spellings --mode and /mode accept.")
    max_output_tokens: int = Field(
        description="max_tokens to request where the profile sets no cap for this mode (clamped to it)."
    )
    max_steps: int = Field(
        description="Model turns this mode may take before the step limit."
    )
    cost_share: float = Field(
        description="Share of the run's cost cap this mode may use up before escalating or stopping."
    )
    next: Mode | None = Field(
        description="The mode to escalate to when the self-check fails."
    )
    ratings: tuple[TriageRating, ...] = Field(
        default=(), description="Triage ratings (SWE-bench Verified rubric) that start a run in this mode."
    )


MODE_TABLE: dict[Mode, ModeSpec] = {
    s.mode: s
    for s in [
        ModeSpec(mode=Mode.NON_THINK, label="Non-think", aliases=("nonthink", "non_think"),
                 max_output_tokens=16_384, max_steps=40, cost_share=0.2, next=Mode.HIGH,
                 ratings=("<15 min fix",)),
        ModeSpec(mode=Mode.LOW, label="Think Low", aliases=("think-low",),
                 max_output_tokens=32_768, max_steps=60, cost_share=0.3, next=Mode.HIGH),
        ModeSpec(mode=Mode.HIGH, label="Think High", aliases=("think-high",),
                 max_output_tokens=65_536, max_steps=80, cost_share=0.5, next=Mode.MAX,
                 ratings=("15 min - 1 hour",)),
        ModeSpec(mode=Mode.MAX, label="Think Max", aliases=("think-max",),
                 max_output_tokens=131_072, max_steps=150, cost_share=1.0, next=None,
                 ratings=("1-4 hours", ">4 hours")),
    ]
}

# What `--mode` accepts; "auto" lets choose_mode decide.
MODE_CHOICES: tuple[str, ...] = ("auto", *(m.value for m in MODE_TABLE))

_MODE_ALIASES: dict[str, Mode | None] = {"auto": None} | {
    name: spec.mode
    for spec in MODE_TABLE.values()
    for name in (spec.mode.value, spec.label.lower().replace(" ", "-"), *spec.aliases)
}

# DeepSeek-V4 Non-think degrades sharply at long context: a pack above this starts in Think High.
LARGE_PACK_TOKENS = 128_000


def parse_mode(text: str) -> Mode | None:
    """Parse a `--mode` value: a Mode, or None for "auto"."""
    key = text.strip().lower().replace(" ", "-")
    if key not in _MODE_ALIASES:
        raise ConfigError(
            f"unknown mode {text!r}: use one of {', '.join(MODE_CHOICES)}"
        )
    return _MODE_ALIASES[key]


def output_cap(mode: Mode, profile: ModelProfile | None = None) -> int:
    """max_tokens a call in `mode` asks for: the profile's cap for the mode, else the table's."""
    cap = MODE_TABLE[mode].max_output_tokens
    if profile is None:
        return cap
    return min(profile.output_caps.get(mode, cap), profile.max_output)


def mode_allowed(
    mode: Mode, profile: ModelProfile | None, *, pack_tokens: int = 0
) -> str | None:
    """Why `mode` cannot run on `profile` with a pack of `pack_tokens`, or None when it can."""
    if profile is None:
        return None
    if mode not in profile.mode_fields:
        return f"{profile.name} has no {mode.label} mode"
    wanted = profile.min_context_for.get(mode)
    available = profile.context_window - pack_tokens
    if wanted is not None and available < wanted:
        return f"{mode.label} wants {wanted:,} tokens of context, only {max(available, 0):,} available"
    return None


def escalate(
    mode: Mode, *, profile: ModelProfile | None = None, pack_tokens: int = 0
) -> Mode | None:
    """The next mode up the table that `profile` can run, or None at the top."""
    nxt = MODE_TABLE[mode].next
    while (
        nxt is not None
        and mode_allowed(nxt, profile, pack_tokens=pack_tokens) is not None
    ):
        nxt = MODE_TABLE[nxt].next
    return nxt


# --------------------------------------------------------------------------------------------
# Difficulty features
# --------------------------------------------------------------------------------------------


# Ranking features look at the head of the ranking only: BM25 gives nearly every file a small
# positive score, so shares over all items mostly measure repository size.
STRONG_SCORE = (
    80.0  # one sure signal (a resolved frame, a named path) is worth 80-120 points
)
TOP_FILES = 5
TOP_RANKED = 20
HEAD = 40  # counts look at this many best-ranked files
_TEST_PATH = re.compile(r"(?:^|/)(?:tests?|testing)/|(?:^|/)test_[^/]*$|_tests?\.py$")


class DifficultyFeatures(BaseModel):
    """What a task statement (and its pack) say about how hard the task is; counts, not judgements."""

    model_config = ConfigDict(frozen=True)

    chars: int = Field(description="Length of the statement in characters.")
    lines: int = Field(description="Non-empty lines.")
    words: int = Field(description="Words in the prose (code blocks excluded).")
    code_blocks: int = Field(
        description="Fenced code blocks plus interactive (>>> / In [n]) sessions."
    )
    code_lines: int = Field(
        description="Lines that look like code (fenced, indented, or prompts)."
    )
    list_items: int = Field(description="Bulleted or numbered list items.")
    headings: int = Field(
        description="Markdown headings and section labels (Description:, Steps...)."
    )
    urls: int = Field(description="Links.")
    traceback_frames: int = Field(
        description='Stack-trace frames (File "...", line N).'
    )
    exception_types: int = Field(
        description="Distinct exception or warning class names."
    )
    files_mentioned: int = Field(
        description="Distinct file paths with a source-like extension."
    )
    dotted_paths: int = Field(
        description="Distinct dotted names with three or more parts (a.b.c)."
    )
    identifiers: int = Field(
        description="Distinct code identifiers: `quoted`, CamelCase, snake_case, calls."
    )
    has_reproducer: bool = Field(
        description="Code that imports or calls something, or a 'to reproduce' section."
    )
    has_expected_actual: bool = Field(
        description="Talks about expected vs. actual behaviour."
    )
    version_talk: int = Field(
        description="Version numbers and platform names mentioned."
    )
    design_words: int = Field(
        description="Phrases that signal a design change or new feature."
    )
    narrow_words: int = Field(description="Phrases that signal a narrow, local fix.")
    questions: int = Field(description="Question marks in the prose.")
    repo: str | None = Field(
        default=None, description="owner/name of the repository, when known."
    )
    repo_files: int | None = Field(
        default=None, description="Files in the repository at the task's commit."
    )
    pack_tokens: int | None = Field(
        default=None, description="Tokens in the pack, when there is one."
    )
    pack_top_share: float | None = Field(
        default=None,
        description="Share of the total rank score held by the top-ranked item.",
    )
    pack_entropy: float | None = Field(
        default=None,
        description="Normalized entropy (0-1) of the rank scores: 1 = flat ranking.",
    )
    pack_fraction: float | None = Field(
        default=None,
        description="Pack tokens over repository tokens, when the pack knows both.",
    )
    pack_files_implicated: int | None = Field(
        default=None,
        description="Pack items with a positive rank score (files the task points at).",
    )
    pack_top_score: float | None = Field(
        default=None,
        description="Rank score of the best-ranked file (points per signal).",
    )
    pack_strong_files: int | None = Field(
        default=None,
        description=f"Files whose rank score is at least {STRONG_SCORE:g}.",
    )
    pack_defining_files: int | None = Field(
        default=None,
        description=f"Top-{HEAD} files ranked for defining a name the task mentions.",
    )
    pack_named_files: int | None = Field(
        default=None,
        description=f"Top-{HEAD} files the task names by path, module or file name.",
    )
    pack_stack_trace: bool | None = Field(
        default=None,
        description="A stack-trace frame in the task resolved to a repository file.",
    )
    pack_top_is_test: bool | None = Field(
        default=None, description="The best-ranked file is a test file."
    )
    pack_top_dirs: int | None = Field(
        default=None,
        description=f"Distinct directories among the top {TOP_FILES} ranked files.",
    )
    pack_top_entropy: float | None = Field(
        default=None,
        description=f"Normalized entropy (0-1) of the top {TOP_RANKED} rank scores: 1 = flat.",
    )


_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)
_PROMPT_LINE = re.compile(r"^\s*(>>>|\.\.\.\s|In \[\d+\]:|\$ )", re.MULTILINE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+\S", re.MULTILINE)
_HEADING = re.compile(
    r"^\s*(?:#{1,6}\s+\S.*|\*\*[^*\n]{2,60}\*\*:?\s*|(?:description|steps to reproduce|to reproduce"
    r"|expected (?:behaviou?r|result|output)|actual (?:behaviou?r|result|output)|environment"
    r"|versions?|motivation|proposal|summary|problem|solution|additional context|reproducer)\s*:?\s*)$",
    re.MULTILINE | re.IGNORECASE,
)
_URL = re.compile(r"https?://\S+")
_FRAME = re.compile(r'^\s*File "[^"]+", line \d+', re.MULTILINE)
_EXC = re.compile(r"\b([A-Z][A-Za-z0-9]*(?:Error|Exception|Warning|Exit|Interrupt))\b")
_FILE = re.compile(
    r"(?<![\w/.])((?:[\w.-]+/)*[\w.-]+\.(?:py|pyx|pxd|c|h|cpp|js|ts|html|css|rst|md|txt|cfg|ini|toml|yml|yaml|json|po))\b"
)
_DOTTED = re.compile(r"\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*){2,})\b")
_BACKTICK = re.compile(r"`([^`\n]{1,80})`")
_CAMEL = re.compile(r"\b([A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+)\b")
_SNAKE = re.compile(r"\b([a-z][a-z0-9]*_[a-z0-9_]+)\b")
_CALL = re.compile(r"\b([A-Za-z_]\w*)\(")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_VERSION = re.compile(
    r"\b(?:v?\d+\.\d+(?:\.\d+)*(?:rc\d+|a\d+|b\d+|dev\d*)?|python\s*[23]|windows|linux|mac ?os|os ?x|ubuntu"
    r"|debian|conda|pypy|cpython|64-bit|32-bit)\b",
    re.IGNORECASE,
)
_REPRO_TEXT = re.compile(
    r"\b(?:to reproduce|steps to reproduce|reproducer|minimal (?:working |reproducible )?example|mwe"
    r"|reproduc(?:e|ible|es|ing) (?:the|this|it)|code (?:for|to) reproduce)\b",
    re.IGNORECASE,
)
_REPRO_CODE = re.compile(
    r"^\s*(?:>>>|In \[\d+\]:|import \w|from [\w.]+ import)", re.MULTILINE
)
_EXPECTED = re.compile(
    r"\b(?:expected (?:behaviou?r|result|output|outcome)|actual (?:behaviou?r|result|output|outcome)"
    r"|expected:|actual:|i (?:would )?expect(?:ed)?|should (?:return|be|raise|give|produce|print)|instead of)\b",
    re.IGNORECASE,
)
_DESIGN = re.compile(
    r"\b(?:should (?:support|allow|accept|also)|add (?:an? )?(?:new )?(?:option|support|parameter|argument|setting"
    r"|method|way|flag|hook|api|feature|keyword)|(?:allow|enable)s? (?:users?|to|for)|refactor\w*|deprecat\w*"
    r"|feature request|it would be (?:nice|good|great|useful)|would be (?:nice|good|great|useful)|proposal"
    r"|propose|ability to|new feature|enhancement|support for|rework|redesign|rewrite|overhaul"
    r"|backwards?[- ]compat\w*|in the future|api change|generaliz\w+|consider (?:adding|making|using))\b",
    re.IGNORECASE,
)
_NARROW = re.compile(
    r"\b(?:typo\w*|error message|misleading|wrong (?:error|message|type|value|result|output)|off[- ]by[- ]one"
    r"|one[- ]line|one[- ]liner|simple fix|trivial|small fix|missing (?:import|comma|argument)|spelling"
    r"|docstring|just needs?|simply (?:needs?|missing))\b",
    re.IGNORECASE,
)
_FENCED_BLOCK = re.compile(r"(```|~~~).*?(?:\1|\Z)", re.DOTALL)


def _distinct(matches: Iterable[str]) -> int:
    return len(set(matches))


def _pack_field(pack: object, *names: str) -> Any:
    # agent.records.Pack keeps counts under `.totals`; accept them at the top level too.
    for holder in (getattr(pack, "totals", None), pack):
        for name in names:
            value = getattr(holder, name, None) if holder is not None else None
            if value is not None:
                return value
    return None


def _pack_features(pack: object, repo_files: int | None) -> dict[str, Any]:
    items = list(getattr(pack, "items", None) or [])
    scores = [max(float(getattr(i, "score", 0.0) or 0.0), 0.0) for i in items]
    total_score = sum(scores)
    positive = [s / total_score for s in scores if s > 0] if total_score > 0 else []
    entropy = None
    if len(positive) > 1:
        entropy = -sum(p * math.log(p) for p in positive) / math.log(len(positive))
    elif len(positive) == 1:
        entropy = 0.0
    tokens = _pack_field(pack, "total_tokens", "tokens")
    if tokens is None and items:
        tokens = sum(int(getattr(i, "tokens", 0) or 0) for i in items)
    repo_tokens = _pack_field(pack, "repo_tokens")
    n_files = _pack_field(pack, "n_files", "file_count", "files")
    if isinstance(n_files, (list, tuple, set, dict)):
        n_files = len(n_files)
    ranked = sorted(
        ((float(getattr(i, "score", 0.0) or 0.0), i) for i in items),
        key=lambda t: -t[0],
    )
    head = [(sc, i) for sc, i in ranked[:TOP_RANKED] if sc > 0]
    signals = [
        {r.split(":", 1)[0] for r in (getattr(i, "reasons", None) or [])}
        for sc, i in ranked[:HEAD]
        if sc > 0
    ]
    paths = [str(getattr(i, "path", "")) for _, i in head]
    top_entropy = None
    if head:
        shares = [sc / sum(s for s, _ in head) for sc, _ in head]
        top_entropy = -sum(p * math.log(p) for p in shares) / math.log(TOP_RANKED)
    named = {"path named", "module named", "file named"}
    return {
        "pack_top_score": head[0][0] if head else (0.0 if items else None),
        "pack_strong_files": sum(1 for sc, _ in ranked[:HEAD] if sc >= STRONG_SCORE)
        if items
        else None,
        "pack_defining_files": sum("defines" in sig for sig in signals)
        if items
        else None,
        "pack_named_files": sum(bool(sig & named) for sig in signals)
        if items
        else None,
        "pack_stack_trace": any("stack trace" in sig for sig in signals)
        if items
        else None,
        "pack_top_is_test": bool(_TEST_PATH.search(paths[0])) if paths else None,
        "pack_top_dirs": len(
            {p.rsplit("/", 1)[0] if "/" in p else "" for p in paths[:TOP_FILES]}
        )
        if paths
        else None,
        "pack_top_entropy": top_entropy,
        "pack_tokens": int(tokens) if tokens is not None else None,
        "pack_top_share": max(positive) if positive else None,
        "pack_entropy": entropy,
        "pack_fraction": (tokens / repo_tokens)
        if tokens is not None and repo_tokens
        else None,
        "pack_files_implicated": sum(1 for s in scores if s > 0) if items else None,
        "repo_files": repo_files
        if repo_files is not None
        else (int(n_files) if n_files else None),
    }


def difficulty_features(
    task: Task | str, pack: Pack | None = None, *, repo_files: int | None = None
) -> DifficultyFeatures:
    """Measure a task statement (and its pack, if given); deterministic, never reads a patch or tests."""
    text = task.statement if isinstance(task, Task) else task
    repo = task.repo if isinstance(task, Task) else None
    prose = _FENCED_BLOCK.sub(" ", text)
    fenced = sum(
        max(len(m.group(0).splitlines()) - 2, 0) for m in _FENCED_BLOCK.finditer(text)
    )
    indented = sum(
        1 for ln in prose.splitlines() if ln.startswith(("    ", "\t")) and ln.strip()
    )
    sessions = len(re.findall(r"^\s*(?:>>>|In \[1\]:)", prose, re.MULTILINE))
    identifiers = (
        set(_BACKTICK.findall(text))
        | set(_CAMEL.findall(text))
        | set(_SNAKE.findall(text))
        | set(_CALL.findall(text))
    )
    values = {
        "chars": len(text),
        "lines": sum(1 for ln in text.splitlines() if ln.strip()),
        "words": len(_WORD.findall(prose)),
        "code_blocks": len(_FENCE.findall(text)) // 2 + sessions,
        "code_lines": fenced + indented + len(_PROMPT_LINE.findall(prose)),
        "list_items": len(_LIST_ITEM.findall(prose)),
        "headings": len(_HEADING.findall(text)),
        "urls": len(_URL.findall(text)),
        "traceback_frames": len(_FRAME.findall(text)),
        "exception_types": _distinct(_EXC.findall(text)),
        "files_mentioned": _distinct(_FILE.findall(text)),
        "dotted_paths": _distinct(_DOTTED.findall(_URL.sub(" ", text))),
        "identifiers": len(identifiers),
        "has_reproducer": bool(_REPRO_TEXT.search(text) or _REPRO_CODE.search(text)),
        "has_expected_actual": bool(_EXPECTED.search(text)),
        "version_talk": len(_VERSION.findall(text)),
        "design_words": len(_DESIGN.findall(prose)),
        "narrow_words": len(_NARROW.findall(prose)),
        "questions": prose.count("?"),
        "repo": repo,
        "repo_files": repo_files,
    }
    if pack is not None:
        values |= _pack_features(pack, repo_files)
    return DifficultyFeatures(**values)


# --------------------------------------------------------------------------------------------
# Choosing the starting mode: the triage rating, else the fallback rule; then the rules that stay
# --------------------------------------------------------------------------------------------


class LengthRule(BaseModel):
    """The fallback when no triage turn rates the task: Non-think for a short statement, Think
    High from `high_from` characters on (Think Max only by escalation).

    Only statement length held on labels the rule was not designed on; stack traces and named
    files changed sign between the fitting and the reporting parts (benchmarks/difficulty.py).
    """

    model_config = ConfigDict(frozen=True)

    high_from: int = Field(description="Statement characters from which a run starts in Think High.")
    fitted_on: str = Field(default="", description="Where the cut-off came from.")

    def mode(self, features: DifficultyFeatures) -> tuple[Mode, str]:
        """The mode for a statement, and why."""
        if features.chars >= self.high_from:
            return Mode.HIGH, f"statement of {features.chars:,} characters >= {self.high_from:,}"
        return Mode.NON_THINK, f"statement of {features.chars:,} characters < {self.high_from:,}"


# The share of "<15 min fix" labels among the older 70% of the 468 labelled instances (by
# created_at), as a length quantile of that part: `python benchmarks/difficulty.py`.
FALLBACK_RULE = LengthRule(
    high_from=707,
    fitted_on="36% length quantile of the older 70% of 468 labelled SWE-bench statements",
)


class ModeChoice(BaseModel):
    """The starting mode and why."""

    model_config = ConfigDict(frozen=True)

    mode: Mode
    reasons: list[str] = Field(default_factory=list)


def mode_for_rating(rating: TriageRating) -> Mode:
    """The mode whose row in MODE_TABLE lists a triage `rating`."""
    for spec in MODE_TABLE.values():
        if rating in spec.ratings:
            return spec.mode
    raise ValueError(f"no mode in MODE_TABLE takes the rating {rating!r}")  # the table is ours


def triage_mode(profile: ModelProfile | None) -> Mode:
    """The mode a triage turn is asked in: Non-think, else the cheapest the profile runs."""
    for mode in MODE_TABLE:
        if mode_allowed(mode, profile) is None:
            return mode
    raise ConfigError(f"{profile.name if profile else '?'} runs none of tome's modes")


def choose_mode(
    task: Task | str,
    pack: Pack | None = None,
    *,
    profile: ModelProfile | None = None,
    rating: TriageRating | None = None,
    rule: LengthRule = FALLBACK_RULE,
) -> ModeChoice:
    """The starting mode: from the triage `rating` when there is one, else from the fallback
    rule; then never Non-think with a large pack, and only what the profile can run."""
    features = difficulty_features(task, pack)
    pack_tokens = features.pack_tokens or 0
    if rating is not None:
        return rated_mode(rating, pack_tokens=pack_tokens, profile=profile)
    mode, reason = rule.mode(features)
    return within_rules(mode, [reason], pack_tokens=pack_tokens, profile=profile)


def rated_mode(rating: TriageRating, *, pack_tokens: int, profile: ModelProfile | None) -> ModeChoice:
    """The starting mode for a triage `rating`: its row in MODE_TABLE, within the rules."""
    return within_rules(mode_for_rating(rating), [f"triage rated it {rating}"], pack_tokens=pack_tokens,
                        profile=profile)


def within_rules(
    mode: Mode, reasons: list[str], *, pack_tokens: int, profile: ModelProfile | None
) -> ModeChoice:
    """`mode` moved where the rules say: never Non-think with a pack over LARGE_PACK_TOKENS,
    and down (or, with a large pack, up) to a mode the profile can run with that pack."""
    reasons = list(reasons)
    if mode is Mode.NON_THINK and pack_tokens > LARGE_PACK_TOKENS:
        mode = Mode.HIGH
        reasons.append(
            f"pack of {pack_tokens:,} tokens > {LARGE_PACK_TOKENS:,}: Non-think degrades at long context"
        )
    # Step down from a mode the profile cannot run, then up if Non-think is ruled out too.
    while (why := mode_allowed(mode, profile, pack_tokens=pack_tokens)) is not None:
        lower = {Mode.MAX: Mode.HIGH, Mode.HIGH: Mode.NON_THINK}.get(mode)
        if lower is None or (
            lower is Mode.NON_THINK and pack_tokens > LARGE_PACK_TOKENS
        ):
            supported = [
                m
                for m in Mode
                if mode_allowed(m, profile, pack_tokens=pack_tokens) is None
            ]
            if pack_tokens > LARGE_PACK_TOKENS:  # anything but Non-think first
                supported.sort(key=lambda m: m is Mode.NON_THINK)
            if not supported:
                raise ConfigError(
                    f"no mode of {profile.name if profile else '?'} can run this task: {why}"
                )
            reasons.append(
                f"{why}; using {supported[0].label}, the best mode the profile allows here"
            )
            mode = supported[0]
            break
        reasons.append(f"{why}: {lower.label} instead")
        mode = lower
    return ModeChoice(mode=mode, reasons=reasons)
