"""The Google adapter through the real ``google-genai`` async client against a loopback
server speaking ``/v1beta/models/{model}:generateContent``."""

from __future__ import annotations

import json

import pytest

from orchestrator.llm.catalog import get_model
from orchestrator.llm.client import LLMCallError
from orchestrator.llm.providers.google import GoogleProvider
from tests.fake_providers import Reply, clean_provider_env, error, gemini_answer

PROVIDER, TOKENS = "google", (800, 90)  # the server, env and client fixtures (conftest.py)
KEY = "AIzaTESTKEY0123456789abcdefghijklmnopq"
SCHEMA = {"type": "object", "properties": {"tasks": {"type": "array"}}, "required": ["tasks"]}


async def test_json_through_the_response_schema_and_thinking_tokens_billed(client, server):
    server.push(Reply(body=gemini_answer('{"tasks": []}', tokens=(800, 90), thoughts=30)))
    resp = await client.call("gemini-2.5-flash", "plan", system="planner", json_schema=SCHEMA, max_tokens=300)
    assert json.loads(resp.text) == {"tasks": []}
    assert (resp.input_tokens, resp.output_tokens) == (800, 120)
    assert resp.cost_usd == pytest.approx(get_model("gemini-2.5-flash").cost(800, 120))
    (req,) = server.requests
    assert req.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert req.headers["x-goog-api-key"] == KEY
    config = req.body["generationConfig"]
    assert config["responseMimeType"] == "application/json" and config["responseJsonSchema"] == SCHEMA
    assert config["maxOutputTokens"] == 300
    assert req.body["systemInstruction"]["parts"][0]["text"] == "planner"


async def test_the_sdk_speaks_through_httpx_even_with_aiohttp_installed(client, server, monkeypatch):
    """google-genai picks aiohttp whenever it is importable (the dev extra has it, through
    mlflow); the adapter gives it an httpx transport, so every install calls the same way."""
    import aiohttp  # noqa: F401 - installed here: the case this test is about
    import httpx

    sent = []
    real = httpx.AsyncHTTPTransport.handle_async_request

    async def counted(self, request):
        sent.append(request.url.path)
        return await real(self, request)

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", counted)
    server.push(Reply(body=gemini_answer("hi")))
    assert (await client.call("gemini-2.5-flash", "x")).text == "hi"
    assert sent == ["/v1beta/models/gemini-2.5-flash:generateContent"]


async def test_max_tokens_finish(client, server):
    server.push(Reply(body=gemini_answer("cut", finish="MAX_TOKENS")))
    assert (await client.call("gemini-2.5-flash", "x")).finish_reason == "length"


async def test_503_then_success_honours_retry_info(client, server):
    body = {
        "error": {
            "code": 503,
            "message": "overloaded",
            "status": "UNAVAILABLE",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "4s"}],
        }
    }
    server.push(Reply(status=503, body=body))
    resp = await client.call("gemini-2.5-flash", "x", retries=2)
    assert resp.attempts == 2 and client._sleep.delays == [4.0]


async def test_429_retry_after_header(client, server):
    server.push(error("gemini", 429, "quota", retry_after="3", error_type="resource_exhausted"))
    resp = await client.call("gemini-2.5-flash", "x", retries=1)
    assert resp.attempts == 2 and client._sleep.delays == [3.0]


async def test_invalid_key_answer_is_treated_as_401(client, server, orchestrator_events):
    body = {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
        }
    }
    server.push(Reply(status=400, body=body))
    with pytest.raises(LLMCallError) as info:
        await client.call("gemini-2.5-flash", "x", retries=2)
    assert info.value.last.status_code == 401 and info.value.attempts == 1
    assert orchestrator_events.of("model_unhealthy")[0].model == "gemini-2.5-flash"
    ok, why = client.availability("gemini-2.5-pro")
    assert not ok and "401" in why


async def test_hang_past_the_timeout(client, server):
    server.push(Reply(delay=30))
    with pytest.raises(LLMCallError) as info:
        await client.call("gemini-2.5-flash", "x", retries=0, timeout=0.5)
    assert info.value.error_type == "TimeoutError"


async def test_malformed_body(client, server):
    server.push(Reply(body={"candidates": []}))
    with pytest.raises(LLMCallError) as info:
        await client.call("gemini-2.5-flash", "x", retries=0)
    assert info.value.error_type == "MalformedResponse"


async def test_traceparent_header_with_tracing(client, server, span_exporter):
    await client.call("gemini-2.5-flash", "x")
    (span,) = span_exporter.spans("llm_call:")
    assert server.requests[0].headers["traceparent"].split("-")[1:3] == [
        f"{span.context.trace_id:032x}",
        f"{span.context.span_id:016x}",
    ]


def test_either_variable_and_google_wins(monkeypatch):
    clean_provider_env(monkeypatch)
    provider = GoogleProvider()
    assert provider.availability("gemini-2.5-flash") == (False, "GOOGLE_API_KEY or GEMINI_API_KEY not set")
    monkeypatch.setenv("GEMINI_API_KEY", "gem-key-123456")
    assert provider.availability("gemini-2.5-flash") == (True, "")
    monkeypatch.setenv("GOOGLE_API_KEY", "goog-key-123456")
    assert provider._key()[0] == "GOOGLE_API_KEY"
