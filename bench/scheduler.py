"""Scheduler efficiency: makespan of a 30-task DAG over its critical-path lower bound.

Every LLM call takes a fixed latency, so a task costs exactly ``CALLS_PER_TASK`` calls
and the best any scheduler can do is the longest dependency chain times that cost.
Prints the ratio last; target <= 1.10 with concurrency >= 6.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.domain.budget import Budget
from orchestrator.domain.tasks import Task, TaskType
from orchestrator.engine import Orchestrator
from orchestrator.llm.client import UnifiedClient
from orchestrator.llm.providers.base import ProviderRequest, ProviderResponse

LATENCY = 0.04
CALLS_PER_TASK = 4  # generate, critique, revise, evaluate (one sample on the local model)
LEVELS = (6, 5, 6, 4, 6, 3)  # 30 tasks, widest level 6
CONCURRENCY = 6


class FixedLatency:
    name = "local"

    def availability(self, model):
        return True, ""

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        await asyncio.sleep(LATENCY)
        props = (request.json_schema or {}).get("properties", {})
        text = '{"reasons": "ok", "score": 0.99}' if "score" in props else "done"
        return ProviderResponse(text, 10, 10)


def build_dag(seed: int = 7) -> list[Task]:
    rng = random.Random(seed)
    tasks: list[Task] = []
    previous: list[str] = []
    for level, width in enumerate(LEVELS):
        current = []
        for i in range(width):
            tid = f"l{level}_{i}"
            deps = rng.sample(previous, k=min(len(previous), rng.randint(1, 2))) if previous else []
            tasks.append(Task(tid, TaskType.SUMMARIZATION, f"task {tid}", deps, max_iterations=1))
            current.append(tid)
        previous = current
    return tasks


def critical_path(tasks: list[Task]) -> int:
    depth: dict[str, int] = {}
    for t in tasks:  # listed in topological order
        depth[t.id] = 1 + max((depth[d] for d in t.depends_on), default=0)
    return max(depth.values())


async def main() -> None:
    tasks = build_dag()
    client = UnifiedClient({"local": FixedLatency()}, concurrency=64)
    orch = Orchestrator(budget=Budget(1.0, 600), client=client, concurrency=CONCURRENCY, project_tasks=tasks)
    start = time.perf_counter()
    state = await orch.run_project("scheduler benchmark", "all tasks run")
    makespan = time.perf_counter() - start
    assert all(r.iterations == 1 for r in state.results.values()), "every task must run exactly one round"
    bound = critical_path(tasks) * CALLS_PER_TASK * LATENCY
    print(
        f"tasks={len(tasks)} widest_level={max(LEVELS)} concurrency={CONCURRENCY} "
        f"critical_path_tasks={critical_path(tasks)} latency_per_call={LATENCY}s"
    )
    print(f"makespan={makespan:.3f}s lower_bound={bound:.3f}s")
    print(f"makespan/critical_path_bound = {makespan / bound:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
