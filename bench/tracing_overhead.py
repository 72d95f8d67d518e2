"""Tracing overhead: the event bus + TracingObserver against direct OpenTelemetry calls.

One workload - a task span holding four llm_call spans (generate, critique, revise,
evaluate), with the seed's attributes plus the GenAI and OpenInference ones - is made in
the same process, interleaved round by round:

  (a) the seed's approach: ``tracer.start_as_current_span`` context managers and
      ``span.set_attribute`` calls written directly where the work happens;
  (b) the shipped approach: ``traced_task`` / ``traced_llm_call`` send bus signals and the
      subscribed ``TracingObserver`` makes the spans.

Both write to the same kind of tracer provider (SimpleSpanProcessor into an exporter
that drops spans); the script first checks that (a) and (b) produce the same span
names, kinds, parentage and attributes.  Printed: ns per span for each, the cost of one
emit point with tracing off (nothing subscribed), and last the ratio b/a (target <= 1.15).
"""

from __future__ import annotations

import statistics
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

from orchestrator import events
from orchestrator.observers.tracing import TracingObserver

CALLS = ("generate", "critique", "revise", "evaluate")
SPANS_PER_ITERATION = 1 + len(CALLS)
ITERATIONS = 300
ROUNDS = 25
DESCRIPTION = "Write a token-bucket rate limiter in Python with tests"


class DropExporter(SpanExporter):
    def __init__(self, keep: bool = False) -> None:
        self.kept: list = []
        self.keep = keep

    def export(self, spans):
        if self.keep:
            self.kept.extend(spans)
        return SpanExportResult.SUCCESS


def provider(keep: bool = False) -> tuple[TracerProvider, DropExporter]:
    exporter = DropExporter(keep)
    p = TracerProvider(shutdown_on_exit=False)
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p, exporter


# -- (a) the seed's approach: OpenTelemetry context managers called directly ------------

def direct(tracer) -> None:
    with tracer.start_as_current_span("task:t1") as task:
        task.set_attribute("task.id", "t1")
        task.set_attribute("task.type", "code_generation")
        task.set_attribute("task.description", DESCRIPTION[:200])
        task.set_attribute("openinference.span.kind", "CHAIN")
        tokens_in = tokens_out = 0
        cost = 0.0
        for call_type in CALLS:
            with tracer.start_as_current_span(f"llm_call:{call_type}", kind=SpanKind.CLIENT) as span:
                span.set_attribute("llm.model", "gpt-4o")
                span.set_attribute("llm.call_type", call_type)
                span.set_attribute("gen_ai.operation.name", "chat")
                span.set_attribute("gen_ai.request.model", "gpt-4o")
                span.set_attribute("openinference.span.kind", "LLM")
                span.set_attribute("llm.model_name", "gpt-4o")
                span.set_attribute("gen_ai.provider.name", "openai")
                span.set_attribute("llm.provider", "openai")
                span.set_attribute("gen_ai.request.max_tokens", 1024)
                span.set_attribute("gen_ai.request.temperature", 0.3)
                span.set_attribute("gen_ai.output.type", "text")
                span.set_attribute("llm.invocation_parameters", '{"max_tokens": 1024, "temperature": 0.3}')
                # ... the call happens here ...
                span.set_attribute("llm.tokens_in", 310)
                span.set_attribute("llm.tokens_out", 120)
                span.set_attribute("llm.cost_usd", 0.001975)
                span.set_attribute("llm.latency_ms", 412.3)
                span.set_attribute("llm.cached", False)
                span.set_attribute("llm.finish_reason", "stop")
                span.set_attribute("llm.response_model", "gpt-4o-2024-08-06")
                span.set_attribute("gen_ai.usage.input_tokens", 310)
                span.set_attribute("llm.token_count.prompt", 310)
                span.set_attribute("gen_ai.usage.output_tokens", 120)
                span.set_attribute("llm.token_count.completion", 120)
                span.set_attribute("llm.token_count.total", 430)
                span.set_attribute("gen_ai.response.model", "gpt-4o-2024-08-06")
                span.set_attribute("gen_ai.response.finish_reasons", ("stop",))
                tokens_in += 310
                tokens_out += 120
                cost += 0.001975
        task.set_attribute("task.status", "completed")
        task.set_attribute("task.score", 0.95)
        task.set_attribute("task.iterations", 1)
        task.set_attribute("task.model", "gpt-4o")
        task.set_attribute("task.cost_usd", round(cost, 8))
        task.set_attribute("task.tokens_in", tokens_in)
        task.set_attribute("task.tokens_out", tokens_out)
        task.set_attribute("task.llm_calls", len(CALLS))


