"""Grade a status map as the official SWE-bench harness grades it.

Rules from SWE-bench/SWE-bench @ 7a21e05 (2026-08-18), swebench/harness/grading.py:

- a FAIL_TO_PASS test succeeds if PASSED or XFAIL and fails if FAILED, ERROR, SKIPPED or
  missing from the log (`test_passed`, `test_failed`, lines 85-109);
- a PASS_TO_PASS test succeeds if PASSED, XFAIL or SKIPPED ("a skipped test is not a
  regression", `test_maintained`, lines 93-98) and fails otherwise;
- an id matches exactly; only an id cut inside its parameters (more `[` than `]`) may match the
  log's ids that start with it, and only when they agree on pass or fail (`_resolve_case`, 61-82);
- resolved iff both rates are 1, an empty list counting as 1 (`get_resolution_status`, 309-326);
- a run whose test command exited non-zero while its log reports no FAILED or ERROR at all does
  not describe the run that happened: nothing resolves (`get_logs_eval`, lines 162-175).
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from agent.records import TestStatus

__all__ = ["Grade", "grade", "resolve_case", "test_failed", "test_maintained", "test_passed"]

_PASSING = (TestStatus.PASSED, TestStatus.XFAIL)


class Grade(BaseModel):
    """Per-test statuses of the dataset's lists and the verdict."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fail_to_pass: dict[str, TestStatus] = Field(default_factory=dict)
    pass_to_pass: dict[str, TestStatus] = Field(default_factory=dict)
    resolved: bool = False
    invalid_log: str | None = Field(default=None, description="Why the log does not count, if it does not.")


def resolve_case(case: str, status_map: dict[str, TestStatus]) -> str | None:
    """The status-map key for `case`: itself, or for an id cut inside `[...]` an agreeing prefix match."""
    if case in status_map:
        return case
    if case.count("[") > case.count("]"):
        matches = [k for k in status_map if k.startswith(case)]
        if matches and len({status_map[k] in _PASSING for k in matches}) == 1:
            return matches[0]
    return None


def test_passed(case: str, status_map: dict[str, TestStatus]) -> bool:
    """PASSED or XFAIL."""
    key = resolve_case(case, status_map)
    return key is not None and status_map[key] in _PASSING


def test_maintained(case: str, status_map: dict[str, TestStatus]) -> bool:
    """PASS_TO_PASS success: passed, or skipped."""
    key = resolve_case(case, status_map)
    return test_passed(case, status_map) or (key is not None and status_map[key] == TestStatus.SKIPPED)


def test_failed(case: str, status_map: dict[str, TestStatus]) -> bool:
    """Missing, FAILED, ERROR or SKIPPED."""
    key = resolve_case(case, status_map)
    return key is None or status_map[key] in (TestStatus.FAILED, TestStatus.ERROR, TestStatus.SKIPPED)


def _statuses(cases: Iterable[str], status_map: dict[str, TestStatus]) -> dict[str, TestStatus]:
    out = {}
    for case in cases:
        key = resolve_case(case, status_map)
        out[case] = status_map[key] if key is not None else TestStatus.MISSING
    return out


def grade(fail_to_pass: Iterable[str], pass_to_pass: Iterable[str], status_map: dict[str, TestStatus],
          *, exit_code: int | None = None) -> Grade:
    """Resolved iff every FAIL_TO_PASS test passed and every PASS_TO_PASS test was maintained."""
    f2p, p2p = list(fail_to_pass), list(pass_to_pass)
    got = Grade(fail_to_pass=_statuses(f2p, status_map), pass_to_pass=_statuses(p2p, status_map))
    if exit_code not in (None, 0) and status_map and not any(
            s in (TestStatus.FAILED, TestStatus.ERROR) for s in status_map.values()):
        return got.model_copy(update={"invalid_log": f"the tests exited {exit_code} but the log "
                                                     "reports no failure"})
    f2p_ok = all(test_passed(c, status_map) for c in f2p)
    p2p_ok = all(test_maintained(c, status_map) for c in p2p)
    return got.model_copy(update={"resolved": f2p_ok and p2p_ok})
