"""Policies: the checks themselves, and the engine checking every candidate before use
(hard, soft and monitor modes; a policy no model satisfies)."""

from __future__ import annotations

import logging
import re

import pytest

from orchestrator.domain.budget import Budget
from orchestrator.domain.results import ProjectStatus, TaskStatus
from orchestrator.domain.tasks import Task, TaskType
from orchestrator.engine import Orchestrator
from orchestrator.governance.policy import (
    ConfigError,
    EnforcementMode,
    ModelProfile,
    Policy,
    PolicyEngine,
    PolicySet,
    PolicyViolationError,
)
from orchestrator.llm.client import UnifiedClient
from tests.scripted import ScriptedProvider, decomposition

PLAN = decomposition({"id": "t", "type": "summarization", "prompt": "summarize the notes", "depends_on": []})


def providers(*names: str) -> dict[str, ScriptedProvider]:
    return {name: ScriptedProvider(name=name, plan=PLAN, answer="a fine summary") for name in names}


def orch(provs, **kw) -> Orchestrator:
    budget = kw.pop("budget", Budget(5.0, 600))
    return Orchestrator(budget=budget, client=UnifiedClient(provs), **kw)


def task_pairs(rec, task_id: str, kind: str):
    """(start, finish) pairs of ``kind`` whose parent is the task's own pair."""
    task_start = rec.first("task_started", task_id=task_id)
    return [(s, f) for s, f in rec.pairs(kind) if s.parent_id == task_start.correlation_id]


# -- the check --------------------------------------------------------------------------


def test_hard_soft_monitor_semantics():
    engine = PolicyEngine()
    profile = ModelProfile.from_catalog("gpt-4o")
    cost = Policy("cheap", max_cost_per_call_usd=0.001)
    where = Policy("no_openai", blocked_providers=("openai",))
    for mode, passed_cost, passed_where in (("hard", False, False), ("soft", True, False), ("monitor", True, True)):
        c = engine.evaluate("gpt-4o", profile, [Policy.from_data({**cost.to_dict(), "enforcement_mode": mode})])
        w = engine.evaluate("gpt-4o", profile, [Policy.from_data({**where.to_dict(), "enforcement_mode": mode})])
        assert (c.passed, w.passed) == (passed_cost, passed_where), mode
        assert len(c.violations) == 1 and len(w.violations) == 1  # always recorded
        assert c.mode == EnforcementMode(mode)
    ok = engine.evaluate("gpt-4o", profile, [Policy("fine", allowed_providers=("openai",), requires=("no_train",))])
    assert ok.passed and ok.violations == () and ok.mode == EnforcementMode.HARD


def test_every_constraint_is_checked():
    engine = PolicyEngine()
    slow = ModelProfile.from_catalog("deepseek-chat", observed_latency_ms=9000)
    result = engine.evaluate(
        "deepseek-chat",
        slow,
        [
            Policy(
                "all",
                allowed_providers=("openai", "anthropic"),
                blocked_models=("deepseek-chat",),
                allowed_regions=("us",),
                requires=("no_train",),
                max_latency_ms=2000,
                max_cost_per_task_usd=0.0001,
            )
        ],
        call_cost_usd=0.00005,
        task_cost_usd=0.01,
    )
    assert {v.constraint for v in result.violations} == {
        "allowed_providers",
        "blocked_models",
        "allowed_regions",
        "requires",
        "max_latency_ms",
        "max_cost_per_task_usd",
    }
    assert "region 'cn' not in allowed_regions ['us']" in result.reason
    unknown_latency = engine.evaluate(
        "deepseek-chat", ModelProfile.from_catalog("deepseek-chat"), [Policy("fast", max_latency_ms=1)]
    )
    assert unknown_latency.passed  # nothing observed yet: nothing to judge


