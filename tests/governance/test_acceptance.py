"""Executable acceptance criteria: what counts as a check (parsing only, nothing runs), and
running checks for real in the sandbox (each level this machine offers)."""

from __future__ import annotations

import ast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.governance.acceptance import _test_module, checked_code, parse_criteria, run_checks
from orchestrator.governance.sandbox import Sandbox
from tests.sandboxes import BOXES

ADD = "```python\ndef add(a, b):\n    return a + b\n```"
WRONG_ADD = "```python\ndef add(a, b):\n    return a - b\n```"


# -- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, checks, prose",
    [
        ("add(1, 1) == 2", ["add(1, 1) == 2"], ""),
        ("assert add(1, 1) == 2", ["assert add(1, 1) == 2"], ""),
        (
            "assert add(1,1) == 2\nassert add(2, 3) == 5, 'five'",
            ["assert add(1,1) == 2", "assert add(2, 3) == 5, 'five'"],
            "",
        ),
        ("is_prime(7)", ["is_prime(7)"], ""),  # a call on literals
        ("not is_prime(8)", ["not is_prime(8)"], ""),
        ("add(1, 1) == 2 and add(0, 0) == 0", ["add(1, 1) == 2 and add(0, 0) == 0"], ""),
        ("[sq(i) for i in range(3)] == [0, 1, 4]", ["[sq(i) for i in range(3)] == [0, 1, 4]"], ""),
        ("add(1, 1) == 2; add(2, 2) == 4", ["add(1, 1) == 2", "add(2, 2) == 4"], ""),
        # prose stays prose: words, sentences, things that parse but say nothing checkable
        ("returns 2", [], "returns 2"),
        ("pytest passes", [], "pytest passes"),
        ("fast", [], "fast"),
        ("fast and correct", [], "fast and correct"),
        ("not bad", [], "not bad"),
        ("it is fast", [], "it is fast"),
        ("works (mostly)", [], "works (mostly)"),
        ("1+1", [], "1+1"),
        ("import os", [], "import os"),
        ("x = add(1, 1)", [], "x = add(1, 1)"),
        # mixed
        ("add(1, 1) == 2\nreadable code", ["add(1, 1) == 2"], "readable code"),
        ("- add(1, 1) == 2.\n- handles negatives", ["add(1, 1) == 2"], "handles negatives"),
        ("add(1, 1) == 2; it is fast", ["add(1, 1) == 2"], "it is fast"),
        ("It must hold that `add(2, 2) == 4`.", ["add(2, 2) == 4"], "It must hold that `add(2, 2) == 4`."),
        ("", [], ""),
    ],
)
def test_what_counts_as_a_check(text, checks, prose):
    criteria = parse_criteria(text)
    assert [c.source for c in criteria.checks] == checks
    assert criteria.prose == prose


def test_a_check_knows_the_names_the_code_must_define():
    (check,) = parse_criteria("[add(i, n) for i in range(3)] == sorted(values)").checks
    assert check.names == {"add", "n", "values"}  # builtins and comprehension variables are not


def test_parsing_never_runs_anything(tmp_path):
    marker = tmp_path / "ran"
    text = f"__import__('pathlib').Path({str(marker)!r}).touch() is None"
    criteria = parse_criteria(text)
    assert len(criteria.checks) == 1  # it is a check (to be run in the sandbox), not run here
    assert not marker.exists()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_any_text_parses_into_checks_that_are_each_one_python_check(text):
    criteria = parse_criteria(text)
    for check in criteria.checks:
        (stmt,) = ast.parse(check.source).body  # exactly one statement: nothing smuggled in
        assert isinstance(stmt, ast.Assert | ast.Expr)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(["add(1, 1) == 2", "assert mul(2, 3) == 6", "fast", "works well", "is_even(4)", "no crashes"]),
        min_size=1,
        max_size=6,
    )
)
def test_mixed_lines_split_into_checks_and_prose_without_losing_any(lines):
    criteria = parse_criteria("\n".join(lines))
    code = {"add(1, 1) == 2", "assert mul(2, 3) == 6", "is_even(4)"}
    assert {c.source for c in criteria.checks} == {ln for ln in lines if ln in code}
    assert criteria.prose.splitlines() == [ln for ln in lines if ln not in code]


def test_the_test_module_holds_only_the_checks_as_asserts():
    criteria = parse_criteria("add(1, 1) == 2\nassert add(2, 3) == 5, 'five'")
    tree = ast.parse(_test_module(criteria.checks))
    tests = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert [t.name for t in tests] == ["test_check_1", "test_check_2"]
    assert [ast.unparse(t.body[-1]) for t in tests] == ["assert add(1, 1) == 2", "assert add(2, 3) == 5, 'five'"]


# -- the checked code -------------------------------------------------------------------------


def test_demo_calls_and_the_models_own_asserts_are_left_out():
    code, note = checked_code(
        "```python\ndef add(a, b):\n    return a + b\nprint(add(10))\nassert add(1, 1) == 3\nTOTAL = add(1, 2)\n```"
    )
    assert "print" not in code and "assert" not in code and "TOTAL = add(1, 2)" in code and note == ""


