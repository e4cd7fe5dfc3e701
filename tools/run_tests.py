"""The `run_tests` tool: find the project's test command, run it, and summarise what failed.

Detection, in order: django's `tests/runtests.py`; pytest when the project configures it
(pytest.ini, `[tool.pytest.ini_options]` in pyproject.toml, `[tool:pytest]` in setup.cfg,
`[pytest]` in tox.ini, a root conftest.py) or has a tests directory and pytest is installed;
else `unittest discover`. The output is parsed by what it looks like (pytest's summary line,
unittest's `Ran N tests`), so a command the model passes is summarised the same way.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from tools.base import ToolContext, ToolError, tool
from tools.runner import run_process
from tools.shell import (
    MAX_TIMEOUT,
    destructive_reason,
    require_permission,
    run_command,
    shell_environment,
)

__all__ = [
    "DEFAULT_TEST_TIMEOUT",
    "TEST_TOOLS",
    "TestFailure",
    "TestRun",
    "detect_test_command",
    "execute_tests",
    "parse_test_output",
    "run_tests",
]

DEFAULT_TEST_TIMEOUT = 600
MAX_TRACEBACK_LINES = 30
MAX_TRACEBACKS = 10
MAX_IDS = 50

Framework = Literal["pytest", "unittest", "django", "unknown"]


class TestFailure(BaseModel):
    """One failing or erroring test: its id, a one-line reason and a short traceback."""

    __test__ = False  # not a pytest test class

    id: str
    kind: Literal["failed", "error"] = "failed"
    message: str = ""
    traceback: str = ""


class TestRun(BaseModel):
    """What one run of the test suite showed; `render()` is the model's observation."""

    __test__ = False

    command: str
    framework: Framework = "unknown"
    exit_code: int | None = None
    timed_out: bool = False
    duration: float = 0.0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    xfailed: int = 0
    xpassed: int = 0
    failures: list[TestFailure] = Field(default_factory=list)
    parsed: bool = False
    """False when the output had no summary the parsers know (then `tail` is shown)."""
    tail: str = ""
    notes: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the run finished, parsed, and nothing failed or errored."""
        return (
            self.parsed
            and not self.timed_out
            and self.failed == 0
            and self.errors == 0
            and self.exit_code == 0
        )

    def render(self) -> str:
        """The observation text: verdict and counts, failing ids, then short tracebacks."""
        head = f"$ {self.command}   ({self.framework}, "
        head += "timed out" if self.timed_out else f"exit code {self.exit_code}"
        head += f", {self.duration:.1f} s)"
        lines = [head]
        counts = (f"{self.passed} passed, {self.failed} failed, {self.errors} errors, {self.skipped} skipped"
                  + (f", {self.xfailed} xfailed" if self.xfailed else "")
                  + (f", {self.xpassed} xpassed" if self.xpassed else ""))  # fmt: skip
        if self.timed_out:
            lines.append(
                "TIMED OUT: the run was killed; counts so far unknown. Run fewer tests "
                "(pass a command naming test files or ids) or raise the timeout."
            )
        elif not self.parsed:
            lines.append(
                "UNKNOWN: no test summary found in the output (did the command run tests?)"
            )
        else:
            lines.append(("PASSED: " if self.ok else "FAILED: ") + counts)
        if self.failures:
            lines.append("Failing tests:")
            for f in self.failures[:MAX_IDS]:
                reason = f" - {f.message}" if f.message else ""
                lines.append(f"- {f.id}{' (error)' if f.kind == 'error' else ''}{reason}")
            if len(self.failures) > MAX_IDS:
                lines.append(f"- ... and {len(self.failures) - MAX_IDS} more")
            shown = [f for f in self.failures if f.traceback][:MAX_TRACEBACKS]
            if shown:
                lines.append("Tracebacks (shortened):")
                for f in shown:
                    lines.append(f"--- {f.id}")
                    lines.append(f.traceback.rstrip())
        if self.tail and (self.timed_out or not self.parsed or (not self.ok and not self.failures)):
            lines.append("Last lines of output:")
            lines.append(self.tail.rstrip())
        lines.extend(f"[{n}]" for n in self.notes)
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

_PYTEST_SUMMARY = re.compile(
    r"^=*\s*((?:\d+ [a-z ]+?(?:, )?)+|no tests ran)(?: in [\d.]+s(?: \([^)]*\))?)?\s*=*\s*$"
)
_PYTEST_COUNT = re.compile(r"(\d+) ([a-z ]+?)(?=,|$)")
_PYTEST_SHORT = re.compile(r"^(FAILED|ERROR|SUBFAILED\S*|XPASS\S*) (.+?)(?: - (.*))?$")
_PYTEST_SECTION = re.compile(r"^_{3,} (.+?) _{3,}$")
_PYTEST_BLOCK = re.compile(
    r"^={5,} (FAILURES|ERRORS|short test summary info|warnings summary|.*) ={5,}$"
)
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in [\d.]+s", re.MULTILINE)
_UNITTEST_STATUS = re.compile(r"^(OK|FAILED)(?: \(([^)]*)\))?\s*$", re.MULTILINE)
_UNITTEST_HEADER = re.compile(r"^(FAIL|ERROR|UNEXPECTED SUCCESS): (\S+) \(([^)]*)\)(.*)$")
_STDLIB_FRAME = re.compile(
    r'^\s*File "[^"]*(?:/lib/python[\d.]+/(?!site-packages)|/site-packages/)[^"]*"'
)


def _shorten(tb: str, *, limit: int = MAX_TRACEBACK_LINES) -> str:
    """Drop library frames from a Python traceback and keep it within `limit` lines."""
    out: list[str] = []
    skip_code = False
    for line in tb.rstrip().splitlines():
        if _STDLIB_FRAME.match(line):
            skip_code = True
            continue
        if skip_code and line.startswith("    "):
            continue
        skip_code = False
        out.append(line)
    if len(out) > limit:
        cut = len(out) - limit + 1
        out = out[:4] + [f"    [... {cut} lines cut ...]"] + out[4 + cut :]
    return "\n".join(out)


def _parse_pytest(output: str, run: TestRun) -> bool:
    lines = output.splitlines()
    summary = None
    for line in reversed(lines):
        m = _PYTEST_SUMMARY.match(line.strip())
        if m and (" in " in line or "no tests ran" in line):
            summary = m.group(1)
            break
    if summary is None:
        return False
    for n, word in _PYTEST_COUNT.findall(summary):
        word = word.strip()
        field = {"passed": "passed", "failed": "failed", "error": "errors", "errors": "errors",
                 "skipped": "skipped", "xfailed": "xfailed", "xpassed": "xpassed"}.get(word)  # fmt: skip
        if field:
            setattr(run, field, getattr(run, field) + int(n))
    # Tracebacks: "____ name ____" sections inside the FAILURES and ERRORS blocks.
    sections: list[tuple[str, list[str]]] = []
    block = ""
    for line in lines:
        b = _PYTEST_BLOCK.match(line)
        if b:
            block = b.group(1)
            continue
        s = _PYTEST_SECTION.match(line)
        if s and block in ("FAILURES", "ERRORS"):
            sections.append((s.group(1), []))
        elif sections and block in ("FAILURES", "ERRORS"):
            sections[-1][1].append(line)
    used: set[int] = set()
    for line in lines:
        m = _PYTEST_SHORT.match(line)
        if not m:
            continue
        word, test_id, message = m.group(1), m.group(2).strip(), (m.group(3) or "").strip()
        if word.startswith("XPASS"):
            continue
        if word.startswith("SUBFAILED"):
            test_id = f"{test_id} {word[len('SUBFAILED') :]}".strip()
        kind: Literal["failed", "error"] = "error" if word == "ERROR" else "failed"
        short = ".".join(test_id.split(" ")[0].split("::")[1:]) or test_id
        tb = ""
        for i, (header, body) in enumerate(sections):
            if i in used:
                continue
            name = re.sub(r"^ERROR (?:at \w+ of|collecting) ", "", header)
            if name == test_id or name.split(" ")[0] == short or name.endswith(short):
                used.add(i)
                tb = _shorten("\n".join(body))
                break
        run.failures.append(TestFailure(id=test_id, kind=kind, message=message[:300], traceback=tb))
    return True


def _exception_line(tb: str) -> str:
    """The `SomeError: message` line of a traceback: the first unindented line after the frames."""
    lines = tb.strip("\n").splitlines()
    frames = [i for i, ln in enumerate(lines) if ln.startswith('  File "')]
    for ln in lines[frames[-1] + 1 if frames else 0 :]:
        if ln.strip() and not ln[0].isspace() and not ln.startswith("Traceback ("):
            return ln.strip()
    return ""


def _unittest_id(name: str, inner: str, extra: str) -> str:
    if inner.startswith("unittest.loader._Failed"):
        return name  # a module that failed to import
    test_id = inner if inner.endswith("." + name) or inner == name else f"{inner}.{name}"
    return f"{test_id}{extra.rstrip()}"


def _parse_unittest(output: str, run: TestRun) -> bool:
    ran = _UNITTEST_RAN.findall(output)
    statuses = _UNITTEST_STATUS.findall(output)
    if not ran or not statuses:
        return False
    total = int(ran[-1])
    _status, detail = statuses[-1]
    counts = {k.strip(): int(v) for k, v in re.findall(r"([a-z ]+)=(\d+)", detail)}
    run.failed = counts.get("failures", 0)
    run.errors = counts.get("errors", 0)
    run.skipped = counts.get("skipped", 0)
    run.xfailed = counts.get("expected failures", 0)
    run.xpassed = counts.get("unexpected successes", 0)
    run.passed = max(0, total - run.failed - run.errors - run.skipped - run.xfailed - run.xpassed)
    sep_eq, sep_dash = "=" * 70, "-" * 70
    for chunk in output.split(sep_eq + "\n")[1:]:
        header, _, body = chunk.partition("\n")
        m = _UNITTEST_HEADER.match(header)
        if not m:
            continue
        kind_word, name, inner, extra = m.groups()
        if kind_word == "UNEXPECTED SUCCESS":
            continue
        body = body.split(sep_dash + "\n", 1)[-1] if body.startswith(sep_dash) else body
        body = body.split("\n" + sep_dash + "\nRan ", 1)[0]
        body = re.split(r"\n-{70}\nRan \d+ tests?", body)[0]
        tb = _shorten(body.strip("\n"))
        run.failures.append(
            TestFailure(
                id=_unittest_id(name, inner, extra),
                kind="error" if kind_word == "ERROR" else "failed",
                message=_exception_line(body)[:300],
                traceback=tb,
            )
        )
    return True


def parse_test_output(output: str, run: TestRun) -> TestRun:
    """Fill `run`'s counts and failures from pytest or unittest output (whichever it is)."""
    if _parse_pytest(output, run):
        run.parsed = True
        if run.framework == "unknown":
            run.framework = "pytest"
    elif _parse_unittest(output, run):
        run.parsed = True
        if run.framework in ("unknown", "pytest"):
            run.framework = "unittest"
    tail_lines = output.rstrip().splitlines()[-40:]
    run.tail = "\n".join(tail_lines)
    return run


