"""UnifiedClient rules that hold for every provider: cache, budget, timeouts, attempts."""

from __future__ import annotations

import asyncio
import json

import pytest

from orchestrator import events
from orchestrator.domain.budget import Budget
from orchestrator.llm.cache import ResponseCache, cache_key
from orchestrator.llm.catalog import get_model
from orchestrator.llm.client import BudgetExceededError, LLMCallError, UnifiedClient, worst_case_input_tokens
from orchestrator.llm.providers.base import ProviderError, ProviderRequest, ProviderResponse
from tests.scripted import ScriptedProvider


def test_cache_key_changes_with_everything_that_changes_the_answer():
    base = dict(model="m", system="s", prompt="p", max_tokens=10, temperature=0.1, json_schema=None)
    k = cache_key(**base)
    for field, value in [
        ("model", "m2"),
        ("system", "s2"),
        ("prompt", "p2"),
        ("max_tokens", 11),
        ("temperature", 0.2),
        ("json_schema", {"type": "object"}),
    ]:
        assert cache_key(**{**base, field: value}) != k, field
    assert cache_key(**base, variant=1) != k
    assert cache_key(**base) == k


async def test_cached_answer_costs_nothing_and_sends_cache_hit(tmp_path, recorded):
    provider = ScriptedProvider(name="openai", answer="hello", tokens=(1000, 500))
    client = UnifiedClient({"openai": provider}, cache=ResponseCache(tmp_path))
    first = await client.call("gpt-4o", "hi", call_type="generate")
    second = await client.call("gpt-4o", "hi", call_type="generate")
    assert len(provider.requests) == 1
    assert first.cost_usd == pytest.approx(get_model("gpt-4o").cost(1000, 500)) and not first.cached
    assert second.cached and second.cost_usd == 0.0 and second.text == "hello"
    hits = [p for p in recorded if isinstance(p, events.CacheHit)]
    assert len(hits) == 1
    finishes = [p for p in recorded if isinstance(p, events.LlmCallFinished)]
    assert [f.attributes["llm.cached"] for f in finishes] == [False, True]
    assert hits[0].parent_id == finishes[1].correlation_id  # the hit belongs to the cached call
    # a call that must differ is not answered from the cache
    third = await client.call("gpt-4o", "hi", call_type="evaluate", variant=1)
    assert not third.cached and len(provider.requests) == 2


async def test_budget_refuses_a_call_it_cannot_cover_and_sends_nothing():
    provider = ScriptedProvider(name="openai")
    budget = Budget(max_usd=0.0001)
    client = UnifiedClient({"openai": provider}, budget=budget)
    with pytest.raises(BudgetExceededError):
        await client.call("gpt-4o", "x" * 1000, max_tokens=1000)
    assert provider.requests == [] and budget.spent_usd == 0.0 and budget.reserved_usd == 0.0


async def test_reservation_covers_the_real_cost():
    provider = ScriptedProvider(name="openai", tokens=(5, 7))
    info = get_model("gpt-4o")
    prompt = "count me"
    worst = info.cost(worst_case_input_tokens("", prompt), 50)
    budget = Budget(max_usd=worst)  # exactly enough for one worst case
    client = UnifiedClient({"openai": provider}, budget=budget)
    resp = await client.call("gpt-4o", prompt, max_tokens=50)
    assert resp.cost_usd == pytest.approx(info.cost(5, 7))
    assert budget.spent_usd == pytest.approx(resp.cost_usd)
    assert budget.spent_usd <= budget.max_usd
    assert budget.reserved_usd == 0.0
    assert budget.phase_spend["generation"] == pytest.approx(resp.cost_usd)


