"""The tools the model calls: editing, patching, search, shell, tests, browsing, git, submit.

Importing this package has no side effects; the public names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_EXPORTS = {
    "tool": "tools.base",
    "Tool": "tools.base",
    "ToolContext": "tools.base",
    "ToolError": "tools.base",
    "ToolResult": "tools.base",
    "Toolbox": "tools.base",
    "Workspace": "tools.workspace",
    "EDIT_TOOLS": "tools.edit",
    "PATCH_TOOLS": "tools.patch",
    "SEARCH_TOOLS": "tools.search",
    "GIT_TOOLS": "tools.git",
    "SUBMIT_TOOLS": "tools.submit",
    "checkpoint_if_repo": "tools.git",
    "workspace_diff": "tools.git",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tools' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
