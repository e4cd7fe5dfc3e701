"""Log parsers against trimmed real output of pytest -rA, django's runtests.py and sympy's bin/test.

Each expectation is what the official parser (SWE-bench/SWE-bench @ 7a21e05,
swebench/harness/log_parsers/python.py) makes of the same log.
"""

from __future__ import annotations

from agent.evaluation import grading
from agent.evaluation.logparse import (
    parse_django,
    parse_pytest,
    parse_pytest_options,
    parse_pytest_v2,
    parse_sympy,
    parser_for,
)
from agent.records import TestStatus as S

# pytest 8 -rA on a small file
PYTEST_LOG = """\
============================= test session starts ==============================
collected 8 items

test_demo.py .FF.Esx.                                                    [100%]

==================================== ERRORS ====================================
_________________________ ERROR at setup of test_error _________________________
E       RuntimeError: setup boom
=========================== short test summary info ============================
PASSED test_demo.py::test_ok
PASSED test_demo.py::test_param[a b]
PASSED test_demo.py::TestK::test_m
SKIPPED [1] test_demo.py:9: not here
XFAIL test_demo.py::test_xfail - known
ERROR test_demo.py::test_error - RuntimeError: setup boom
FAILED test_demo.py::test_fail - assert 1 == 2
FAILED test_demo.py::test_param[c] - AssertionError: assert 'c' != 'c'
========== 2 failed, 3 passed, 1 skipped, 1 xfailed, 1 error in 3.85s ==========
"""


def test_pytest_short_summary():
    got = parse_pytest(PYTEST_LOG)
    assert got == {
        "test_demo.py::test_ok": S.PASSED,
        "test_demo.py::test_param[a": S.PASSED,  # cut at the first whitespace, as officially
        "test_demo.py::TestK::test_m": S.PASSED,
        "test_demo.py::test_xfail": S.XFAIL,
        "test_demo.py::test_error": S.ERROR,
        "test_demo.py::test_fail": S.FAILED,
        "test_demo.py::test_param[c]": S.FAILED,
    }


def test_pytest_parametrized_id_with_a_space_is_the_datasets_cut_id():
    # the dataset's ids were made by the same split: `test_param[a` is what it names
    got = grading.grade(["test_demo.py::test_param[a"], [], parse_pytest(PYTEST_LOG))
    assert got.resolved and got.fail_to_pass == {"test_demo.py::test_param[a": S.PASSED}


def test_pytest_xpass_is_not_an_official_status_so_the_test_is_missing():
    got = parse_pytest("XPASS t.py::test_x - reason\nPASSED t.py::test_y\n")
    assert got == {"t.py::test_y": S.PASSED}


def test_pytest_v2_keeps_the_whole_id_and_drops_colours():
    log = "\x1b[32mPASSED\x1b[0m t.py::test_p[a b]\nFAILED t.py::test_q - assert 1\n"
    assert parse_pytest_v2(log) == {"t.py::test_p[a b]": S.PASSED, "t.py::test_q": S.FAILED}


def test_pytest_options_cuts_a_path_parameter_to_its_last_part():
    got = parse_pytest_options("PASSED t.py::test_f[/tmp/x/data.txt]\n")
    assert got == {"t.py::test_f[/data.txt]": S.PASSED}


def test_the_parser_is_chosen_by_repository_as_officially():
    assert parser_for("pylint-dev/pylint", "pytest") is parse_pytest_options
    assert parser_for("astropy/astropy", "pytest") is parse_pytest_v2
    assert parser_for("example/calc", "pytest") is parse_pytest


# django runtests.py --verbosity 2 on Python 3.11 (ids carry the method name twice), a test with a
# docstring (its first line follows the id), a skip, and the failure section at the end
DJANGO_LOG = """\
Testing against Django installed in '/w/checkouts/django__django-13933/django'
Importing application forms_tests
Running migrations:
  Applying admin.0001_initial... OK
System check identified no issues (0 silenced).
test_modelchoicefield (forms_tests.tests.test_error_messages.ModelChoiceFieldErrorMessagesTestCase.test_modelchoicefield) ... ok
test_modelchoicefield_value_placeholder (forms_tests.tests.test_error_messages.ModelChoiceFieldErrorMessagesTestCase.test_modelchoicefield_value_placeholder) ... FAIL
test_booleanfield (forms_tests.tests.test_error_messages.FormsErrorMessagesTestCase.test_booleanfield) ... ok
test_parsing_rfc850 (utils_tests.test_http.HttpDateProcessingTests.test_parsing_rfc850)
RFC 850 dates two-digit years are interpreted relative to now. ... ok
test_sqlite_only (backends.tests.Tests.test_sqlite_only) ... skipped 'Database has feature(s) x'
test_known_bug (backends.tests.Tests.test_known_bug) ... expected failure
test_broken (utils_tests.test_http.HttpDateProcessingTests.test_broken) ... ERROR
test_prints (utils_tests.test_http.HttpDateProcessingTests.test_prints) ... output the test printed
ok

======================================================================
FAIL: test_modelchoicefield_value_placeholder (forms_tests.tests.test_error_messages.ModelChoiceFieldErrorMessagesTestCase.test_modelchoicefield_value_placeholder)
----------------------------------------------------------------------
Traceback (most recent call last):
AssertionError: Lists differ

----------------------------------------------------------------------
Ran 7 tests in 0.115s

FAILED (failures=1, errors=1, skipped=1, expected failures=1)
"""