def test_check_sends_a_pair_and_enforce_names_task_policies_and_reason(orchestrator_events):
    engine = PolicyEngine()
    policies = [
        Policy("eu_only", allowed_regions=("local",)),
        Policy("watch", max_cost_per_call_usd=0.5, enforcement_mode=EnforcementMode.MONITOR),
    ]
    result = engine.check("gpt-4.1", None, policies)
    assert not result.passed
    ((start, finish),) = orchestrator_events.pairs("policy_check")
    assert start.policy_count == 2 and start.model == "gpt-4.1"
    assert finish.attributes["policy.passed"] is False and finish.attributes["policy.violations"] == 1
    assert finish.attributes["policy.names"] == ("eu_only", "watch")
    with pytest.raises(PolicyViolationError) as info:
        engine.enforce("gpt-4.1", None, policies, task_id="t7")
    message = str(info.value)
    assert "task t7" in message and "eu_only" in message and "region 'us' not in allowed_regions" in message
    assert engine.enforce("smollm2-135m", None, policies, task_id="t7").passed
    assert len(orchestrator_events.pairs("policy_check")) == 3


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"enforcement_mode": "strict"}, "enforcement_mode: unknown mode 'strict'"),
        ({"allowed_providers": []}, "allowed_providers: empty list allows nothing"),
        ({"allowed_providers": ["openai"], "blocked_providers": ["openai"]}, "both allowed and blocked"),
        ({"blocked_models": ["gpt-5-ultra"]}, "blocked_models: unknown model 'gpt-5-ultra'"),
        ({"allowed_providers": ["opneai"]}, "did you mean 'openai'?"),
        ({"requires": ["gdpr"]}, "requires: unknown tag 'gdpr'"),
        ({"allowed_models": ["gpt-4o"], "blocked_providers": ["openai"]}, "served by provider 'openai'"),
        ({"max_cost_per_call_usd": -1}, "max_cost_per_call_usd: must be a finite number > 0"),
        ({"allowed_regions": "us"}, "must be a list of names"),
        ({"skippable_validators": ["pylint"]}, "unknown validator 'pylint'"),
    ],
)
def test_bad_policies_are_one_line_errors(kwargs, fragment):
    """From data (what a file gives) every problem is one line; built in Python with the
    declared types, the checks of meaning (names, contradictions) still run."""
    with pytest.raises(ConfigError) as info:
        Policy.from_data({"name": "p", **kwargs})
    assert fragment in str(info.value) and "\n" not in str(info.value)
    typed = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    if all(isinstance(v, tuple) and all(isinstance(i, str) for i in v) for v in typed.values()):
        with pytest.raises(ConfigError, match=re.escape(fragment)):
            Policy("p", **typed)


def test_overrides_by_name_apply_only_the_given_fields():
    pset = PolicySet.from_data(
        {
            "policies": [{"name": "base", "blocked_providers": ["deepseek"], "max_cost_per_call_usd": 0.5}],
            "task_types": {
                "code_generation": [
                    {"name": "base", "enforcement_mode": "monitor"},
                    {"name": "extra", "requires": ["no_train"]},
                ]
            },
            "tasks": {"t1": [{"name": "base", "max_cost_per_call_usd": 2}]},
        },
        "inline",
    )
    code = pset.for_task(Task("t1", TaskType.CODE_GENERATION, "p"))
    base = next(p for p in code if p.name == "base")
    assert base.enforcement_mode == EnforcementMode.MONITOR  # from the type entry
    assert base.max_cost_per_call_usd == 2.0  # from the task entry
    assert base.blocked_providers == ("deepseek",)  # inherited
    assert [p.name for p in code] == ["base", "extra"]
    other = pset.for_task(Task("t2", TaskType.SUMMARIZATION, "p"))
    assert [(p.name, p.enforcement_mode, p.max_cost_per_call_usd) for p in other] == [
        ("base", EnforcementMode.HARD, 0.5)
    ]


