"""Prices from the genai-prices database: every shipped model costs what the database
says, tiers are crossed, time-of-day and dated prices honoured, cached input billed at
its rate, and the worst case the budget reserves is a true upper bound (a property)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.domain.budget import Budget
from orchestrator.llm import catalog, clock
from orchestrator.llm.catalog import CATALOG, LOCAL_MODEL, get_model, shipped_catalog
from orchestrator.llm.client import BudgetExceededError, UnifiedClient
from orchestrator.llm.costing import worst_case_input_tokens
from orchestrator.llm.pricing import DATABASE_PROVIDER_IDS, PriceSource, database_model
from orchestrator.llm.providers.base import ProviderResponse
from tests.scripted import ScriptedProvider

SHIPPED = sorted(shipped_catalog().models)
AT = dt.datetime(2026, 11, 25, 21, 0, tzinfo=dt.UTC)
USAGE = dict(input_tokens=12_345, output_tokens=678, cache_read_tokens=2_000)


def _database_price(name: str, at: dt.datetime = AT, **usage: int) -> float:
    info = get_model(name)
    return float(
        calc_price(
            Usage(**usage),
            model_ref=info.price.db_model or name,
            provider_id=DATABASE_PROVIDER_IDS[info.provider],
            genai_request_timestamp=at,
        ).total_price
    )


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_costs_what_genai_prices_says(name):
    info = get_model(name)
    if name == LOCAL_MODEL:  # the only model the database does not know: free by our file
        assert info.price.source == PriceSource.CATALOG and info.cost(**USAGE, at=AT) == 0.0
        return
    assert info.price.source == PriceSource.DATABASE, f"{name} is not priced from the database"
    assert info.cost(**USAGE, at=AT) == _database_price(name, **USAGE)
    # without cached input too, and the catalog's base rates are the database's
    assert info.cost(5_000, 1_000, at=AT) == _database_price(name, input_tokens=5_000, output_tokens=1_000)


def test_our_file_never_shadows_the_database():
    """Our file gives prices and windows only where the database has none, so they come
    from the maintained database (and an updated snapshot changes them)."""
    for name, entry in shipped_catalog().models.items():
        provider = DATABASE_PROVIDER_IDS.get(entry["provider"])
        db = database_model(provider, name) if provider else None
        if db is None:
            continue
        assert "price" not in entry, name
        assert "context_window" not in entry or db.context_window is None, name
        assert get_model(name).context_window == (db.context_window or entry["context_window"])
        assert "deprecated" not in entry or not db.deprecated, name


def test_a_tiered_price_crosses_its_tier():
    """gemini-2.5-pro: $1.25/$10 per 1M up to 200k input tokens, $2.50/$15 for every token
    of a longer prompt (the database's rule)."""
    pro = get_model("gemini-2.5-pro")
    assert pro.tiered and (pro.input_per_m, pro.output_per_m) == (1.25, 10.0)
    assert pro.cost(200_000, 1_000, at=AT) == pytest.approx((200_000 * 1.25 + 1_000 * 10) / 1e6)
    assert pro.cost(200_001, 1_000, at=AT) == pytest.approx((200_001 * 2.5 + 1_000 * 15) / 1e6)
    assert pro.cost(200_001, 1_000, at=AT) == _database_price(
        "gemini-2.5-pro", input_tokens=200_001, output_tokens=1_000
    )
    # the reservation of a prompt that may exceed the tier prices it at the tier's rates
    assert pro.worst_case_cost(200_000, 1_000, AT) == pytest.approx((200_000 * 1.25 + 1_000 * 10) / 1e6)
    assert pro.worst_case_cost(250_000, 1_000, AT) == pytest.approx((250_000 * 2.5 + 1_000 * 15) / 1e6)
    # two tiers: qwen3.7-flash on OpenRouter (32k and 256k)
    qwen = get_model("qwen/qwen3.7-flash")
    low, mid, high = (qwen.cost(n, 100, at=AT) for n in (32_000, 32_001, 256_001))
    assert low == pytest.approx((32_000 * 0.03 + 100 * 0.13) / 1e6)
    assert mid == pytest.approx((32_001 * 0.1 + 100 * 0.4) / 1e6)
    assert high == pytest.approx((256_001 * 0.2 + 100 * 0.8) / 1e6)


def test_time_of_day_and_dated_prices_follow_the_request_time():
    chat = get_model("deepseek-chat")  # peak 00:30-16:30 UTC
    peak = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
    assert chat.time_of_day
    assert chat.cost(1_000_000, 0, at=peak) == pytest.approx(0.27)
    assert chat.cost(1_000_000, 0, at=AT) == pytest.approx(0.135)
    argon = get_model("gemini-4-argon")  # introductory rates end 2026-11-30
    assert argon.cost(1_000_000, 0, at=AT) == pytest.approx(2.0)
    assert argon.cost(1_000_000, 0, at=dt.datetime(2026, 12, 2, tzinfo=dt.UTC)) == pytest.approx(4.0)


def test_cached_input_is_billed_at_its_rate():
    sol = get_model("gpt-6.1-sol")  # $2 input, $0.10 cached input per 1M
    plain = sol.cost(100_000, 0, at=AT)
    cached = sol.cost(100_000, 0, cache_read_tokens=60_000, at=AT)
    assert plain == pytest.approx(0.2) and cached == pytest.approx((40_000 * 2 + 60_000 * 0.1) / 1e6)
    # the worst case never assumes a discount: every input token at the highest input rate
    assert sol.worst_case_cost(100_000, 0, AT) >= plain


DATABASE_MODELS = [n for n in SHIPPED if n != LOCAL_MODEL]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(DATABASE_MODELS),
    worst_in=st.integers(0, 1_200_000),
    worst_out=st.integers(0, 200_000),
    share=st.floats(0, 1),
    cached_share=st.floats(0, 1),
    write_share=st.floats(0, 1),
    out_share=st.floats(0, 1),
    minute=st.integers(0, 60 * 24 * 60),
)
def test_the_worst_case_bounds_every_cost_it_covers(
    name, worst_in, worst_out, share, cached_share, write_share, out_share, minute
):
    """For any model, any moment (two months from now, so dated and time-of-day prices
    vary) and any usage within the reserved token counts, however it splits into plain,
    cached and cache-written input, the cost is at most the reservation."""
    info = get_model(name)
    at = AT + dt.timedelta(minutes=minute)
    used_in = int(worst_in * share)
    cache_read = int(used_in * cached_share)
    cache_write = int((used_in - cache_read) * write_share)
    used_out = int(worst_out * out_share)
    cost = info.cost(used_in, used_out, cache_read_tokens=cache_read, cache_write_tokens=cache_write, at=at)
    assert Decimal(cost) <= Decimal(info.worst_case_cost(worst_in, worst_out, at))


