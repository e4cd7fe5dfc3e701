"""Typed records that flow between tome's stages; the prompt is rendered from these.

Sections: model messages and usage (foundation); pack (packing); trajectory and result (loop);
score (evaluation). Each stage adds its records in its own section of this one module.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Mode",
    "ToolCall",
    "SystemMessage",
    "UserMessage",
    "AssistantMessage",
    "ToolMessage",
    "Message",
    "Usage",
    "ModelResponse",
    "Delta",
    "Task",
    "PackLevel",
    "SecretFinding",
    "PackItem",
    "Skipped",
    "PackTotals",
    "Pack",
    "RunStarted",
    "TRIAGE_RATINGS",
    "TriageRating",
    "TriageVerdict",
    "Triaged",
    "ModelCalled",
    "ToolStarted",
    "ToolFinished",
    "UserNote",
    "ModeChanged",
    "CheckRecord",
    "CheckRun",
    "Compacted",
    "RunEnded",
    "Event",
    "Result",
    "EvalInstance",
    "Prediction",
    "TestStatus",
    "Score",
    "EvalReport",
]


_R = TypeVar("_R", bound="Record")


class Record(BaseModel):
    """Base for tome's records: strict about unknown fields, cheap to copy."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    @classmethod
    def trusted(cls: type[_R], values: dict[str, Any]) -> _R:
        """A record from `values` that are already every field, of the right types: no
        validation and none of model_construct's per-call bookkeeping (a pack builds thousands)."""
        record = cls.__new__(cls)
        object.__setattr__(record, "__dict__", values)
        object.__setattr__(record, "__pydantic_fields_set__", set(values))
        object.__setattr__(record, "__pydantic_extra__", None)
        object.__setattr__(record, "__pydantic_private__", None)
        return record


# --------------------------------------------------------------------------------------------
# Model messages and usage (foundation)
# --------------------------------------------------------------------------------------------


class Mode(str, Enum):
    """Reasoning mode; the model profile maps each to request fields."""

    NON_THINK = "non-think"
    LOW = "low"
    HIGH = "high"
    MAX = "max"

    @property
    def label(self) -> str:
        """Human name (Non-think, Think High, ...), from the mode's row in agent.modes.MODE_TABLE."""
        from agent.modes import MODE_TABLE

        return MODE_TABLE[self].label


class ToolCall(Record):
    """One function call the model asked for; `arguments` is the raw JSON text it sent."""

    id: str
    name: str
    arguments: str = ""


class SystemMessage(Record):
    """The system prompt (or a named chunk of it)."""

    role: Literal["system"] = "system"
    content: str


class UserMessage(Record):
    """Text from the user or the harness."""

    role: Literal["user"] = "user"
    content: str


class AssistantMessage(Record):
    """A model turn; `reasoning_content` must be sent back when the turn made tool calls."""

    role: Literal["assistant"] = "assistant"
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)


class ToolMessage(Record):
    """The observation for exactly one tool call."""

    role: Literal["tool"] = "tool"
    tool_call_id: str
    content: str


Message = Annotated[
    Union[SystemMessage, UserMessage, AssistantMessage, ToolMessage],
    Field(discriminator="role"),
]


