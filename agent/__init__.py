"""tome: a coding agent for 1M-token models. task -> pack -> mode -> loop -> patch -> score.

Importing this package has no side effects; the public names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "solve": "agent.run",
    "resume": "agent.run",
    "Task": "agent.records",
    "Result": "agent.records",
    "Settings": "agent.settings",
    "load_settings": "agent.settings",
    "OpenAIModel": "agent.model",
    "Mode": "agent.records",
    "get_profile": "agent.profiles",
    "get_tokenizer": "agent.tokens",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