def test_a_task_entry_applies_on_the_base_of_the_tasks_own_type():
    """A task's entry is read once and applied on whichever base the task's type gives
    (no copy of it made against one base and used for every type)."""
    pset = PolicySet.from_data(
        {
            "policies": [{"name": "base", "max_cost_per_call_usd": 0.5}],
            "task_types": {
                "code_generation": [{"name": "base", "enforcement_mode": "monitor", "blocked_providers": ["kimi"]}],
                "summarization": [{"name": "base", "requires": ["no_train"]}],
            },
            "tasks": {"t1": [{"name": "base", "max_cost_per_task_usd": 2}]},
        },
        "inline",
    )
    (code,) = pset.for_task(Task("t1", TaskType.CODE_GENERATION, "p"))
    (summary,) = pset.for_task(Task("t1", TaskType.SUMMARIZATION, "p"))
    (other,) = pset.for_task(Task("t1", TaskType.DATA_EXTRACTION, "p"))
    assert (code.enforcement_mode, code.blocked_providers, code.requires, code.max_cost_per_task_usd) == (
        EnforcementMode.MONITOR,
        ("kimi",),
        (),
        2.0,
    )
    assert (summary.enforcement_mode, summary.blocked_providers, summary.requires) == (
        EnforcementMode.HARD,
        (),
        ("no_train",),
    )
    assert other == Policy("base", max_cost_per_call_usd=0.5, max_cost_per_task_usd=2.0)
    assert pset.for_task(Task("t2", TaskType.DATA_EXTRACTION, "p")) == (Policy("base", max_cost_per_call_usd=0.5),)


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {
                "policies": [{"name": "b", "blocked_providers": ["openai"]}],
                "tasks": {"t1": [{"name": "b", "allowed_models": ["gpt-4o"]}]},
            },
            "inline: tasks.t1[0].allowed_models: allowed model 'gpt-4o' is served by provider 'openai', which this "
            "policy does not allow",
        ),
        (
            {
                "policies": [{"name": "base", "allowed_providers": ["openai", "local"]}],
                "task_types": {"code_generation": [{"name": "no_openai", "blocked_providers": ["openai"]}]},
                "tasks": {"t1": [{"name": "only_openai", "allowed_providers": ["openai"]}]},
            },
            "inline: tasks.t1: policies base, no_openai, only_openai together leave no provider (allowed_providers "
            "minus blocked_providers is empty)",
        ),
        (
            {"policies": [{"name": "a"}, {"name": "a", "requires": ["offline"]}]},
            "inline: policies[1].name: duplicate policy name 'a'",
        ),
        (
            {"policies": [{"name": "a"}], "global": [{"name": "b"}]},
            "inline: global: give the global policies once, under 'policies' or 'global', not both",
        ),
    ],
)
def test_what_only_the_combination_shows_is_located_at_the_entry(data, message):
    with pytest.raises(ConfigError) as info:
        PolicySet.from_data(data, "inline")
    assert str(info.value) == message


def test_merging_a_second_file_checks_the_result_and_names_that_file():
    project = PolicySet.from_data({"policies": [{"name": "where", "blocked_providers": ["openai"]}]}, "project.yaml")
    flag = PolicySet.from_data({"policies": [{"name": "where", "allowed_models": ["gpt-4o"]}]}, "flag.yaml")
    with pytest.raises(
        ConfigError,
        match=r"^flag.yaml: policies\[0\]\.allowed_models: allowed model 'gpt-4o' is "
        "served by provider 'openai'",
    ):
        project.merged(flag)
    merged = project.merged(PolicySet.from_data({"policies": [{"name": "where", "requires": ["no_train"]}]}, "f"))
    assert merged.for_project() == (Policy("where", blocked_providers=("openai",), requires=("no_train",)),)
    assert project.for_project() == (Policy("where", blocked_providers=("openai",)),)  # unchanged


# -- in the engine ----------------------------------------------------------------------