class Usage(Record):
    """Token usage of one request; cache hit + miss = prompt tokens where the provider reports both."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cache_hit_tokens: int = 0
    cache_miss_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{k: getattr(self, k) + getattr(other, k) for k in Usage.model_fields})


class ModelResponse(Record):
    """What one model call returns: the message, why it stopped, usage and cost in USD."""

    message: AssistantMessage
    finish_reason: str
    usage: Usage
    cost: float = 0.0
    model: str = ""
    request_id: str | None = None
    elapsed: float = 0.0
    cache_reported: bool = False  # the provider sent prompt-cache fields in its usage


class Delta(Record):
    """One streamed piece for live display; `queued` is a keep-alive before the first payload."""

    kind: Literal["content", "reasoning", "tool_call", "queued"]
    text: str


# --------------------------------------------------------------------------------------------
# Task (shared by packing, modes, the loop and evaluation)
# --------------------------------------------------------------------------------------------


class Task(Record):
    """What the agent is asked to do; SWE-bench instances fill the optional fields."""

    statement: str
    instance_id: str | None = None
    repo: str | None = None
    base_commit: str | None = None
    fail_to_pass: list[str] = Field(default_factory=list)
    pass_to_pass: list[str] = Field(default_factory=list)
    test_command: str | None = None
    difficulty: str | None = None


# --------------------------------------------------------------------------------------------
# Pack (packing issue)
# --------------------------------------------------------------------------------------------


PackLevel = Literal["full", "outline", "path"]


class SecretFinding(Record):
    """A secret found in text: where and by which rule, never the value itself."""

    rule: str
    path: str | None = None
    line: int = 0
    action: Literal["redacted", "excluded"] = "redacted"


class PackItem(Record):
    """One file in a pack: the level it got, its exact tokens there, and why it ranked."""

    path: str
    level: PackLevel
    tokens: int = 0
    score: float = 0.0
    rank: int | None = None
    reasons: list[str] = Field(default_factory=list)


class Skipped(Record):
    """A file left out of a pack, with the reason (binary, lock file, secret path, ...)."""

    path: str
    reason: str
    size: int = 0


class PackTotals(Record):
    """Counts and tokens of one pack."""

    files: int = 0
    full: int = 0
    outline: int = 0
    path_only: int = 0
    skipped: int = 0
    tokens: int = 0
    full_tokens: int = 0
    outline_tokens: int = 0
    tree_tokens: int = 0
    repo_tokens: int | None = None
    secrets_redacted: int = 0
    secrets_excluded: int = 0


class Pack(Record):
    """A repository rendered for the model under a budget, with its manifest.

    `document` is stable for a commit (paths in order, no task text); `relevant` is the small
    task-specific block of ranked files meant to follow the document in the prompt.
    """

    document: str
    relevant: str = ""
    format: Literal["xml", "markdown"] = "xml"
    repo: str
    root: str
    commit: str | None = None
    model: str
    tokenizer: str
    budget: int
    tree_level: str = "files"
    totals: PackTotals = Field(default_factory=PackTotals)
    items: list[PackItem] = Field(default_factory=list)
    skipped: list[Skipped] = Field(default_factory=list)
    secrets: list[SecretFinding] = Field(default_factory=list)
    relevant_tokens: int = 0
    timings: dict[str, float] = Field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Trajectory and result (loop issue)
# --------------------------------------------------------------------------------------------


class _Event(Record):
    """Common fields of trajectory events: wall time and the model-call count so far."""

    t: float = 0.0
    step: int = 0


class RunCaps(Record):
    """The caps a run started with (None: no cap), as settings and the command line gave them."""

    max_steps: int | None = None
    max_cost: float | None = None
    max_time: float | None = None
    max_tokens: int | None = None


class RunStarted(_Event):
    """First line of a trajectory: what is being solved, how, and where the prompt prefix lives."""

    type: Literal["run_started"] = "run_started"
    run_id: str
    task: Task
    model: str
    base_url: str | None = None
    mode: Mode
    mode_reason: str = ""
    repo: str
    base_commit: str | None = None
    check_command: str | None = None
    prefix_sha256: str = ""
    pack_tokens: int = 0
    limits: RunCaps = Field(default_factory=lambda: RunCaps())
    triage: bool = False  # a triage turn picks the mode; `mode` is the fallback until it has


# The SWE-bench Verified annotation rubric: the time an experienced engineer who knows the code
# needs for the fix (OpenAI's ensembled_annotations_public.csv, `difficulty`; ../shared/swe).
TRIAGE_RATINGS: tuple[str, ...] = ("<15 min fix", "15 min - 1 hour", "1-4 hours", ">4 hours")
TriageRating = Literal["<15 min fix", "15 min - 1 hour", "1-4 hours", ">4 hours"]


class TriageVerdict(Record):
    """What the model said in its triage answer: the rating, the files, the check."""

    rating: TriageRating
    files: list[str] = Field(default_factory=list, max_length=50)
    check: str = ""


class Triaged(_Event):
    """One attempt at the triage turn: the request sent after the prefix, the answer, what it
    parsed to. The deciding attempt (a verdict, or the last try) carries the starting mode."""

    type: Literal["triage"] = "triage"
    mode: Mode  # the call was asked in
    request: str
    response: ModelResponse
    verdict: TriageVerdict | None = None
    problem: str | None = None  # why the answer could not be used
    chosen: Mode | None = None  # the starting mode, set on the deciding attempt
    reason: str = ""  # why that mode
    note: str = ""  # the message that hands over to the work turns (deciding attempt only)


class ModelCalled(_Event):
    """One model response and the mode it was asked in."""

    type: Literal["model"] = "model"
    mode: Mode
    response: ModelResponse


class ToolStarted(_Event):
    """A tool call about to run (a trajectory that ends here was interrupted mid-tool)."""

    type: Literal["tool_started"] = "tool_started"
    call_id: str
    name: str
    arguments: str


class ToolFinished(_Event):
    """The observation sent back for exactly one tool call."""

    type: Literal["tool"] = "tool"
    call_id: str
    name: str
    content: str
    ok: bool = True
    error_kind: str | None = None
    elapsed: float = 0.0


class UserNote(_Event):
    """Text the harness or the user adds to the conversation (reminders, re-plan requests, chat)."""

    type: Literal["user"] = "user"
    content: str
    source: Literal["harness", "user"] = "harness"


class ModeChanged(_Event):
    """The loop moved to another reasoning mode."""

    type: Literal["mode"] = "mode"
    old: Mode
    new: Mode
    reason: str


class CheckRecord(Record):
    """The agent's own check: the command the harness ran and what it showed."""

    command: str
    passed: bool
    summary: str = ""
    passed_count: int = 0
    failed_count: int = 0


