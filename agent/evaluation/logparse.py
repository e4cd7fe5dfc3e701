"""Test-log parsers as the official SWE-bench harness has them, per repository.

Each parser maps a log to {test id: TestStatus} exactly as the official one builds its status
map (SWE-bench/SWE-bench @ 7a21e05, swebench/harness/log_parsers/python.py): the same lines
count, an id is cut where theirs is cut (pytest: at the first whitespace, so `test_x[a b]` is
`test_x[a`), and a test reported twice keeps its last status (a dict assignment there). The
additions are environment facts, not grading rules, both for django: Python 3.11's unittest
prints ids as `name (module.Class.name)` where datasets made on older Pythons name
`name (module.Class)`, and a test with a docstring is reported under its id line as well as under
the docstring line; the parser keeps every form.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from agent.records import TestStatus

__all__ = [
    "PARSERS",
    "REPO_PARSERS",
    "parse_django",
    "parse_matplotlib",
    "parse_pytest",
    "parse_pytest_options",
    "parse_pytest_v2",
    "parse_seaborn",
    "parse_sympy",
    "parser_for",
    "strip_ansi",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# The official TestStatus has these five and no XPASS: an `XPASS id` line is not a result there
# (constants/__init__.py, class TestStatus), so the test counts as missing.
_OFFICIAL = [TestStatus.FAILED, TestStatus.PASSED, TestStatus.SKIPPED, TestStatus.ERROR, TestStatus.XFAIL]
_SKIP_SUMMARY = re.compile(r"^\[\d+\]$")


def strip_ansi(text: str) -> str:
    """Remove terminal colour codes."""
    return _ANSI.sub("", text)


def _status_word(line: str) -> TestStatus | None:
    return next((s for s in _OFFICIAL if line.startswith(s.value)), None)


def _is_skip_summary(status: str, name: str) -> bool:
    # `SKIPPED [2] path:line: reason` is a summary, not a test (python.py `_is_skip_summary`)
    return status == TestStatus.SKIPPED.value and bool(_SKIP_SUMMARY.match(name))


def _pytest_pairs(log: str) -> list[tuple[str, str]]:
    pairs = []
    for line in log.split("\n"):
        if _status_word(line) is None:
            continue
        if line.startswith(TestStatus.FAILED.value):
            line = line.replace(" - ", " ")
        words = line.split()
        if len(words) <= 1 or _is_skip_summary(words[0], words[1]):
            continue
        pairs.append((words[1], words[0]))  # (id cut at the first whitespace, status word)
    return pairs


def _status(word: str) -> TestStatus | None:
    try:
        status = TestStatus(word)
    except ValueError:
        return None
    return status if status in _OFFICIAL else None


def _collect(pairs: list[tuple[str, str]]) -> dict[str, TestStatus]:
    out: dict[str, TestStatus] = {}
    for test, word in pairs:
        status = _status(word)
        if status is not None:
            out[test] = status  # the last report of an id wins, as in the official dict
    return out


def parse_pytest(log: str) -> dict[str, TestStatus]:
    """`parse_log_pytest`: `-rA` summary lines `STATUS id ...` (flask, pytest, xarray, astroid)."""
    return _collect(_pytest_pairs(log))


_OPTION = re.compile(r"(.*?)\[(.*)\]")


def parse_pytest_options(log: str) -> dict[str, TestStatus]:
    """`parse_log_pytest_options` (requests, pylint): as pytest, a path parameter cut to its last part."""
    pairs = []
    for test, word in _pytest_pairs(log):
        m = _OPTION.search(test)
        if m:
            main, option = m.groups()
            if option.startswith("/") and not option.startswith("//") and "*" not in option:
                option = "/" + option.split("/")[-1]
            test = f"{main}[{option}]"
        pairs.append((test, word))
    return _collect(pairs)


_CONTROL = str.maketrans("", "", "".join(chr(c) for c in range(1, 32)))


def parse_pytest_v2(log: str) -> dict[str, TestStatus]:
    """`parse_log_pytest_v2` (astropy, sphinx, scikit-learn): colours dropped, the whole rest is the id."""
    pairs = []
    for line in log.split("\n"):
        line = re.sub(r"\[(\d+)m", "", line).translate(_CONTROL)
        if _status_word(line) is not None:
            if line.startswith(TestStatus.FAILED.value):
                line = line.split(" - ", 1)[0]
            words = line.split()
            if len(words) >= 2 and not _is_skip_summary(words[0], words[1]):
                pairs.append((" ".join(words[1:]), words[0]))
        elif any(line.endswith(s.value) for s in _OFFICIAL):  # older pytest: `id STATUS`
            words = line.split()
            if len(words) >= 2:
                pairs.append((" ".join(words[:-1]), words[-1]))
    return _collect(pairs)


def parse_matplotlib(log: str) -> dict[str, TestStatus]:
    """`parse_log_matplotlib`: pytest's, with MouseButton names as their numbers."""
    return parse_pytest(log.replace("MouseButton.LEFT", "1").replace("MouseButton.RIGHT", "3"))