# --------------------------------------------------------------------------------------------
# Detection and the tool
# --------------------------------------------------------------------------------------------

_PYTEST_FLAGS = "-rfE --tb=short -q -p no:cacheprovider --color=no"


def _configures_pytest(root: Path) -> bool:
    if (root / "pytest.ini").is_file() or (root / "conftest.py").is_file():
        return True
    for name, marker in (
        ("pyproject.toml", "[tool.pytest"),
        ("setup.cfg", "[tool:pytest]"),
        ("tox.ini", "[pytest]"),
    ):
        f = root / name
        try:
            if f.is_file() and marker in f.read_text(encoding="utf-8", errors="replace"):
                return True
        except OSError:
            continue
    return False


def _has_pytest(python: str, root: Path, env: dict[str, str]) -> bool:
    # Not from the repository: `python -c` would put a repo's own pytest.py first on sys.path and
    # run it outside the sandbox.
    exe = str(root / python) if "/" in python and not python.startswith("/") else python
    r = run_process(
        [exe, "-c", "import pytest"], cwd=Path("/"), env=env, timeout=60, max_output=4000
    )
    return r.exit_code == 0


def detect_test_command(root: Path, *, env: dict[str, str]) -> tuple[str, Framework]:
    """The shell command that runs this project's tests, and which framework it is."""
    path = env.get("PATH")
    python = "python" if shutil.which("python", path=path) else "python3"
    for venv in (".venv", "venv"):  # a virtual environment inside the project wins
        if (root / venv / "bin" / "python").is_file():
            python = f"{venv}/bin/python"
            break
    if (root / "tests" / "runtests.py").is_file():
        return f"{python} tests/runtests.py --parallel 1", "django"
    if _configures_pytest(root):
        return f"{python} -m pytest {_PYTEST_FLAGS}", "pytest"
    test_dirs = [d for d in ("tests", "test", "testing") if (root / d).is_dir()]
    has_tests = any(any((root / d).rglob("test*.py")) for d in test_dirs) or any(
        root.glob("test*.py")
    )
    if not has_tests:
        raise ToolError(
            "no tests found to run: no pytest configuration, no tests/ directory with test*.py files "
            "and no django tests/runtests.py. Pass the command, e.g. "
            'run_tests(command="python -m pytest path/to/test_file.py").',
            kind="no_tests",
        )
    if _has_pytest(python, root, env):
        return f"{python} -m pytest {_PYTEST_FLAGS}", "pytest"
    start = f" -s {test_dirs[0]}" if test_dirs else ""
    return f"{python} -m unittest discover{start} -v", "unittest"


