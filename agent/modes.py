"""Reasoning modes as data: the mode table, escalation, and the difficulty estimate that picks a mode.

The profile (agent.profiles) says how a mode is *requested*; this module says how much a mode may
*spend* (output, steps, cost share) and which mode comes next when the agent's own check fails.
`choose_mode` reads the task statement (and the pack, when there is one) and starts the loop in
the cheapest mode that is likely to be enough:

    Non-think  ->  Think High  ->  Think Max  ->  (none)

Think Low (`--mode low`) is selectable and escalates to Think High; the default ladder does not
pass through it, as nothing measured yet says it earns a rung.

The difficulty score is a small linear model over hand-built statement features, fitted on human
difficulty labels (SWE-bench Verified annotations) by benchmarks/difficulty.py; its weights live
here as data. Nothing in it looks at a patch or at tests. It is a weak signal: held out (10-fold /
leave-one-repository-out, mean of the per-fold Spearman) it tracks the human label at ~0.20 on
Verified, ~0.15-0.20 on all 468 labels, against ~0.17-0.18 for statement length alone; the issue's
target of 0.35 is not met (see the benchmark's docstring for everything tried). Features of the
pack's ranking (how many files the task resolves to, stack-trace hits, test files on top, how flat
the head of the ranking is) are measured too, but none tracks the label better than |rho| 0.10 and
adding them did not help held out, so the shipped model gives them no weight (`pack_weights`
takes them when a refit earns it). The rules (long pack, context room) and escalation on a failed
check matter more than the first guess.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.errors import ConfigError
from agent.profiles import ModelProfile
from agent.records import Mode, Pack, Task

__all__ = [
    "DIFFICULTY_MODEL",
    "HIGH_FROM",
    "LARGE_PACK_TOKENS",
    "MAX_FROM",
    "MODE_CHOICES",
    "MODE_TABLE",
    "STRONG_SCORE",
    "DifficultyFeatures",
    "DifficultyModel",
    "ModeChoice",
    "ModeSpec",
    "choose_mode",
    "design_vector",
    "difficulty_features",
    "difficulty_score",
    "escalate",
    "mode_allowed",
    "output_cap",
    "pack_vector",
    "parse_mode",
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


MODE_TABLE: dict[Mode, ModeSpec] = {
    s.mode: s
    for s in [
        ModeSpec(mode=Mode.NON_THINK, label="Non-think", aliases=("nonthink", "non_think"),
                 max_output_tokens=16_384, max_steps=40, cost_share=0.2, next=Mode.HIGH),
        ModeSpec(mode=Mode.LOW, label="Think Low", aliases=("think-low",),
                 max_output_tokens=32_768, max_steps=60, cost_share=0.3, next=Mode.HIGH),
        ModeSpec(mode=Mode.HIGH, label="Think High", aliases=("think-high",),
                 max_output_tokens=65_536, max_steps=80, cost_share=0.5, next=Mode.MAX),
        ModeSpec(mode=Mode.MAX, label="Think Max", aliases=("think-max",),
                 max_output_tokens=131_072, max_steps=150, cost_share=1.0, next=None),
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
# Difficulty score
# --------------------------------------------------------------------------------------------


def _log(x: float) -> float:
    return math.log1p(max(x, 0.0))


def design_vector(f: DifficultyFeatures) -> dict[str, float]:
    """The statement inputs of the difficulty model (pack and repo terms: see DifficultyModel)."""
    return {
        "log_chars": _log(f.chars),
        "log_words": _log(f.words),
        "log_code_lines": _log(f.code_lines),
        "code_blocks": min(f.code_blocks, 5),
        "log_list_items": _log(f.list_items),
        "headings": min(f.headings, 5),
        "urls": min(f.urls, 5),
        "log_frames": _log(f.traceback_frames),
        "exception_types": min(f.exception_types, 5),
        "log_files": _log(f.files_mentioned),
        "log_dotted": _log(f.dotted_paths),
        "log_identifiers": _log(f.identifiers),
        "reproducer": float(f.has_reproducer),
        "expected_actual": float(f.has_expected_actual),
        "log_version": _log(f.version_talk),
        "design": min(f.design_words, 4),
        "narrow": min(f.narrow_words, 4),
        "questions": min(f.questions, 5),
    }


def pack_vector(f: DifficultyFeatures) -> dict[str, float]:
    """The ranking inputs of the difficulty model; all 0 without a pack."""
    return {
        "pack_log_top_score": _log(f.pack_top_score or 0.0),
        "pack_log_strong": _log(f.pack_strong_files or 0),
        "pack_log_defining": _log(f.pack_defining_files or 0),
        "pack_log_named": _log(f.pack_named_files or 0),
        "pack_stack_trace": float(bool(f.pack_stack_trace)),
        "pack_top_is_test": float(bool(f.pack_top_is_test)),
        "pack_top_dirs": float(f.pack_top_dirs or 0),
        # Flat head of the ranking (the task points nowhere in particular) vs. one obvious file.
        "pack_top_entropy": f.pack_top_entropy
        if f.pack_top_entropy is not None
        else 0.0,
    }


class DifficultyModel(BaseModel):
    """A linear difficulty model as data: score = sigmoid(scale * (predicted label - centre)).

    The predicted label is on the human scale (0 = under 15 min ... 3 = over 4 hours).
    `weights` are fitted by benchmarks/difficulty.py; `prior_weights` are set by hand (the fit
    holds them fixed), for signals the design wants but the labelled data barely shows.
    """

    model_config = ConfigDict(frozen=True)

    intercept: float = Field(
        default=0.75, description="Predicted label at all-zero inputs."
    )
    weights: dict[str, float] = Field(
        default_factory=dict, description="Fitted, per design_vector input."
    )
    prior_weights: dict[str, float] = Field(
        default_factory=dict, description="Hand-set, per input."
    )
    pack_weights: dict[str, float] = Field(
        default_factory=dict,
        description="Fitted, per pack_vector input; used only with a pack.",
    )
    pack_centres: dict[str, float] = Field(
        default_factory=dict,
        description="Mean of each pack input in the fit (terms are centred).",
    )
    repo_files_weight: float = Field(
        default=0.0, description="Weight of log(repo files), centred."
    )
    repo_files_centre: float = Field(
        default=0.0, description="Mean log(repo files) in the fit."
    )
    repo_offsets: dict[str, float] = Field(
        default_factory=dict,
        description="Per-repository shift; unknown repositories get 0.",
    )
    centre: float = Field(
        default=0.75, description="Predicted label that maps to a score of 0.5."
    )
    scale: float = Field(
        default=4.0, description="Steepness of the map from label units to [0, 1]."
    )
    fitted_on: str = Field(default="", description="Where the weights came from.")

    def predicted_label(self, f: DifficultyFeatures) -> float:
        """The model's estimate on the human label scale (0-3)."""
        x = design_vector(f)
        z = self.intercept + sum(w * x[k] for k, w in self.weights.items())
        z += sum(w * x[k] for k, w in self.prior_weights.items())
        if self.pack_weights and f.pack_top_score is not None:
            px = pack_vector(f)
            z += sum(
                w * (px[k] - self.pack_centres.get(k, 0.0))
                for k, w in self.pack_weights.items()
            )
        if f.repo_files is not None and self.repo_files_weight:
            z += self.repo_files_weight * (_log(f.repo_files) - self.repo_files_centre)
        if f.repo is not None:
            z += self.repo_offsets.get(f.repo, 0.0)
        return z