class CheckRun(_Event):
    """The harness ran the check at a submission."""

    type: Literal["check"] = "check"
    check: CheckRecord


class Compacted(_Event):
    """A deliberate rebuild of the history: these tool outputs were replaced by a stub."""

    type: Literal["compaction"] = "compaction"
    dropped_call_ids: list[str]
    before_tokens: int
    after_tokens: int
    reason: str


class RunStatus(str, Enum):
    """How a run ended; exit codes follow from it (see agent.cli)."""

    SOLVED = "solved"  # submitted, and the check passed
    UNCHECKED = "unchecked"  # submitted with no check to run
    LIMIT = "limit"  # a step, cost, time, token or context cap, or a loop of failing calls
    INTERRUPTED = "interrupted"  # the user stopped it
    ERROR = "error"  # the model endpoint failed, or turns could not be acted on
    TURN = "turn"  # chat: the model answered and waits for the user (not an end of the run)

    def __str__(self) -> str:  # print(result.status) says "solved", as the JSON does
        return self.value


class RunEnded(_Event):
    """How a run ended: the last event of a finished run, and what the loop returns."""

    type: Literal["run_ended"] = "run_ended"
    status: RunStatus
    reason: str
    exit_code: int
    check: CheckRecord | None = None  # the check that decided a submission
    summary: str | None = None  # what the model said it did, when it submitted


Event = Annotated[
    Union[
        RunStarted, Triaged, ModelCalled, ToolStarted, ToolFinished, UserNote, ModeChanged, CheckRun,
        Compacted, RunEnded,
    ],
    Field(discriminator="type"),
]


class Result(Record):
    """What `solve` returns: how the run ended, the patch, the check, and what it cost."""

    run_id: str
    status: RunStatus
    exit_code: int
    reason: str
    patch: str = ""
    check: CheckRecord | None = None
    plan: str | None = None
    summary: str | None = None
    mode: Mode
    modes: list[Mode] = Field(default_factory=list)
    triage: TriageVerdict | None = None  # what the triage turn said, when it gave a verdict
    steps: int = 0
    cost: float = 0.0
    usage: Usage = Field(default_factory=Usage)
    elapsed: float = 0.0
    trajectory: str = ""

    @property
    def cache_hit_ratio(self) -> float:
        """Share of prompt tokens served from the provider's prefix cache."""
        total = self.usage.prompt_tokens
        return self.usage.cache_hit_tokens / total if total else 0.0