def execute_tests(
    ctx: ToolContext, command: str | None = None, *, timeout: int = DEFAULT_TEST_TIMEOUT
) -> TestRun:
    """Run (or detect and run) the test command and parse what it printed; the tool and the
    loop's self-check share this."""
    if command is not None and not command.strip():
        raise ToolError(
            "the command is empty; omit it to detect the test runner, or pass one.",
            kind="invalid_arguments",
        )
    if command is not None and "\x00" in command:
        raise ToolError("the command contains a NUL byte; remove it.", kind="invalid_arguments")
    if timeout <= 0:
        raise ToolError(
            f"timeout must be a positive number of seconds, not {timeout}.",
            kind="invalid_arguments",
        )
    root = Path(ctx.workspace.root).resolve()
    notes: list[str] = []
    used = min(timeout, MAX_TIMEOUT)
    if timeout > MAX_TIMEOUT:
        notes.append(
            f"note: the requested timeout of {timeout} s is above the maximum; it was clamped to {MAX_TIMEOUT} s"
        )
    framework: Framework = "unknown"
    if command is None:
        command, framework = detect_test_command(root, env=shell_environment(ctx.settings.safety))
    else:
        why = destructive_reason(command, workspace=root)
        if why:
            require_permission(ctx, command, why)
        if "runtests.py" in command:
            framework = "django"
    shell = shutil.which("bash") or "/bin/bash"
    result, sandbox_note = run_command(
        ctx, [shell, "--noprofile", "--norc", "-c", command], timeout=used
    )
    if sandbox_note:
        notes.append(sandbox_note)
    run = TestRun(
        command=command,
        framework=framework,
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        duration=result.duration,
        notes=notes,
    )
    parse_test_output(result.output, run)
    if result.omitted_bytes:
        run.notes.append(f"{result.omitted_bytes:,} bytes of output were dropped from the middle")
    return run


@tool
def run_tests(
    ctx: ToolContext, command: str | None = None, timeout: int = DEFAULT_TEST_TIMEOUT
) -> str:
    """Run the project's tests and report pass/fail counts, the failing test ids and short tracebacks.

    Without a command the test runner is detected (pytest, unittest, django's tests/runtests.py).
    Pass a command to run a subset, e.g. "python -m pytest tests/test_io.py -q" or
    "python tests/runtests.py forms_tests".

    Args:
        command: the shell command that runs the tests; detected when omitted.
        timeout: seconds before the run is killed (at most 900).
    """
    return execute_tests(ctx, command, timeout=timeout).render()


TEST_TOOLS = (run_tests,)