# Printed by `python benchmarks/difficulty.py --fit`: unit-weighted top-4 inputs on 468 labelled
# SWE-bench statements (Verified + annotated Lite), scaled to label units. No hand-set priors: the
# former ones (design words up, narrow words and stack frames down) had the opposite sign to the
# labels for design words and did not help held out. No pack weights: with pack inputs the refit
# lost held out (10-fold 0.128 vs 0.163).
DIFFICULTY_MODEL = DifficultyModel(
    intercept=0.31116,
    weights={
        "reproducer": 0.06555,
        "log_code_lines": 0.02297,
        "log_chars": 0.03833,
        "log_identifiers": 0.03615,
    },
    fitted_on="unit-weighted top-4 on 468 labelled SWE-bench statements (benchmarks/difficulty.py)",
)


def difficulty_score(
    features: DifficultyFeatures, *, model: DifficultyModel | None = None
) -> float:
    """A difficulty estimate in [0, 1]: higher means a longer fix for a human."""
    m = model or DIFFICULTY_MODEL
    z = m.scale * (m.predicted_label(features) - m.centre)
    return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


# --------------------------------------------------------------------------------------------
# Choosing the starting mode
# --------------------------------------------------------------------------------------------

# Score cut-offs, the 36% and 90% quantiles of the fitted scores: Non-think for about the share
# of "<15 min" labels, Think Max for about the top tenth.
HIGH_FROM = 0.452
MAX_FROM = 0.618


class ModeChoice(BaseModel):
    """The starting mode, the score behind it, and why."""

    model_config = ConfigDict(frozen=True)

    mode: Mode
    score: float
    reasons: list[str] = Field(default_factory=list)


def choose_mode(
    task: Task | str,
    pack: Pack | None = None,
    *,
    profile: ModelProfile | None = None,
    repo_files: int | None = None,
    model: DifficultyModel | None = None,
) -> ModeChoice:
    """Pick the starting mode from the difficulty score, the pack size and what the profile allows."""
    features = difficulty_features(task, pack, repo_files=repo_files)
    score = difficulty_score(features, model=model)
    if score >= MAX_FROM:
        mode, reasons = Mode.MAX, [f"difficulty {score:.2f} >= {MAX_FROM}"]
    elif score >= HIGH_FROM:
        mode, reasons = Mode.HIGH, [f"difficulty {score:.2f} >= {HIGH_FROM}"]
    else:
        mode, reasons = Mode.NON_THINK, [f"difficulty {score:.2f} < {HIGH_FROM}"]
    pack_tokens = features.pack_tokens or 0
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
    return ModeChoice(mode=mode, score=score, reasons=reasons)