def test_a_block_ending_in_prose_keeps_the_code_before_it():
    code, note = checked_code("```python\ndef add(a, b):\n    return a + b\nthis is not the only way.\n```")
    assert code == "def add(a, b):\n    return a + b" and "line 3" in note


# -- running, for real, in the sandbox ---------------------------------------------------------


def test_passing_and_failing_checks_each_report_their_outcome():
    criteria = parse_criteria("add(1, 1) == 2\nassert add(2, 3) == 5, 'five'\nmul(2, 3) == 6")
    report = run_checks(WRONG_ADD, criteria.checks)
    first, second, third = report.results
    assert (first.passed, first.error_type) == (False, "AssertionError")
    assert "assert 0 == 2" in first.error and "add(1, 1)" in first.error  # pytest's introspection
    assert second.error_type == "AssertionError" and "five" in second.error
    assert third.error_type == "NameError" and "mul" in third.error
    assert not report.passed and "3 of 3 acceptance checks failed" in report.summary()
    assert "assert 0 == 2" not in report.summary()  # the summary names kinds, not model values
    critique = report.critique()
    assert "`add(1, 1) == 2` failed: assert 0 == 2" in critique and "NameError" in critique

    good = run_checks(ADD, parse_criteria("add(1, 1) == 2\nadd(2, 3) == 5").checks)
    assert good.passed and [r.passed for r in good.results] == [True, True]


def test_code_that_fails_on_import_fails_every_check_with_its_error():
    report = run_checks(
        "```python\nraise RuntimeError('boom')\ndef add(a, b):\n    return a + b\n```",
        parse_criteria("add(1, 1) == 2").checks,
    )
    (result,) = report.results
    assert not result.passed and result.error_type == "RuntimeError" and "boom" in result.error


def test_an_answer_without_code_fails_the_checks():
    (result,) = run_checks("I cannot do that.", parse_criteria("add(1, 1) == 2").checks).results
    assert not result.passed and result.error_type in ("NoCode", "NameError")


def test_a_check_that_never_ends_is_killed_at_the_timeout():
    code = "```python\ndef spin():\n    while True:\n        pass\n```"
    (result,) = run_checks(code, parse_criteria("spin() is None").checks, timeout=3).results
    assert not result.passed and result.error_type == "Timeout"


def test_dependency_code_comes_first():
    report = run_checks(
        "```python\ndef twice(x):\n    return add(x, x)\n```",
        parse_criteria("twice(2) == 4").checks,
        prelude=["def add(a, b):\n    return a + b"],
    )
    assert report.passed


# -- malicious criteria stay in the sandbox (the full probe suite is tests/security/) ----------


@pytest.mark.parametrize("box", BOXES)
def test_a_check_cannot_reach_a_loopback_server_outside_the_sandbox(loopback_server, box):
    port, accepted = loopback_server
    check = f"__import__('_socket').socket().connect(('127.0.0.1', {port})) is None"
    (control,) = run_checks(ADD, parse_criteria(check).checks, sandbox=Sandbox("none")).results
    assert control.passed and len(accepted) == 1  # from outside, the same connect gets through
    (result,) = run_checks(ADD, parse_criteria(check).checks, sandbox=box).results
    assert not result.passed and result.error_type == "ConnectionRefusedError", result
    assert len(accepted) == 1  # nothing arrived from inside


@pytest.mark.parametrize("box", BOXES)
def test_a_check_cannot_read_the_callers_secrets(monkeypatch, box):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-for-the-sandbox")
    monkeypatch.setenv("ORCH_TEST_SECRET", "hunter2")
    criteria = parse_criteria(
        "__import__('os').environ.get('OPENAI_API_KEY') is None\n"
        "__import__('os').environ.get('ORCH_TEST_SECRET') is None\n"
        "'hunter2' not in str(dict(__import__('os').environ))"
    )
    report = run_checks(ADD, criteria.checks, sandbox=box)
    assert report.passed, report.results  # the sandbox's environment holds none of them


@pytest.mark.parametrize("box", BOXES)
def test_a_check_that_kills_its_runner_does_not_pass_and_the_others_still_run(box):
    criteria = parse_criteria("add(1, 1) == 2\n__import__('os')._exit(0) is None\nadd(2, 2) == 4")
    first, killer, third = run_checks(ADD, criteria.checks, sandbox=box).results
    assert not killer.passed and killer.error_type == "SandboxError" and "no result" in killer.error
    assert first.passed and third.passed  # each check runs in its own process


def test_no_sandbox_here_fails_the_checks_with_the_reason():
    box = Sandbox("bwrap", search_path="/nonexistent")
    (result,) = run_checks(ADD, parse_criteria("add(1, 1) == 2").checks, sandbox=box).results
    assert not result.passed and result.error_type == "SandboxError" and "bwrap is not installed" in result.error
