"""Parsers per test-log format: pytest -rA, django's runner (verbosity 2), sympy's bin/test.

Each parser maps a log to {test id: TestStatus}; `match_tests` then finds the statuses of the
ids a dataset names (SWE-bench ids are sometimes cut at a space, or use an older django form).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from agent.records import TestStatus

__all__ = ["PARSERS", "match_tests", "parse_django", "parse_pytest", "parse_sympy", "strip_ansi"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """Remove terminal colour codes (astropy's pytest output is coloured)."""
    return _ANSI.sub("", text)


_PYTEST_WORD = {
    "PASSED": TestStatus.PASSED, "FAILED": TestStatus.FAILED, "ERROR": TestStatus.ERROR,
    "SKIPPED": TestStatus.SKIPPED, "XFAIL": TestStatus.XFAIL, "XPASS": TestStatus.XPASS,
}
# When an id is reported twice the worse outcome wins (PASSED, then ERROR at teardown), except
# that a skip never hides a pass: django's shared docstrings name a test of every cache backend.
_RANK = [TestStatus.SKIPPED, TestStatus.PASSED, TestStatus.XFAIL, TestStatus.XPASS,
         TestStatus.FAILED, TestStatus.ERROR]


def _put(out: dict[str, TestStatus], test: str, status: TestStatus) -> None:
    old = out.get(test)
    if old is None or _RANK.index(status) > _RANK.index(old):
        out[test] = status


def parse_pytest(log: str) -> dict[str, TestStatus]:
    """Statuses from pytest's `-rA` short summary (`PASSED id`, `FAILED id - msg`, ...)."""
    out: dict[str, TestStatus] = {}
    for line in strip_ansi(log).splitlines():
        word, _, rest = line.partition(" ")
        status = _PYTEST_WORD.get(word)
        if status is None or "::" not in rest or rest.startswith("["):
            continue
        if status in (TestStatus.FAILED, TestStatus.ERROR, TestStatus.XFAIL, TestStatus.SKIPPED):
            rest = re.sub(r" - .*$", "", rest)  # "FAILED id - AssertionError: ..."
        _put(out, rest.strip(), status)
    return out


# a verdict ends the id line (` ... ok`), or stands alone on a later line when the test printed
_DJANGO_WORD = [
    (re.compile(r"(?: \.\.\. |^)ok$"), TestStatus.PASSED),
    (re.compile(r"(?: \.\.\. |^)skipped\b.*$"), TestStatus.SKIPPED),
    (re.compile(r"(?: \.\.\. |^)expected failure$"), TestStatus.XFAIL),
    (re.compile(r"(?: \.\.\. |^)unexpected success$"), TestStatus.XPASS),
    (re.compile(r"(?: \.\.\. |^)FAIL$"), TestStatus.FAILED),
    (re.compile(r"(?: \.\.\. |^)ERROR$"), TestStatus.ERROR),
]
_DJANGO_ID = re.compile(r"^(\w+) \(([\w.]+)\)")
_DJANGO_SUMMARY = re.compile(r"^(FAIL|ERROR): (\w+) \(([\w.]+)\)")


def _django_ids(name: str, where: str) -> list[str]:
    # Python 3.11 prints `name (module.Class.name)`; datasets made on older Pythons use
    # `name (module.Class)`, those made on 3.11 (django 5.0) the long form: keep both.
    ids = [f"{name} ({where})"]
    if where.endswith("." + name):
        ids.append(f"{name} ({where[: -len(name) - 1]})")
    return ids


def parse_django(log: str) -> dict[str, TestStatus]:
    """Statuses from `runtests.py --verbosity 2` lines `name (module.Class) ... ok|FAIL|ERROR|skipped`.

    A test with a docstring prints `name (module.Class)` then the docstring's first line, and the
    verdict ends that second line; such a test is reported under both (SWE-bench's ids use the
    docstring line). Output a test prints may sit between id and verdict.
    """
    out: dict[str, TestStatus] = {}
    pending: list[str] | None = None
    for line in strip_ansi(log).splitlines():
        m = _DJANGO_ID.match(line)
        if m:
            pending = _django_ids(m.group(1), m.group(2))
        summary = _DJANGO_SUMMARY.match(line)
        if summary:  # the failure sections at the end are authoritative
            status = TestStatus.FAILED if summary.group(1) == "FAIL" else TestStatus.ERROR
            for test in _django_ids(summary.group(2), summary.group(3)):
                _put(out, test, status)
            pending = None
            continue
        for pattern, status in _DJANGO_WORD:
            verdict = pattern.search(line)
            if verdict and pending is not None:
                for test in pending:
                    _put(out, test, status)
                doc = line[: verdict.start()].strip()
                if not m and doc:  # datasets name tests with a docstring by its first line
                    _put(out, doc, status)
                pending = None
                break
    return out


_SYMPY_LINE = re.compile(r"^(test_\w+) (ok|F|E|f|s|X|w|Slow w)\b.*$")
_SYMPY_WORD = {"ok": TestStatus.PASSED, "F": TestStatus.FAILED, "E": TestStatus.ERROR,
               "f": TestStatus.XFAIL, "s": TestStatus.SKIPPED, "X": TestStatus.XPASS,
               "w": TestStatus.SKIPPED, "Slow w": TestStatus.SKIPPED}
_SYMPY_FAILED = re.compile(r"^_+ (\S+\.py):(test_\w+) _+$")


def parse_sympy(log: str) -> dict[str, TestStatus]:
    """Statuses from `bin/test --verbose` lines `test_name ok|F|E|f|s`, keyed by test name."""
    out: dict[str, TestStatus] = {}
    for line in strip_ansi(log).splitlines():
        line = line.rstrip()
        m = _SYMPY_LINE.match(line)
        if m:
            _put(out, m.group(1), _SYMPY_WORD[m.group(2)])
            continue
        m = _SYMPY_FAILED.match(line)  # "____ sympy/x/tests/test_y.py:test_z ____" sections
        if m and m.group(2) not in out:
            out[m.group(2)] = TestStatus.FAILED
    return out


PARSERS: dict[str, Callable[[str], dict[str, TestStatus]]] = {
    "pytest": parse_pytest, "django": parse_django, "sympy": parse_sympy,
}


def match_tests(wanted: Iterable[str], parsed: dict[str, TestStatus]) -> dict[str, TestStatus]:
    """The status of each wanted id; MISSING when the log never reports it.

    Exact ids first; else a unique parsed id that starts with the wanted one (ids cut at a space).
    """
    out: dict[str, TestStatus] = {}
    for test in wanted:
        if test in parsed:
            out[test] = parsed[test]
            continue
        hits = [k for k in parsed if k.startswith(test) and k[len(test):len(test) + 1] in ("", " ", "[", "-")]
        if len(hits) == 1 or (hits and len({parsed[h] for h in hits}) == 1):
            out[test] = parsed[hits[0]]
        else:
            out[test] = TestStatus.MISSING
    return out