async def test_the_reservation_covers_the_json_schema_sent_with_the_prompt(recorded):
    """The schema goes to the model with the prompt (a response format, a tool, or text in
    the system prompt) and is billed as input: a provider counting one token per byte of
    everything it was sent (the most a byte-level tokenizer can) never costs more than
    the reservation, for a schema far larger than the fixed allowance."""
    schema = {
        "type": "object",
        "properties": {f"field_{i}": {"type": "string", "description": "d" * 60} for i in range(300)},
    }
    schema_bytes = len(json.dumps(schema, separators=(",", ":")).encode())
    assert schema_bytes > 20_000  # far above the 512-token allowance for how it is sent
    assert worst_case_input_tokens("sys", "prompt", schema) >= (worst_case_input_tokens("sys", "prompt") + schema_bytes)

    def every_byte_a_token(request: ProviderRequest) -> ProviderResponse:
        sent = request.system + request.prompt + json.dumps(request.json_schema, separators=(",", ":"))
        return ProviderResponse("{}", len(sent.encode()), request.max_tokens, "stop", request.model)

    provider = ScriptedProvider(name="openai", answer=every_byte_a_token)
    budget = Budget(max_usd=5.0)
    client = UnifiedClient({"openai": provider}, budget=budget)
    answer = await client.call("gpt-4o", "fill the fields", system="be exact", json_schema=schema, max_tokens=64)
    assert answer.input_tokens > schema_bytes
    overruns = [p for p in recorded if isinstance(p, events.BudgetWarning) and p.reason.startswith("overrun")]
    assert overruns == [] and budget.overrun is None
    assert budget.spent_usd == pytest.approx(answer.cost_usd) and budget.reserved_usd == 0.0


async def test_each_attempt_is_its_own_pair_and_transient_errors_retry(recorded):
    answers = iter([ProviderError("503", transient=True, status_code=503, error_type="ServiceUnavailable"), "ok"])
    provider = ScriptedProvider(name="openai", answer=lambda r: _raise_or(next(answers)))
    sleeps: list[float] = []

    async def fake_sleep(s):
        sleeps.append(s)

    client = UnifiedClient({"openai": provider}, sleep=fake_sleep, backoff_base=1.0)
    resp = await client.call("gpt-4o", "hi", retries=2)
    assert resp.text == "ok" and resp.attempts == 2
    starts = [p for p in recorded if isinstance(p, events.LlmCallStarted)]
    finishes = [p for p in recorded if isinstance(p, events.LlmCallFinished)]
    assert [s.attempt for s in starts] == [1, 2]
    assert len({s.correlation_id for s in starts}) == 2
    assert [f.status for f in finishes] == ["error", "ok"]
    assert finishes[0].attributes["error.type"] == "ServiceUnavailable"
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 1.0


async def test_permanent_error_is_not_retried_and_marks_unhealthy(recorded):
    provider = ScriptedProvider(
        name="openai",
        answer=ProviderError(
            "401 unauthorized", status_code=401, fatal_for_model=True, error_type="AuthenticationError"
        ),
    )
    client = UnifiedClient({"openai": provider})
    with pytest.raises(LLMCallError) as info:
        await client.call("gpt-4o", "hi", retries=3)
    assert info.value.attempts == 1 and len(provider.requests) == 1
    assert not client.is_usable("gpt-4o")
    assert any(isinstance(p, events.ModelUnhealthy) and p.model == "gpt-4o" for p in recorded)


async def test_timeout_is_enforced_and_reported():
    class Hanging(ScriptedProvider):
        async def complete(self, request: ProviderRequest) -> ProviderResponse:
            await asyncio.sleep(request.timeout + 30)
            raise AssertionError("unreachable")

    client = UnifiedClient({"openai": Hanging(name="openai")})
    client_timeout = 0.2
    # the client's safety net is timeout + 5 s; make the adapter's own timeout the short one
    with pytest.raises(LLMCallError) as info:
        await asyncio.wait_for(client.call("gpt-4o", "hi", timeout=client_timeout, retries=0), 10)
    assert info.value.error_type == "TimeoutError"


def _raise_or(value):
    if isinstance(value, Exception):
        raise value
    return value
