"""run_tests against real tiny projects, run by real pytest / unittest subprocesses."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.settings import SafetySettings, Settings
from tools.base import Toolbox, ToolContext
from tools.run_tests import TestRun, parse_test_output, run_tests
from tools.workspace import Workspace


class _Chars:
    def count(self, text: str) -> int:
        return (len(text) + 3) // 4


@pytest.fixture(autouse=True)
def _fast_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    # The projects under test need no plugins; loading every installed one costs seconds each run.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


def make_project(tmp_path: Path, files: dict[str, str]) -> ToolContext:
    root = tmp_path / "proj"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    root.mkdir(exist_ok=True)
    settings = Settings(
        safety=SafetySettings(sandbox="off", env_passthrough=["PYTEST_DISABLE_PLUGIN_AUTOLOAD"])
    )
    return ToolContext(workspace=Workspace(root), state_dir=tmp_path / "state", settings=settings)


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


MIXED = {
    "pytest.ini": "[pytest]\n",
    "calc.py": "def add(a, b):\n    return a + b + (a == 2)\n",
    "tests/test_calc.py": """
        import pytest
        from calc import add

        def test_one():
            assert add(1, 1) == 2

        def test_two():
            assert add(2, 2) == 4

        @pytest.mark.skip(reason="later")
        def test_later():
            pass

        @pytest.fixture
        def db():
            raise RuntimeError("no database")

        def test_db(db):
            pass

        @pytest.mark.parametrize("x", [1, 2])
        def test_param(x):
            assert add(x, 0) == x
    """,
}


def test_pytest_project_counts_ids_and_tracebacks(tmp_path: Path) -> None:
    ctx = make_project(tmp_path, MIXED)
    out = run_tests(ctx)
    assert out.startswith("$ python") and "-m pytest" in out and "(pytest, exit code 1" in out
    assert "FAILED: 2 passed, 2 failed, 1 errors, 1 skipped" in out
    assert "- tests/test_calc.py::test_two - assert 5 == 4" in out
    assert "- tests/test_calc.py::test_param[2]" in out
    assert "- tests/test_calc.py::test_db (error) - RuntimeError: no database" in out
    # the short traceback points at the failing line and shows the assertion
    assert "tests/test_calc.py:9: in test_two" in out and "E   assert 5 == 4" in out
    assert not (ctx.workspace.root / ".pytest_cache").exists()


def test_pytest_all_green_and_collection_error(tmp_path: Path) -> None:
    ctx = make_project(
        tmp_path,
        {
            "pyproject.toml": "[tool.pytest.ini_options]\n",
            "tests/test_ok.py": "def test_a():\n    pass\n",
        },
    )
    out = run_tests(ctx)
    assert "PASSED: 1 passed, 0 failed, 0 errors, 0 skipped" in out and "Failing tests" not in out
    (ctx.workspace.root / "tests" / "test_broken.py").write_text("import not_a_module_anywhere\n")
    out = run_tests(ctx)
    assert "- tests/test_broken.py (error)" in out
    assert "ModuleNotFoundError: No module named 'not_a_module_anywhere'" in out


UNITTEST_PROJECT = {
    "tests/__init__.py": "",
    "tests/test_u.py": """
        import unittest

        class T(unittest.TestCase):
            def test_pass(self):
                self.assertTrue(True)

            def test_fail(self):
                self.assertEqual(sorted([3, 1]), [3, 1])

            def test_error(self):
                {}["missing"]

            @unittest.skip("not now")
            def test_skip(self):
                pass

            def test_sub(self):
                for i in range(3):
                    with self.subTest(i=i):
                        self.assertLess(i, 2)
    """,
}


def test_unittest_command_parsed(tmp_path: Path) -> None:
    ctx = make_project(tmp_path, UNITTEST_PROJECT)
    out = run_tests(ctx, command=f"{sys.executable} -m unittest discover -s tests -t . -v")
    assert "(unittest, exit code 1" in out
    assert "FAILED: 1 passed, 2 failed, 1 errors, 1 skipped" in out  # the subtest failure counts
    assert "- tests.test_u.T.test_fail - AssertionError: Lists differ: [1, 3] != [3, 1]" in out
    assert "- tests.test_u.T.test_error (error) - KeyError: 'missing'" in out
    assert "- tests.test_u.T.test_sub (i=2)" in out
    assert 'test_u.py", line 9, in test_fail' in out
    assert "unittest/case.py" not in out  # library frames are dropped


@pytest.mark.slow
def test_unittest_detected_when_pytest_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    monkeypatch.setenv("PATH", f"{venv / 'bin'}:/usr/bin:/bin")
    ctx = make_project(tmp_path, UNITTEST_PROJECT)
    out = run_tests(ctx)
    assert out.startswith("$ python -m unittest discover -s tests -v")
    assert "FAILED: 1 passed, 2 failed, 1 errors, 1 skipped" in out
    # The same pytest-less environment inside the project is preferred to the one on PATH.
    monkeypatch.setenv("PATH", os.environ["PATH"].split(":", 1)[1])
    venv.rename(ctx.workspace.root / ".venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(ctx.workspace.root / ".venv")],
        check=True,
    )
    out = run_tests(ctx)
    assert out.startswith("$ .venv/bin/python -m unittest discover -s tests -v"), out


def test_django_runner_detected(tmp_path: Path) -> None:
    runner = """
        import sys, unittest
        from pathlib import Path
        here = Path(__file__).parent
        print("Testing against Django installed in 'x'")
        suite = unittest.defaultTestLoader.discover(str(here / "app"), top_level_dir=str(here))
        result = unittest.TextTestRunner(verbosity=1).run(suite)
        sys.exit(0 if result.wasSuccessful() else 1)
    """
    ctx = make_project(
        tmp_path,
        {
            "tests/runtests.py": runner,
            "tests/app/__init__.py": "",
            "tests/app/tests.py": "import unittest\nclass A(unittest.TestCase):\n    def test_x(self):\n        self.assertEqual(1, 1)\n    def test_y(self):\n        raise ValueError('bad')\n",
        },
    )
    out = run_tests(ctx)
    assert out.startswith("$ python tests/runtests.py") and "(django, exit code 1" in out
    assert "FAILED: 1 passed, 0 failed, 1 errors, 0 skipped" in out
    assert "- app.tests.A.test_y (error) - ValueError: bad" in out


def test_timeout_reported(tmp_path: Path) -> None:
    ctx = make_project(
        tmp_path,
        {
            "pytest.ini": "[pytest]\n",
            "tests/test_slow.py": "import time\ndef test_s():\n    time.sleep(60)\n",
        },
    )
    out = run_tests(ctx, timeout=2)
    assert "timed out" in out and "TIMED OUT" in out


def test_unparseable_output_shows_tail(tmp_path: Path) -> None:
    ctx = make_project(tmp_path, {"x.txt": "x"})
    out = run_tests(ctx, command="echo this is not a test runner; exit 2")
    assert "UNKNOWN" in out and "this is not a test runner" in out and "exit code 2" in out


def test_no_tests_and_bad_input_are_clear_errors_and_change_nothing(tmp_path: Path) -> None:
    ctx = make_project(tmp_path, {"README.md": "hello\n"})
    before = digest(ctx.workspace.root)
    box = Toolbox([run_tests], ctx, tokenizer=_Chars())
    res = box.run("c1", "run_tests", "{}")
    assert not res.ok and "no tests found" in res.content and "run_tests(command=" in res.content
    res = box.run("c2", "run_tests", json.dumps({"command": "  "}))
    assert not res.ok and "command is empty" in res.content
    res = box.run("c3", "run_tests", json.dumps({"command": "rm -rf ."}))
    assert not res.ok and res.error_kind == "refused"
    res = box.run("c4", "run_tests", json.dumps({"timeout": -5}))
    assert not res.ok and "positive" in res.content
    assert digest(ctx.workspace.root) == before


def test_parsers_on_recorded_output() -> None:
    old_unittest = textwrap.dedent("""\
        ======================================================================
        FAIL: test_m (pkg.tests.TestK)
        ----------------------------------------------------------------------
        Traceback (most recent call last):
          File "/repo/pkg/tests.py", line 4, in test_m
            self.assertEqual(1, 2)
        AssertionError: 1 != 2

        ----------------------------------------------------------------------
        Ran 7 tests in 0.010s

        FAILED (failures=1, skipped=2, expected failures=1)
    """)
    run = parse_test_output(old_unittest, TestRun(command="x"))
    assert (run.passed, run.failed, run.skipped, run.xfailed) == (3, 1, 2, 1)
    assert [f.id for f in run.failures] == ["pkg.tests.TestK.test_m"]
    assert run.failures[0].traceback.endswith("AssertionError: 1 != 2")
    pytest_out = "..F\nFAILED a.py::t - boom\n1 failed, 2 passed, 3 deselected, 1 xfailed, 2 warnings in 0.51s\n"
    run = parse_test_output(pytest_out, TestRun(command="x"))
    assert (run.passed, run.failed, run.xfailed, run.framework) == (2, 1, 1, "pytest")
    assert run.failures[0].message == "boom"


def _bwrap_skip() -> str | None:
    import shutil

    from tools.sandbox import bwrap_problem

    path = shutil.which("bwrap")
    return "bubblewrap (bwrap) is not installed" if path is None else bwrap_problem(path)


@pytest.mark.skipif(_bwrap_skip() is not None, reason=f"sandbox not testable: {_bwrap_skip()}")
def test_pytest_runs_inside_the_sandbox(tmp_path: Path) -> None:
    ctx = make_project(tmp_path, MIXED)
    ctx.settings = Settings(
        safety=SafetySettings(sandbox="require", env_passthrough=["PYTEST_DISABLE_PLUGIN_AUTOLOAD"])
    )
    out = run_tests(ctx)
    assert "FAILED: 2 passed, 2 failed, 1 errors, 1 skipped" in out and "unsandboxed" not in out


def test_detection_probe_does_not_import_repository_code(tmp_path: Path) -> None:
    # A repository's own pytest.py must not run during detection (outside any sandbox).
    ctx = make_project(
        tmp_path,
        {
            "tests/test_a.py": "def test_a():\n    pass\n",
            "pytest.py": "import sys, pathlib\n"
            "with open(pathlib.Path(__file__).parent / 'imported-by.txt', 'a') as f:\n"
            "    f.write(repr(sys.argv) + '\\n')\n",
        },
    )
    run_tests(ctx)
    log = ctx.workspace.root / "imported-by.txt"
    lines = log.read_text().splitlines() if log.exists() else []
    assert "['-c']" not in lines  # only the test run itself (python -m pytest) may import it
