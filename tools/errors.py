"""The tools' error: a leaf module, so every tool module can raise it without importing the
Toolbox (tools.base imports tools.workspace lazily; tools.workspace needs only this)."""

from __future__ import annotations

__all__ = ["ToolError"]


class ToolError(Exception):
    """A mistake the model made; the message becomes its observation and says what to do next."""

    kind = "tool_error"

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
