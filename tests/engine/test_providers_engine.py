"""Whole projects on remote providers (loopback servers, real SDKs): cross-provider
critique, fallback to the next candidate, token counts and cost as the servers reported."""

from __future__ import annotations

import pytest

from orchestrator import events
from orchestrator.domain.budget import Budget
from orchestrator.domain.results import TaskStatus
from orchestrator.domain.tasks import Task, TaskType
from orchestrator.engine import Orchestrator
from orchestrator.llm.catalog import get_model
from orchestrator.llm.client import UnifiedClient
from orchestrator.llm.providers.registry import default_providers
from tests.fake_providers import FakeServer, SleepRecorder, clean_provider_env, error, point_at

# honest counts: within every call's worst case (prompt bytes + overhead in, max_tokens out), so no overrun
OPENAI_TOKENS, ANTHROPIC_TOKENS = (123, 45), (98, 54)


@pytest.fixture
def servers(monkeypatch):
    clean_provider_env(monkeypatch)
    with FakeServer("openai", tokens=OPENAI_TOKENS) as oai, FakeServer("anthropic", tokens=ANTHROPIC_TOKENS) as ant:
        point_at(monkeypatch, "openai", oai, "sk-proj-engine-test-openai-0000000")
        point_at(monkeypatch, "anthropic", ant, "sk-ant-engine-test-anthropic-000000")
        yield oai, ant


def orchestrator(**kw) -> Orchestrator:
    providers = default_providers(dotenv=False)
    del providers["local"]  # reviewers come from the two fakes only, never the embedded model
    client = UnifiedClient(providers, sleep=SleepRecorder())
    return Orchestrator(budget=Budget(5.0, 300), client=client, concurrency=2, **kw)


def calls(recorded) -> list[events.LlmCallFinished]:
    return [e for e in recorded if isinstance(e, events.LlmCallFinished)]


async def test_critique_goes_to_the_other_provider_and_tokens_are_the_servers(servers, orchestrator_events):
    oai, ant = servers
    state = await orchestrator().run_project("Write a Python function add(a, b)", "add(1, 2) == 3")
    result = state.results["t1"]
    assert result.status == TaskStatus.COMPLETED
    assert result.model_used == "claude-sonnet-5-5" and result.reviewer_model == "gpt-6.1-sol"
    finished = calls(orchestrator_events)
    by_type: dict[str, set[str]] = {}
    for c in finished:
        by_type.setdefault(c.call_type, set()).add(c.provider)
    assert by_type["decompose"] == {"anthropic"} and by_type["generate"] == {"anthropic"}
    assert by_type["critique"] == {"openai"} and by_type["evaluate"] == {"openai"}
    # the wire agrees with the events: critiques reached the OpenAI server, generations Anthropic's
    assert any("tools" in r.body for r in ant.requests) and oai.requests
    assert len(oai.requests) + len(ant.requests) == len(finished)
    # every count is what the server reported; task and run totals add up; cost from the catalog
    expected = {"openai": OPENAI_TOKENS, "anthropic": ANTHROPIC_TOKENS}
    for c in finished:
        assert (c.attributes["llm.tokens_in"], c.attributes["llm.tokens_out"]) == expected[c.provider]
        assert c.attributes["llm.cost_usd"] == pytest.approx(get_model(c.model).cost(*expected[c.provider]))
    mine = [c for c in finished if c.task_id == "t1"]
    assert result.input_tokens == sum(c.attributes["llm.tokens_in"] for c in mine)
    assert result.output_tokens == sum(c.attributes["llm.tokens_out"] for c in mine)
    assert result.cost_usd == pytest.approx(sum(c.attributes["llm.cost_usd"] for c in mine))
    assert state.budget.spent_usd == pytest.approx(sum(c.attributes["llm.cost_usd"] for c in finished))


async def test_auth_failure_falls_back_to_the_next_candidate(servers, orchestrator_events):
    oai, ant = servers
    ant.fallback = lambda r: error("anthropic", 401, "invalid x-api-key", error_type="authentication_error")
    task = Task("t1", TaskType.CODE_GENERATION, "write add(a, b)")
    state = await orchestrator(project_tasks=[task]).run_project("add", "works")
    result = state.results["t1"]
    assert result.status == TaskStatus.COMPLETED and result.model_used == "gpt-6.1-sol"
    assert result.fallback_count >= 1
    assert [e.model for e in orchestrator_events.of("model_unhealthy")] == ["claude-sonnet-5-5"]
    assert len(ant.requests) == 1  # never called again, neither as generator nor as reviewer
    failed = [c for c in calls(orchestrator_events) if c.status == "error"]
    assert [(c.model, c.attributes["error.type"]) for c in failed] == [("claude-sonnet-5-5", "AuthenticationError")]


async def test_persistent_5xx_is_retried_then_the_model_is_dropped(servers, orchestrator_events):
    oai, ant = servers
    ant.fallback = lambda r: error("anthropic", 529, "Overloaded", error_type="overloaded_error")
    task = Task("t1", TaskType.CODE_GENERATION, "write add(a, b)")
    orch = orchestrator(project_tasks=[task])
    state = await orch.run_project("add", "works")
    assert state.results["t1"].model_used == "gpt-6.1-sol"
    assert state.results["t1"].status == TaskStatus.COMPLETED
    attempts = [c for c in calls(orchestrator_events) if c.model == "claude-sonnet-5-5"]
    # one call with its 2 retries, remediation's auto_retry (another call, 3 more attempts), then out
    assert len(attempts) == 6 and {c.attributes["error.type"] for c in attempts} == {"Overloaded"}
    assert [s.strategy for s, _ in orchestrator_events.pairs("remediation")][:2] == ["auto_retry", "fallback_model"]
    assert len(orchestrator_events.of("llm_retry")) >= 4 and len(orch.client._sleep.delays) >= 4
    assert orchestrator_events.of("model_unhealthy")[0].reason.startswith("6 consecutive failures")


async def test_a_dead_planner_hands_the_plan_to_the_next_candidate(servers, orchestrator_events):
    oai, ant = servers
    ant.fallback = lambda r: error("anthropic", 401, "invalid x-api-key", error_type="authentication_error")
    state = await orchestrator().run_project("Write a Python function add(a, b)", "add(1, 2) == 3")
    decompositions = [c for c in calls(orchestrator_events) if c.call_type == "decompose"]
    assert [(c.model, c.status) for c in decompositions] == [("claude-sonnet-5-5", "error"), ("gpt-6.1-sol", "ok")]
    assert orchestrator_events.of("decomposition_fallback") == []
    assert list(state.results) == ["t1"] and state.results["t1"].model_used == "gpt-6.1-sol"
