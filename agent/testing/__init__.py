"""Test doubles made of real parts: a scripted OpenAI-compatible server on 127.0.0.1.

Importing this package starts nothing; the names load from `agent.testing.server` on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = ("Fault", "ScriptedToolCall", "Turn", "Script", "RecordedRequest", "ScriptedServer")

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'agent.testing' has no attribute {name!r}")
    return getattr(importlib.import_module("agent.testing.server"), name)
