"""The Anthropic adapter through the real ``anthropic`` SDK against a loopback server
speaking ``/v1/messages``: forced-tool JSON, usage, 529 overloaded, auth failures."""

from __future__ import annotations

import json

import pytest

from orchestrator.llm.catalog import get_model
from orchestrator.llm.client import LLMCallError, UnifiedClient
from orchestrator.llm.providers.anthropic import AnthropicProvider
from tests.fake_providers import Reply, anthropic_answer, clean_provider_env, error

PROVIDER, TOKENS = "anthropic", (321, 54)  # the server, env and client fixtures (conftest.py)
KEY = "sk-ant-api03-TESTKEY0123456789abcdefXYZ"
SCHEMA = {"type": "object", "properties": {"score": {"type": "number"}}, "required": ["score"]}


async def test_text_answer_usage_and_headers(client, server):
    resp = await client.call("claude-haiku-4-5", "hello", system="be terse", max_tokens=99, temperature=0.1)
    assert (resp.input_tokens, resp.output_tokens) == (321, 54)
    assert resp.cost_usd == pytest.approx(get_model("claude-haiku-4-5").cost(321, 54))
    assert "def add" in resp.text and resp.finish_reason == "stop"
    (req,) = server.requests
    assert req.path == "/v1/messages"
    assert req.headers["x-api-key"] == KEY and "anthropic-version" in req.headers
    assert req.body["system"] == "be terse" and req.body["max_tokens"] == 99
    assert req.body["temperature"] == 0.1
    assert req.body["messages"] == [{"role": "user", "content": "hello"}]
    assert "tools" not in req.body


async def test_json_comes_from_a_forced_tool_with_the_schema(client, server):
    server.push(Reply(body=anthropic_answer(tool_input={"score": 0.7})))
    resp = await client.call("claude-haiku-4-5", "rate it", json_schema=SCHEMA)
    assert json.loads(resp.text) == {"score": 0.7}
    body = server.requests[0].body
    assert body["tools"][0]["input_schema"] == SCHEMA and body["tools"][0]["name"] == "answer"
    assert body["tool_choice"] == {"type": "tool", "name": "answer"}


async def test_a_non_object_schema_is_wrapped_and_unwrapped(client, server):
    server.push(Reply(body=anthropic_answer(tool_input={"value": ["a", "b"]})))
    schema = {"type": "array", "items": {"type": "string"}}
    resp = await client.call("claude-haiku-4-5", "list", json_schema=schema)
    assert json.loads(resp.text) == ["a", "b"]
    assert server.requests[0].body["tools"][0]["input_schema"]["properties"]["value"] == schema


async def test_cache_tokens_count_as_input_and_max_tokens_is_length(client, server):
    body = anthropic_answer("partial", tokens=(10, 20), stop="max_tokens")
    body["usage"].update(cache_creation_input_tokens=5, cache_read_input_tokens=7)
    server.push(Reply(body=body))
    resp = await client.call("claude-haiku-4-5", "x")
    assert resp.input_tokens == 22 and resp.output_tokens == 20 and resp.finish_reason == "length"


async def test_529_overloaded_is_retried_after_the_given_delay(client, server, orchestrator_events):
    server.push(error("anthropic", 529, "Overloaded", retry_after="2", error_type="overloaded_error"))
    resp = await client.call("claude-haiku-4-5", "x", retries=2)
    assert resp.attempts == 2 and client._sleep.delays == [2.0]
    first = orchestrator_events.of("llm_call_finished")[0]
    assert first.attributes["error.type"] == "Overloaded"


async def test_500_then_success(client, server):
    server.push(error("anthropic", 500, "internal", error_type="api_error"))
    resp = await client.call("claude-haiku-4-5", "x", retries=1)
    assert resp.attempts == 2 and len(client._sleep.delays) == 1


async def test_401_marks_unhealthy_without_retry(client, server, orchestrator_events):
    server.push(error("anthropic", 401, f"invalid x-api-key {KEY}", error_type="authentication_error"))
    with pytest.raises(LLMCallError) as info:
        await client.call("claude-haiku-4-5", "x", retries=3)
    assert info.value.attempts == 1 and len(server.requests) == 1
    assert KEY not in str(info.value) and KEY not in orchestrator_events.of("model_unhealthy")[0].reason
    assert not client.is_usable("claude-haiku-4-5") and not client.is_usable("claude-sonnet-5-5")


async def test_a_model_that_rejects_temperature_is_called_without_it(monkeypatch, server):
    clean_provider_env(monkeypatch)
    provider = AnthropicProvider(api_key=KEY, base_url=server.url)
    server.push(
        error("anthropic", 400, "`temperature` is deprecated for this model.", error_type="invalid_request_error")
    )
    client = UnifiedClient({"anthropic": provider})
    resp = await client.call("claude-haiku-4-5", "x")
    assert resp.attempts == 1
    assert "temperature" in server.requests[0].body and "temperature" not in server.requests[1].body
    await client.call("claude-haiku-4-5", "y")
    assert "temperature" not in server.requests[2].body


async def test_malformed_body(client, server):
    server.push(Reply(body="not json at all"))
    with pytest.raises(LLMCallError) as info:
        await client.call("claude-haiku-4-5", "x", retries=0)
    assert info.value.error_type == "MalformedResponse"


async def test_timeout(client, server):
    server.push(Reply(delay=30))
    with pytest.raises(LLMCallError) as info:
        await client.call("claude-haiku-4-5", "x", retries=0, timeout=0.5)
    assert info.value.error_type == "TimeoutError" and info.value.last.transient


def test_availability_without_key(monkeypatch):
    clean_provider_env(monkeypatch)
    assert AnthropicProvider().availability("claude-haiku-4-5") == (False, "ANTHROPIC_API_KEY not set")
    assert "***" in repr(AnthropicProvider(api_key=KEY)._explicit_key)
    assert KEY not in repr(AnthropicProvider(api_key=KEY))
