"""Tests known to fail here for reasons outside any patch, as data: excluded and reported, never silently.

The built-in table (known_failures.json beside this module) holds the PASS_TO_PASS tests that
fail on this Python with and without the gold patch for the instances checked; a user's own
file (`--known-failures FILE`, same shape) adds to it.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from agent.errors import ConfigError

__all__ = ["KnownFailure", "builtin_known_failures", "load_known_failures", "merge_known_failures"]


class KnownFailure(BaseModel):
    """Tests of one instance that do not count, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str
    tests: list[str]


KnownFailures = dict[str, KnownFailure]


def _parse(data: object, where: str) -> KnownFailures:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object {{instance_id: {{reason, tests}}}}")
    try:
        return {iid: KnownFailure.model_validate(v) for iid, v in data.items() if not iid.startswith("_")}
    except ValidationError as e:
        raise ConfigError(f"{where}: {e}") from None


def builtin_known_failures() -> KnownFailures:
    """The table shipped with tome."""
    text = resources.files("agent.evaluation").joinpath("known_failures.json").read_text(encoding="utf-8")
    return _parse(json.loads(text), "built-in known_failures.json")


def load_known_failures(path: Path) -> KnownFailures:
    """A user's table: {instance_id: {"reason": str, "tests": [ids]}}; ConfigError when malformed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"bad known-failures file {path}: {e}") from None
    return _parse(data, str(path))


def merge_known_failures(*tables: KnownFailures) -> KnownFailures:
    """One table: per instance, the union of the tests (reasons joined)."""
    out: KnownFailures = {}
    for table in tables:
        for iid, entry in table.items():
            old = out.get(iid)
            if old is None:
                out[iid] = entry
                continue
            tests = old.tests + [t for t in entry.tests if t not in old.tests]
            reason = old.reason if entry.reason == old.reason else f"{old.reason}; {entry.reason}"
            out[iid] = KnownFailure(reason=reason, tests=tests)
    return out
