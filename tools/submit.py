"""submit: the explicit way for the model to finish a run."""

from __future__ import annotations

from tools.base import ToolContext, ToolError, tool

__all__ = ["SUBMIT_TOOLS", "submit"]


@tool
def submit(ctx: ToolContext, summary: str) -> str:
    """Submit the work once it is done and checked: the harness then runs the check; a passing
    check ends the run, a failing one comes back to you with its output.

    Args:
        summary: What you changed and why, and how you checked it (a few sentences).
    """
    text = summary.strip()
    if not text:
        raise ToolError(
            "the summary is empty; say in a few sentences what you changed and how you checked it."
        )
    if ctx.submitted is not None:
        raise ToolError("the task was already submitted in this turn; wait for the check's verdict.")
    ctx.submitted = text
    return "Submitted. The harness runs the check now; if it fails, you will see its output and can go on."


SUBMIT_TOOLS = (submit,)
