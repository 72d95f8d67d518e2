"""The OpenAI-compatible adapter through the real ``openai`` SDK against a loopback server
speaking ``/v1/chat/completions``: answers, JSON, retries, timeouts, health, trace context."""

from __future__ import annotations

import json
import time

import pytest

from orchestrator.llm.catalog import get_model
from orchestrator.llm.client import LLMCallError, UnifiedClient
from orchestrator.llm.providers.openai_compat import OpenAICompatProvider, extract_json
from orchestrator.llm.providers.registry import default_providers
from tests.fake_providers import FakeServer, Reply, SleepRecorder, clean_provider_env, error, openai_answer

PROVIDER, TOKENS = "openai", (1234, 567)  # the server and env fixtures (conftest.py)
KEY = "sk-proj-TESTKEY0123456789abcdefXYZ"
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def client_for(sleep=None, **kw) -> UnifiedClient:
    return UnifiedClient(default_providers(dotenv=False), sleep=sleep or SleepRecorder(), **kw)


async def test_answer_tokens_and_cost_are_what_the_server_reported(env, server, orchestrator_events):
    resp = await client_for().call("gpt-4o", "say hi", system="be brief", max_tokens=77)
    assert resp.input_tokens == 1234 and resp.output_tokens == 567
    assert resp.cost_usd == pytest.approx(get_model("gpt-4o").cost(1234, 567))
    assert resp.provider == "openai" and resp.finish_reason == "stop" and "def add" in resp.text
    (req,) = server.requests
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.body["model"] == "gpt-4o" and req.body["max_completion_tokens"] == 77
    assert req.body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hi"}]
    assert "response_format" not in req.body
    (finish,) = orchestrator_events.of("llm_call_finished")
    assert finish.attributes["llm.tokens_in"] == 1234 and finish.attributes["llm.tokens_out"] == 567
    assert finish.attributes["llm.cost_usd"] == pytest.approx(resp.cost_usd)


async def test_length_finish_reason_is_reported(env, server):
    server.push(Reply(body=openai_answer("cut", finish="length")))
    resp = await client_for().call("gpt-4o", "long story")
    assert resp.finish_reason == "length"


