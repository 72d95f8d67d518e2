"""Scheduling the task DAG: every task whose dependencies are done starts at once, up to
the concurrency limit, longest remaining chain first; no level-by-level barrier.

Dependants of a failed or skipped task are skipped (with a ``task_skipped`` event), and
once money or time ran out no new task starts.  A resumed run's kept results
(``state.restored``) count as finished: they are not run again, and their dependants
get their outputs as if they had just run.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Awaitable, Callable, Mapping

from .. import events
from ..domain.results import ProjectState, TaskResult, TaskStatus
from ..domain.tasks import Task
from .context import StopKind

RunTask = Callable[[Task, Mapping[str, str], dict[str, TaskResult]], Awaitable[TaskResult]]
"""Runs one task given its dependencies' outputs; keeps its live result in the dict."""


def topological_order(tasks: Mapping[str, Task]) -> list[str]:
    """Kahn's order, ties broken by the original order (deterministic)."""
    position = {tid: i for i, tid in enumerate(tasks)}
    indegree = {tid: len(t.depends_on) for tid, t in tasks.items()}
    dependants: dict[str, list[str]] = {tid: [] for tid in tasks}
    for tid, t in tasks.items():
        for dep in t.depends_on:
            dependants[dep].append(tid)
    heap = [(position[tid], tid) for tid, n in indegree.items() if n == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        _, tid = heapq.heappop(heap)
        order.append(tid)
        for child in dependants[tid]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(heap, (position[child], child))
    return order


def _dependants(tasks: Mapping[str, Task]) -> dict[str, list[str]]:
    dependants: dict[str, list[str]] = {tid: [] for tid in tasks}
    for tid, t in tasks.items():
        for dep in t.depends_on:
            dependants[dep].append(tid)
    return dependants


async def schedule(
    state: ProjectState,
    run_task: RunTask,
    concurrency: int,
    stop_reason: Callable[[], StopKind | None],
    settled: Callable[[str], None] | None = None,
) -> None:
    """Run ``state.tasks`` in dependency order; results land in ``state.results``.
    ``stop_reason`` tells, before each start, whether money or time ran out;
    ``settled(task_id)`` is called when the scheduler settles a task itself (a skip),
    before its ``task_skipped`` event (a task that runs reports its own settling, see
    :class:`~.task_runner.TaskRunner`)."""
    tasks = state.tasks
    dependants = _dependants(tasks)
    rank: dict[str, int] = {}
    for tid in reversed(state.execution_order):
        rank[tid] = 1 + max((rank[c] for c in dependants[tid]), default=0)
    waiting = {tid: len(t.depends_on) for tid, t in tasks.items()}
    position = {tid: i for i, tid in enumerate(state.execution_order)}
    ready = [(-rank[tid], position[tid], tid) for tid, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    running: dict[asyncio.Future[TaskResult], str] = {}

    def release(tid: str) -> None:
        for child in dependants[tid]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (-rank[child], position[child], child))

    try:
        while ready or running:
            while ready and len(running) < concurrency:
                _, _, tid = heapq.heappop(ready)
                task = tasks[tid]
                if tid in state.restored and tid in state.results:
                    release(tid)
                    continue
                bad = [d for d in task.depends_on if state.results[d].status in (TaskStatus.FAILED, TaskStatus.SKIPPED)]
                stopped = stop_reason()
                if bad or stopped:
                    reason = f"dependency {', '.join(bad)} did not succeed" if bad else f"{stopped} exhausted"
                    state.results[tid] = TaskResult(task_id=tid, status=TaskStatus.SKIPPED, error=reason)
                    if settled is not None:
                        settled(tid)
                    events.emit(events.task_skipped, task_id=tid, reason=reason)
                    release(tid)
                    continue
                context = {d: state.results[d].output for d in task.depends_on}
                running[asyncio.ensure_future(run_task(task, context, state.results))] = tid
            if not running:
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                tid = running.pop(fut)
                state.results[tid] = fut.result()
                release(tid)
    finally:
        for fut in running:
            fut.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