async def test_the_reservation_uses_the_tier_the_prompt_can_reach():
    """A budget that covers a 210k-byte prompt at gemini-2.5-pro's base rate but not at
    its long-prompt rate refuses the call: the reservation is priced at the tier."""
    provider = ScriptedProvider(name="google", tokens=(1_000, 10))
    prompt = "x" * 210_000
    tokens_in = worst_case_input_tokens("", prompt)
    base = (tokens_in * 1.25 + 100 * 10) / 1e6
    tier = (tokens_in * 2.5 + 100 * 15) / 1e6
    budget = Budget(max_usd=(base + tier) / 2)
    client = UnifiedClient({"google": provider}, budget=budget)
    with pytest.raises(BudgetExceededError, match="gemini-2.5-pro"):
        await client.call("gemini-2.5-pro", prompt, max_tokens=100)
    assert provider.requests == [] and budget.reserved_usd == 0.0
    enough = UnifiedClient({"google": provider}, budget=Budget(max_usd=tier * 1.001))
    answer = await enough.call("gemini-2.5-pro", prompt, max_tokens=100)
    assert answer.cost_usd == pytest.approx((1_000 * 1.25 + 10 * 10) / 1e6)  # the reported usage is short


async def test_the_client_prices_cached_tokens_the_provider_reported(recorded):
    response = ProviderResponse(
        "ok", 10_000, 100, "stop", "claude-haiku-5-5", cache_read_tokens=8_000, cache_write_tokens=1_000
    )
    provider = ScriptedProvider(name="anthropic", answer=response)
    client = UnifiedClient({"anthropic": provider}, budget=Budget(max_usd=1.0))
    answer = await client.call("claude-haiku-5-5", "hi", max_tokens=200)
    expected = float(
        calc_price(
            Usage(input_tokens=10_000, output_tokens=100, cache_read_tokens=8_000, cache_write_tokens=1_000),
            model_ref="claude-haiku-5-5",
            provider_id="anthropic",
            genai_request_timestamp=clock.now(),
        ).total_price
    )
    assert answer.cost_usd == pytest.approx(expected) and expected < get_model("claude-haiku-5-5").cost(10_000, 100)


