"""Observers on real engine runs (scripted provider): the seed's span tree, parentage under
50 concurrent tasks, errors and cancellation, a raising receiver, logs and metrics."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.trace import SpanKind, StatusCode

from orchestrator import events
from orchestrator.domain.budget import Budget
from orchestrator.domain.results import ProjectStatus
from orchestrator.domain.tasks import Task, TaskType
from orchestrator.engine import Orchestrator
from orchestrator.llm.client import UnifiedClient
from orchestrator.observers.logging import LoggingObserver
from orchestrator.observers.metrics import DURATION_BUCKETS, TOKEN_USAGE_BUCKETS, MetricsObserver
from orchestrator.observers.recorder import EventRecorder
from tests.scripted import ScriptedProvider, decomposition

PLAN = decomposition(
    {"id": "a", "type": "code_generation", "prompt": "write add(a, b)", "depends_on": []},
    {"id": "b", "type": "code_generation", "prompt": "write mul(a, b)", "depends_on": ["a"]},
)


def remote_client(provider: ScriptedProvider, **kw) -> UnifiedClient:
    """Only an 'openai' adapter: the router picks gpt-6.1-sol (a remote, priced model)."""
    provider.name = "openai"
    return UnifiedClient({"openai": provider}, **kw)


def run(orch: Orchestrator, description: str = "Build a calculator", criteria: str = "it adds"):
    return asyncio.run(orch.run_project(description, criteria))


def test_engine_run_produces_the_seed_span_tree(span_exporter, orchestrator_events):
    provider = ScriptedProvider(plan=PLAN)
    state = run(Orchestrator(budget=Budget(1.0, 600), client=remote_client(provider), concurrency=2))
    assert state.status == ProjectStatus.SUCCESS
    spans = span_exporter.get_finished_spans()
    assert span_exporter.observer.open_span_count == 0
    root = span_exporter.by_name("run_project")
    assert root.parent is None
    ra = root.attributes
    assert ra["project.id"] == state.project_id and ra["project.description"] == "Build a calculator"
    assert ra["project.status"] == "success"
    assert ra["project.cost_usd"] == pytest.approx(state.budget.spent_usd)
    assert ra["project.tokens_in"] > 0 and ra["project.llm_calls"] == len(provider.requests)
    decompose = span_exporter.by_name("llm_call:decompose")
    assert span_exporter.parent_of(decompose) is root
    for task_id in ("a", "b"):
        task = span_exporter.by_name(f"task:{task_id}")
        assert span_exporter.parent_of(task) is root
        a = task.attributes
        result = state.results[task_id]
        assert a["task.id"] == task_id and a["task.type"] == "code_generation"
        assert a["task.description"] == {"a": "write add(a, b)", "b": "write mul(a, b)"}[task_id]
        assert a["task.status"] == "completed" and a["task.score"] == pytest.approx(result.score)
        assert a["task.iterations"] == result.iterations and a["task.model"] == result.model_used == "gpt-6.1-sol"
        assert a["task.cost_usd"] == pytest.approx(result.cost_usd)
        children = [s for s in spans if s.parent is not None and s.parent.span_id == task.context.span_id]
        assert [c.name for c in sorted(children, key=lambda s: s.start_time)] == [
            "llm_call:generate",
            "llm_call:critique",
            "llm_call:revise",
            "llm_call:evaluate",
            "llm_call:evaluate",
        ]  # a remote evaluator takes two samples
    calls = span_exporter.spans("llm_call:")
    assert len(calls) == len(provider.requests)
    for call in calls:
        a = call.attributes
        assert call.kind == SpanKind.CLIENT
        assert a["llm.model"] == a["gen_ai.request.model"] == "gpt-6.1-sol"
        assert a["gen_ai.provider.name"] == "openai" and a["gen_ai.operation.name"] == "chat"
        assert a["llm.tokens_in"] == a["gen_ai.usage.input_tokens"] == 100
        assert a["llm.tokens_out"] == a["gen_ai.usage.output_tokens"] == 50
        assert a["llm.cost_usd"] > 0 and a["llm.cached"] is False and a["llm.latency_ms"] >= 0
        assert a["gen_ai.response.finish_reasons"] == ("stop",)
        assert call.context.trace_id == root.context.trace_id
    # every request carried the traceparent of its own span
    by_span = {f"{s.context.span_id:016x}" for s in calls}
    sent = {r.headers["traceparent"].split("-")[2] for r in provider.requests}
    assert sent == by_span
    assert orchestrator_events.unfinished() == []


def test_fifty_concurrent_tasks_keep_their_own_parents(span_exporter, orchestrator_events, caplog):
    rng = random.Random(7)

    async def jitter(request):
        await asyncio.sleep(rng.random() * 0.004)
        return "```python\ndef f():\n    return 1\n```"

    class Jittery(ScriptedProvider):
        async def complete(self, request):
            await asyncio.sleep(rng.random() * 0.004)
            return await super().complete(request)

    tasks = [Task(id=f"t{i:02d}", type=TaskType.CODE_GENERATION, prompt=f"write f{i}") for i in range(50)]
    provider = Jittery()
    client = UnifiedClient({"local": provider}, concurrency=50)
    orch = Orchestrator(budget=Budget(1.0, 600), client=client, concurrency=50, project_tasks=tasks)
    with caplog.at_level(logging.DEBUG):
        state = run(orch)
    assert state.status == ProjectStatus.SUCCESS and len(state.results) == 50
    assert not [r for r in caplog.records if "Failed to detach" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    observer = span_exporter.observer
    assert observer.open_span_count == 0
    spans = {f"{s.context.span_id:016x}": s for s in span_exporter.get_finished_spans()}
    assert all(s.end_time is not None for s in spans.values())
    task_span_of = {}
    for started in orchestrator_events.of("task_started"):
        _, span_id = observer.span_ids(started.correlation_id)
        assert spans[span_id].name == f"task:{started.task_id}"
        task_span_of[started.task_id] = span_id
    calls = orchestrator_events.of("llm_call_started")
    assert len(calls) == len(provider.requests) == 50 * 4
    for call in calls:
        _, span_id = observer.span_ids(call.correlation_id)
        parent = spans[span_id].parent
        assert f"{parent.span_id:016x}" == task_span_of[call.task_id], call.task_id
    # runs overlapped for real: some task started before another finished
    names = orchestrator_events.names()
    assert names.index("task_finished") > names.index("task_started") + 1


def test_a_body_that_raises_ends_every_span_with_error(span_exporter, monkeypatch):
    def broken_validators(*args, **kwargs):
        raise RuntimeError("engine bug")

    monkeypatch.setattr("orchestrator.engine.rounds.run_validators", broken_validators)
    provider = ScriptedProvider(plan=PLAN)
    with pytest.raises(RuntimeError, match="engine bug"):
        run(Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({"local": provider})))
    assert span_exporter.observer.open_span_count == 0
    root = span_exporter.by_name("run_project")
    task = span_exporter.by_name("task:a")
    for s in (root, task):
        assert s.status.status_code == StatusCode.ERROR
        assert s.attributes["error.type"] == "RuntimeError"
        assert any(e.name == "exception" for e in s.events)
    assert span_exporter.by_name("llm_call:generate").status.status_code == StatusCode.UNSET


def test_an_adapter_bug_fails_its_call_not_the_project(span_exporter, orchestrator_events):
    """Any exception from a provider adapter (not a ProviderError) fails that call, which
    then goes to remediation like any provider error; the project runs on."""

    def answer(request):
        if "Review:" in request.prompt and not seen:  # the first revise call
            seen.append(request)
            raise RuntimeError("adapter bug")
        return "```python\ndef add(a, b):\n    return a + b\n```"

    seen: list = []
    plan = decomposition(
        {"id": "a", "type": "code_generation", "prompt": "write add(a, b)", "depends_on": []},
        {"id": "b", "type": "code_generation", "prompt": "write mul(a, b)", "depends_on": []},
    )
    provider = ScriptedProvider(plan=plan, answer=answer)
    state = run(Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({"local": provider}), concurrency=1))
    # the bug was not transient and there is no other model: that task fails (as after a 400);
    # the other task and the project go on
    assert state.results["a"].status.value == "failed" and "adapter bug" in state.results["a"].error
    assert state.results["b"].status.value == "completed" and state.status.value == "partial_success"
    assert span_exporter.observer.open_span_count == 0
    failed = [s for s in span_exporter.spans("llm_call:revise") if s.status.status_code == StatusCode.ERROR]
    assert len(failed) == 1 and failed[0].attributes["error.type"] == "RuntimeError"
    assert span_exporter.by_name("run_project").status.status_code != StatusCode.ERROR
    assert [s.trigger for s, _ in orchestrator_events.pairs("remediation")][:1] == ["llm_error"]


async def test_a_cancelled_run_leaves_no_span_open(span_exporter, orchestrator_events):
    provider = ScriptedProvider(plan=PLAN, latency=0.05)
    orch = Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({"local": provider}))
    run_task = asyncio.ensure_future(orch.run_project("Build", "works"))
    # cancel while the task's first call is in flight: wait for that event, not a fixed time
    while len(orchestrator_events.of("llm_call_started")) < 2:
        await asyncio.sleep(0.001)
    run_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run_task
    assert span_exporter.observer.open_span_count == 0
    assert orchestrator_events.unfinished() == []
    root = span_exporter.by_name("run_project")
    assert root.status.status_code == StatusCode.ERROR and root.attributes["error.type"] == "CancelledError"
    task = span_exporter.by_name("task:a")
    assert task.status.status_code == StatusCode.ERROR
    open_call = [s for s in span_exporter.spans("llm_call:") if s.status.status_code == StatusCode.ERROR]
    assert len(open_call) == 1 and open_call[0].attributes["error.type"] == "CancelledError"


def test_a_raising_receiver_changes_nothing_for_others(span_exporter, caplog):
    def one_run(extra=None):
        recorder = EventRecorder().subscribe()
        if extra:
            for sig in events.ALL_SIGNALS:
                sig.connect(extra)
        try:
            provider = ScriptedProvider(plan=PLAN)
            state = run(Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({"local": provider})))
        finally:
            recorder.unsubscribe()
            if extra:
                for sig in events.ALL_SIGNALS:
                    sig.disconnect(extra)
        return state, recorder

    baseline, base_rec = one_run()
    base_spans = len(span_exporter.get_finished_spans())
    span_exporter.clear()

    def broken(payload):
        raise RuntimeError("observer bug")

    with caplog.at_level(logging.WARNING, logger="orchestrator.events"):
        state, rec = one_run(broken)
    assert state.status == baseline.status == ProjectStatus.SUCCESS
    assert {k: (r.status, r.output, r.score, r.iterations) for k, r in state.results.items()} == {
        k: (r.status, r.output, r.score, r.iterations) for k, r in baseline.results.items()
    }
    assert rec.names() == base_rec.names()
    assert len(span_exporter.get_finished_spans()) == base_spans
    assert span_exporter.observer.open_span_count == 0
    assert any("observer bug" in r.getMessage() for r in caplog.records)


def test_logging_observer_one_line_per_finished_pair_with_span_ids(span_exporter, caplog):
    provider = ScriptedProvider(plan=PLAN)
    with LoggingObserver(), caplog.at_level(logging.INFO, logger="orchestrator"):
        state = run(Orchestrator(budget=Budget(1.0, 600), client=remote_client(provider)))
    lines = [r for r in caplog.records if r.name == "orchestrator"]
    spans = span_exporter.get_finished_spans()
    assert len(lines) == len(spans)  # one per finished pair
    by_name = {}
    for r in lines:
        data = r.orchestrator
        by_name.setdefault(data["event"], []).append(data)
        assert r.levelno == logging.INFO and data["status"] == "ok"
        assert data["trace_id"] == f"{spans[0].context.trace_id:032x}"
    project = by_name["run_project"][0]
    assert project["project_status"] == "success" and project["project_id"] == state.project_id
    call = by_name["llm_call:generate"][0]
    assert call["model"] == "gpt-6.1-sol" and call["tokens_in"] == 100 and call["tokens_out"] == 50
    assert call["cost_usd"] > 0 and call["duration_ms"] >= 0
    span_ids = {f"{s.context.span_id:016x}" for s in spans}
    assert {d["span_id"] for group in by_name.values() for d in group} == span_ids
    message = next(r.getMessage() for r in lines if r.orchestrator["event"] == "task:a")
    assert message.startswith("task:a status=ok duration_ms=") and "task_status=completed" in message


def test_logging_without_tracing_imports_nothing_and_has_no_ids(caplog):
    provider = ScriptedProvider(plan=PLAN)
    with LoggingObserver(), caplog.at_level(logging.INFO, logger="orchestrator"):
        run(Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({"local": provider})))
    records = [r for r in caplog.records if r.name == "orchestrator"]
    assert records and all("trace_id" not in r.orchestrator for r in records)


def test_metrics_observer_records_the_gen_ai_instruments():
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    provider = ScriptedProvider(plan=PLAN)
    with MetricsObserver(meter_provider):
        state = run(Orchestrator(budget=Budget(1.0, 600), client=remote_client(provider)))
    data = reader.get_metrics_data()
    metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    usage = metrics["gen_ai.client.token.usage"]
    assert usage.unit == "{token}"
    points = {
        p.attributes["gen_ai.token.type"]: p
        for p in usage.data.data_points
        if p.attributes["orchestrator.call_type"] == "generate"
    }
    assert set(points) == {"input", "output"}
    assert tuple(points["input"].explicit_bounds) == TOKEN_USAGE_BUCKETS
    assert points["input"].sum == 100 * points["input"].count
    attrs = points["input"].attributes
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-6.1-sol" and attrs["gen_ai.response.model"] == "gpt-6.1-sol"
    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    assert sum(p.count for p in duration.data.data_points) == len(provider.requests)
    assert tuple(duration.data.data_points[0].explicit_bounds) == DURATION_BUCKETS
    cost = sum(p.value for p in metrics["orchestrator.llm.cost"].data.data_points)
    assert cost == pytest.approx(state.budget.spent_usd)
    tasks = {p.attributes["task.status"]: p.value for p in metrics["orchestrator.tasks"].data.data_points}
    assert tasks == {"completed": 2}
    projects = metrics["orchestrator.projects"].data.data_points
    assert [(p.attributes["project.status"], p.value) for p in projects] == [("success", 1)]
    meter_provider.shutdown()


def test_metrics_count_failed_calls_with_error_type():
    from orchestrator.llm.providers.base import ProviderError

    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    provider = ScriptedProvider(
        plan=PLAN, answer=ProviderError("bad request", status_code=400, error_type="BadRequest")
    )
    with MetricsObserver(meter_provider):
        run(Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({"local": provider})))
    data = reader.get_metrics_data()
    metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    failed = [p for p in metrics["gen_ai.client.operation.duration"].data.data_points if "error.type" in p.attributes]
    assert failed and all(p.attributes["error.type"] == "BadRequest" for p in failed)
    tasks = {p.attributes["task.status"] for p in metrics["orchestrator.tasks"].data.data_points}
    assert "failed" in tasks
    meter_provider.shutdown()
