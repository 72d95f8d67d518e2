"""Load: 1000 tasks with tracing on, against the same load with tracing off.

Each variant runs in its own child process (so the peak RSS of each is its own): a
project of 1000 independent tasks at concurrency 50 on a scripted provider that answers
at once (the engine and the tracing are all there is to measure), every task one round
(generate, critique, revise, evaluate: 5 spans a task).  With tracing, a
``TracingObserver`` feeds a ``BatchSpanProcessor`` whose exporter counts and drops the
spans, as a collector far away would cost nothing here.

Printed: for each variant the wall time, spans made (and spans/s) and the peak RSS; then
the ratios traced/baseline; last line the wall-time ratio.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TASKS = 1000
CONCURRENCY = 50


def child(traced: bool) -> dict[str, float]:
    from orchestrator.domain.budget import Budget
    from orchestrator.domain.tasks import Task, TaskType
    from orchestrator.engine import Orchestrator
    from orchestrator.llm.client import UnifiedClient
    from orchestrator.llm.providers.base import ProviderRequest, ProviderResponse

    class Instant:
        name = "local"

        def availability(self, model: str) -> tuple[bool, str]:
            return True, ""

        async def complete(self, request: ProviderRequest) -> ProviderResponse:
            props = (request.json_schema or {}).get("properties", {})
            return ProviderResponse('{"reasons": "ok", "score": 0.99}' if "score" in props else "done", 10, 10)

    exported = [0]
    observer = provider = None
    if traced:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        from orchestrator.observers.tracing import TracingObserver

        class Counting(SpanExporter):
            def export(self, spans):  # type: ignore[no-untyped-def]
                exported[0] += len(spans)
                return SpanExportResult.SUCCESS

        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(Counting(), max_queue_size=65536))
        observer = TracingObserver(provider).subscribe()
    tasks = [Task(f"t{i}", TaskType.SUMMARIZATION, f"summarize part {i}", max_iterations=1) for i in range(TASKS)]
    orch = Orchestrator(
        budget=Budget(1.0, 3600),
        client=UnifiedClient({"local": Instant()}, concurrency=CONCURRENCY),
        concurrency=CONCURRENCY,
        project_tasks=tasks,
    )
    started = time.perf_counter()
    state = asyncio.run(orch.run_project("Load", "every task done"))
    if provider is not None:
        provider.force_flush()
    wall = time.perf_counter() - started
    if observer is not None:
        observer.unsubscribe()
        assert observer.open_span_count == 0
    done = sum(1 for r in state.results.values() if r.status.value == "completed")
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"wall_s": wall, "spans": exported[0], "peak_rss_mb": peak_kb / 1024, "completed": done}


def run_child(traced: bool) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", "on" if traced else "off"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    base = run_child(False)
    traced = run_child(True)
    for name, r in (("tracing off", base), ("tracing on", traced)):
        rate = f", {r['spans'] / r['wall_s']:.0f} spans/s" if r["spans"] else ""
        print(
            f"{name:12s} {TASKS} tasks ({r['completed']} completed): {r['wall_s']:.2f} s wall, "
            f"{r['spans']} spans{rate}, peak RSS {r['peak_rss_mb']:.0f} MB"
        )
    print(f"peak RSS ratio (on/off): {traced['peak_rss_mb'] / base['peak_rss_mb']:.2f}")
    print(f"wall time ratio (on/off): {traced['wall_s'] / base['wall_s']:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2] == "on")))
    else:
        main()
