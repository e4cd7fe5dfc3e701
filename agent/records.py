"""Typed records that flow between tome's stages; the prompt is rendered from these.

Sections: model messages and usage (foundation); pack (packing); trajectory and result (loop);
score (evaluation). Each stage adds its records in its own section of this one module.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal, Union

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
]


class Record(BaseModel):
    """Base for tome's records: strict about unknown fields, cheap to copy."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------------------------
# Model messages and usage (foundation)
# --------------------------------------------------------------------------------------------


class Mode(str, Enum):
    """Reasoning mode; the model profile maps each to request fields."""

    NON_THINK = "non-think"
    HIGH = "high"
    MAX = "max"

    @property
    def label(self) -> str:
        """Human name: Non-think, Think High, Think Max."""
        return {"non-think": "Non-think", "high": "Think High", "max": "Think Max"}[self.value]


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


class Delta(Record):
    """One streamed piece for live display."""

    kind: Literal["content", "reasoning", "tool_call"]
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


# --------------------------------------------------------------------------------------------
# Trajectory and result (loop issue)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Score (evaluation issue)
# --------------------------------------------------------------------------------------------