def test_django_verbose_runner():
    got = parse_django(DJANGO_LOG)
    c = "forms_tests.tests.test_error_messages.ModelChoiceFieldErrorMessagesTestCase"
    expected = {
        f"test_modelchoicefield ({c})": S.PASSED,
        f"test_modelchoicefield_value_placeholder ({c})": S.FAILED,
        "test_booleanfield (forms_tests.tests.test_error_messages.FormsErrorMessagesTestCase)": S.PASSED,
        "RFC 850 dates two-digit years are interpreted relative to now.": S.PASSED,
        "test_parsing_rfc850 (utils_tests.test_http.HttpDateProcessingTests)": S.PASSED,
        "test_sqlite_only (backends.tests.Tests)": S.SKIPPED,
        "test_broken (utils_tests.test_http.HttpDateProcessingTests)": S.ERROR,
        "test_prints (utils_tests.test_http.HttpDateProcessingTests)": S.PASSED,
        "test_modelchoicefield_value_placeholder": S.FAILED,  # `FAIL: x (...)` keys x alone
    }
    assert {k: got.get(k) for k in expected} == expected
    # datasets made on Python 3.11 (django 5.0) use the long form: it is there too
    assert got[f"test_modelchoicefield_value_placeholder ({c}.test_modelchoicefield_value_placeholder)"] == S.FAILED
    # officially `... expected failure` is no result
    assert "test_known_bug (backends.tests.Tests)" not in got


def test_django_test_with_a_docstring_is_keyed_by_its_id_line_too():
    # django 3.1 datasets name `test_field_name (model_fields.tests.BasicFieldTests)`, which
    # Python 3.11 prints on its own line before the docstring line that carries the verdict
    log = ("test_field_name (model_fields.tests.BasicFieldTests.test_field_name)\n"
           "A defined field name (name=\"fieldname\") is used instead of the model ... ok\n")
    got = parse_django(log)
    assert got["test_field_name (model_fields.tests.BasicFieldTests)"] == S.PASSED
    assert got['A defined field name (name="fieldname") is used instead of the model'] == S.PASSED


def test_django_shared_docstring_keeps_its_last_report():
    log = (
        "test_cache_none (cache.tests.LocMemCacheTests.test_cache_none)\n"
        "If None is cached, get() returns it instead of the default. ... ok\n"
        "test_cache_none (cache.tests.PyMemcacheCacheTests.test_cache_none)\n"
        "If None is cached, get() returns it instead of the default. ... skipped 'PyMemcacheCache backend not configured'\n"
    )
    got = parse_django(log)
    assert got["If None is cached, get() returns it instead of the default."] == S.SKIPPED
    # which, for PASS_TO_PASS, the official grading counts as maintained
    assert grading.grade([], ["If None is cached, get() returns it instead of the default."], got).resolved


def test_django_older_id_form_from_python_3_10_and_before():
    log = "test_get (cache.tests.DummyCacheTests) ... ok\ntest_set (cache.tests.DummyCacheTests) ... FAIL\n"
    assert parse_django(log) == {"test_get (cache.tests.DummyCacheTests)": S.PASSED,
                                 "test_set (cache.tests.DummyCacheTests)": S.FAILED}


# sympy bin/test -C --verbose (the file verdict is appended to its last test's line)
SYMPY_LOG = """\
============================= test process starts ==============================
executable:         /root/.pyenv/versions/3.11.7/bin/python  (3.11.7-final-0) [CPython]
architecture:       64-bit
cache:              no
ground types:       python 
random seed:        35878443
hash randomization: on (PYTHONHASHSEED=2530257158)

sympy/physics/units/tests/test_quantities.py[27] 
test_str_repr ok
test_eq ok
test_convert_to F
test_Quantity_definition ok
test_factor_and_dimension_with_Abs f
test_units_import E
test_deprecated_quantity_methods ok                                       [FAIL]


________________________________________________________________________________
_________ sympy/physics/units/tests/test_quantities.py:test_convert_to _________
Traceback (most recent call last):
  File "/tmp/sympywt/sympy/physics/units/tests/test_quantities.py", line 50, in test_convert_to
    assert conv == joule*second
AssertionError

== tests finished: 25 passed, 1 failed, 1 expected to fail, in 10.14 seconds ===
DO *NOT* COMMIT!
"""


def test_sympy_verbose_runner():
    got = parse_sympy(SYMPY_LOG)
    assert got == {
        "test_str_repr": S.PASSED, "test_eq": S.PASSED, "test_convert_to": S.FAILED,
        "test_Quantity_definition": S.PASSED, "test_units_import": S.ERROR,
        "sympy/physics/units/tests/test_quantities.py:test_convert_to": S.FAILED,
    }
    # `f` (expected to fail) is no official result, nor is a verdict the file's `[FAIL]` follows
    assert "test_factor_and_dimension_with_Abs" not in got and "test_deprecated_quantity_methods" not in got


def test_a_test_reported_twice_keeps_its_last_report():
    assert parse_pytest("PASSED t.py::test_a\nERROR t.py::test_a - RuntimeError: teardown\n") == {
        "t.py::test_a": S.ERROR}
    assert parse_pytest("ERROR t.py::test_a - RuntimeError: x\nPASSED t.py::test_a\n") == {
        "t.py::test_a": S.PASSED}
