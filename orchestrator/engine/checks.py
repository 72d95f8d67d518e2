"""Which task runs which acceptance check, and running them for a round.

The rule (docs/runs.md, "Acceptance checks"): checks run against code, so they go to
``code_generation`` tasks.  A check goes to the code tasks whose prompt names a name the
check uses (``add(1, 1) == 2`` -> the task that says ``add``); a check naming none of
them goes to the final code tasks (those no other code task depends on).  With no code
task at all, a check cannot run and stays with the prose criteria for the evaluator.
A task's checks run against its own code after the code of the tasks it depends on, so
a task that uses an earlier task's function is checked with it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence

from .. import events
from ..domain.tasks import Task, TaskType
from ..governance.acceptance import Check, CheckReport, Criteria, parse_criteria, run_checks
from ..governance.validators import code_blocks

CHECK_TIMEOUT_SECONDS = 30.0


def _mentions(prompt: str, names: frozenset[str]) -> bool:
    return any(re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", prompt) for n in names)


def assign_checks(tasks: Sequence[Task], criteria: Criteria) -> tuple[Criteria, list[str]]:
    """Give each check to its tasks (``Task.checks``).  Returns the criteria with the
    checks no task can run moved to the prose, and notes on what went where."""
    code_tasks = [t for t in tasks if t.type == TaskType.CODE_GENERATION]
    if not criteria.checks:
        return criteria, []
    if not code_tasks:
        sources = [c.source for c in criteria.checks]
        prose = "\n".join(p for p in (criteria.prose, *sources) if p)
        return Criteria((), prose), [
            f"no code task to run the acceptance checks ({'; '.join(sources)[:200]}); "
            "the evaluator judges them as prose"
        ]
    depended_on = {d for t in code_tasks for d in t.depends_on}
    final = [t for t in code_tasks if t.id not in depended_on]
    placed: dict[str, list[str]] = {}
    for check in criteria.checks:
        targets = [t for t in code_tasks if check.names and _mentions(t.prompt, check.names)] or final
        for task in targets:
            if check.source not in task.checks:
                task.checks = (*task.checks, check.source)
                placed.setdefault(task.id, []).append(check.source)
    notes = [f"task {tid} runs the acceptance checks: {'; '.join(sources)[:200]}" for tid, sources in placed.items()]
    return criteria, notes


def prelude(context: Mapping[str, str], tasks: Mapping[str, Task] | None = None) -> list[str]:
    """The code of the dependencies a task's checks run after: the code blocks of its
    code-task dependencies."""
    out: list[str] = []
    for dep_id, output in context.items():
        task = tasks.get(dep_id) if tasks else None
        if task is not None and task.type != TaskType.CODE_GENERATION:
            continue
        out.extend(code_blocks(output))
    return out


class CheckRunner:
    """Runs a task's checks on an output and reports each on the bus.

    The ``acceptance_check`` event carries the check (the user's own criterion), whether
    it passed and the error's kind; never the error text, which may quote values the
    model's code produced."""

    def __init__(self, timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self._parsed: dict[str, Check] = {}

    def checks_of(self, task: Task) -> tuple[Check, ...]:
        out: list[Check] = []
        for source in task.checks:
            check = self._parsed.get(source)
            if check is None:
                parsed = parse_criteria(source).checks
                if not parsed:
                    continue
                check = self._parsed[source] = parsed[0]
            out.append(check)
        return tuple(out)

    async def run(
        self, task: Task, output: str, context_code: Sequence[str], iteration: int, stage: str
    ) -> CheckReport:
        checks = self.checks_of(task)
        started = time.perf_counter()  # (the thread sees the run's sandbox: ``sandbox.using`` around the run)
        report = await asyncio.to_thread(run_checks, output, checks, prelude=context_code, timeout=self.timeout)
        took_ms = round((time.perf_counter() - started) * 1000, 3)
        for result in report.results:
            events.emit(
                events.acceptance_check,
                check=result.check,
                passed=result.passed,
                error_type=result.error_type,
                iteration=iteration,
                stage=stage,
                duration_ms=took_ms,
            )
        return report
