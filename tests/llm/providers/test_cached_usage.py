"""Cached-input usage as each provider reports it on the wire, read by the adapters
through the real SDKs (loopback servers), and priced by the client at its cached rate
with ``genai_prices.calc_price`` - the adapters themselves know no price."""

from __future__ import annotations

import pytest
from genai_prices import Usage, calc_price

from orchestrator.domain.budget import Budget
from orchestrator.llm import clock
from orchestrator.llm.client import UnifiedClient
from orchestrator.llm.providers.anthropic import AnthropicProvider
from orchestrator.llm.providers.google import GoogleProvider
from orchestrator.llm.providers.openai_compat import OpenAICompatProvider
from tests.fake_providers import FakeServer, Reply, anthropic_answer, gemini_answer, openai_answer


def _price(model: str, provider: str, **usage: int) -> float:
    """What the database says, at the moment the client prices calls (the catalog clock)."""
    return float(
        calc_price(
            Usage(**usage), model_ref=model, provider_id=provider, genai_request_timestamp=clock.now()
        ).total_price
    )


async def test_openai_cached_and_cache_written_prompt_tokens():
    with FakeServer("openai") as srv:
        srv.push(Reply(body=openai_answer("ok", tokens=(50_000, 200), cached=30_000, cache_write=10_000)))
        provider = OpenAICompatProvider("openai", api_key="sk-proj-cached-usage-000000", base_url=srv.url)
        client = UnifiedClient({"openai": provider}, budget=Budget(5.0))
        answer = await client.call("gpt-6.1-sol", "hi")
    raw = await _raw_of(
        provider, srv, openai_answer("ok", tokens=(50_000, 200), cached=30_000, cache_write=10_000), "gpt-6.1-sol"
    )
    assert (raw.input_tokens, raw.cache_read_tokens, raw.cache_write_tokens) == (50_000, 30_000, 10_000)
    expected = _price(
        "gpt-6.1-sol",
        "openai",
        input_tokens=50_000,
        output_tokens=200,
        cache_read_tokens=30_000,
        cache_write_tokens=10_000,
    )
    assert answer.cost_usd == pytest.approx(expected)
    assert expected != _price("gpt-6.1-sol", "openai", input_tokens=50_000, output_tokens=200)


async def test_deepseek_prompt_cache_hits():
    body = openai_answer("ok", tokens=(20_000, 100))
    body["usage"]["prompt_cache_hit_tokens"] = 15_000  # DeepSeek's own field
    body["usage"]["prompt_cache_miss_tokens"] = 5_000
    with FakeServer("openai") as srv:
        provider = OpenAICompatProvider("deepseek", api_key="sk-deepseek-cached-usage-0000", base_url=srv.url)
        raw = await _raw_of(provider, srv, body, "deepseek-v4-flash")
    assert (raw.input_tokens, raw.cache_read_tokens, raw.cache_write_tokens) == (20_000, 15_000, 0)


async def test_anthropic_cache_reads_and_writes_are_part_of_the_prompt():
    body = anthropic_answer("ok", tokens=(1_000, 80), cache_read=40_000, cache_write=2_000)
    with FakeServer("anthropic") as srv:
        provider = AnthropicProvider(api_key="sk-ant-api03-cached-usage-00000", base_url=srv.url)
        raw = await _raw_of(provider, srv, body, "claude-sonnet-5-5")
        srv.push(Reply(body=body))
        answer = await UnifiedClient({"anthropic": provider}, budget=Budget(5.0)).call("claude-sonnet-5-5", "hi")
    assert (raw.input_tokens, raw.cache_read_tokens, raw.cache_write_tokens) == (43_000, 40_000, 2_000)
    assert answer.cost_usd == pytest.approx(
        _price(
            "claude-sonnet-5-5",
            "anthropic",
            input_tokens=43_000,
            output_tokens=80,
            cache_read_tokens=40_000,
            cache_write_tokens=2_000,
        )
    )


async def test_gemini_cached_content_tokens():
    body = gemini_answer("ok", tokens=(90_000, 300), cached=60_000)
    with FakeServer("gemini") as srv:
        provider = GoogleProvider(api_key="AIzaCACHEDusage0123456789abcdefghijk", base_url=srv.url)
        raw = await _raw_of(provider, srv, body, "gemini-3.8-flash")
    assert (raw.input_tokens, raw.cache_read_tokens) == (90_000, 60_000)


async def _raw_of(provider, srv: FakeServer, body: dict, model: str):
    """The adapter's ProviderResponse for one scripted answer."""
    from orchestrator.llm.providers.base import ProviderRequest

    srv.push(Reply(body=body))
    return await provider.complete(ProviderRequest(model, "hi", timeout=30.0))
