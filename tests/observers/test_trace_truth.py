"""The trace tells the truth: totals that add up, no model text without opt-in, the GenAI
conventions, queueing apart from working, and the holes earlier tests could not catch."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator import events
from orchestrator.domain.budget import Budget
from orchestrator.domain.results import ProjectStatus
from orchestrator.engine import Orchestrator
from orchestrator.llm.cache import ResponseCache
from orchestrator.llm.client import UnifiedClient
from orchestrator.llm.providers.anthropic import AnthropicProvider
from orchestrator.llm.providers.openai_compat import OpenAICompatProvider
from orchestrator.llm.providers.registry import default_providers
from orchestrator.observers.logging import LoggingObserver
from orchestrator.observers.metrics import MetricsObserver
from orchestrator.observers.recorder import EventRecorder
from orchestrator.observers.tracing import TracingObserver
from tests.fake_providers import FakeServer, Reply, SleepRecorder, clean_provider_env, error, openai_answer
from tests.scripted import ScriptedProvider, decomposition

PLAN = decomposition(
    {"id": "a", "type": "code_generation", "prompt": "write add(a, b)", "depends_on": []},
    {"id": "b", "type": "code_generation", "prompt": "write mul(a, b)", "depends_on": ["a"]},
)
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
MODEL_SECRET = "ZEBRA_MODEL_WROTE_THIS_7731"


def _spans(capture: bool = False) -> tuple[InMemorySpanExporter, TracingObserver]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, TracingObserver(provider, capture_content=capture)


def _remote(provider: ScriptedProvider) -> UnifiedClient:
    provider.name = "openai"
    return UnifiedClient({"openai": provider})


# -- totals --------------------------------------------------------------------------------


def test_every_total_is_the_sum_of_its_calls_planning_and_cache_included(tmp_path):
    """Root and task roll-ups, the summary's usage and the metrics all count every call,
    the decomposition included; cached answers count as calls with no tokens and $0."""
    for round_ in ("fresh", "cached"):
        exporter, observer = _spans()
        reader = InMemoryMetricReader()
        metrics = MetricsObserver(MeterProvider(metric_readers=[reader]))
        cache = ResponseCache(tmp_path)
        provider = ScriptedProvider(plan=PLAN, tokens=(100, 50))
        provider.name = "openai"
        client = UnifiedClient({"openai": provider}, cache=cache)
        with observer, metrics:
            state = asyncio.run(Orchestrator(budget=Budget(5.0, 600), client=client).run_project("Build", "works"))
        assert state.status == ProjectStatus.SUCCESS
        spans = exporter.get_finished_spans()
        calls = [s for s in spans if s.name.startswith("llm_call:")]
        root = next(s for s in spans if s.name == "run_project").attributes
        usage = state.usage
        provider_in = sum(s.attributes.get("gen_ai.usage.input_tokens", 0) for s in calls)
        provider_out = sum(s.attributes.get("gen_ai.usage.output_tokens", 0) for s in calls)
        cached = [s for s in calls if s.attributes["llm.cached"]]
        assert root["project.tokens_in"] == provider_in == usage.input_tokens
        assert root["project.tokens_out"] == provider_out == usage.output_tokens
        assert root["project.llm_calls"] == len(calls) == usage.llm_calls
        assert root["project.cached_calls"] == len(cached) == usage.cached_calls
        assert root["project.cost_usd"] == pytest.approx(sum(s.attributes["llm.cost_usd"] for s in calls))
        assert usage.cost_usd == pytest.approx(state.budget.spent_usd)
        assert state.planning.llm_calls == 1  # the decomposition is counted, in no task
        for tid, result in state.results.items():
            task = next(s for s in spans if s.name == f"task:{tid}")
            below = [
                s
                for s in calls
                if s.parent.span_id == task.context.span_id
                or any(
                    r.parent.span_id == task.context.span_id and s.parent.span_id == r.context.span_id
                    for r in spans
                    if r.name == "remediation"
                )
            ]
            assert task.attributes["task.llm_calls"] == len(below) == result.llm_calls
            assert task.attributes["task.tokens_in"] == sum(
                s.attributes.get("gen_ai.usage.input_tokens", 0) for s in below
            )
        data = {
            m.name: m
            for rm in reader.get_metrics_data().resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }
        points = data["gen_ai.client.token.usage"].data.data_points if "gen_ai.client.token.usage" in data else []
        tokens = sum(dp.sum for dp in points if dp.attributes["gen_ai.token.type"] == "input")
        assert tokens == usage.input_tokens
        if round_ == "fresh":
            assert cached == [] and usage.input_tokens == 100 * usage.llm_calls
        else:  # the same run again: every answer from the cache
            assert len(cached) == len(calls) and usage.input_tokens == 0 and usage.cost_usd == 0
            assert sum(dp.value for dp in data["orchestrator.llm.cache_hits"].data.data_points) == len(calls)
        cache.close()


# -- content only on opt-in ----------------------------------------------------------------


def _chatty_provider() -> ScriptedProvider:
    """Answers that quote a marker: in the code, the evaluator's reasons and a validator's
    complaint (first round's code does not parse)."""
    answers = {"n": 0}

    def answer(request):
        answers["n"] += 1
        if answers["n"] == 3:  # the first revision does not parse: a validator complains
            return f"```python\ndef add(a, b) {MODEL_SECRET}\n```"
        return f"```python\n# {MODEL_SECRET}\ndef add(a, b):\n    return a + b\n```"

    return ScriptedProvider(
        answer=answer,
        score=0.5,
        reasons=f"{MODEL_SECRET} looks half done",
        plan=decomposition({"id": "a", "type": "code_generation", "prompt": "write add(a, b)", "depends_on": []}),
    )


@pytest.mark.parametrize("capture", [False, True])
def test_no_model_text_anywhere_without_capture(capture, tmp_path, caplog):
    exporter, observer = _spans(capture)
    jsonl = tmp_path / "events.jsonl"
    recorder = EventRecorder(jsonl_path=jsonl, include_content=capture)
    logs = LoggingObserver()
    with observer, recorder, logs, caplog.at_level(logging.DEBUG, logger="orchestrator"):
        state = asyncio.run(
            Orchestrator(budget=Budget(5.0, 600), client=_remote(_chatty_provider())).run_project(
                "Build add", "it adds"
            )
        )
    assert state.results["a"].output  # the run produced model text to leak
    remediations = [e for e in recorder.events if isinstance(e, events.RemediationFinished)]
    assert remediations and any("remediation.detail" in e.attributes for e in remediations)
    assert any(isinstance(e, events.ValidationFailed) for e in recorder.events)
    seen = []
    for span in exporter.get_finished_spans():
        seen.extend(str(v) for v in span.attributes.values())
        seen.extend(str(v) for e in span.events for v in e.attributes.values())
    seen.extend(r.getMessage() for r in caplog.records)
    seen.append(jsonl.read_text())
    leaked = [text for text in seen if MODEL_SECRET in text]
    if capture:
        assert leaked  # on opt-in the text is there, in the content attributes
    else:
        assert leaked == []
        details = [
            span.attributes["remediation.detail"]
            for span in exporter.get_finished_spans()
            if "remediation.detail" in span.attributes
        ]
        assert details and all(d.startswith("[content omitted: ") for d in details)


def test_point_event_strings_and_log_lines_are_redacted(monkeypatch, caplog):
    key = "sk-ant-REDACTME0123456789abcdef"
    monkeypatch.setenv("SOME_PROVIDER_API_KEY", "plainvalue-1234567")
    exporter, observer = _spans()
    logs = LoggingObserver()
    with observer, logs, caplog.at_level(logging.DEBUG, logger="orchestrator"):
        with events.traced_task("t1", "code_generation"), events.traced_llm_call("m", "generate"):
            events.emit(events.model_unhealthy, model="m", reason=f"rejected {key} and plainvalue-1234567")
            try:
                with events.traced_llm_call("m", "critique"):
                    raise RuntimeError(f"provider said {key}")
            except RuntimeError:
                pass
    texts = [str(v) for s in exporter.get_finished_spans() for e in s.events for v in e.attributes.values()]
    texts += [s.status.description or "" for s in exporter.get_finished_spans()]
    texts += [r.getMessage() for r in caplog.records]
    assert any("[REDACTED]" in t for t in texts)
    assert not [t for t in texts if key in t or "plainvalue-1234567" in t]


# -- receivers -----------------------------------------------------------------------------


@pytest.mark.parametrize("position", ["first", "between", "last"])
@pytest.mark.parametrize("error", [RuntimeError, asyncio.CancelledError])
def test_a_raising_receiver_anywhere_stops_no_other_receiver(position, error, caplog):
    def broken(payload):
        raise error("observer bug")

    def run_with(order):
        recorder = EventRecorder()
        exporter, observer = _spans()
        for item in order:
            if item == "broken":
                for sig in events.ALL_SIGNALS:
                    sig.connect(broken)
            else:
                {"recorder": recorder, "tracing": observer}[item].subscribe()
        try:
            state = asyncio.run(
                Orchestrator(
                    budget=Budget(1.0, 600), client=UnifiedClient({"local": ScriptedProvider(plan=PLAN)})
                ).run_project("Build", "works")
            )
        finally:
            recorder.unsubscribe()
            observer.unsubscribe()
            for sig in events.ALL_SIGNALS:
                sig.disconnect(broken)
        return state, recorder, exporter

    baseline, base_rec, base_spans = run_with(["recorder", "tracing"])
    order = {
        "first": ["broken", "recorder", "tracing"],
        "between": ["recorder", "broken", "tracing"],
        "last": ["recorder", "tracing", "broken"],
    }[position]
    with caplog.at_level(logging.WARNING, logger="orchestrator.events"):
        state, rec, spans = run_with(order)
    assert state.status == baseline.status == ProjectStatus.SUCCESS
    assert rec.names() == base_rec.names() and rec.unfinished() == []
    assert sorted(s.name for s in spans.get_finished_spans()) == sorted(s.name for s in base_spans.get_finished_spans())
    assert any("observer bug" in r.getMessage() for r in caplog.records)


# -- what the engine and the client send ---------------------------------------------------


class _AtTheBound(ScriptedProvider):
    """Reports the most an honest provider could: every call costs its full reservation."""

    async def complete(self, request):
        from dataclasses import replace

        from orchestrator.llm.costing import worst_case_input_tokens

        answer = await super().complete(request)
        return replace(
            answer,
            input_tokens=worst_case_input_tokens(request.system, request.prompt, request.json_schema),
            output_tokens=request.max_tokens,
        )


def test_tasks_planned_and_budget_warnings_come_from_a_real_engine_run():
    provider = _AtTheBound(plan=PLAN)
    recorder = EventRecorder()
    with recorder:
        state = asyncio.run(
            Orchestrator(budget=Budget(0.15, 600), client=_remote(provider)).run_project("Build", "works")
        )
    (planned,) = recorder.of("tasks_planned")
    assert planned.task_count == 2 and set(planned.task_ids) == {"a", "b"}
    warnings = recorder.of("budget_warning")
    crossed = [w.reason for w in warnings if w.reason.startswith("spent")]
    assert crossed[:2] == ["spent 50% of the budget", "spent 80% of the budget"]
    assert all(w.fraction <= 1.0 for w in warnings) and state.budget.spent_usd <= 0.15
    assert not [w for w in warnings if w.reason.startswith("overrun")]


async def test_the_cache_key_holds_the_json_schema(tmp_path):
    provider = ScriptedProvider(answer='{"answer": "x"}')
    client = UnifiedClient({"local": provider}, cache=ResponseCache(tmp_path))
    other = {"type": "object", "properties": {"other": {"type": "number"}}}
    first = await client.call("smollm2-135m", "q", json_schema=SCHEMA)
    second = await client.call("smollm2-135m", "q", json_schema=other)
    third = await client.call("smollm2-135m", "q", json_schema=SCHEMA)
    assert (first.cached, second.cached, third.cached) == (False, False, True)
    assert len(provider.requests) == 2


async def test_every_llm_call_hangs_under_its_own_task_or_remediation(span_exporter):
    provider = ScriptedProvider(
        plan=decomposition(
            *({"id": f"t{i}", "type": "code_generation", "prompt": f"write f{i}", "depends_on": []} for i in range(6))
        ),
        answer=lambda r: (
            "def broken(:"
            if "revise" in r.prompt.lower() or "improved" in r.prompt
            else "```python\ndef f():\n    return 1\n```"
        ),
        latency=0.005,
    )
    orch = Orchestrator(budget=Budget(5.0, 600), client=UnifiedClient({"local": provider}), concurrency=6)
    await orch.run_project("Build six", "works")
    spans = {s.context.span_id: s for s in span_exporter.get_finished_spans()}
    for call in span_exporter.spans("llm_call:"):
        parent = spans[call.parent.span_id]
        if call.name == "llm_call:decompose":
            assert parent.name == "run_project"
            continue
        assert parent.name.startswith(("task:", "remediation")), parent.name
        task = parent if parent.name.startswith("task:") else spans[parent.parent.span_id]
        assert task.name == f"task:{call.attributes.get('task.id', task.name[5:])}"
        assert task.attributes["task.id"] == _task_of(call, spans)


def _task_of(span, spans):
    while not span.name.startswith("task:"):
        span = spans[span.parent.span_id]
    return span.attributes["task.id"]


# -- GenAI conventions on the wire ---------------------------------------------------------


@pytest.fixture
def openai_server(monkeypatch):
    clean_provider_env(monkeypatch)
    with FakeServer("openai", tokens=(30, 12)) as srv:
        yield srv


async def test_genai_attributes_of_an_openai_compatible_call(openai_server, monkeypatch):
    exporter, observer = _spans(capture=True)
    openai_server.push(
        Reply(body={**openai_answer("hi"), "id": "chatcmpl-xyz-42"}),
        error("openai", 400, "response_format json_schema is not supported"),
        Reply(body={**openai_answer('{"answer": "a"}'), "id": "chatcmpl-json"}),
    )
    provider = OpenAICompatProvider.for_server(openai_server.url)
    from orchestrator.llm.catalog import register_model, unregister_model
    from orchestrator.llm.providers.registry import server_model_info

    previous = register_model(server_model_info("srv-model", openai_server.url))
    client = UnifiedClient({"server": provider}, sleep=SleepRecorder())
    try:
        with observer:
            await client.call("srv-model", "say hi", system="be brief")
            await client.call("srv-model", "answer", system="be exact", json_schema=SCHEMA, call_type="evaluate")
    finally:
        await client.aclose()  # on this test's loop: left to the collector, it would close on a later test's
        unregister_model("srv-model", previous)
    text, js = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time)
    for span in (text, js):
        a = span.attributes
        assert a["gen_ai.provider.name"] == "openai" and a["server.address"] == "127.0.0.1"
        assert a["server.port"] == openai_server.port
        assert "gen_ai.system_instructions" not in a  # sent as a chat message, recorded as one
    assert text.attributes["gen_ai.response.id"] == "chatcmpl-xyz-42"
    assert text.attributes["gen_ai.output.type"] == "text" and js.attributes["gen_ai.output.type"] == "json"
    assert json.loads(text.attributes["gen_ai.input.messages"])[0]["role"] == "system"
    (rejected,) = [e for e in js.events if e.name == "json_mode_rejected"]
    assert rejected.attributes["status_code"] == 400 and rejected.attributes["mode"] == "json_schema"
    system = json.loads(js.attributes["gen_ai.input.messages"])[0]["parts"][0]["content"]
    assert system.startswith("be exact") and '"answer"' in system  # what was really sent: the schema too
    assert js.attributes["gen_ai.response.id"] == "chatcmpl-json"