def parse_seaborn(log: str) -> dict[str, TestStatus]:
    """`parse_log_seaborn`: FAILED and PASSED lines of either `STATUS id` or `id PASSED ...` form."""
    out: dict[str, TestStatus] = {}
    for line in log.split("\n"):
        parts = line.split()
        if len(parts) < 2:
            continue
        if line.startswith("FAILED"):
            out[parts[1]] = TestStatus.FAILED
        elif " PASSED " in line:
            if parts[1] == "PASSED":
                out[parts[0]] = TestStatus.PASSED
        elif line.startswith("PASSED"):
            out[parts[1]] = TestStatus.PASSED
    return out


_DJANGO_LONG_ID = re.compile(r"^(\w+) \(([\w.]+)\.\1\)$")
# django's runner interrupted by a long print: `name ... <message>\nok` (python.py, patterns)
_DJANGO_INTERRUPTED = [
    r"^(.*?)\s\.\.\.\sTesting\ against\ Django\ installed\ in\ ((?s:.*?))\ silenced\)\.\nok$",
    r"^(.*?)\s\.\.\.\sInternal\ Server\ Error:\ \/(.*)\/\nok$",
    r"^(.*?)\s\.\.\.\sSystem check identified no issues \(0 silenced\)\nok$",
]


def _django_line(line: str, prev: str | None) -> tuple[list[tuple[str, TestStatus]], str | None]:
    got: list[tuple[str, TestStatus]] = []
    if "--version is equivalent to version" in line:
        got.append(("--version is equivalent to version", TestStatus.PASSED))
    if " ... " in line:
        prev = line.split(" ... ")[0]
    for suffix in (" ... ok", " ... OK", " ...  OK"):
        if line.endswith(suffix):
            if line.strip().startswith("Applying sites.0002_alter_domain_unique...test_no_migrations"):
                line = line.split("...", 1)[-1].strip()  # the official fix for django__django-7188
            got.append((line.rsplit(suffix, 1)[0], TestStatus.PASSED))
            break
    if " ... skipped" in line:
        got.append((line.split(" ... skipped")[0], TestStatus.SKIPPED))
    if line.endswith(" ... FAIL"):
        got.append((line.split(" ... FAIL")[0], TestStatus.FAILED))
    if line.startswith("FAIL:"):
        got.append((line.split()[1].strip(), TestStatus.FAILED))
    if line.endswith(" ... ERROR"):
        got.append((line.split(" ... ERROR")[0], TestStatus.ERROR))
    if line.startswith("ERROR:"):
        got.append((line.split()[1].strip(), TestStatus.ERROR))
    if line.lstrip().startswith("ok") and prev is not None:  # output between `...` and `ok`
        got.append((prev, TestStatus.PASSED))
    return got, prev


