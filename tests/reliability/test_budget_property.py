"""The hard budget as a property: random calls through the real UnifiedClient and Budget
(random models with tiered and time-of-day prices, prompts, output caps, JSON schemas,
usage reports, cache splits, errors, concurrency and cancels).

* an honest provider (input tokens within the UTF-8 bound of what was sent, output
  within ``max_tokens``) never takes spend over the cap: ``spent_usd <= max_usd``
  exactly, after every call;
* a provider that reports more than the bound is booked as reported, sends a
  ``budget_warning`` whose reason starts with ``overrun``, and no call starts after it;
* whatever happens, every reservation is released and spend is the sum of the costs
  the calls reported.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import events
from orchestrator.domain.budget import Budget
from orchestrator.llm.client import UnifiedClient
from orchestrator.llm.costing import worst_case_input_tokens
from orchestrator.llm.providers.base import ProviderError, ProviderRequest, ProviderResponse
from orchestrator.llm.providers.openai_compat import schema_instruction
from tests.helpers import no_sleep

MODELS = {  # model -> provider name; tiered (gemini-2.5-pro, gpt-6.1-sol), time-of-day (deepseek)
    "gpt-4o": "openai",
    "gpt-6.1-sol": "openai",
    "claude-sonnet-5-5": "anthropic",
    "claude-haiku-5-5": "anthropic",
    "gemini-2.5-pro": "google",
    "deepseek-v4-pro": "deepseek",
}
SCHEMA = {"type": "object", "properties": {"score": {"type": "number"}}, "required": ["score"]}
TEMPLATE_TOKENS = 64  # what a chat template adds around the messages
TOOL_PROMPT_TOKENS = 346  # Anthropic's documented tool-use system prompt (the largest schema overhead)


def honest_input_bound(request: ProviderRequest) -> int:
    """The most input tokens an honest provider can count for ``request``, worked out
    here on its own (not with the client's function): a token is at least one UTF-8
    byte of what is sent - the system prompt, the prompt, and for a JSON answer the
    schema in its largest form (the instruction the OpenAI-compatible ladder writes
    into the system prompt) plus a tool-use system prompt - plus the chat template."""
    sent = request.system + request.prompt
    extra = 0
    if request.json_schema is not None:
        sent += schema_instruction(request.json_schema)
        extra = TOOL_PROMPT_TOKENS
    return len(sent.encode("utf-8")) + TEMPLATE_TOKENS + extra


@dataclass
class RandomProvider:
    """Answers after a random pause with a random usage report: honest (within the
    request's bound), over-reporting (above it, when ``dishonest``), or an error."""

    name: str
    rng: random.Random
    dishonest: bool
    overreports: int = 0
    requests: list[ProviderRequest] = field(default_factory=list)

    def availability(self, model: str) -> tuple[bool, str]:
        return True, ""

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.requests.append(request)
        rng = self.rng
        await asyncio.sleep(rng.choice((0, 0, 0.0005, 0.002)))
        roll = rng.random()
        if roll < 0.1:
            raise ProviderError("503", transient=True, status_code=503, error_type="ServiceUnavailable")
        if roll < 0.15:
            raise ProviderError("400", transient=False, status_code=400, error_type="BadRequest")
        bound_in = honest_input_bound(request)
        tokens_in, tokens_out = rng.randint(0, bound_in), rng.randint(0, request.max_tokens)
        if self.dishonest and roll > 0.85:
            self.overreports += 1
            if rng.random() < 0.5:
                tokens_in = rng.randint(bound_in + 1, 4 * bound_in)
            else:
                tokens_out = rng.randint(request.max_tokens + 1, 4 * request.max_tokens + 1)
        cache_read = rng.randint(0, tokens_in) if rng.random() < 0.3 else 0
        cache_write = rng.randint(0, tokens_in - cache_read) if rng.random() < 0.3 else 0
        return ProviderResponse(
            "ok", tokens_in, tokens_out, cache_read_tokens=cache_read, cache_write_tokens=cache_write
        )


call_spec = st.tuples(
    st.sampled_from(sorted(MODELS)),
    st.text(min_size=0, max_size=400),  # prompt (any unicode: bytes != chars)
    st.integers(min_value=1, max_value=4000),  # max_tokens
    st.booleans(),  # JSON schema
    st.one_of(st.none(), st.floats(min_value=0, max_value=0.01)),  # cancel after this many seconds
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    calls=st.lists(call_spec, min_size=1, max_size=24),
    max_usd=st.floats(min_value=0.0, max_value=0.5, allow_nan=False, allow_infinity=False),
    concurrency=st.integers(min_value=1, max_value=12),
    dishonest=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_spend_never_exceeds_the_cap_for_an_honest_provider(calls, max_usd, concurrency, dishonest, seed):
    rng = random.Random(seed)
    providers = {name: RandomProvider(name, rng, dishonest) for name in set(MODELS.values())}
    budget = Budget(max_usd=max_usd, max_time_seconds=3600)
    client = UnifiedClient(
        providers, budget=budget, concurrency=concurrency, sleep=no_sleep, unhealthy_after=3, breaker_cooldown=0.001
    )
    seen: list[events.Event] = []
    violations: list[str] = []

    def after_each_call(payload: events.Event) -> None:
        seen.append(payload)
        if budget.overrun is None and not budget.spent_usd <= budget.max_usd:
            violations.append(f"spent {budget.spent_usd!r} > max {budget.max_usd!r} with no overrun")

    for sig in events.ALL_SIGNALS:
        sig.connect(after_each_call)
    try:
        asyncio.run(_drive(client, calls))
    finally:
        for sig in events.ALL_SIGNALS:
            sig.disconnect(after_each_call)

    assert violations == []
    assert budget.reserved_usd == 0.0  # every reservation released: answered, failed or cancelled
    finished = [p for p in seen if isinstance(p, events.LlmCallFinished)]
    reported = math.fsum(p.attributes.get("llm.cost_usd", 0.0) for p in finished)
    assert math.isclose(budget.spent_usd, reported, rel_tol=1e-9, abs_tol=1e-15)  # booked as reported
    overruns = [i for i, p in enumerate(seen) if isinstance(p, events.BudgetWarning) and p.reason.startswith("overrun")]
    if budget.overrun is None:
        assert budget.spent_usd <= budget.max_usd  # exactly: no epsilon
        assert overruns == []
    else:
        assert dishonest and overruns, "an overrun without its warning"
        # no call was admitted after the overrun
        assert not [p for p in seen[overruns[0] :] if isinstance(p, events.LlmCallStarted)]
        excess = math.fsum(max(0.0, p.attributes.get("llm.cost_usd", 0.0)) for p in finished)
        assert budget.spent_usd <= budget.max_usd + excess


async def _drive(client: UnifiedClient, calls: list[tuple]) -> None:
    async def one(model: str, prompt: str, max_tokens: int, json: bool) -> None:
        try:
            await client.call(model, prompt, max_tokens=max_tokens, json_schema=SCHEMA if json else None, retries=1)
        except Exception:  # refused for money, or every attempt failed: both are outcomes here
            pass

    tasks = []
    for model, prompt, max_tokens, json, cancel_after in calls:
        task = asyncio.ensure_future(one(model, prompt, max_tokens, json))
        tasks.append(task)
        if cancel_after is not None:
            asyncio.get_running_loop().call_later(cancel_after, task.cancel)
    await asyncio.gather(*tasks, return_exceptions=True)


def test_an_over_reporting_provider_is_booked_warned_and_stops_new_calls(recorded):
    """The over-reporting case on its own: one call reports 10x its bound."""

    class Liar(RandomProvider):
        async def complete(self, request: ProviderRequest) -> ProviderResponse:
            self.requests.append(request)
            bound = worst_case_input_tokens(request.system, request.prompt, request.json_schema)
            return ProviderResponse("ok", 10 * bound, request.max_tokens)

    provider = Liar("openai", random.Random(0), True)
    budget = Budget(max_usd=1.0)
    client = UnifiedClient({"openai": provider}, budget=budget)

    async def run() -> None:
        first = await client.call("gpt-4o", "hello", max_tokens=10)
        assert first.cost_usd > 0
        try:
            await client.call("gpt-4o", "again", max_tokens=10)
        except Exception as exc:
            assert type(exc).__name__ == "BudgetExceededError" and "overrun" in str(exc)
        else:
            raise AssertionError("a call was admitted after an overrun")

    asyncio.run(run())
    assert len(provider.requests) == 1
    finished = [p for p in recorded if isinstance(p, events.LlmCallFinished)]
    assert budget.spent_usd == finished[0].attributes["llm.cost_usd"]  # booked truthfully
    (warning,) = [p for p in recorded if isinstance(p, events.BudgetWarning) and p.reason.startswith("overrun")]
    assert "gpt-4o" in warning.reason and warning.spent_usd == budget.spent_usd
    assert budget.to_dict()["overrun"]
