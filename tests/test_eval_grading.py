"""One test per rule of the official grading (SWE-bench/SWE-bench @ 7a21e05, swebench/harness/grading.py)."""

from __future__ import annotations

import pytest

from agent.evaluation import grading
from agent.records import TestStatus as S


@pytest.mark.parametrize(("status", "resolved"), [
    (S.PASSED, True), (S.XFAIL, True), (S.FAILED, False), (S.ERROR, False), (S.SKIPPED, False),
])
def test_fail_to_pass_passes_only_if_passed_or_xfail(status, resolved):
    # test_passed / test_failed: "a skipped F2P test is not a resolution"
    assert grading.grade(["t::a"], [], {"t::a": status}).resolved is resolved


@pytest.mark.parametrize(("status", "resolved"), [
    (S.PASSED, True), (S.XFAIL, True), (S.SKIPPED, True), (S.FAILED, False), (S.ERROR, False),
])
def test_pass_to_pass_is_maintained_if_passed_xfail_or_skipped(status, resolved):
    # test_maintained: "a skipped test is not a regression, unlike for F2P"
    assert grading.grade(["t::f"], ["t::p"], {"t::f": S.PASSED, "t::p": status}).resolved is resolved


@pytest.mark.parametrize("which", ["fail_to_pass", "pass_to_pass"])
def test_a_test_missing_from_the_log_fails_either_list(which):
    lists = {"fail_to_pass": ["t::gone"], "pass_to_pass": []} if which == "fail_to_pass" else {
        "fail_to_pass": ["t::f"], "pass_to_pass": ["t::gone"]}
    got = grading.grade(lists["fail_to_pass"], lists["pass_to_pass"], {"t::f": S.PASSED})
    assert not got.resolved
    assert getattr(got, which)["t::gone"] == S.MISSING


def test_ids_match_exactly_not_by_prefix():
    # `test_x` must not take the status of `test_x_more` or `test_x[1]`: no brackets left open
    assert not grading.grade(["t::test_x"], [], {"t::test_x_more": S.PASSED, "t::test_x[1]": S.PASSED}).resolved


def test_an_id_cut_inside_its_parameters_matches_agreeing_prefixes_only():
    sm = {"t::test_p[a b]": S.PASSED, "t::test_p[a c]": S.XFAIL, "t::test_q[x y]": S.PASSED,
          "t::test_q[x z]": S.FAILED}
    assert grading.grade(["t::test_p[a"], [], sm).resolved  # both pass: agreed
    got = grading.grade(["t::test_q[x"], [], sm)  # one passes, one fails: no match at all
    assert not got.resolved and got.fail_to_pass == {"t::test_q[x": S.MISSING}


def test_duplicate_dataset_ids_are_graded_each_time():
    assert grading.grade(["t::a", "t::a"], ["t::b", "t::b"], {"t::a": S.PASSED, "t::b": S.SKIPPED}).resolved


def test_empty_lists_count_as_fully_passed():
    assert grading.grade([], [], {}).resolved


def test_a_nonzero_exit_with_no_failure_in_the_log_resolves_nothing():
    # get_logs_eval: a patch can print its own PASSED lines; the exit status says otherwise
    got = grading.grade(["t::a"], [], {"t::a": S.PASSED}, exit_code=1)
    assert not got.resolved and "exited 1" in got.invalid_log
    assert grading.grade(["t::a"], [], {"t::a": S.PASSED, "t::z": S.FAILED}, exit_code=1).resolved
