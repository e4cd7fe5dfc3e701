"""tome's exceptions, drawn in one place.

    TomeError                    anything tome raises on purpose
    ├── ConfigError              bad settings, unknown model or encoding, bad CLI input
    │   └── TreeBusy             another run is editing the same working tree
    ├── ModelError               the model endpoint failed us
    │   ├── AuthError            401/403: names the key variable to set
    │   ├── BalanceError         402: the account has no balance left
    │   ├── BadRequest           400/404/422: never retried
    │   │   └── ContextOverflow  the prompt does not fit the model's window
    │   ├── RateLimited          429 after every retry
    │   ├── ServerError          5xx, connection errors, timeouts after every retry
    │   └── StreamError          a stream that stalled, was cut, or ended without finish_reason
    └── Interrupt                a typed exit from the loop (submitted, limits, user stop)

Errors the *model* causes (bad tool arguments, edits that do not match) are not exceptions:
they go back to the model as observations.
"""

from __future__ import annotations

__all__ = [
    "TomeError",
    "ConfigError",
    "TreeBusy",
    "ModelError",
    "AuthError",
    "BalanceError",
    "BadRequest",
    "ContextOverflow",
    "RateLimited",
    "ServerError",
    "StreamError",
    "Interrupt",
]


class TomeError(Exception):
    """Base of every error tome raises on purpose."""


class ConfigError(TomeError):
    """Settings, model names, encodings or command-line input are wrong."""


class TreeBusy(ConfigError):
    """Another run holds the working tree; a run beside it needs its own worktree."""


class ModelError(TomeError):
    """The model endpoint failed; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(ModelError):
    """The key was missing or refused."""


class BalanceError(ModelError):
    """The provider says the account has no balance left (402)."""


class BadRequest(ModelError):
    """The request itself is wrong (400/404/422); retrying cannot help."""


class ContextOverflow(BadRequest):
    """The prompt plus requested output does not fit the model's context window."""


class RateLimited(ModelError):
    """429 persisted through every retry."""


class ServerError(ModelError):
    """5xx, connection failures and timeouts persisted through every retry."""


class StreamError(ModelError):
    """A stream stalled, was cut mid-way, or ended without a finish_reason."""


class Interrupt(TomeError):
    """A typed exit from the agent loop; subclasses say why."""