async def test_hard_policy_blocks_the_first_candidate_and_the_next_is_used(orchestrator_events):
    provs = providers("google", "openai")
    policy = Policy("no_google", blocked_providers=("google",))
    state = await orch(provs, policies=[policy]).run_project("Summarize the notes", "short")
    result = state.results["t"]
    assert result.status == TaskStatus.COMPLETED
    assert result.model_used == "gpt-6-luna"  # gemini-3.5-flash-lite comes first for summaries
    assert provs["google"].requests == []  # nothing was ever sent to the blocked provider
    checks = task_pairs(orchestrator_events, "t", "policy_check")
    assert [(s.model, f.attributes["policy.passed"]) for s, f in checks[:2]] == [
        ("gemini-3.5-flash-lite", False),
        ("gpt-6-luna", True),
    ]
    assert "provider 'google' is blocked (no_google)" in checks[0][1].attributes["policy.reasons"][0]
    assert all(s.task_id == "t" and s.policy_count == 1 for s, _ in checks)
    # the check came before the first call of the task
    names = orchestrator_events.names()
    task_start = names.index("task_started")
    assert names.index("policy_checked", task_start) < names.index("llm_call_started", task_start)
    assert orchestrator_events.unfinished() == []


def test_the_trace_shows_failed_and_passed_policy_check_spans_under_the_task(span_exporter):
    import asyncio

    provs = providers("google", "openai")
    state = asyncio.run(
        orch(provs, policies=[Policy("no_google", blocked_providers=("google",))]).run_project(
            "Summarize the notes", "short"
        )
    )
    assert state.status == ProjectStatus.SUCCESS
    task = span_exporter.by_name("task:t")
    checks = sorted(
        (s for s in span_exporter.spans("policy_check") if span_exporter.parent_of(s) is task),
        key=lambda s: s.start_time,
    )
    assert [(c.attributes["policy.model"], c.attributes["policy.passed"]) for c in checks[:2]] == [
        ("gemini-3.5-flash-lite", False),
        ("gpt-6-luna", True),
    ]
    assert checks[0].attributes["policy.count"] == 1 and checks[0].attributes["policy.violations"] == 1
    # the planner's own check sits under the root
    root = span_exporter.by_name("run_project")
    planner_checks = [s for s in span_exporter.spans("policy_check") if span_exporter.parent_of(s) is root]
    assert planner_checks and all(
        s.attributes["policy.model"] != "gemini-4-argon" or not s.attributes["policy.passed"] for s in planner_checks
    )


async def test_reviewers_are_policy_checked_too():
    provs = providers("openai", "local")
    policy = Policy("local_only", allowed_providers=("local",))
    state = await orch(provs, policies=[policy]).run_project("Summarize", "short")
    assert state.results["t"].model_used == state.results["t"].reviewer_model == "smollm2-135m"
    assert provs["openai"].requests == []


async def test_a_policy_no_model_satisfies_stops_the_run_before_any_spend(orchestrator_events):
    provs = providers("openai", "local")
    budget = Budget(5.0, 600)
    policy = Policy("anthropic_only", allowed_providers=("anthropic",))
    with pytest.raises(PolicyViolationError) as info:
        await orch(provs, budget=budget, policies=[policy]).run_project("Summarize", "short")
    message = str(info.value)
    assert "no usable model satisfies the policies anthropic_only" in message
    assert "provider 'openai' not in allowed_providers ['anthropic']" in message and "\n" not in message
    assert budget.spent_usd == 0 and all(p.requests == [] for p in provs.values())
    assert orchestrator_events.of("llm_call_started") == []
    ((project, finish),) = orchestrator_events.pairs("project")
    assert finish.status == "error" and finish.error_type == "PolicyViolationError"
    assert orchestrator_events.unfinished() == []