# --------------------------------------------------------------------------------------------
# Score (evaluation issue)
# --------------------------------------------------------------------------------------------


class EvalInstance(Record):
    """One SWE-bench-style instance: where to check out, what to apply, which tests decide."""

    instance_id: str
    repo: str
    base_commit: str
    problem_statement: str = ""
    hints_text: str = ""
    version: str = ""
    environment_setup_commit: str | None = None
    patch: str = ""
    test_patch: str = ""
    fail_to_pass: list[str] = Field(default_factory=list)
    pass_to_pass: list[str] = Field(default_factory=list)
    difficulty: str | None = None

    def to_task(self) -> Task:
        """The shared `Task` the agent loop takes (no gold patch, no test patch)."""
        return Task(
            statement=self.problem_statement,
            instance_id=self.instance_id,
            repo=self.repo,
            base_commit=self.base_commit,
            fail_to_pass=list(self.fail_to_pass),
            pass_to_pass=list(self.pass_to_pass),
            difficulty=self.difficulty,
        )


class Prediction(Record):
    """A patch for one instance from some source (gold, empty, a predictions file, the agent)."""

    instance_id: str
    model_name_or_path: str
    model_patch: str = ""
    cost: float = 0.0
    usage: Usage = Field(default_factory=Usage)
    mode: str | None = None
    elapsed: float = 0.0
    trajectory: str | None = None  # the agent run that made the patch (`tome view` links to it)


class TestStatus(str, Enum):
    """Outcome of one test as a runner's log reports it."""

    __test__ = False  # not a pytest test class

    PASSED = "PASSED"
    FAILED = "FAILED"
    ERROR = "ERROR"
    SKIPPED = "SKIPPED"
    XFAIL = "XFAIL"
    XPASS = "XPASS"
    MISSING = "MISSING"

    @property
    def ok(self) -> bool:
        """Counts as passing for SWE-bench (passed, or expected failure)."""
        return self in (TestStatus.PASSED, TestStatus.XFAIL)


class Score(Record):
    """The verdict on one instance, with what it cost to get the patch and to check it."""

    instance_id: str
    repo: str = ""
    difficulty: str | None = None
    model: str = ""
    status: Literal["resolved", "unresolved", "error"]
    empty_patch: bool = False
    error: str | None = None
    fail_to_pass: dict[str, TestStatus] = Field(default_factory=dict)
    pass_to_pass: dict[str, TestStatus] = Field(default_factory=dict)
    excluded: dict[str, str] = Field(
        default_factory=dict, description="Dataset tests left out of the verdict (known failures): id -> why.")
    note: str | None = Field(default=None, description="Why an unresolved verdict is not the tests' own.")
    applied_with: str | None = Field(default=None, description="The apply command that placed the model patch.")
    cost: float = 0.0
    usage: Usage = Field(default_factory=Usage)
    mode: str | None = None
    solve_time: float = 0.0
    setup_time: float = 0.0
    test_time: float = 0.0
    log_dir: str | None = None

    @property
    def resolved(self) -> bool:
        """True iff every FAIL_TO_PASS and PASS_TO_PASS test passed."""
        return self.status == "resolved"


class EvalReport(Record):
    """SWE-bench's report lists plus tome's per-instance scores."""

    run_id: str
    model: str
    total_instances: int = 0
    submitted_instances: int = 0
    completed_instances: int = 0
    resolved_instances: int = 0
    unresolved_instances: int = 0
    empty_patch_instances: int = 0
    error_instances: int = 0
    submitted_ids: list[str] = Field(default_factory=list)
    completed_ids: list[str] = Field(default_factory=list)
    resolved_ids: list[str] = Field(default_factory=list)
    unresolved_ids: list[str] = Field(default_factory=list)
    error_ids: list[str] = Field(default_factory=list)
    empty_patch_ids: list[str] = Field(default_factory=list)
    excluded_tests: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Per instance, the tests left out of its verdict and why.")
    wall_time: float = 0.0
    scores: list[Score] = Field(default_factory=list)
