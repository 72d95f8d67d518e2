"""The seed's tracing scenarios, adapted to the bus + TracingObserver shape, plus the
configuration rules (flag > variable > default), sampling, content capture, errors."""

from __future__ import annotations

import asyncio
import json

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import orchestrator.tracing as t
from orchestrator import events
from orchestrator.observers.tracing import TracingObserver
from orchestrator.tracing import (
    TracingConfig,
    configure_tracing,
    get_tracer,
    traced_llm_call,
    traced_policy_check,
    traced_remediation,
    traced_task,
)

OTEL_VARS = (
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
)


def connected() -> int:
    """Receivers on the bus (other test files' leftovers included: compare, don't assume 0)."""
    return sum(len(s.receivers) for s in events.ALL_SIGNALS)


@pytest.fixture(autouse=True)
def clean_state(monkeypatch):
    for var in OTEL_VARS:
        monkeypatch.delenv(var, raising=False)
    t.shutdown_tracing()
    before = connected()
    yield
    t.shutdown_tracing()
    assert connected() == before, "a test left a receiver connected"


# -- the seed's scenarios ------------------------------------------------------------------


def test_tracing_config_defaults():
    cfg = TracingConfig()
    assert cfg.enabled is False
    assert cfg.service_name == "multi-llm-orchestrator"
    assert cfg.otlp_endpoint is None
    assert cfg.sample_rate == 1.0


def test_disabled_tracing_produces_no_spans_and_connects_nothing():
    before = connected()
    assert configure_tracing(TracingConfig(enabled=False)) is None
    assert connected() == before
    if not events.is_active():
        handle = traced_task("t1", "code_generation")
        assert handle is traced_llm_call("gpt-4o", "generate")  # the shared do-nothing handle
    with traced_task("t1", "code_generation"):
        with traced_llm_call("gpt-4o", "generate") as span:
            span.set_attribute("llm.tokens_in", 1)
    assert t.dev_spans() == []
    assert t.tracing_state()["configured"] is False
    tracer = get_tracer()
    assert tracer is not None
    assert not tracer.start_span("x").is_recording()


def test_enabled_tracing_records_span(span_exporter):
    with traced_task("task_001", "CODE"):
        pass
    spans = span_exporter.get_finished_spans()
    assert len(spans) == 1
    assert spans[0].name == "task:task_001"
    assert spans[0].attributes["task.id"] == "task_001"
    assert spans[0].attributes["task.type"] == "CODE"
    assert spans[0].attributes["openinference.span.kind"] == "CHAIN"


def test_llm_call_span_attributes(span_exporter):
    with traced_llm_call("gpt-4o", "generate", provider="openai", max_tokens=256, temperature=0.2) as span:
        span.set_attribute("llm.tokens_in", 100)
        span.set_attribute("llm.tokens_out", 200)
        span.set_attribute("llm.cost_usd", 0.003)
        span.set_attributes(
            {
                "llm.finish_reason": "length",
                "llm.response_model": "gpt-4o-2024-08-06",
                "llm.latency_ms": 12.5,
                "llm.cached": False,
            }
        )
    (s,) = span_exporter.get_finished_spans()
    a = s.attributes
    assert s.name == "llm_call:generate"
    assert s.kind == SpanKind.CLIENT
    # the seed's names
    assert a["llm.model"] == "gpt-4o" and a["llm.call_type"] == "generate"
    assert a["llm.tokens_in"] == 100 and a["llm.tokens_out"] == 200 and a["llm.cost_usd"] == 0.003
    assert a["llm.latency_ms"] == 12.5 and a["llm.cached"] is False
    # GenAI semantic conventions
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.request.max_tokens"] == 256 and a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert a["gen_ai.response.finish_reasons"] == ("length",)
    assert a["gen_ai.usage.input_tokens"] == 100 and a["gen_ai.usage.output_tokens"] == 200
    assert "error.type" not in a
    # OpenInference (Phoenix)
    assert a["openinference.span.kind"] == "LLM" and a["llm.model_name"] == "gpt-4o"
    assert a["llm.token_count.prompt"] == 100 and a["llm.token_count.completion"] == 200
    assert a["llm.token_count.total"] == 300
    assert json.loads(a["llm.invocation_parameters"]) == {"max_tokens": 256, "temperature": 0.2}
    # no content by default
    assert not any(
        k.startswith(
            (
                "input.",
                "output.",
                "gen_ai.input.messages",
                "gen_ai.output.messages",
                "gen_ai.system_instructions",
                "llm.input_messages",
                "llm.output_messages",
            )
        )
        for k in a
    )
    assert s.status.status_code == StatusCode.UNSET