async def test_a_task_no_model_may_serve_fails_with_the_message_and_the_others_run(orchestrator_events):
    provs = providers("openai", "local")
    pset = PolicySet(
        by_task={"secret": (Policy("offline_only", requires=("offline",)), Policy("cheap", max_cost_per_call_usd=1e-9))}
    )
    tasks = [
        Task("secret", TaskType.SUMMARIZATION, "summarize secrets"),
        Task("public", TaskType.SUMMARIZATION, "summarize news"),
    ]
    # the local model is free but a hard "cheap" limit of 1e-9 still lets it (cost 0)
    provs["local"].available = False  # ...so make the only offline model unusable
    state = await orch(provs, policies=pset, project_tasks=tasks).run_project("p", "c")
    secret, public = state.results["secret"], state.results["public"]
    assert public.status == TaskStatus.COMPLETED and public.model_used == "gpt-6-luna"
    assert secret.status == TaskStatus.FAILED and secret.cost_usd == 0
    assert secret.error.startswith("task secret: no model satisfies the policies offline_only (hard), cheap (hard)")
    assert "gpt-6-luna: model lacks required tag offline (offline_only)" in secret.error
    assert not [c for c in orchestrator_events.of("llm_call_started") if c.task_id == "secret"]


async def test_soft_mode_warns_on_cost_but_blocks_on_provider(orchestrator_events, caplog):
    provs = providers("google", "openai", "local")
    soft = [
        Policy("budgetary", max_cost_per_call_usd=1e-7, enforcement_mode=EnforcementMode.SOFT),
        Policy("no_google", blocked_providers=("google",), enforcement_mode=EnforcementMode.SOFT),
    ]
    with caplog.at_level(logging.WARNING, logger="orchestrator.policy"):
        state = await orch(provs, policies=soft).run_project("Summarize", "short")
    result = state.results["t"]
    assert result.status == TaskStatus.COMPLETED and result.model_used == "gpt-6-luna"
    checks = task_pairs(orchestrator_events, "t", "policy_check")
    by_model = {s.model: f for s, f in checks}
    assert by_model["gemini-3.5-flash-lite"].attributes["policy.passed"] is False  # provider: hard constraint
    used = by_model["gpt-6-luna"].attributes
    assert used["policy.passed"] is True and used["policy.violations"] == 1 and used["policy.mode"] == "soft"
    assert "max_cost_per_call_usd" in used["policy.reasons"][0]
    assert any("budgetary (soft mode) violated by gpt-6-luna" in r.getMessage() for r in caplog.records)


async def test_monitor_mode_blocks_nothing_and_records_everything(orchestrator_events):
    provs = providers("google", "openai")
    watch = [Policy("watch", blocked_providers=("google",), enforcement_mode=EnforcementMode.MONITOR)]
    state = await orch(provs, policies=watch).run_project("Summarize", "short")
    assert state.results["t"].model_used == "gemini-3.5-flash-lite"
    (start, finish), *_ = task_pairs(orchestrator_events, "t", "policy_check")
    assert start.model == "gemini-3.5-flash-lite"
    assert finish.attributes["policy.passed"] is True and finish.attributes["policy.violations"] == 1
    assert finish.attributes["policy.mode"] == "monitor"


async def test_no_policies_means_no_policy_events(orchestrator_events):
    state = await orch(providers("local")).run_project("Summarize", "short")
    assert state.status == ProjectStatus.SUCCESS
    assert orchestrator_events.pairs("policy_check") == []


async def test_cost_policy_uses_the_worst_case_estimate_of_the_task():
    provs = providers("openai", "local")
    tasks = [Task("t", TaskType.SUMMARIZATION, "summarize " + "x" * 4000)]
    # gpt-6-luna: one call is about $0.0016 at worst, the task (1 + 2 rounds) about $0.005
    cheap = [Policy("per_task", max_cost_per_task_usd=0.002)]
    state = await orch(provs, policies=cheap, project_tasks=tasks).run_project("p", "c")
    assert state.results["t"].model_used == "smollm2-135m"
    generous = [Policy("per_task", max_cost_per_task_usd=0.05)]
    state = await orch(providers("openai", "local"), policies=generous, project_tasks=tasks).run_project("p", "c")
    assert state.results["t"].model_used == "gpt-6-luna"
