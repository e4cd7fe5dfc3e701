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

__all__ = [
    "EDIT_TOOLS",
    "GIT_TOOLS",
    "PATCH_TOOLS",
    "SEARCH_TOOLS",
    "SUBMIT_TOOLS",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "Toolbox",
    "Workspace",
    "checkpoint_if_repo",
    "default_tools",
    "tool",
    "workspace_diff",
]


def default_tools(*, browser: bool | None = None) -> list[Any]:
    """Every tool a run offers the model, in a fixed (cache-friendly) order.

    `browser`: offer render_url; by default only when Playwright and Chromium are usable.
    """
    from tools.edit import EDIT_TOOLS
    from tools.git import GIT_TOOLS
    from tools.patch import PATCH_TOOLS
    from tools.run_tests import TEST_TOOLS
    from tools.search import SEARCH_TOOLS
    from tools.shell import SHELL_TOOLS
    from tools.submit import SUBMIT_TOOLS
    from tools.web import WEB_TOOLS

    found = [
        *EDIT_TOOLS,
        *PATCH_TOOLS,
        *SEARCH_TOOLS,
        *SHELL_TOOLS,
        *TEST_TOOLS,
        *GIT_TOOLS,
        *WEB_TOOLS,
        *SUBMIT_TOOLS,
    ]
    from tools import browser as browser_module

    if browser or (browser is None and browser_module.browser_problem() is None):
        found.extend(browser_module.BROWSER_TOOLS)
    return found


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tools' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
