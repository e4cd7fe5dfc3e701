"""submit: the explicit way for the model to finish a run."""

from __future__ import annotations

from tools.base import ToolContext, ToolError, tool

__all__ = ["SUBMIT_TOOLS", "submit"]


@tool
def submit(ctx: ToolContext, summary: str) -> str:
    """Finish the task: call this once the work is done and checked; the run ends after it.

    Args:
        summary: What you changed and why, and how you checked it (a few sentences).
    """
    text = summary.strip()
    if not text:
        raise ToolError(
            "the summary is empty; say in a few sentences what you changed and how you checked it."
        )
    if ctx.submitted is not None:
        raise ToolError("the task was already submitted; the run is ending.")
    ctx.submitted = text
    return "Submitted. The run ends here."


SUBMIT_TOOLS = (submit,)