_DJANGO_ID_LINE = re.compile(r"^\w+ \([\w.]+\)$")


def parse_django(log: str) -> dict[str, TestStatus]:
    """`parse_log_django`: `id ... ok|FAIL|ERROR|skipped` lines and `FAIL:`/`ERROR:` headers.

    `FAIL: name (module.Class)` keys only the name there (`line.split()[1]`), as officially.
    """
    out: dict[str, TestStatus] = {}
    prev: str | None = None
    id_line: str | None = None
    for raw in log.split("\n"):
        line = raw.strip()
        got, prev = _django_line(line, prev)
        for test, status in got:
            out[test] = status
        if id_line is not None and got and " ... " in line:
            # Environment: a test with a docstring prints `name (module.Class)`, then the
            # docstring's first line and the verdict. The official parser keys the docstring
            # line; the datasets of older django versions name the id line: keep both.
            out[id_line] = got[-1][1]
        id_line = line if _DJANGO_ID_LINE.match(line) else None
    for pattern in _DJANGO_INTERRUPTED:
        for m in re.finditer(pattern, log, re.MULTILINE):
            out[m.group(1)] = TestStatus.PASSED
    # Environment, not grading: Python >= 3.11 prints `name (module.Class.name)`.
    for test, status in list(out.items()):
        m = _DJANGO_LONG_ID.match(test)
        if m:
            out.setdefault(f"{m.group(1)} ({m.group(2)})", status)
    return out


def parse_sympy(log: str) -> dict[str, TestStatus]:
    """`parse_log_sympy`: `test_x ok|F|E` lines (xfail `f`, skip `s` are not results) and failure headers."""
    out: dict[str, TestStatus] = {}
    for m in re.findall(r"(_*) (.*)\.py:(.*) (_*)", log):
        out[f"{m[1]}.py:{m[2]}"] = TestStatus.FAILED
    for line in log.split("\n"):
        line = line.strip()
        if not line.startswith("test_"):
            continue
        if line.endswith(" E"):
            out[line.split()[0]] = TestStatus.ERROR
        if line.endswith(" F"):
            out[line.split()[0]] = TestStatus.FAILED
        if line.endswith(" ok"):
            out[line.split()[0]] = TestStatus.PASSED
    return out


PARSERS: dict[str, Callable[[str], dict[str, TestStatus]]] = {
    "pytest": parse_pytest, "pytest_options": parse_pytest_options, "pytest_v2": parse_pytest_v2,
    "matplotlib": parse_matplotlib, "seaborn": parse_seaborn, "django": parse_django,
    "sympy": parse_sympy,
}

# MAP_REPO_TO_PARSER_PY (log_parsers/python.py, end of file)
REPO_PARSERS: dict[str, str] = {
    "astropy/astropy": "pytest_v2", "django/django": "django",
    "marshmallow-code/marshmallow": "pytest", "matplotlib/matplotlib": "matplotlib",
    "mwaskom/seaborn": "seaborn", "pallets/flask": "pytest", "psf/requests": "pytest_options",
    "pvlib/pvlib-python": "pytest", "pydata/xarray": "pytest", "pydicom/pydicom": "pytest_options",
    "pylint-dev/astroid": "pytest", "pylint-dev/pylint": "pytest_options",
    "pytest-dev/pytest": "pytest", "pyvista/pyvista": "pytest",
    "scikit-learn/scikit-learn": "pytest_v2", "sqlfluff/sqlfluff": "pytest",
    "sphinx-doc/sphinx": "pytest_v2", "sympy/sympy": "sympy",
}


def parser_for(repo: str, runner: str) -> Callable[[str], dict[str, TestStatus]]:
    """The official parser of `repo`; a repository it does not know gets its runner's parser."""
    return PARSERS[REPO_PARSERS.get(repo, runner)]
