"""Remediation: the plans themselves, and the engine doing what they decide on every
trigger (a failing provider, a validator rejecting code, a low score), each attempt a
remediation pair under its task."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.domain.budget import Budget
from orchestrator.domain.results import ProjectStatus, TaskStatus
from orchestrator.domain.tasks import Task, TaskType
from orchestrator.engine import Orchestrator
from orchestrator.governance.policy import Policy
from orchestrator.governance.remediation import (
    DEFAULT_PLANS,
    ConfigError,
    RemediationConfig,
    Situation,
    Step,
    Strategy,
    TaskRemediation,
    Trigger,
)
from orchestrator.llm.client import UnifiedClient
from orchestrator.llm.providers.base import ProviderError
from tests.helpers import no_sleep
from tests.scripted import ScriptedProvider, decomposition

SUMMARY_PLAN = decomposition({"id": "t", "type": "summarization", "prompt": "summarize the notes", "depends_on": []})


def _failing(name: str, transient: bool = True) -> ScriptedProvider:
    error = ProviderError(
        "503 service unavailable" if transient else "401 unauthorized",
        transient=transient,
        status_code=503 if transient else 401,
        fatal_for_model=not transient,
    )
    return ScriptedProvider(name=name, plan=SUMMARY_PLAN, answer=error)


def _client(provs, **kw) -> UnifiedClient:
    # unhealthy_after above the client's 3 attempts: the model stays usable after one failed
    # call, so the plan's auto_retry applies (with the client's default of 3 it does not)
    return UnifiedClient(provs, sleep=no_sleep, **{"unhealthy_after": 10, **kw})


# -- plans --------------------------------------------------------------------------------


def test_default_plans_are_the_documented_ones():
    assert {t.value: [str(s) for s in plan] for t, plan in DEFAULT_PLANS.items()} == {
        "llm_error": ["auto_retry x1", "fallback_model x3", "abort_task x1"],
        "validation_failed": ["adjust_prompt x2", "skip_validator x1", "fallback_model x1", "abort_task x1"],
        "score_below_threshold": ["adjust_prompt x2", "degrade_threshold x1"],
        "budget_low": ["degrade_threshold x1", "fallback_model x1"],
    }


def test_decide_takes_the_first_applicable_step_with_attempts_left():
    rem = TaskRemediation(RemediationConfig(retry_delay_seconds=0))
    error = Situation(Trigger.LLM_ERROR, rounds_left=3, transient=True, has_fallback=True)
    assert [rem.decide(error).strategy for _ in range(5)] == [
        Strategy.AUTO_RETRY,
        Strategy.FALLBACK_MODEL,
        Strategy.FALLBACK_MODEL,
        Strategy.FALLBACK_MODEL,
        Strategy.ABORT_TASK,
    ]
    assert rem.decide(error) is None  # the plan is used up
    permanent = TaskRemediation(RemediationConfig())
    assert (
        permanent.decide(Situation(Trigger.LLM_ERROR, rounds_left=3, has_fallback=True)).strategy
        == Strategy.FALLBACK_MODEL
    )  # a permanent error is not retried
    no_rounds = TaskRemediation(RemediationConfig())
    assert no_rounds.decide(Situation(Trigger.LLM_ERROR, rounds_left=0, transient=True, has_fallback=True)) is None


def test_budget_low_degrades_first_then_moves_to_a_cheaper_model():
    rem = TaskRemediation(RemediationConfig())
    low = Situation(Trigger.BUDGET_LOW, rounds_left=2, has_fallback=True, best_passed=True, threshold=0.85)
    first = rem.decide(low)
    assert first.strategy == Strategy.DEGRADE_THRESHOLD and first.new_threshold == 0.75
    assert rem.decide(low).strategy == Strategy.FALLBACK_MODEL
    assert rem.decide(low) is None
    nothing_passed = TaskRemediation(RemediationConfig())  # nothing to accept: straight to the cheaper model
    assert (
        nothing_passed.decide(Situation(Trigger.BUDGET_LOW, rounds_left=2, has_fallback=True, threshold=0.85)).strategy
        == Strategy.FALLBACK_MODEL
    )


def test_skip_validator_only_where_a_policy_allows_it():
    cfg = RemediationConfig.from_data({"validation_failed": ["skip_validator", "abort_task"]})
    failed = Situation(Trigger.VALIDATION_FAILED, rounds_left=2, failed_validators=("pytest",))
    assert TaskRemediation(cfg).decide(failed).strategy == Strategy.ABORT_TASK
    allowed = Situation(
        Trigger.VALIDATION_FAILED,
        rounds_left=2,
        failed_validators=("pytest",),
        skippable_validators=frozenset({"pytest"}),
    )
    decision = TaskRemediation(cfg).decide(allowed)
    assert decision.strategy == Strategy.SKIP_VALIDATOR and decision.skip == ("pytest",)


def test_plans_from_data_and_their_one_line_errors():
    cfg = RemediationConfig.from_data(
        {
            "plans": {"llm_error": ["fallback_model", {"abort_task": 1}]},
            "score_below_threshold": None,
            "retry_delay_seconds": 2,
        }
    )
    assert cfg.plan("llm_error") == (Step(Strategy.FALLBACK_MODEL), Step(Strategy.ABORT_TASK))
    assert cfg.plan("score_below_threshold") == ()  # turned off
    assert cfg.plan("budget_low") == DEFAULT_PLANS[Trigger.BUDGET_LOW]  # not given: default
    assert cfg.retry_delay_seconds == 2.0
    for data, fragment in (
        ({"plans": {"llm_eror": []}}, "plans.llm_eror: unknown trigger 'llm_eror' (did you mean 'llm_error'?"),
        ({"llm_error": ["retry"]}, "llm_error[0]: unknown strategy 'retry'"),
        ({"llm_error": ["degrade_threshold"]}, "llm_error[0]: degrade_threshold does not apply to llm_error"),
        ({"plans": {"llm_error": ["skip_validator"]}}, "plans.llm_error[0]: skip_validator does not apply"),
        ({"llm_error": [{"auto_retry": 0}]}, "llm_error[0].auto_retry: must be a whole number >= 1"),
        ({"retry_delay": 1}, "unknown key 'retry_delay'"),
        ({"min_threshold": 2}, "min_threshold: must be a number between 0 and 1"),
    ):
        with pytest.raises(ConfigError) as info:
            RemediationConfig.from_data(data, "plan.yaml")
        assert str(info.value).startswith("plan.yaml: ") and fragment in str(info.value), str(info.value)
        assert "\n" not in str(info.value)


# -- in the engine: llm_error ---------------------------------------------------------


def test_a_provider_that_fails_every_call_gets_auto_retry_then_fallback_model(span_exporter):
    provs = {
        "google": _failing("google"),
        "openai": ScriptedProvider(name="openai", plan=SUMMARY_PLAN, answer="a fine summary"),
    }
    orch = Orchestrator(budget=Budget(5.0, 600), client=_client(provs))
    state = asyncio.run(orch.run_project("Summarize the notes", "short"))
    result = state.results["t"]
    assert state.status == ProjectStatus.SUCCESS
    assert result.status == TaskStatus.COMPLETED and result.model_used == "gpt-6-luna"
    assert result.fallback_count == 1
    assert len(provs["google"].requests) == 6  # 3 attempts, then 3 more for the auto_retry

    task = span_exporter.by_name("task:t")
    remediations = sorted(span_exporter.spans("remediation"), key=lambda s: s.start_time)
    assert [
        (r.attributes["remediation.strategy"], r.attributes["remediation.trigger"], r.attributes["remediation.success"])
        for r in remediations
    ] == [("auto_retry", "llm_error", False), ("fallback_model", "llm_error", True)]
    assert all(span_exporter.parent_of(r) is task for r in remediations)
    retry, fallback = remediations
    # the retried call is inside the auto_retry span; the fallback model's calls inside its own
    retried = [c for c in span_exporter.spans("llm_call:") if span_exporter.parent_of(c) is retry]
    assert {c.attributes["llm.model"] for c in retried} == {"gemini-3.5-flash-lite"}
    assert all(c.status.status_code.name == "ERROR" for c in retried) and len(retried) == 3
    on_fallback = [c for c in span_exporter.spans("llm_call:") if span_exporter.parent_of(c) is fallback]
    assert {c.attributes["llm.model"] for c in on_fallback} == {"gpt-6-luna"}
    assert {c.name for c in on_fallback} >= {"llm_call:generate", "llm_call:revise", "llm_call:evaluate"}
    assert fallback.attributes["remediation.from_model"] == "gemini-3.5-flash-lite"
    assert fallback.attributes["remediation.to_model"] == "gpt-6-luna"
    assert task.attributes["task.status"] == "completed" and task.attributes["task.model"] == "gpt-6-luna"


async def test_a_permanent_error_is_not_retried_it_falls_back(orchestrator_events):
    provs = {
        "google": _failing("google", transient=False),
        "openai": ScriptedProvider(name="openai", plan=SUMMARY_PLAN, answer="a fine summary"),
    }
    state = await Orchestrator(budget=Budget(5.0, 600), client=_client(provs)).run_project("Summarize", "s")
    assert state.results["t"].status == TaskStatus.COMPLETED
    assert [s.strategy for s, _ in orchestrator_events.pairs("remediation")] == ["fallback_model"]
    assert len(provs["google"].requests) == 1


async def test_with_the_clients_default_health_one_auto_retry_then_the_breaker_opens(orchestrator_events):
    provs = {
        "google": _failing("google"),
        "openai": ScriptedProvider(name="openai", plan=SUMMARY_PLAN, answer="a fine summary"),
    }
    client = UnifiedClient(provs, sleep=no_sleep)  # 2 retries per call, breaker open after 6 failures in a row
    state = await Orchestrator(budget=Budget(5.0, 600), client=client).run_project("Summarize", "s")
    assert state.results["t"].status == TaskStatus.COMPLETED
    assert [s.strategy for s, _ in orchestrator_events.pairs("remediation")] == ["auto_retry", "fallback_model"]
    assert len(provs["google"].requests) == 6  # two calls of three attempts, then not again in this run
    # transient failures open the breaker (a probe would follow its cool-down); they never
    # put the model out for good as a rejected key does
    assert client.cooling_down("gemini-3.5-flash-lite") and "gemini-3.5-flash-lite" not in client.unhealthy


async def test_when_every_model_fails_the_task_is_aborted_with_the_error(orchestrator_events):
    provs = {"local": _failing("local")}
    tasks = [Task("t", TaskType.SUMMARIZATION, "summarize")]
    state = await Orchestrator(budget=Budget(5.0, 600), client=_client(provs), project_tasks=tasks).run_project(
        "p", "c"
    )
    result = state.results["t"]
    assert result.status == TaskStatus.FAILED
    assert result.error.startswith("aborted by remediation after llm_error: smollm2-135m: 503")
    assert [(s.strategy, f.attributes["remediation.success"]) for s, f in orchestrator_events.pairs("remediation")] == [
        ("auto_retry", False),
        ("abort_task", True),
    ]
    assert orchestrator_events.unfinished() == []


async def test_a_configured_plan_is_followed(orchestrator_events):
    provs = {
        "google": _failing("google"),
        "openai": ScriptedProvider(name="openai", plan=SUMMARY_PLAN, answer="a fine summary"),
    }
    orch = Orchestrator(budget=Budget(5.0, 600), client=_client(provs), remediation={"llm_error": ["abort_task"]})
    state = await orch.run_project("Summarize", "s")
    assert state.results["t"].status == TaskStatus.FAILED
    assert [s.strategy for s, _ in orchestrator_events.pairs("remediation")] == ["abort_task"]
    assert provs["openai"].calls_of("other") == []  # no fallback was made


# -- in the engine: validation_failed, score_below_threshold ----------------------------

BROKEN = "```python\ndef add(a, b):\n    return a - b\n\n\ndef test_add():\n    assert add(1, 1) == 2\n```"
FIXED = "```python\ndef add(a, b):\n    return a + b\n\n\ndef test_add():\n    assert add(1, 1) == 2\n```"


async def test_code_that_fails_pytest_gets_validation_failed_remediation_and_a_new_round(orchestrator_events):
    def answer(request):
        return FIXED if "failed these automatic checks" in request.prompt else BROKEN

    provider = ScriptedProvider(name="local", answer=answer)
    tasks = [Task("add", TaskType.CODE_GENERATION, "write add(a, b) with a pytest test")]
    state = await Orchestrator(
        budget=Budget(5.0, 600), client=_client({"local": provider}), project_tasks=tasks
    ).run_project("p", "c")
    result = state.results["add"]
    assert result.status == TaskStatus.COMPLETED and result.iterations == 2
    assert "return a + b" in result.output
    (failure,) = orchestrator_events.of("validation_failed")
    assert failure.validator == "pytest" and failure.iteration == 1 and failure.task_id == "add"
    assert "1 failed" in failure.message and "test_add" in failure.message
    ((start, finish),) = orchestrator_events.pairs("remediation")
    assert (start.strategy, start.trigger, finish.attributes["remediation.success"]) == (
        "adjust_prompt",
        "validation_failed",
        True,
    )
    # the second round's revise was told what failed, and ran inside the remediation pair
    revise = [s for s, _ in orchestrator_events.pairs("llm_call") if s.call_type == "revise"]
    assert len(revise) == 2 and revise[1].parent_id == start.correlation_id
    assert "1 failed" in revise[1].prompt and "failed these automatic checks" not in revise[0].prompt
    assert [e.score for e in orchestrator_events.of("iteration_scored")] == [0.0, 0.95]


async def test_skip_validator_when_the_policy_allows_it(orchestrator_events):
    provider = ScriptedProvider(name="local", answer=BROKEN)
    tasks = [Task("add", TaskType.CODE_GENERATION, "write add")]
    policy = Policy("lenient", skippable_validators=("pytest",))
    state = await Orchestrator(
        budget=Budget(5.0, 600),
        client=_client({"local": provider}),
        project_tasks=tasks,
        policies=[policy],
        remediation={"validation_failed": ["skip_validator"]},
    ).run_project("p", "c")
    result = state.results["add"]
    assert result.status == TaskStatus.COMPLETED and result.iterations == 1 and result.score == 0.95
    ((start, finish),) = orchestrator_events.pairs("remediation")
    assert start.strategy == "skip_validator" and finish.attributes["remediation.success"] is True
    assert list(finish.attributes["remediation.skipped_validators"]) == ["pytest"]


async def test_without_the_policy_the_validator_is_never_skipped(orchestrator_events):
    provider = ScriptedProvider(name="local", answer=BROKEN)
    tasks = [Task("add", TaskType.CODE_GENERATION, "write add", max_iterations=2)]
    state = await Orchestrator(
        budget=Budget(5.0, 600),
        client=_client({"local": provider}),
        project_tasks=tasks,
        remediation={"validation_failed": ["skip_validator"]},
    ).run_project("p", "c")
    assert state.results["add"].status == TaskStatus.FAILED
    assert orchestrator_events.pairs("remediation") == []
    assert len(orchestrator_events.of("validation_failed")) == 2


async def test_a_low_score_degrades_the_threshold_and_accepts_the_best(orchestrator_events):
    provider = ScriptedProvider(name="local", answer="```python\ndef add(a, b):\n    return a + b\n```", score=0.8)
    tasks = [Task("add", TaskType.CODE_GENERATION, "write add")]  # threshold 0.85
    state = await Orchestrator(
        budget=Budget(5.0, 600),
        client=_client({"local": provider}),
        project_tasks=tasks,
        remediation={"score_below_threshold": ["degrade_threshold"]},
    ).run_project("p", "c")
    result = state.results["add"]
    assert result.status == TaskStatus.DEGRADED and result.iterations == 1 and result.score == 0.8
    ((start, finish),) = orchestrator_events.pairs("remediation")
    assert (start.strategy, start.trigger) == ("degrade_threshold", "score_below_threshold")
    assert finish.attributes["remediation.success"] is True and finish.attributes["remediation.threshold"] == 0.75
