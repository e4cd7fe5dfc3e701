"""The one rule for a pack's default budget, shared by `tome pack` and `solve` (`agent.run`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.records import Mode

if TYPE_CHECKING:
    from agent.profiles import ModelProfile

__all__ = ["CONVERSATION_RESERVE", "default_budget"]

# Tokens kept free beside the pack for the conversation (tool outputs, edits, reasoning).
CONVERSATION_RESERVE = 128_000


def default_budget(profile: ModelProfile, mode: Mode | None = None) -> int:
    """The window less what a call in `mode` may ask for as output (Think Max's when no mode is
    chosen: escalation may reach it) and a reserve for the conversation; on a small window each
    reserve is kept to a share of it (a quarter for output, an eighth for the conversation)."""
    from agent.modes import output_cap

    window = profile.context_window
    output = min(output_cap(mode or Mode.MAX, profile), window // 4)
    return max(window - output - min(CONVERSATION_RESERVE, window // 8), 0)