# -- models without a known price ------------------------------------------------------------


@pytest.fixture
def unpriced(tmp_path):
    """A user catalog adding a model the database does not know, without a price."""
    path = tmp_path / "catalog.toml"
    path.write_text('[models."gpt-7-preview"]\nprovider = "openai"\ncontext_window = 64000\n')
    with catalog.preserved():
        catalog.use_catalog_files([path])
        yield get_model("gpt-7-preview")


async def test_a_model_without_a_price_is_refused_under_a_usd_budget(unpriced, recorded):
    assert not unpriced.price_known and unpriced.price.source == PriceSource.UNKNOWN
    provider = ScriptedProvider(name="openai")
    client = UnifiedClient({"openai": provider}, budget=Budget(max_usd=5.0))
    ok, why = client.availability("gpt-7-preview")
    assert not ok and "cannot be budgeted" in why and "\n" not in why
    from orchestrator.llm.client import LLMCallError

    with pytest.raises(LLMCallError, match="cannot be budgeted"):
        await client.call("gpt-7-preview", "hi")
    assert provider.requests == []
    assert [p.model for p in recorded if type(p).__name__ == "ModelUnhealthy"] == ["gpt-7-preview"]
    # no USD budget (a library caller): usable, its cost is not counted
    free_client = UnifiedClient({"openai": provider})
    assert free_client.is_usable("gpt-7-preview")


def test_cost_policies_treat_an_unknown_price_as_over_any_limit(unpriced):
    from orchestrator.governance.policy import ModelProfile, Policy, PolicyEngine

    result = PolicyEngine().evaluate(
        "gpt-7-preview", ModelProfile.from_catalog("gpt-7-preview"), [Policy("cap", max_cost_per_call_usd=100.0)]
    )
    assert not result.passed and "unknown (no price)" in result.reason


def test_the_catalog_lists_current_models_of_every_provider_first():
    """Every routing list (and the planner's) names a model of every provider we support,
    none deprecated, all priced from the database, the local model last."""
    providers = {"openai", "anthropic", "google", "deepseek", "kimi", "openrouter"}
    lists = {**{t.value: names for t, names in catalog.ROUTING.items()}, "planner": tuple(catalog.PLANNER_CANDIDATES)}
    for key, names in lists.items():
        assert names[-1] == LOCAL_MODEL and LOCAL_MODEL not in names[:-1], key
        assert {CATALOG[n].provider for n in names[:-1]} == providers, key
        for name in names[:-1]:
            assert CATALOG[name].retirement() is None, (key, name)
            assert CATALOG[name].retirement(catalog.today() + dt.timedelta(days=60)) is None, (key, name)
            assert CATALOG[name].price.source == PriceSource.DATABASE, (key, name)