# -- (b) through the bus and the TracingObserver -------------------------------------------

def via_bus() -> None:
    with events.traced_task("t1", "code_generation", DESCRIPTION) as task:
        tokens_in = tokens_out = 0
        cost = 0.0
        for call_type in CALLS:
            with events.traced_llm_call("gpt-4o", call_type, provider="openai", max_tokens=1024,
                                        temperature=0.3) as span:
                # ... the call happens here ...
                span.set_attributes({
                    "llm.tokens_in": 310, "llm.tokens_out": 120, "llm.cost_usd": 0.001975,
                    "llm.latency_ms": 412.3, "llm.cached": False, "llm.finish_reason": "stop",
                    "llm.response_model": "gpt-4o-2024-08-06",
                })
                tokens_in += 310
                tokens_out += 120
                cost += 0.001975
        task.set_attributes({"task.status": "completed", "task.score": 0.95, "task.iterations": 1,
                             "task.model": "gpt-4o", "task.cost_usd": round(cost, 8),
                             "task.tokens_in": tokens_in, "task.tokens_out": tokens_out})


def _shape(spans) -> list:
    by_id = {s.context.span_id: s.name for s in spans}
    return sorted((s.name, s.kind.name, by_id.get(s.parent.span_id) if s.parent else None,
                   tuple(sorted((k, v if not isinstance(v, tuple) else tuple(v))
                                for k, v in s.attributes.items())))
                  for s in spans)


def check_same_spans() -> None:
    pa, ea = provider(keep=True)
    direct(pa.get_tracer("bench"))
    pb, eb = provider(keep=True)
    obs = TracingObserver(pb).subscribe()
    try:
        via_bus()
    finally:
        obs.unsubscribe()
    a, b = _shape(ea.kept), _shape(eb.kept)
    if a != b:
        raise SystemExit(f"(a) and (b) differ:\n{a}\n{b}")


def emit_point_off_ns() -> float:
    assert not events.is_active()
    stmt = ('with traced_llm_call("gpt-4o", "generate") as s:\n'
            '    s.set_attribute("llm.tokens_in", 1)\n'
            '    s.set_attribute("llm.tokens_out", 2)\n'
            '    s.set_attribute("llm.cost_usd", 0.1)\n')
    n = 200_000
    return min(timeit.repeat(stmt, globals={"traced_llm_call": events.traced_llm_call},
                             number=n, repeat=5)) / n * 1e9


def main() -> None:
    check_same_spans()
    off = emit_point_off_ns()
    pa, _ = provider()
    tracer = pa.get_tracer("bench")
    pb, _ = provider()
    observer = TracingObserver(pb)
    # warm up both paths
    for _ in range(200):
        direct(tracer)
    with observer:
        for _ in range(200):
            via_bus()
    a_times, b_times = [], []
    for _ in range(ROUNDS):
        t0 = time.perf_counter_ns()
        for _ in range(ITERATIONS):
            direct(tracer)
        a_times.append((time.perf_counter_ns() - t0) / (ITERATIONS * SPANS_PER_ITERATION))
        observer.subscribe()
        t0 = time.perf_counter_ns()
        for _ in range(ITERATIONS):
            via_bus()
        b_times.append((time.perf_counter_ns() - t0) / (ITERATIONS * SPANS_PER_ITERATION))
        observer.unsubscribe()
    a, b = statistics.median(a_times), statistics.median(b_times)
    print(f"workload: 1 task span + {len(CALLS)} llm_call spans, {ROUNDS} interleaved rounds of "
          f"{ITERATIONS} iterations; medians")
    print(f"(a) direct OpenTelemetry (seed approach): {a:.0f} ns/span")
    print(f"(b) bus + TracingObserver:                {b:.0f} ns/span")
    print(f"emit point with tracing off (nothing subscribed): {off:.0f} ns")
    print(f"ratio b/a (target <= 1.15): {b / a:.3f}")


if __name__ == "__main__":
    main()