async def test_provider_names_and_system_placement_follow_the_registry(monkeypatch):
    clean_provider_env(monkeypatch)
    exporter, observer = _spans(capture=True)
    with FakeServer("openai") as oa, FakeServer("anthropic") as an:
        monkeypatch.setenv("KIMI_API_KEY", "kimi-key-0123456789")
        monkeypatch.setenv("KIMI_BASE_URL", oa.url)
        providers = default_providers(dotenv=False)
        providers["anthropic"] = AnthropicProvider(api_key="ant-key-0123456789", base_url=an.url)
        client = UnifiedClient(providers, sleep=SleepRecorder())
        try:
            with observer:
                await client.call("kimi-k3", "hi", system="sys-kimi")
                await client.call("claude-haiku-4-5", "hi", system="sys-claude")
        finally:
            await client.aclose()
    kimi, claude = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time)
    assert kimi.attributes["gen_ai.provider.name"] == "moonshot_ai"
    assert claude.attributes["gen_ai.provider.name"] == "anthropic"
    assert claude.attributes["gen_ai.response.id"] == "msg_1"
    assert json.loads(claude.attributes["gen_ai.system_instructions"])[0]["content"] == "sys-claude"
    assert [m["role"] for m in json.loads(claude.attributes["gen_ai.input.messages"])] == ["user"]
    assert claude.attributes["server.address"] == "127.0.0.1"