async def test_json_schema_goes_in_response_format(env, server):
    server.push(Reply(body=openai_answer('{"answer": "42"}')))
    resp = await client_for().call("gpt-4o", "q", json_schema=SCHEMA)
    assert json.loads(resp.text) == {"answer": "42"}
    fmt = server.requests[0].body["response_format"]
    assert fmt == {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": False}}


async def test_json_ladder_steps_down_when_the_endpoint_rejects_a_format(env, server):
    rejected = error("openai", 400, "response_format json_schema is not supported")
    server.push(
        rejected,
        Reply(status=422, body={"detail": "type must be json_object"}),
        Reply(body=openai_answer('{"answer": "a"}')),
    )
    provider = OpenAICompatProvider("openai", api_key=KEY, base_url=server.url)
    client = UnifiedClient({"openai": provider}, sleep=SleepRecorder())
    resp = await client.call("gpt-4o", "q", json_schema=SCHEMA, system="sys")
    assert json.loads(resp.text) == {"answer": "a"} and resp.attempts == 1
    kinds = [(r.body.get("response_format") or {}).get("type") for r in server.requests]
    assert kinds == ["json_schema", "json_object", "json_object"]
    assert server.requests[1].body["response_format"]["schema"] == SCHEMA  # llama.cpp / vLLM grammar
    assert "schema" not in server.requests[2].body["response_format"]
    system = server.requests[2].body["messages"][0]["content"]
    assert system.startswith("sys") and json.dumps(SCHEMA, separators=(",", ":")) in system
    # remembered for the model: the next call starts where the last one succeeded
    server.push(Reply(body=openai_answer('{"answer": "b"}')))
    await client.call("gpt-4o", "q2", json_schema=SCHEMA)
    assert server.requests[3].body["response_format"] == {"type": "json_object"}
    assert provider.json_mode("gpt-4o") == "json_object"


async def test_a_500_that_names_response_format_steps_down_too(env, server):
    """llama-cpp-python's server reports a refused response_format as a 500."""
    server.push(
        Reply(
            status=500,
            body={
                "error": {
                    "message": "1 validation error: ('body', 'response_format', "
                    "'type') Input should be 'text' or 'json_object'"
                }
            },
        )
    )
    sleep = SleepRecorder()
    resp = await client_for(sleep).call("gpt-4o", "q", json_schema=SCHEMA)
    assert resp.attempts == 1 and sleep.delays == []
    assert server.requests[1].body["response_format"]["type"] == "json_object"


async def test_last_rung_is_the_prompt_and_the_json_is_extracted(env, server):
    server.push(
        error("openai", 400, "no"),
        error("openai", 400, "no"),
        error("openai", 400, "no"),
        Reply(body=openai_answer('Sure! Here it is:\n```json\n{"answer": "x"}\n```\nBye')),
    )
    resp = await client_for().call("gpt-4o", "q", json_schema=SCHEMA)
    assert json.loads(resp.text) == {"answer": "x"}
    assert "response_format" not in server.requests[-1].body
    assert "JSON schema" in server.requests[-1].body["messages"][0]["content"]


async def test_other_errors_do_not_step_down_the_ladder(env, server):
    server.push(error("openai", 401, "bad key"))
    provider = OpenAICompatProvider("openai", api_key=KEY, base_url=server.url)
    with pytest.raises(LLMCallError):
        await UnifiedClient({"openai": provider}).call("gpt-4o", "q", json_schema=SCHEMA)
    assert len(server.requests) == 1 and provider.json_mode("gpt-4o") == "json_schema"


def test_extract_json_variants():
    assert extract_json('{"a": 1}') == '{"a": 1}'
    assert extract_json('text ```json\n{"a": 1}\n``` more') == '{"a": 1}'
    assert extract_json('prefix {"a": [1, 2]} suffix') == '{"a": [1, 2]}'
    assert extract_json("no json here") == "no json here"


async def test_deepseek_preset_uses_json_object_and_its_own_variables(monkeypatch, server):
    clean_provider_env(monkeypatch)
    monkeypatch.setenv("DEEPSEEK_API_KEY", KEY)
    monkeypatch.setenv("DEEPSEEK_BASE_URL", server.url)
    client = client_for()
    assert not client.is_usable("gpt-4o")  # no OPENAI_API_KEY
    resp = await client.call("deepseek-chat", "q", json_schema=SCHEMA)
    assert resp.provider == "deepseek"
    body = server.requests[0].body
    assert body["response_format"] == {"type": "json_object"} and body["max_tokens"] == 1024
    assert "JSON schema" in body["messages"][0]["content"]
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


async def test_429_waits_what_retry_after_says(env, server, orchestrator_events):
    server.push(error("openai", 429, "slow down", retry_after="7"))
    sleep = SleepRecorder()
    resp = await client_for(sleep).call("gpt-4o", "q", retries=2)
    assert resp.attempts == 2 and sleep.delays == [7.0]
    (retry,) = orchestrator_events.of("llm_retry")
    assert retry.delay_seconds == 7.0 and retry.error_type == "RateLimited"
    first, second = orchestrator_events.of("llm_call_finished")
    assert first.status == "error" and first.attributes["error.type"] == "RateLimited"
    assert first.attributes["http.response.status_code"] == 429
    assert second.status == "ok" and first.correlation_id != second.correlation_id


async def test_500s_then_success_back_off_exponentially_with_jitter(env, server):
    server.push(error("openai", 500), error("openai", 502))
    sleep = SleepRecorder()
    resp = await client_for(sleep, backoff_base=1.0).call("gpt-4o", "q", retries=2)
    assert resp.attempts == 3 and len(server.requests) == 3
    assert len(sleep.delays) == 2
    assert 0.5 <= sleep.delays[0] <= 1.0 and 1.0 <= sleep.delays[1] <= 2.0


async def test_retries_stop_after_the_last_attempt(env, server):
    server.push(*[error("openai", 503) for _ in range(3)])
    with pytest.raises(LLMCallError) as info:
        await client_for(unhealthy_after=10).call("gpt-4o", "q", retries=2)
    assert info.value.attempts == 3 and info.value.error_type == "ServiceUnavailable"
    assert len(server.requests) == 3


async def test_a_hang_past_the_timeout_is_a_transient_timeout(env, server, orchestrator_events):
    server.push(Reply(delay=30))
    started = time.monotonic()
    resp = await client_for().call("gpt-4o", "q", timeout=0.5, retries=1)
    assert time.monotonic() - started < 10
    assert resp.attempts == 2
    first = orchestrator_events.of("llm_call_finished")[0]
    assert first.attributes["error.type"] == "TimeoutError"


async def test_401_is_not_retried_marks_unhealthy_and_never_shows_the_key(env, server, orchestrator_events):
    server.push(error("openai", 401, f"Incorrect API key provided: {KEY}"))
    client = client_for()
    with pytest.raises(LLMCallError) as info:
        await client.call("gpt-4o", "q", retries=3)
    assert info.value.attempts == 1 and len(server.requests) == 1
    assert info.value.last.status_code == 401 and not info.value.last.transient
    (unhealthy,) = orchestrator_events.of("model_unhealthy")
    assert unhealthy.model == "gpt-4o"
    assert not client.is_usable("gpt-4o")
    ok, why = client.availability("gpt-4o-mini")  # same key: the provider's other models are out too
    assert not ok and "401" in why
    for text in (
        str(info.value),
        repr(info.value),
        repr(info.value.last),
        unhealthy.reason,
        json.dumps([e.to_dict() for e in orchestrator_events], default=str),
        repr(client.providers["openai"]),
    ):
        assert KEY not in text
    assert "[REDACTED]" in str(info.value)
    # the unhealthy model is not called again
    with pytest.raises(LLMCallError):
        await client.call("gpt-4o", "again")
    assert len(server.requests) == 1


async def test_404_unknown_model_marks_only_that_model_unhealthy(env, server):
    server.push(error("openai", 404, "The model does not exist"))
    client = client_for()
    with pytest.raises(LLMCallError) as info:
        await client.call("gpt-4o", "q")
    assert info.value.error_type == "NotFound" and "does not exist" in str(info.value)
    assert not client.is_usable("gpt-4o") and client.is_usable("gpt-4o-mini")


async def test_400_is_permanent_but_does_not_mark_unhealthy(env, server):
    server.push(error("openai", 400, "context too long"))
    client = client_for()
    with pytest.raises(LLMCallError) as info:
        await client.call("gpt-4o", "q", retries=3)
    assert info.value.attempts == 1 and client.is_usable("gpt-4o")


async def test_malformed_bodies_are_retried_and_n_in_a_row_mark_unhealthy(env, server, orchestrator_events):
    server.push(
        Reply(body="<html>bad gateway</html>"), Reply(body={"object": "chat.completion"}), Reply(body=b"\x00\x01")
    )
    client = client_for(unhealthy_after=3)
    with pytest.raises(LLMCallError) as info:
        await client.call("gpt-4o", "q", retries=2)
    assert info.value.error_type == "MalformedResponse" and len(server.requests) == 3
    assert orchestrator_events.of("model_unhealthy")[0].model == "gpt-4o"


async def test_connection_refused_is_a_transient_connection_error(monkeypatch):
    clean_provider_env(monkeypatch)
    dead = FakeServer("openai")
    url = dead.url  # bound, then closed without serving: nothing listens on the port
    dead._server.server_close()
    provider = OpenAICompatProvider("openai", api_key=KEY, base_url=url)
    with pytest.raises(LLMCallError) as info:
        await UnifiedClient({"openai": provider}, sleep=SleepRecorder()).call("gpt-4o", "q", retries=1)
    assert info.value.error_type == "ConnectionError" and info.value.attempts == 2


async def test_missing_usage_is_estimated_not_free(env, server):
    body = openai_answer("x" * 400)
    del body["usage"]
    server.push(Reply(body=body))
    resp = await client_for().call("gpt-4o", "p" * 40)
    assert resp.output_tokens == 100 and resp.input_tokens == 10 and resp.cost_usd > 0


async def test_traceparent_is_sent_when_tracing_is_on(env, server, span_exporter):
    await client_for().call("gpt-4o", "q")
    header = server.requests[0].headers.get("traceparent")
    (span,) = span_exporter.spans("llm_call:")
    ctx = span.context
    assert header == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


async def test_no_traceparent_when_tracing_is_off(env, server):
    await client_for().call("gpt-4o", "q")
    assert "traceparent" not in server.requests[0].headers


def test_availability_says_why_not(monkeypatch):
    clean_provider_env(monkeypatch)
    providers = default_providers(dotenv=False)
    assert providers["kimi"].availability("kimi-k2-0905-preview") == (False, "KIMI_API_KEY or MOONSHOT_API_KEY not set")
    monkeypatch.setenv("MOONSHOT_API_KEY", "mk-123456789")
    assert providers["kimi"].availability("kimi-k2-0905-preview") == (True, "")
    assert providers["openrouter"].availability("openai/gpt-4o-mini") == (False, "OPENROUTER_API_KEY not set")
    monkeypatch.setitem(__import__("sys").modules, "openai", None)  # the SDK not installed
    ok, why = providers["kimi"].availability("kimi-k2-0905-preview")
    assert not ok and "'openai' SDK is not installed" in why and "[providers]" in why


def test_base_urls_of_the_presets(monkeypatch):
    clean_provider_env(monkeypatch)
    providers = default_providers(dotenv=False)
    assert providers["deepseek"].base_url == "https://api.deepseek.com"
    assert providers["kimi"].base_url == "https://api.moonshot.ai/v1"
    assert providers["openrouter"].base_url == "https://openrouter.ai/api/v1"
    assert providers["openai"].base_url is None  # the SDK's default
    monkeypatch.setenv("MOONSHOT_BASE_URL", "http://127.0.0.1:1/v1")
    assert providers["kimi"].base_url == "http://127.0.0.1:1/v1"