def test_local_llm_call_is_internal_and_gets_no_carrier(span_exporter):
    with traced_llm_call("smollm2-135m", "critique", provider="local") as call:
        carrier = call.carrier
    (s,) = span_exporter.get_finished_spans()
    assert s.kind == SpanKind.INTERNAL
    assert s.attributes["gen_ai.provider.name"] == "llama_cpp"
    assert carrier == {}


def test_a_payload_built_by_hand_never_gets_another_calls_start_attributes(span_exporter):
    """The observer shares an LLM span's start attributes between calls of the same model,
    type and parameters; a start payload with attributes of its own (a replay, a test) must
    still get its own, whatever was seen before it."""
    with traced_llm_call("gpt-4o", "generate", provider="openai"):
        pass
    ids = events.current_ids()
    own = events.LlmCallStarted(
        correlation_id="hand-made-1",
        parent_id=ids.parent_id,
        project_id=ids.project_id,
        timestamp_ns=1,
        attributes={"llm.model": "gpt-4o", "llm.note": "mine"},  # two, like the shared ones
        model="gpt-4o",
        call_type="generate",
        provider="openai",
    )
    events.llm_call_started.send(own)
    events.llm_call_finished.send(
        events.LlmCallFinished(
            correlation_id="hand-made-1",
            parent_id=ids.parent_id,
            project_id=ids.project_id,
            timestamp_ns=2,
            start_timestamp_ns=1,
            attributes={},
            model="gpt-4o",
            call_type="generate",
            provider="openai",
        )
    )
    with traced_llm_call("gpt-4o", "generate", provider="openai"):
        pass
    first, hand_made, third = span_exporter.get_finished_spans()
    assert hand_made.attributes["llm.note"] == "mine"
    assert "llm.note" not in first.attributes and "llm.note" not in third.attributes
    assert hand_made.attributes["gen_ai.request.model"] == "gpt-4o"


@pytest.mark.parametrize("limit", [0, 3])
def test_span_ids_of_ended_pairs_are_kept_between_the_limit_and_twice_it(limit):
    provider = TracerProvider(shutdown_on_exit=False)
    observer = TracingObserver(provider, recent_spans=limit).subscribe()
    try:
        cids = []
        for _ in range(10):
            with traced_llm_call("gpt-4o", "generate", provider="openai") as call:
                cids.append(call.correlation_id)
        known = [cid for cid in cids if observer.span_ids(cid) is not None]
    finally:
        observer.unsubscribe()
    assert known == cids[len(cids) - len(known) :]  # the newest ones, none skipped
    assert limit <= len(known) <= 2 * limit


def test_remote_call_carrier_holds_the_call_spans_traceparent(span_exporter):
    with traced_llm_call("gpt-4o", "generate", provider="openai") as call:
        header = call.carrier["traceparent"]
    (s,) = span_exporter.get_finished_spans()
    assert header == f"00-{s.context.trace_id:032x}-{s.context.span_id:016x}-{s.context.trace_flags:02x}"
    assert s.context.trace_flags.sampled


def test_policy_check_span(span_exporter):
    with traced_policy_check(policy_count=3) as span:
        span.set_attribute("policy.passed", True)
        span.set_attribute("policy.violations", 0)
    (s,) = span_exporter.get_finished_spans()
    assert s.name == "policy_check"
    assert s.attributes["policy.count"] == 3
    assert s.attributes["policy.passed"] is True and s.attributes["policy.violations"] == 0
    assert s.attributes["openinference.span.kind"] == "GUARDRAIL"


def test_remediation_span(span_exporter):
    with traced_remediation("fallback_model", "score_below_threshold") as span:
        span.set_attribute("remediation.success", True)
    (s,) = span_exporter.get_finished_spans()
    assert s.name == "remediation"
    assert s.attributes["remediation.strategy"] == "fallback_model"
    assert s.attributes["remediation.trigger"] == "score_below_threshold"
    assert s.attributes["remediation.success"] is True


def test_nested_spans_have_parent_child_relationship(span_exporter):
    with traced_task("t1", "CODE"):
        with traced_llm_call("gpt-4o", "generate"):
            pass
    spans = span_exporter.get_finished_spans()
    assert len(spans) == 2
    child = next(s for s in spans if s.name == "llm_call:generate")
    parent = next(s for s in spans if s.name == "task:t1")
    assert child.parent.span_id == parent.context.span_id
    assert child.context.trace_id == parent.context.trace_id