# -- waiting is not working ----------------------------------------------------------------


async def test_queueing_for_the_concurrency_limit_is_told_apart(span_exporter):
    reader = InMemoryMetricReader()
    metrics = MetricsObserver(MeterProvider(metric_readers=[reader]))
    provider = ScriptedProvider(answer="ok", latency=0.3)
    client = UnifiedClient({"local": provider}, concurrency=1)
    with metrics:
        await asyncio.gather(client.call("smollm2-135m", "one"), client.call("smollm2-135m", "two"))
    first, second = sorted(span_exporter.spans("llm_call:"), key=lambda s: s.attributes["orchestrator.queue_ms"])
    assert first.attributes["orchestrator.queue_ms"] < 100
    assert second.attributes["orchestrator.queue_ms"] >= 250  # waited for the first call
    (dispatched,) = [e for e in second.events if e.name == "llm_call_dispatched"]
    assert dispatched.attributes["queue_ms"] == second.attributes["orchestrator.queue_ms"]
    assert second.attributes["llm.latency_ms"] < 0.3 * 1000 + 150
    data = [
        m
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "gen_ai.client.operation.duration"
    ]
    (point,) = data[0].data.data_points
    assert point.count == 2 and point.max < 0.3 + 0.15  # the metric measures the call, not the wait
