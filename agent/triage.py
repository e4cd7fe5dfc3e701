"""The triage turn: one short call over the run's own prefix that rates the task and picks the mode.

The request is the run's prompt (system, instructions, tools, pack, task) with one user message
appended, `TRIAGE_PROMPT`; the answer is a small JSON object (`TriageVerdict`). The exchange stays
in the conversation, and the work turns continue after it, so the first work request extends the
triage request plus its answer. DeepSeek stores a cache unit at the end of each request's input
and of its output; a later request hits a unit it extends whole, while two requests that only
share a prefix (A+B, then A+C) hit nothing the first time, only the common prefix A from the
third request on (api-docs.deepseek.com/guides/kv_cache, "Persistence at request boundaries",
examples 1 and 2). Kept in the conversation, the triage exchange makes the first work request a
hit over the whole pack; dropped, that request would pay the pack again.

A malformed answer is asked once more (`RETRY_PROMPT`, naming the problem); a second one hands
the choice to the fallback rule (agent.modes.FALLBACK_RULE).
"""

from __future__ import annotations

import json
import re

from pydantic import ValidationError

from agent.records import TRIAGE_RATINGS, Mode, TriageVerdict

__all__ = [
    "TRIAGE_ATTEMPTS",
    "TRIAGE_EXPECTED_OUTPUT",
    "TRIAGE_MAX_TOKENS",
    "TRIAGE_PROMPT",
    "RETRY_PROMPT",
    "HANDOVER",
    "parse_verdict",
    "retry_request",
    "handover_note",
]

TRIAGE_ATTEMPTS = 2  # the first answer and one retry
TRIAGE_MAX_TOKENS = 1_024  # room for a model that explains before the object
TRIAGE_EXPECTED_OUTPUT = 200  # what the cost cap expects it to write: the object is 50-150 tokens

TRIAGE_PROMPT = f"""\
Before you start: triage this task. Do not call any tool yet and do not write the plan.
Rate how long the fix would take an experienced engineer who knows this code base well, on this
scale: {", ".join(f'"{r}"' for r in TRIAGE_RATINGS)}.
Answer with one JSON object and nothing else:
{{"rating": "<one of the four values above>", "files": ["<path of each file you expect to \
change>"], "check": "<the command you would run to show the fix works>"}}
"""

RETRY_PROMPT = (
    "That answer could not be used ({problem}). Answer with the JSON object only: "
    '{{"rating": ..., "files": [...], "check": ...}}, with rating one of {ratings}.'
)

HANDOVER = (
    "Triage noted; you will work in {mode}. Now start with your plan (Goal / Files / Verify), "
    "then work with the tools."
)

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def parse_verdict(text: str | None) -> tuple[TriageVerdict | None, str | None]:
    """The verdict in a triage answer, or None and what is wrong with it (the model's mistake)."""
    body = _FENCE.sub("", (text or "").strip())
    if not body:
        return None, "the answer was empty"
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        return None, "no JSON object in the answer"
    try:
        data = json.loads(body[start : end + 1])
    except (ValueError, RecursionError) as e:
        return None, f"not valid JSON: {e}"
    if not isinstance(data, dict):
        return None, "the JSON is not an object"
    known = {k: v for k, v in data.items() if k in TriageVerdict.model_fields}  # extra keys: no harm
    try:
        return TriageVerdict.model_validate(known), None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the object"
        return None, f"{where}: {first['msg']}"


def retry_request(problem: str) -> str:
    """The second triage request, saying what was wrong with the first answer."""
    return RETRY_PROMPT.format(problem=problem, ratings=", ".join(f'"{r}"' for r in TRIAGE_RATINGS))


def handover_note(mode: Mode) -> str:
    """The message after the deciding triage answer that starts the work turns."""
    return HANDOVER.format(mode=mode.label)
