"""Fault injection: whole projects under random provider faults (transient and permanent
errors, adapter bugs, slow answers), observers that raise anything (CancelledError
included), and runs cancelled at random moments.  After every run: no span left open,
no span under the wrong parent, every event pair finished, spend within the budget."""

from __future__ import annotations

import asyncio
import random

import pytest

from orchestrator import events
from orchestrator.domain.budget import Budget
from orchestrator.domain.tasks import Task, TaskType
from orchestrator.engine import Orchestrator
from orchestrator.llm.client import UnifiedClient
from orchestrator.llm.providers.base import ProviderError, ProviderRequest, ProviderResponse
from tests.scripted import ScriptedProvider

RUNS = 30


class Chaotic(ScriptedProvider):
    """A scripted provider whose answers come late or not at all, at random."""

    def __init__(self, rng: random.Random, **kw) -> None:
        super().__init__(**kw)
        self.rng = rng

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        rng = self.rng
        await asyncio.sleep(rng.choice((0, 0, 0.001, 0.003)))
        roll = rng.random()
        if roll < 0.12:
            raise ProviderError("503", transient=True, status_code=503, error_type="ServiceUnavailable")
        if roll < 0.16:
            raise ProviderError("400 bad request", status_code=400, error_type="BadRequest")
        if roll < 0.18:
            raise RuntimeError("adapter bug")  # not a ProviderError
        if roll < 0.19:
            raise KeyError("adapter bug")
        if roll < 0.195 and self.name != "local":
            raise ProviderError("401", status_code=401, fatal_for_model=True, error_type="AuthenticationError")
        return await super().complete(request)


class RaisingObserver:
    """Raises, now and then, whatever it likes - CancelledError included."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.raised = 0

    def __call__(self, payload: events.Event) -> None:
        if self.rng.random() < 0.05:
            self.raised += 1
            raise self.rng.choice(
                (RuntimeError("observer bug"), ValueError("x"), asyncio.CancelledError(), ZeroDivisionError())
            )


def _tasks(rng: random.Random) -> list[Task]:
    types = [TaskType.SUMMARIZATION, TaskType.CODE_GENERATION, TaskType.CREATIVE_WRITING, TaskType.CODE_REVIEW]
    tasks: list[Task] = []
    for i in range(rng.randint(4, 14)):
        deps = [t.id for t in tasks if rng.random() < 0.25]
        tasks.append(
            Task(f"t{i}", rng.choice(types), f"do part {i}", depends_on=deps, max_iterations=rng.randint(1, 2))
        )
    return tasks


@pytest.mark.parametrize("seed", range(RUNS))
async def test_faults_stay_local_and_the_books_balance(seed, span_exporter, orchestrator_events):
    rng = random.Random(seed)
    answer = "```python\ndef add(a, b):\n    return a + b\n```\nA clear, complete answer."
    providers = {
        name: Chaotic(rng, name=name, answer=answer, tokens=(40, 20), score=rng.choice((0.5, 0.9)))
        for name in ("local", "openai", "anthropic", "google")
    }
    raising = RaisingObserver(rng)
    signals = list(events.ALL_SIGNALS)
    rng.shuffle(signals)  # before or after the tracing observer, depending on the signal
    for sig in signals:
        sig.connect(raising)
    budget = Budget(rng.choice((0.005, 0.05, 2.0)), 600)
    client = UnifiedClient(
        providers,
        concurrency=rng.randint(1, 8),
        budget=budget,
        unhealthy_after=3,
        breaker_cooldown=0.002,
        backoff_base=0.0005,
        backoff_max=0.001,
    )
    orch = Orchestrator(budget=budget, client=client, concurrency=rng.randint(1, 6), project_tasks=_tasks(rng))
    cancel_after = rng.choice((None, None, 0.01, 0.05, 0.2))
    try:
        run = asyncio.ensure_future(orch.run_project("Chaos", "it holds"))
        if cancel_after is not None:
            asyncio.get_running_loop().call_later(cancel_after, run.cancel)
        try:
            state = await run
        except asyncio.CancelledError:
            assert cancel_after is not None
            state = orch.state
    finally:
        for sig in signals:
            sig.disconnect(raising)

    assert state is not None and state.status is not None
    print(
        f"seed {seed}: {len(orchestrator_events.of('llm_call_started'))} calls, {raising.raised} observer raises, "
        f"cancel {cancel_after}, status {state.status.value}, spent {budget.spent_usd:.6f}/{budget.max_usd}"
    )
    # 0 open spans, 0 unfinished pairs
    assert span_exporter.observer.open_span_count == 0
    assert orchestrator_events.unfinished() == []
    # 0 misparented spans: each span's parent is the span of its event's parent pair
    spans = {f"{s.context.span_id:016x}": s for s in span_exporter.get_finished_spans()}
    starts = [e for e in orchestrator_events if isinstance(e, events.PairStart)]
    assert len(spans) == len(starts)
    for start in starts:
        ids = span_exporter.observer.span_ids(start.correlation_id)
        assert ids is not None, start
        span = spans[ids[1]]
        if start.parent_id is None:
            assert span.parent is None
        else:
            parent_ids = span_exporter.observer.span_ids(start.parent_id)
            assert parent_ids is not None and span.parent is not None
            assert f"{span.parent.span_id:016x}" == parent_ids[1], (start, span.name)
        task_id = getattr(start, "task_id", None)
        if isinstance(start, events.LlmCallStarted) and task_id is not None:
            node = span  # the call's nearest task span is its own task's
            while not node.name.startswith("task:"):
                node = spans[f"{node.parent.span_id:016x}"]
            assert node.name == f"task:{task_id}"
    # spend within the budget (honest providers), every reservation released
    assert budget.spent_usd <= budget.max_usd and budget.reserved_usd == 0.0
    assert budget.overrun is None
    # totals are the sum of the calls that were made
    assert state.usage.cost_usd == pytest.approx(budget.spent_usd, abs=1e-12)