def test_full_span_tree_shape(span_exporter):
    with events.traced_project("p-smoke", "smoke project"):
        with traced_task("smoke", "CODE"):
            with traced_llm_call("claude-opus", "generate"):
                pass
            with traced_policy_check(2):
                pass
            with traced_remediation("auto_retry", "low_score"):
                with traced_llm_call("claude-opus", "generate"):
                    pass
    spans = span_exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == sorted(
        ["run_project", "task:smoke", "llm_call:generate", "policy_check", "remediation", "llm_call:generate"]
    )
    root = span_exporter.by_name("run_project")
    task = span_exporter.by_name("task:smoke")
    remediation = span_exporter.by_name("remediation")
    assert root.parent is None and task.parent.span_id == root.context.span_id
    assert span_exporter.parent_of(span_exporter.by_name("policy_check")) is task
    assert span_exporter.parent_of(remediation) is task
    calls = span_exporter.spans("llm_call:")
    assert {span_exporter.parent_of(c).name for c in calls} == {"task:smoke", "remediation"}
    assert root.attributes["openinference.span.kind"] == "AGENT"
    assert root.attributes["project.id"] == "p-smoke"
    assert root.attributes["project.description"] == "smoke project"


# -- roll-ups, context, errors, orphans, point events ---------------------------------------


def test_usage_rolls_up_under_own_names_not_gen_ai(span_exporter):
    with events.traced_project("p", "d"):
        with traced_task("t", "CODE"):
            for tin, tout, cost in ((10, 5, 0.1), (20, 7, 0.2)):
                with traced_llm_call("gpt-4o", "generate", provider="openai") as c:
                    c.set_attributes({"llm.tokens_in": tin, "llm.tokens_out": tout, "llm.cost_usd": cost})
    task, root = span_exporter.by_name("task:t"), span_exporter.by_name("run_project")
    assert task.attributes["task.tokens_in"] == 30 and task.attributes["task.tokens_out"] == 12
    assert task.attributes["task.cost_usd"] == pytest.approx(0.3) and task.attributes["task.llm_calls"] == 2
    assert root.attributes["project.tokens_in"] == 30 and root.attributes["project.llm_calls"] == 2
    for s in (task, root):
        assert not any(k.startswith(("gen_ai.usage", "llm.token_count")) for k in s.attributes)


def test_emitter_values_win_over_rollups(span_exporter):
    with traced_task("t", "CODE") as task:
        with traced_llm_call("gpt-4o", "generate") as c:
            c.set_attributes({"llm.tokens_in": 10, "llm.tokens_out": 5, "llm.cost_usd": 0.1})
        task.set_attribute("task.cost_usd", 0.05)  # e.g. the engine counts only accepted calls
    assert span_exporter.by_name("task:t").attributes["task.cost_usd"] == 0.05


def test_enclosing_spans_are_current_and_restored():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("user")
    with TracingObserver(provider):
        with tracer.start_as_current_span("user-root") as user_root:
            with events.traced_project("p", "d"):
                with traced_task("t", "CODE"):
                    current = trace.get_current_span()
                    with traced_llm_call("m", "generate"):
                        assert trace.get_current_span() is current  # leaf spans never become current
                    with tracer.start_as_current_span("user-inside"):
                        pass
                assert trace.get_current_span().name == "run_project"
            assert trace.get_current_span() is user_root
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["run_project"].parent.span_id == spans["user-root"].context.span_id
    assert spans["user-inside"].parent.span_id == spans["task:t"].context.span_id
    assert current.get_span_context().span_id == spans["task:t"].context.span_id


def test_body_that_raises_ends_spans_with_error(span_exporter):
    with pytest.raises(ValueError, match="boom"):
        with events.traced_project("p", "d"):
            with traced_task("t", "CODE"):
                with traced_llm_call("gpt-4o", "generate", provider="openai"):
                    raise ValueError("boom")
    spans = span_exporter.get_finished_spans()
    assert len(spans) == 3
    for s in spans:
        assert s.status.status_code == StatusCode.ERROR
        assert s.attributes["error.type"] == "ValueError"
        exc_events = [e for e in s.events if e.name == "exception"]
        assert len(exc_events) == 1 and exc_events[0].attributes["exception.type"] == "ValueError"
        assert "boom" in s.status.description
    assert span_exporter.observer.open_span_count == 0


