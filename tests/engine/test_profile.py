"""Run profiles and planning for a small model: one task for a request naming one thing,
a small decomposition, readable task ids, no retry of a timed-out local plan, and the
profile's choice (auto, overridden)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator import events
from orchestrator.domain.budget import Budget
from orchestrator.engine import Orchestrator, sanitize_tasks
from orchestrator.engine.planning import meaningless_id, single_target, slug_from
from orchestrator.engine.profile import FULL, LOCAL, resolve_profile
from orchestrator.llm.client import UnifiedClient
from orchestrator.llm.providers.base import ProviderError
from tests.helpers import no_sleep
from tests.scripted import ScriptedProvider, decomposition

THREE = decomposition(
    {"id": "parser", "type": "code_generation", "prompt": "Write the parser", "depends_on": []},
    {"id": "cli", "type": "code_generation", "prompt": "Write the command line", "depends_on": ["parser"]},
    {"id": "docs", "type": "summarization", "prompt": "Document it", "depends_on": []},
)


def run(provider: ScriptedProvider, description: str, criteria: str = "it works", **kw):
    orch = Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({"local": provider}, sleep=no_sleep), **kw)
    return asyncio.run(orch.run_project(description, criteria))


@pytest.mark.parametrize(
    "request_text, target",
    [
        ("Write a Python function add(a, b) that returns a + b", ("function", "add")),
        ("Write a function named slugify", ("function", "slugify")),
        ("Implement is_even(n)", ("function", "is_even")),
        ("Write a class Stack with push() and pop() methods", ("class", "Stack")),
        ("Create the file rate_limiter.py with a token bucket", ("file", "rate_limiter.py")),
        ("Write a Python function that adds two numbers", ("function", "")),
        ("Write functions add and mul", None),
        ("Write add(a, b) and mul(a, b)", None),
        ("Write a function add and a class Calculator", None),
        ("Build a rate limiter", None),
        ("Add 1+1", None),
    ],
)
def test_what_names_one_target(request_text, target):
    found = single_target(request_text)
    assert (None if found is None else (found.kind, found.name)) == target


@pytest.mark.parametrize(
    "task_id", ["01_23456789_task_type", "task_type", "string", "id", "12345", "code_generation", "example_1", ""]
)
def test_ids_that_mean_nothing(task_id):
    assert meaningless_id(task_id)


@pytest.mark.parametrize("task_id", ["t1", "a", "parser", "task_1", "rate_limiter", "step2"])
def test_ids_that_mean_something(task_id):
    assert not meaningless_id(task_id)


def test_slugs_are_short_and_readable():
    assert slug_from("Write a Python function add(a, b) that returns a + b") == "add"
    assert slug_from("Write pytest tests for the RateLimiter class") == "pytest_tests_ratelimiter"
    assert slug_from("Create the file rate_limiter.py") == "rate_limiter"
    assert len(slug_from("word " * 50)) <= 30


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120), st.text(max_size=200))
def test_sanitized_ids_are_always_short_clean_and_unique(raw_id, prompt):
    tasks, _ = sanitize_tasks(
        {
            "tasks": [
                {"id": raw_id, "type": "code_generation", "prompt": f"p {prompt}"},
                {"id": raw_id, "type": "code_generation", "prompt": f"p {prompt}"},
            ]
        }
    )
    ids = [t.id for t in tasks]
    assert len(set(ids)) == len(ids) == 2
    for task_id in ids:
        assert task_id and len(task_id) <= 44 and all(c.isalnum() or c in "_-" for c in task_id)
        assert task_id.isascii()


def test_an_id_copied_from_the_schema_becomes_a_slug_of_the_prompt():
    tasks, notes = sanitize_tasks(
        {
            "tasks": [
                {
                    "id": "01_23456789_task_type",
                    "type": "code_generation",
                    "prompt": "Write a Python function mul(a, b)",
                },
                {"id": "string", "type": "summarization", "prompt": "Summarize the design"},
            ]
        }
    )
    assert [t.id for t in tasks] == ["mul", "summarize_design"]
    assert any("means nothing" in n for n in notes)


def test_local_profile_runs_a_one_function_request_as_one_task_without_a_plan(recorded):
    provider = ScriptedProvider(plan=THREE)
    state = run(provider, "Write a Python function add(a, b) that returns a + b")
    assert provider.calls_of("decompose") == [] and list(state.tasks) == ["add"]
    assert any("one function add" in n for n in state.notes)
    (planned,) = [p for p in recorded if isinstance(p, events.TasksPlanned)]
    assert planned.task_ids == ("add",)


def test_local_profile_plans_a_bigger_request_with_the_small_schema():
    provider = ScriptedProvider(plan=THREE)
    state = run(provider, "Build a command line tool that parses log files and prints statistics")
    (plan,) = provider.calls_of("decompose")
    item = plan.json_schema["properties"]["tasks"]["items"]
    assert "depends_on" not in item["properties"] and plan.json_schema["properties"]["tasks"]["maxItems"] == 3
    assert item["properties"]["prompt"]["maxLength"] == 200 and plan.max_tokens == LOCAL.decompose_max_tokens
    assert plan.timeout == LOCAL.decompose_timeout
    assert len(state.tasks) == 3


def test_profile_full_overrides_the_local_choice():
    provider = ScriptedProvider(plan=THREE)
    state = run(provider, "Write a Python function add(a, b) that returns a + b", profile="full")
    (plan,) = provider.calls_of("decompose")
    assert "depends_on" in plan.json_schema["properties"]["tasks"]["items"]["properties"]
    assert state.profile == "full" and list(state.tasks) == ["parser", "cli", "docs"]


def test_profile_local_can_be_asked_for_with_a_remote_planner():
    provider = ScriptedProvider(name="openai", plan=THREE)
    orch = Orchestrator(budget=Budget(5.0, 600), client=UnifiedClient({"openai": provider}), profile="local")
    state = asyncio.run(orch.run_project("Write a Python function add(a, b)", "add(1, 1) == 2"))
    assert state.profile == "local" and provider.calls_of("decompose") == []


def test_auto_resolves_by_the_planner_and_bad_names_are_refused():
    assert resolve_profile("auto", planner_is_local=True) is LOCAL
    assert resolve_profile("auto", planner_is_local=False) is FULL
    with pytest.raises(ValueError, match="unknown profile"):
        Orchestrator(client=UnifiedClient({"local": ScriptedProvider()}), profile="tiny")


def test_a_timed_out_local_plan_is_not_asked_again():
    timeout = ProviderError("local model timed out after 90.0s", transient=False, error_type="TimeoutError")
    provider = ScriptedProvider(plan=timeout)
    state = run(provider, "Build a command line tool that parses log files and prints statistics")
    assert len(provider.calls_of("decompose")) == 1  # neither the client nor the planner retried
    assert len(state.tasks) == 1 and any("timed out" in n for n in state.notes)


def test_full_profile_asks_the_planner_again_after_a_failure():
    timeout = ProviderError("timed out", transient=False, error_type="TimeoutError")
    provider = ScriptedProvider(plan=timeout)
    run(provider, "Build a command line tool that parses log files and prints statistics", profile="full")
    assert len(provider.calls_of("decompose")) == 2
