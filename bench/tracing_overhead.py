"""Tracing overhead: the event bus + TracingObserver against the bare SDK making the same spans.

One workload - a resumed run's root (linked to the earlier attempt's root) holding two
tasks, each with four remote LLM calls (generate, critique, revise, evaluate) and one
``iteration_scored`` event - is made in the same process, interleaved round by round:

  (a') the seed's direct-SDK spans: the code the seed's plan wrote where the work happens
      (``start_as_current_span`` for every span, one ``set_attribute`` per attribute), with
      the attributes, link, events and carriers of (b) - the baseline of the issue's
      held-out benchmark, and the target's (b/a' <= 1.15, aim 1.05);
  (a) the fastest hand-written bare-SDK path to the same spans, doing what the observer
      does and nothing more: ``start_span`` with the start attributes, the root and task
      spans made current (attach/detach), the call spans not; the link read from the
      earlier root's carrier and each call's context written into its request carrier
      with the configured propagator; the usage summed up by hand; ``set_attributes``
      with the finish attributes, ``add_event`` for the score, ``end`` - a stricter
      comparison, reported beside the target's;
  (b) the shipped path: ``traced_project`` / ``traced_task`` / ``traced_llm_call`` and
      ``emit`` send bus signals, the subscribed ``TracingObserver`` makes the spans, and
      the client reads the call's carrier as it does before sending a request.

Both write to the same kind of tracer provider (SimpleSpanProcessor into an exporter
that drops spans).  The script first checks that (a') and (a) each give the same spans as
(b): names, kinds, parents, attributes, events, links, status, and carriers of the same
fields.

Printed: ns per span of (a'), (a) and (b) (medians over the rounds), the cost of a span
with tracing off (nothing subscribed), the load average, the median of the per-round
ratios b/a, and last the median of the per-round ratios b/a' (the target's).  The order of
the three alternates by round.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry import propagate  # noqa: E402
from opentelemetry.context import Context, attach, detach  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402
from opentelemetry.trace import Link, SpanKind, get_current_span, set_span_in_context  # noqa: E402

from orchestrator import events  # noqa: E402
from orchestrator.observers.tracing import TracingObserver  # noqa: E402

PROJECT_ID = "proj-0123456789ab"
TASKS = ("t1", "t2")
CALLS = ("generate", "critique", "revise", "evaluate")
SPANS_PER_ITERATION = 1 + len(TASKS) * (1 + len(CALLS))
ITERATIONS = 100
ROUNDS = 31
DESCRIPTION = "Write a token-bucket rate limiter in Python with tests"
CRITERIA = "pytest passes"
EARLIER_ROOT = {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"}
INVOCATION = '{"max_tokens": 1024, "temperature": 0.3}'


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


# -- (a) the bare SDK ---------------------------------------------------------------------


def direct(tracer, carriers: list | None = None) -> None:
    earlier = get_current_span(propagate.extract(EARLIER_ROOT, context=Context())).get_span_context()
    link = Link(earlier, {"orchestrator.link": "resumed_from"})
    root = tracer.start_span(
        "run_project",
        attributes={
            "project.id": PROJECT_ID,
            "project.description": DESCRIPTION[:200],
            "orchestrator.attempt": 2,
            "orchestrator.resumed_from": PROJECT_ID,
            "openinference.span.kind": "AGENT",
            "project.budget_usd": 1.0,
            "orchestrator.original_trace_id": f"{earlier.trace_id:032x}",
        },
        links=(link,),
    )
    root_ctx = set_span_in_context(root)
    root_token = attach(root_ctx)
    root_carrier: dict[str, str] = {}
    propagate.inject(root_carrier, context=root_ctx)  # kept in the checkpoint
    p_in = p_out = p_calls = 0
    p_cost = 0.0
    for task_id in TASKS:
        task = tracer.start_span(
            "task:" + task_id,
            attributes={
                "task.id": task_id,
                "task.type": "code_generation",
                "task.description": DESCRIPTION[:200],
                "openinference.span.kind": "CHAIN",
            },
        )
        task_token = attach(set_span_in_context(task))
        t_in = t_out = 0
        t_cost = 0.0
        for call_type in CALLS:
            span = tracer.start_span(
                "llm_call:" + call_type,
                kind=SpanKind.CLIENT,
                attributes={
                    "llm.model": "gpt-4o",
                    "llm.call_type": call_type,
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "gpt-4o",
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "gpt-4o",
                    "gen_ai.provider.name": "openai",
                    "llm.provider": "openai",
                    "gen_ai.request.max_tokens": 1024,
                    "gen_ai.request.temperature": 0.3,
                    "llm.invocation_parameters": INVOCATION,
                    "gen_ai.output.type": "text",
                },
            )
            carrier: dict[str, str] = {}
            propagate.inject(carrier, context=set_span_in_context(span))  # sent with the request
            # ... the call happens here ...
            span.set_attributes(
                {
                    "llm.tokens_in": 310,
                    "llm.tokens_out": 120,
                    "llm.cost_usd": 0.001975,
                    "llm.latency_ms": 412.3,
                    "llm.cached": False,
                    "llm.finish_reason": "stop",
                    "llm.response_model": "gpt-4o-2024-08-06",
                    "gen_ai.usage.input_tokens": 310,
                    "llm.token_count.prompt": 310,
                    "gen_ai.usage.output_tokens": 120,
                    "llm.token_count.completion": 120,
                    "llm.token_count.total": 430,
                    "gen_ai.response.model": "gpt-4o-2024-08-06",
                    "gen_ai.response.finish_reasons": ("stop",),
                }
            )
            span.end()
            if carriers is not None:
                carriers.append(carrier)
            t_in += 310
            t_out += 120
            t_cost += 0.001975
        task.add_event("iteration_scored", {"task_id": task_id, "iteration": 1, "score": 0.95, "best_score": 0.95})
        task.set_attributes(
            {
                "task.status": "completed",
                "task.score": 0.95,
                "task.iterations": 1,
                "task.model": "gpt-4o",
                "task.cost_usd": round(t_cost, 8),
                "task.tokens_in": t_in,
                "task.tokens_out": t_out,
                "task.llm_calls": len(CALLS),
            }
        )
        detach(task_token)
        task.end()
        p_in, p_out, p_cost, p_calls = p_in + t_in, p_out + t_out, p_cost + t_cost, p_calls + len(CALLS)
    root.set_attributes(
        {
            "project.status": "success",
            "project.cost_usd": round(p_cost, 8),
            "project.tokens_in": p_in,
            "project.tokens_out": p_out,
            "project.task_count": len(TASKS),
            "project.llm_calls": p_calls,
        }
    )
    detach(root_token)
    root.end()
    if carriers is not None:
        carriers.append(root_carrier)


def direct_seed(tracer, carriers: list | None = None) -> None:
    """(a') written as the seed's plan wrote it: ``start_as_current_span`` for every span and one
    ``set_attribute`` call per attribute (same spans, attributes, events, links, carriers)."""
    earlier = get_current_span(propagate.extract(EARLIER_ROOT, context=Context())).get_span_context()
    link = Link(earlier, {"orchestrator.link": "resumed_from"})
    with tracer.start_as_current_span("run_project", links=(link,)) as root:
        for key, value in (
            ("project.id", PROJECT_ID),
            ("project.description", DESCRIPTION[:200]),
            ("orchestrator.attempt", 2),
            ("orchestrator.resumed_from", PROJECT_ID),
            ("openinference.span.kind", "AGENT"),
            ("project.budget_usd", 1.0),
            ("orchestrator.original_trace_id", f"{earlier.trace_id:032x}"),
        ):
            root.set_attribute(key, value)
        root_carrier: dict[str, str] = {}
        propagate.inject(root_carrier)
        p_in = p_out = p_calls = 0
        p_cost = 0.0
        for task_id in TASKS:
            with tracer.start_as_current_span("task:" + task_id) as task:
                task.set_attribute("task.id", task_id)
                task.set_attribute("task.type", "code_generation")
                task.set_attribute("task.description", DESCRIPTION[:200])
                task.set_attribute("openinference.span.kind", "CHAIN")
                t_in = t_out = 0
                t_cost = 0.0
                for call_type in CALLS:
                    with tracer.start_as_current_span("llm_call:" + call_type, kind=SpanKind.CLIENT) as span:
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
                        span.set_attribute("llm.invocation_parameters", INVOCATION)
                        span.set_attribute("gen_ai.output.type", "text")
                        carrier: dict[str, str] = {}
                        propagate.inject(carrier)
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
                    if carriers is not None:
                        carriers.append(carrier)
                    t_in += 310
                    t_out += 120
                    t_cost += 0.001975
                task.add_event(
                    "iteration_scored", {"task_id": task_id, "iteration": 1, "score": 0.95, "best_score": 0.95}
                )
                task.set_attribute("task.status", "completed")
                task.set_attribute("task.score", 0.95)
                task.set_attribute("task.iterations", 1)
                task.set_attribute("task.model", "gpt-4o")
                task.set_attribute("task.cost_usd", round(t_cost, 8))
                task.set_attribute("task.tokens_in", t_in)
                task.set_attribute("task.tokens_out", t_out)
                task.set_attribute("task.llm_calls", len(CALLS))
            p_in, p_out, p_cost, p_calls = p_in + t_in, p_out + t_out, p_cost + t_cost, p_calls + len(CALLS)
        root.set_attribute("project.status", "success")
        root.set_attribute("project.cost_usd", round(p_cost, 8))
        root.set_attribute("project.tokens_in", p_in)
        root.set_attribute("project.tokens_out", p_out)
        root.set_attribute("project.task_count", len(TASKS))
        root.set_attribute("project.llm_calls", p_calls)
    if carriers is not None:
        carriers.append(root_carrier)


# -- (b) through the bus and the TracingObserver -------------------------------------------


def via_bus(carriers: list | None = None) -> None:
    with events.traced_project(
        PROJECT_ID, DESCRIPTION, CRITERIA, 1.0, 600.0, attempt=2, links=(EARLIER_ROOT,)
    ) as project:
        p_in = p_out = 0
        p_cost = 0.0
        for task_id in TASKS:
            with events.traced_task(task_id, "code_generation", DESCRIPTION) as task:
                t_in = t_out = 0
                t_cost = 0.0
                for call_type in CALLS:
                    with events.traced_llm_call(
                        "gpt-4o", call_type, provider="openai", max_tokens=1024, temperature=0.3
                    ) as span:
                        carrier = dict(span.carrier)  # as the client does, for the request headers
                        # ... the call happens here ...
                        span.set_attributes(
                            {
                                "llm.tokens_in": 310,
                                "llm.tokens_out": 120,
                                "llm.cost_usd": 0.001975,
                                "llm.latency_ms": 412.3,
                                "llm.cached": False,
                                "llm.finish_reason": "stop",
                                "llm.response_model": "gpt-4o-2024-08-06",
                            }
                        )
                    if carriers is not None:
                        carriers.append(carrier)
                    t_in += 310
                    t_out += 120
                    t_cost += 0.001975
                events.emit(events.iteration_scored, iteration=1, score=0.95, best_score=0.95)
                task.set_attributes(
                    {
                        "task.status": "completed",
                        "task.score": 0.95,
                        "task.iterations": 1,
                        "task.model": "gpt-4o",
                        "task.cost_usd": round(t_cost, 8),
                        "task.tokens_in": t_in,
                        "task.tokens_out": t_out,
                    }
                )
            p_in, p_out, p_cost = p_in + t_in, p_out + t_out, p_cost + t_cost
        project.set_attributes(
            {
                "project.status": "success",
                "project.cost_usd": round(p_cost, 8),
                "project.tokens_in": p_in,
                "project.tokens_out": p_out,
                "project.task_count": len(TASKS),
            }
        )
    if carriers is not None:
        carriers.append(dict(project.carrier))


def _value(v):
    return tuple(v) if isinstance(v, tuple | list) else v


def _shape(spans) -> list:
    by_id = {s.context.span_id: s.name for s in spans}
    return sorted(
        (
            s.name,
            s.kind.name,
            by_id.get(s.parent.span_id) if s.parent else None,
            s.status.status_code.name,
            tuple(sorted((k, _value(v)) for k, v in s.attributes.items())),
            tuple((e.name, tuple(sorted(e.attributes.items()))) for e in s.events),
            tuple((lk.context.trace_id, lk.context.span_id, tuple(sorted(lk.attributes.items()))) for lk in s.links),
        )
        for s in spans
    )


def check_same_spans(baseline=None) -> None:
    pa, ea = provider(keep=True)
    carriers_a: list = []
    (baseline or direct)(pa.get_tracer("bench"), carriers_a)
    pb, eb = provider(keep=True)
    carriers_b: list = []
    obs = TracingObserver(pb).subscribe()
    try:
        via_bus(carriers_b)
    finally:
        obs.unsubscribe()
    a, b = _shape(ea.kept), _shape(eb.kept)
    if a != b:
        raise SystemExit(
            "(a) and (b) differ:\n" + "\n".join(f"{x}\n{y}\n" for x, y in zip(a, b, strict=False) if x != y)
        )
    keys_a, keys_b = [sorted(c) for c in carriers_a], [sorted(c) for c in carriers_b]
    if keys_a != keys_b or not all(keys_a):
        raise SystemExit(f"(a) and (b) fill different carriers: {keys_a} vs {keys_b}")


def span_off_ns() -> float:
    """A whole ``with traced_llm_call(...)`` block with three attributes, nothing subscribed."""
    assert not events.is_active()
    stmt = (
        'with traced_llm_call("gpt-4o", "generate") as s:\n'
        '    s.set_attribute("llm.tokens_in", 1)\n'
        '    s.set_attribute("llm.tokens_out", 2)\n'
        '    s.set_attribute("llm.cost_usd", 0.1)\n'
    )
    n = 200_000
    return min(timeit.repeat(stmt, globals={"traced_llm_call": events.traced_llm_call}, number=n, repeat=5)) / n * 1e9


def _time(fn, *args) -> float:
    """CPU time of this thread per span: on a shared machine, wall time would also count
    the time other processes held the core."""
    t0 = time.thread_time_ns()
    for _ in range(ITERATIONS):
        fn(*args)
    return (time.thread_time_ns() - t0) / (ITERATIONS * SPANS_PER_ITERATION)


def main() -> None:
    check_same_spans()
    check_same_spans(direct_seed)
    off = span_off_ns()
    pa, _ = provider()
    tracer = pa.get_tracer("bench")
    pb, _ = provider()
    observer = TracingObserver(pb)
    for _ in range(100):  # warm up every path
        direct(tracer)
        direct_seed(tracer)
    with observer:
        for _ in range(100):
            via_bus()
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {"a": [], "seed": [], "b": []}
    ratios, seed_ratios = [], []
    for rnd in range(ROUNDS):
        order = ("a", "seed", "b") if rnd % 2 == 0 else ("b", "seed", "a")
        got = {}
        for which in order:
            if which == "b":
                observer.subscribe()
                got[which] = _time(via_bus)
                observer.unsubscribe()
            else:
                got[which] = _time(direct if which == "a" else direct_seed, tracer)
        for which, value in got.items():
            times[which].append(value)
        ratios.append(got["b"] / got["a"])
        seed_ratios.append(got["b"] / got["seed"])
    load = (load_before + os.getloadavg()[0]) / 2
    a, seed, b = (statistics.median(times[k]) for k in ("a", "seed", "b"))
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    s1, _, s3 = statistics.quantiles(seed_ratios, n=4)
    print(
        f"workload: 1 resumed root + {len(TASKS)} tasks x {len(CALLS)} remote llm calls "
        f"({SPANS_PER_ITERATION} spans), {ROUNDS} interleaved rounds of {ITERATIONS}; medians of CPU time"
    )
    print(f"(a') the seed's direct-SDK spans, same attributes:  {seed:.0f} ns/span")
    print(f"(a)  the fastest hand-written SDK path, same spans: {a:.0f} ns/span")
    print(f"(b)  bus + TracingObserver:                         {b:.0f} ns/span  (+{b - seed:.0f} over (a'))")
    print(f"a span with tracing off (nothing subscribed): {off:.0f} ns")
    print(f"load average during the rounds: {load:.1f} on {os.cpu_count()} cores")
    print(f"ratio b/a  (against the fastest SDK path; quartiles {q1:.3f}-{q3:.3f}): {statistics.median(ratios):.3f}")
    print(
        f"ratio b/a' (same attributes as the seed's direct-SDK spans; quartiles {s1:.3f}-{s3:.3f}; "
        f"target <= 1.15, aim 1.05): {statistics.median(seed_ratios):.3f}"
    )


if __name__ == "__main__":
    main()