async def test_cancelled_task_ends_spans_with_error(span_exporter):
    started = asyncio.Event()

    async def body():
        with traced_task("slow", "summarization"):
            with traced_llm_call("m", "generate"):
                started.set()
                await asyncio.sleep(10)

    fut = asyncio.ensure_future(body())
    await started.wait()
    fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fut
    spans = span_exporter.get_finished_spans()
    assert {s.name for s in spans} == {"task:slow", "llm_call:generate"}
    assert all(s.status.status_code == StatusCode.ERROR for s in spans)
    assert all(s.attributes["error.type"] == "CancelledError" for s in spans)
    assert span_exporter.observer.open_span_count == 0


def test_secret_in_an_error_message_is_redacted(span_exporter, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-1234567890abcdefghij")
    with pytest.raises(RuntimeError):
        with traced_llm_call("gpt-4o", "generate"):
            raise RuntimeError("auth failed for key sk-test-1234567890abcdefghij")
    (s,) = span_exporter.get_finished_spans()
    dump = s.to_json()
    assert "sk-test-1234567890abcdefghij" not in dump
    assert "[REDACTED]" in s.status.description


def _start(signal, payload_type, **kw):
    base = dict(correlation_id=events.new_correlation_id(), timestamp_ns=1_000, attributes={})
    base.update(kw)
    payload = payload_type(**base)
    signal.send(payload)
    return payload


def test_orphan_spans_are_ended_with_error_at_project_end(span_exporter):
    with events.traced_project("proj-o", "d") as proj:
        # a start whose finish never comes (a buggy emitter)
        _start(
            events.task_started,
            events.TaskStarted,
            parent_id=proj.correlation_id,
            project_id="proj-o",
            task_id="lost",
            task_type="CODE",
        )
        assert span_exporter.observer.open_span_count == 2
    assert span_exporter.observer.open_span_count == 0
    lost = span_exporter.by_name("task:lost")
    assert lost.status.status_code == StatusCode.ERROR
    assert "never received" in lost.status.description
    assert span_exporter.by_name("run_project").status.status_code == StatusCode.UNSET


def test_unsubscribe_ends_open_spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = TracingObserver(provider).subscribe()
    _start(
        events.llm_call_started, events.LlmCallStarted, parent_id=None, project_id=None, model="m", call_type="generate"
    )
    assert exporter.get_finished_spans() == ()
    observer.unsubscribe()
    (s,) = exporter.get_finished_spans()
    assert s.status.status_code == StatusCode.ERROR and s.end_time is not None


def test_point_events_become_span_events_on_the_enclosing_span(span_exporter):
    with traced_task("t", "CODE"):
        events.emit(events.validation_failed, validator="python_syntax", message="line 3", iteration=2)
        with traced_llm_call("m", "generate"):
            events.emit(events.cache_hit, model="m", call_type="generate", cache_key="abc")
    task, call = span_exporter.by_name("task:t"), span_exporter.by_name("llm_call:generate")
    (ev,) = task.events
    assert ev.name == "validation_failed"
    assert dict(ev.attributes) == {"task_id": "t", "validator": "python_syntax", "message": "line 3", "iteration": 2}
    assert [e.name for e in call.events] == ["cache_hit"]


def test_content_is_captured_only_on_opt_in(monkeypatch):
    def run(**kw):
        exporter = InMemorySpanExporter()
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with TracingObserver(provider, **kw):
            with traced_llm_call("m", "generate", prompt="P" * 50, system="be brief") as c:
                c.set_completion("C" * 50)
        return exporter.get_finished_spans()[0].attributes

    plain = run()
    assert not any("P" * 10 in str(v) or "C" * 10 in str(v) for v in plain.values())
    captured = run(capture_content=True, content_max_chars=20)
    assert captured["input.value"].startswith("P" * 20) and "truncated 30 chars" in captured["input.value"]
    assert captured["output.value"].startswith("C" * 20)
    assert captured["llm.input_messages.0.message.role"] == "system"
    assert captured["llm.input_messages.1.message.role"] == "user"
    assert json.loads(captured["gen_ai.output.messages"])[0]["role"] == "assistant"
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    assert "input.value" in run()


# -- configure_tracing ----------------------------------------------------------------------


def test_configure_without_endpoint_is_dev_mode_and_safe_to_repeat():
    base, base_task = connected(), len(events.task_started.receivers)
    for _ in range(2):
        provider = configure_tracing(TracingConfig(enabled=True, dev_print=False))
        assert provider is not None
    # only one observer connected after two calls
    assert len(events.task_started.receivers) == base_task + 1
    with traced_task("t", "CODE"):
        with get_tracer().start_as_current_span("mine"):
            pass
    names = sorted(s.name for s in t.dev_spans())
    assert names == ["mine", "task:t"]
    assert t.shutdown_tracing() is True
    assert connected() == base


def test_dev_mode_prints_the_tree_when_the_run_ends():
    from io import StringIO

    from rich.console import Console

    out = StringIO()
    configure_tracing(TracingConfig(enabled=True), console=Console(file=out, width=200))
    with events.traced_project("p", "d"):
        with traced_task("t1", "CODE"):
            with traced_llm_call("gpt-4o", "generate") as c:
                c.set_attributes({"llm.tokens_in": 7, "llm.tokens_out": 3, "llm.cost_usd": 0.5})
    text = out.getvalue()
    assert "run_project" in text and "task:t1" in text and "llm_call:generate" in text
    assert "7→3 tok" in text and "$0.500000" in text
    lines = text.splitlines()
    assert lines[0].startswith("run_project")
    assert lines.index(next(x for x in lines if "task:t1" in x)) < lines.index(
        next(x for x in lines if "llm_call:generate" in x)
    )


def test_sample_rate_zero_records_nothing():
    configure_tracing(TracingConfig(enabled=True, sample_rate=0.0, dev_print=False))
    with traced_task("t", "CODE"):
        with traced_llm_call("m", "generate"):
            pass
    assert t.dev_spans() == []


def test_env_sampler_is_used_when_no_rate_is_given(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    configure_tracing(TracingConfig(enabled=True, dev_print=False))
    with traced_task("t", "CODE"):
        pass
    assert t.dev_spans() == []
    # a flag beats the variable
    configure_tracing(TracingConfig(enabled=True, sample_rate=1.0, dev_print=False))
    with traced_task("t", "CODE"):
        pass
    assert len(t.dev_spans()) == 1


def test_otel_sdk_disabled_turns_tracing_off(monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    before = connected()
    assert configure_tracing(TracingConfig(enabled=True)) is None
    assert connected() == before


def test_service_name_from_env_is_not_overwritten_by_the_default(monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,deployment.environment=ci")
    provider = configure_tracing(TracingConfig(enabled=True, dev_print=False))
    attrs = provider.resource.attributes
    assert attrs["service.name"] == "from-attrs" and attrs["deployment.environment"] == "ci"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    assert (
        configure_tracing(TracingConfig(enabled=True, dev_print=False)).resource.attributes["service.name"]
        == "from-env"
    )
    # the flag beats the variable
    provider = configure_tracing(TracingConfig(enabled=True, service_name="from-flag", dev_print=False))
    assert provider.resource.attributes["service.name"] == "from-flag"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES")
    provider = configure_tracing(TracingConfig(enabled=True, dev_print=False))
    assert provider.resource.attributes["service.name"] == "multi-llm-orchestrator"


@pytest.mark.parametrize(
    "cfg, env, endpoint, protocol",
    [
        (dict(otlp_endpoint="http://localhost:4317"), {}, "http://localhost:4317", "grpc"),
        (dict(otlp_endpoint="http://collector:4318"), {}, "http://collector:4318/v1/traces", "http/protobuf"),
        (dict(otlp_endpoint="https://x.example/v1/traces"), {}, "https://x.example/v1/traces", "http/protobuf"),
        (
            dict(otlp_endpoint="http://h:9000", otlp_protocol="http/protobuf"),
            {},
            "http://h:9000/v1/traces",
            "http/protobuf",
        ),
        (dict(otlp_endpoint="http://h:4318"), {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "http://h:4318", "grpc"),
        (
            dict(otlp_endpoint="http://h:4318", otlp_protocol="grpc"),
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            "http://h:4318",
            "grpc",
        ),
        ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318"}, "http://base:4318/v1/traces", "http/protobuf"),
        (
            {},
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4317",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:55681/custom",
            },
            "http://traces:55681/custom",
            "grpc",
        ),
        (
            {},
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:55681/custom",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            "http://traces:55681/custom",
            "http/protobuf",
        ),
        (
            dict(otlp_endpoint="http://flag:4317"),
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4317"},
            "http://flag:4317",
            "grpc",
        ),
        ({}, {}, None, None),
    ],
)
def test_endpoint_and_protocol_resolution(cfg, env, endpoint, protocol):
    resolved = t.resolve_config(TracingConfig(enabled=True, **cfg), env)
    assert (resolved.endpoint, resolved.protocol) == (endpoint, protocol)


@pytest.mark.parametrize(
    "cfg, env, fragment",
    [
        (dict(otlp_endpoint="localhost:4317"), {}, "must start with http:// or https://"),
        (dict(otlp_endpoint="ftp://h:1"), {}, "must start with http:// or https://"),
        (dict(otlp_endpoint="http://:4317"), {}, "no host"),
        (dict(otlp_endpoint="http://h:99999"), {}, "invalid port"),
        (dict(otlp_endpoint="http://h 1:4317"), {}, "must be an http:// or https:// URL"),
        (dict(sample_rate=1.5), {}, "between 0 and 1"),
        (dict(sample_rate="x"), {}, "must be a number"),
        (dict(otlp_endpoint="http://h:1", otlp_protocol="http/json"), {}, "must be one of grpc, http/protobuf"),
        ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "nonsense"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({}, {"OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"),
    ],
)
def test_bad_settings_are_one_line_value_errors(cfg, env, fragment):
    with pytest.raises(ValueError) as info:
        t.resolve_config(TracingConfig(enabled=True, **cfg), env)
    assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "sampler, arg, description, root_recorded, under_sampled_parent",
    [
        ("traceidratio", "0", "TraceIdRatioBased{0.0}", False, False),
        ("traceidratio", "1", "TraceIdRatioBased{1.0}", True, True),
        ("parentbased_traceidratio", "0", "ParentBased{root:TraceIdRatioBased{0.0}", False, True),
        ("parentbased_always_off", None, "ParentBased{root:AlwaysOffSampler", False, True),
        ("always_on", None, "AlwaysOnSampler", True, True),
    ],
)
def test_the_sdk_builds_the_sampler_from_the_standard_variables(
    monkeypatch, sampler, arg, description, root_recorded, under_sampled_parent
):
    """OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG decide (no --sample-rate given): the
    provider is built without a sampler of ours, and the SDK's, parent-based or not, acts
    on a root span and on a span under a sampled remote parent."""
    from opentelemetry.context import attach, detach
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    if arg is not None:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    provider = configure_tracing(TracingConfig(enabled=True, dev_print=False))
    assert provider.sampler.get_description().startswith(description)
    with traced_task("root", "CODE"):
        pass
    parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    token = attach(set_span_in_context(NonRecordingSpan(parent)))
    try:
        with traced_task("child", "CODE"):
            pass
    finally:
        detach(token)
    recorded = {s.name: s for s in t.dev_spans()}
    assert ("task:root" in recorded) is root_recorded
    assert ("task:child" in recorded) is under_sampled_parent
    if under_sampled_parent:
        assert recorded["task:child"].parent.span_id == 0xDEF


def test_sampler_resolution():
    assert t.resolve_config(TracingConfig(enabled=True), {}).sample_rate == 1.0
    assert t.resolve_config(TracingConfig(enabled=True), {"OTEL_TRACES_SAMPLER_ARG": "0.25"}).sample_rate == 0.25
    env_sampler = t.resolve_config(TracingConfig(enabled=True), {"OTEL_TRACES_SAMPLER": "always_off"})
    assert env_sampler.sampler_from_env and env_sampler.sample_rate is None
    flag = t.resolve_config(TracingConfig(enabled=True, sample_rate=0.5), {"OTEL_TRACES_SAMPLER": "always_off"})
    assert flag.sample_rate == 0.5 and not flag.sampler_from_env


def test_dev_tree_shows_errors_and_notable_events(span_exporter):
    from io import StringIO

    from rich.console import Console

    from orchestrator.otel.devtree import print_span_tree

    with pytest.raises(KeyError):
        with events.traced_project("p", "d"):
            with traced_task("t1", "CODE"):
                for _ in range(2):
                    events.emit(events.validation_failed, validator="syntax", message="bad")
                events.emit(events.iteration_scored, iteration=1, score=0.1, best_score=0.1)
                raise KeyError("missing")
    out = StringIO()
    print_span_tree(span_exporter.get_finished_spans(), Console(file=out, width=300))
    lines = out.getvalue().splitlines()
    task_line = next(line for line in lines if "task:t1" in line)
    assert "validation_failed×2" in task_line and "iteration_scored" not in task_line
    assert "ERROR" in task_line and "KeyError" in task_line
    assert lines[0].startswith("run_project") and "ERROR" in lines[0]
