"""Trace context through the configured propagator only: ``OTEL_PROPAGATORS`` decides what
goes into the events' carriers (what a provider request carries, what the checkpoint
keeps of a root) and what a resumed run links to.

``opentelemetry.propagate`` reads ``OTEL_PROPAGATORS`` once, when it is first imported,
so the end-to-end cases run in a child process each; the in-process cases set the global
propagator with ``set_global_textmap``, as an application may."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry import baggage, propagate
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, get_current_span, set_span_in_context

from orchestrator.events import traced_llm_call, traced_project
from orchestrator.observers.tracing import resume_links

ROOT = Path(__file__).resolve().parents[2]

# A first run interrupted after its plan and two tasks, resumed in the same process; a
# second project on a remote ("openai") provider whose requests carry the carrier.
SCRIPT = """
import asyncio, json, sys
from opentelemetry import baggage, context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator.engine import Orchestrator
from orchestrator.domain.budget import Budget
from orchestrator.llm.catalog import ModelInfo, register_model
from orchestrator.llm.client import UnifiedClient
from orchestrator.observers.tracing import TracingObserver
from orchestrator.state import RunStore
from tests.engine.test_resume_engine import PRICED, Script, _interrupted_run, _orch
from tests.scripted import ScriptedProvider

exporter = InMemorySpanExporter()
provider = TracerProvider(shutdown_on_exit=False)
provider.add_span_processor(SimpleSpanProcessor(exporter))
TracingObserver(provider).subscribe()
register_model(ModelInfo(PRICED, "local", 2.0, 6.0, 8192, 512, region="local"))
context.attach(baggage.set_baggage("tenant", "acme"))  # the application's own baggage


async def main():
    store = RunStore(sys.argv[1])
    pid = await _interrupted_run(store, Script())
    first = [s for s in exporter.get_finished_spans() if s.name == "run_project"][0]
    roots = store.load(pid).roots
    exporter.clear()
    await _orch(store, Script(broken=False, block_slow=False)).resume(pid)
    resumed = [s for s in exporter.get_finished_spans() if s.name == "run_project"][0]
    remote = ScriptedProvider()
    remote.name = "openai"
    await Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({"openai": remote})).run_project("x", "y")
    print("RESULT", json.dumps({
        "first_root": [f"{first.context.trace_id:032x}", f"{first.context.span_id:016x}"],
        "flags": f"{first.context.trace_flags:02x}",
        "roots": roots,
        "links": [[f"{l.context.trace_id:032x}", f"{l.context.span_id:016x}"] for l in resumed.links],
        "headers": [dict(r.headers or {}) for r in remote.requests],
    }))


asyncio.run(main())
"""


def run_child(tmp_path: Path, propagators: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if propagators is not None:
        env["OTEL_PROPAGATORS"] = propagators
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_default_propagators_send_w3c_trace_context_and_baggage(tmp_path):
    out = run_child(tmp_path, None)  # the default: tracecontext,baggage
    trace_id, span_id = out["first_root"]
    (root,) = out["roots"]
    assert root["carrier"]["traceparent"] == f"00-{trace_id}-{span_id}-{out['flags']}" == root["traceparent"]
    assert root["carrier"]["baggage"] == "tenant=acme"
    assert out["links"] == [[trace_id, span_id]]
    assert out["headers"]
    for headers in out["headers"]:
        assert headers["traceparent"].startswith("00-") and headers["baggage"] == "tenant=acme"
        assert not any(k.lower().startswith(("b3", "x-b3")) for k in headers)


def test_b3_propagator_changes_the_carriers_and_what_a_resume_links_to(tmp_path):
    import opentelemetry.propagators.b3  # noqa: F401 - the dev extra installs it; never skipped

    out = run_child(tmp_path, "b3")
    trace_id, span_id = out["first_root"]
    (root,) = out["roots"]
    assert root["carrier"] == {"b3": f"{trace_id}-{span_id}-1"}  # B3 single header, no W3C
    assert "traceparent" not in root
    assert out["links"] == [[trace_id, span_id]]  # read back with the B3 propagator
    for headers in out["headers"]:
        assert set(headers) == {"b3"}


def test_no_propagator_sends_nothing_and_a_resume_has_nothing_to_link(tmp_path):
    out = run_child(tmp_path, "none")
    assert out["roots"] == [] and out["links"] == []
    assert out["headers"] and all(headers == {} for headers in out["headers"])


# -- in process: the global propagator an application sets ---------------------------------


class TenantPropagator(TextMapPropagator):
    """A custom format: ``x-tenant-trace: <trace id>:<span id>``."""

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        sc = get_current_span(context).get_span_context()
        if sc.is_valid:
            setter.set(carrier, "x-tenant-trace", f"{sc.trace_id:032x}:{sc.span_id:016x}")

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        values = getter.get(carrier, "x-tenant-trace")
        if not values:
            return context if context is not None else Context()
        trace_id, span_id = (int(part, 16) for part in values[0].split(":"))
        sc = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        return set_span_in_context(NonRecordingSpan(sc), context)

    @property
    def fields(self) -> set[str]:
        return {"x-tenant-trace"}


@pytest.fixture
def tenant_propagator():
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(TenantPropagator())
    yield
    propagate.set_global_textmap(before)


def test_the_global_propagator_writes_the_call_and_root_carriers(span_exporter, tenant_propagator):
    with traced_project("p1", "d") as project:
        with traced_llm_call("gpt-4o", "generate", provider="openai") as call:
            sent = dict(call.carrier)
        kept = dict(project.carrier)
    call_span = span_exporter.by_name("llm_call:generate")
    root = span_exporter.by_name("run_project")
    assert sent == {"x-tenant-trace": f"{call_span.context.trace_id:032x}:{call_span.context.span_id:016x}"}
    assert kept == {"x-tenant-trace": f"{root.context.trace_id:032x}:{root.context.span_id:016x}"}


def test_a_resume_links_through_the_global_propagator(span_exporter, tenant_propagator):
    with traced_project("p1", "d") as first:
        carrier = dict(first.carrier)
    with traced_project("p1", "d", attempt=2, links=(carrier,)):
        pass
    original, resumed = sorted(span_exporter.spans("run_project"), key=lambda s: s.start_time)
    (link,) = resumed.links
    assert (link.context.trace_id, link.context.span_id) == (original.context.trace_id, original.context.span_id)
    assert link.attributes == {"orchestrator.link": "resumed_from"}
    assert resumed.attributes["orchestrator.original_trace_id"] == f"{original.context.trace_id:032x}"


def test_resume_links_skip_what_the_propagator_cannot_read():
    tp = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    current = set_span_in_context(NonRecordingSpan(SpanContext(1, 2, is_remote=False)))
    token = otel_context.attach(current)  # a carrier without a span must not link to the current one
    try:
        links = resume_links([{"nothing": "here"}, tp, {"traceparent": "garbage"}, {"traceparent": tp}])
    finally:
        otel_context.detach(token)
    assert [(f"{lk.context.trace_id:032x}", f"{lk.context.span_id:016x}") for lk in links] == [("a" * 32, "b" * 16)] * 2
    assert resume_links([{"traceparent": tp}], TenantPropagator()) == []  # another format: nothing to read


def test_baggage_of_the_caller_travels_with_the_call(span_exporter):
    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with traced_project("p1", "d"), traced_llm_call("gpt-4o", "generate", provider="openai") as call:
            sent = dict(call.carrier)
    finally:
        otel_context.detach(token)
    assert sent["baggage"] == "tenant=acme" and sent["traceparent"].startswith("00-")
