"""Acceptance checks in the engine (scripted model answers, the real sandbox): which task
runs which check, a passing draft needs no review, a failing check is the next
revision's critique, the checks decide the score, and every check is reported on the
bus, on the task's span and in the result."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator import events
from orchestrator.domain.budget import Budget
from orchestrator.domain.results import ProjectStatus, TaskStatus
from orchestrator.domain.tasks import Task, TaskType
from orchestrator.engine import Orchestrator
from orchestrator.engine.checks import assign_checks
from orchestrator.governance.acceptance import parse_criteria
from orchestrator.llm.client import UnifiedClient
from orchestrator.llm.providers.base import ProviderRequest
from tests.scripted import ScriptedProvider

GOOD = "```python\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\nprint(add(5, 1))\n```"
README = ("Write a Python function add(a, b) that returns a + b", "add(1, 1) == 2")


def kind(request: ProviderRequest) -> str:
    if request.json_schema and "tasks" in request.json_schema.get("properties", {}):
        return "decompose"
    if request.json_schema:
        return "evaluate"
    if "reviewer" in request.system:
        return "critique"
    return "revise" if "Your previous answer" in request.prompt else "generate"


def scripted(draft: str, revision: str = GOOD, score: float = 0.1, **kw) -> ScriptedProvider:
    """The local model's adapter, answering the draft first and ``revision`` after; its
    self-grade is ``score`` (low: the checks, not the grade, must decide)."""
    return ScriptedProvider(
        answer=lambda r: draft if kind(r) == "generate" else revision if kind(r) == "revise" else "Looks wrong.",
        score=score,
        **kw,
    )


def run(provider: ScriptedProvider, description: str, criteria: str, **kw):
    orch = Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({"local": provider}), **kw)
    return asyncio.run(orch.run_project(description, criteria))


def kinds(provider: ScriptedProvider) -> list[str]:
    return [kind(r) for r in provider.requests]


# -- which task runs which check -----------------------------------------------------------


def _tasks(*specs: tuple[str, TaskType, str, list[str]]) -> list[Task]:
    return [Task(tid, tt, prompt, list(deps)) for tid, tt, prompt, deps in specs]


def test_a_check_goes_to_the_code_tasks_that_name_what_it_uses():
    tasks = _tasks(
        ("adder", TaskType.CODE_GENERATION, "Write add(a, b)", []),
        ("muler", TaskType.CODE_GENERATION, "Write mul(a, b)", []),
        ("docs", TaskType.SUMMARIZATION, "Document add and mul", []),
    )
    criteria, notes = assign_checks(tasks, parse_criteria("add(1, 1) == 2\nmul(2, 3) == 6\nreadable"))
    assert [t.checks for t in tasks] == [("add(1, 1) == 2",), ("mul(2, 3) == 6",), ()]
    assert criteria.prose == "readable" and len(notes) == 2


def test_a_check_naming_no_task_goes_to_the_final_code_tasks():
    tasks = _tasks(
        ("core", TaskType.CODE_GENERATION, "Write the core", []),
        ("api", TaskType.CODE_GENERATION, "Write the API on top", ["core"]),
    )
    assign_checks(tasks, parse_criteria("compute(2) == 4"))
    assert [t.checks for t in tasks] == [(), ("compute(2) == 4",)]


def test_without_a_code_task_the_checks_go_to_the_evaluator_as_prose():
    tasks = _tasks(("essay", TaskType.CREATIVE_WRITING, "Write about add", []))
    criteria, notes = assign_checks(tasks, parse_criteria("add(1, 1) == 2\nshort"))
    assert tasks[0].checks == () and criteria.checks == ()
    assert criteria.prose == "short\nadd(1, 1) == 2" and "no code task" in notes[0]


# -- the local profile ----------------------------------------------------------------------


def test_a_passing_draft_is_done_after_one_call(recorded):
    provider = scripted(GOOD)
    state = run(provider, *README)
    assert state.profile == "local" and list(state.tasks) == ["add"]
    assert kinds(provider) == ["generate"]  # no plan, no critique, no revise, no self-grade
    result = state.results["add"]
    assert result.status == TaskStatus.COMPLETED and state.status == ProjectStatus.SUCCESS
    assert result.score is None  # the checks decided; no evaluator scored it (and no threshold posing as a score)
    (scored,) = [p for p in recorded if isinstance(p, events.IterationScored)]
    assert scored.evaluator_score is None and scored.score == state.tasks["add"].threshold
    assert result.checks == [{"check": "add(1, 1) == 2", "passed": True, "error_type": None, "error": ""}]
    (check,) = [p for p in recorded if isinstance(p, events.AcceptanceCheck)]
    assert (check.check, check.passed, check.stage, check.task_id) == ("add(1, 1) == 2", True, "draft", "add")
    assert state.to_dict()["results"]["add"]["checks"][0]["passed"] is True
    assert state.to_dict()["tasks"]["add"]["checks"] == ["add(1, 1) == 2"]


def test_a_failing_check_is_the_critique_of_the_next_revision(recorded):
    provider = scripted(WRONG)
    state = run(provider, *README)
    assert kinds(provider) == ["generate", "revise"]  # the failing check replaced the critic
    revise = provider.requests[1].prompt
    assert "`add(1, 1) == 2` failed: assert 0 == 2" in revise and "where 0 = add(1, 1)" in revise
    assert "return a - b" in revise  # the answer that failed is what gets revised
    result = state.results["add"]
    assert result.status == TaskStatus.COMPLETED and result.checks[0]["passed"] is True
    checks = [(p.stage, p.passed, p.error_type) for p in recorded if isinstance(p, events.AcceptanceCheck)]
    assert checks == [("draft", False, "AssertionError"), ("revision", True, None)]


def test_checks_that_keep_failing_fail_the_task_with_their_error(recorded):
    provider = scripted(WRONG, revision=WRONG)
    state = run(provider, *README)
    result = state.results["add"]
    assert result.status == TaskStatus.FAILED and state.status == ProjectStatus.FAILED
    assert result.checks[0]["error_type"] == "AssertionError" and "assert 0 == 2" in result.checks[0]["error"]
    failures = [p for p in recorded if isinstance(p, events.ValidationFailed)]
    assert failures and all(f.validator == "acceptance" for f in failures)
    # events carry the check and the kind of failure, never a value the model's code produced
    for payload in recorded:
        if isinstance(payload, events.AcceptanceCheck | events.ValidationFailed):
            assert "assert 0 == 2" not in str(payload.to_dict())


def test_prose_criteria_still_go_to_the_evaluator_and_cannot_sink_passing_checks():
    provider = scripted(GOOD, score=0.2)
    state = run(provider, README[0], "add(1, 1) == 2\nreadable, with a docstring")
    assert kinds(provider) == ["generate", "evaluate"]
    assert "Criteria:\nreadable, with a docstring" in provider.requests[1].prompt
    assert "add(1, 1) == 2" not in provider.requests[1].prompt.split("Answer:")[0].split("Criteria:")[1]
    result = state.results["add"]
    assert result.status == TaskStatus.COMPLETED  # the evaluator's 0.2 cannot sink passing checks...
    assert result.score == pytest.approx(0.2)  # ...and the result says what the evaluator really gave


def test_the_local_profile_caps_tokens_per_role():
    provider = scripted(WRONG, revision=WRONG)
    run(provider, *README)
    by_kind = {kind(r): r.max_tokens for r in provider.requests}
    assert by_kind == {"generate": 256, "revise": 256}


# -- the full profile -------------------------------------------------------------------------


def test_full_profile_reviews_with_the_failing_check_in_hand():
    provider = scripted(WRONG)
    state = run(provider, *README, profile="full")
    assert state.profile == "full"
    assert kinds(provider)[:4] == ["decompose", "generate", "critique", "revise"]
    critique, revise = provider.requests[2].prompt, provider.requests[3].prompt
    assert "`add(1, 1) == 2` failed" in critique and "`add(1, 1) == 2` failed" in revise
    task_id = next(iter(state.tasks))
    assert state.results[task_id].status == TaskStatus.COMPLETED


def test_full_profile_keeps_a_passing_draft_its_revision_broke():
    provider = scripted(GOOD, revision=WRONG, score=0.9)
    state = run(provider, *README, profile="full")
    (result,) = state.results.values()
    assert "return a + b" in result.output and result.status == TaskStatus.COMPLETED
    assert result.checks[0]["passed"] is True


def test_checks_apply_to_given_tasks_too():
    provider = scripted(WRONG, revision=WRONG)
    tasks = [Task("adder", TaskType.CODE_GENERATION, "Write add(a, b)", max_iterations=1)]
    orch = Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({"local": provider}), project_tasks=tasks)
    state = asyncio.run(orch.run_project("Calculator", "add(1, 1) == 2"))
    assert state.results["adder"].status == TaskStatus.FAILED
    assert state.results["adder"].checks[0]["error_type"] == "AssertionError"


# -- the task's span -----------------------------------------------------------------------------


def test_each_check_is_an_event_on_the_task_span_without_model_values(span_exporter):
    provider = scripted(WRONG)
    run(provider, *README)
    task = span_exporter.by_name("task:add")
    checks = [e for e in task.events if e.name == "acceptance_check"]
    assert [(e.attributes["check"], e.attributes["passed"], e.attributes.get("error_type")) for e in checks] == [
        ("add(1, 1) == 2", False, "AssertionError"),
        ("add(1, 1) == 2", True, None),
    ]
    for span in span_exporter.spans():
        for event in span.events:
            assert "assert 0 == 2" not in str(dict(event.attributes or {}))
    assert task.attributes["task.checks_total"] == 1 and task.attributes["task.checks_passed"] == 1


@pytest.mark.parametrize("answer", [GOOD, WRONG])
def test_check_results_on_the_result_match_the_events(recorded, answer):
    provider = scripted(answer, revision=answer)
    state = run(provider, *README)
    last = [p for p in recorded if isinstance(p, events.AcceptanceCheck)][-1]
    assert state.results["add"].checks[0]["passed"] is last.passed
