"""The local backend: every project of a batch in this process, on the asyncio engine,
under one budget; a failing project never stops the others; Ctrl-C checkpoints the
running projects and a resumed batch pays nothing twice; one trace per project, linked
to the batch's span, whose totals are the sums of its projects'."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace

import pytest

from orchestrator import attributes as attr
from orchestrator import events
from orchestrator.batch.backend import LocalBackend
from orchestrator.batch.driver import BatchDriver
from orchestrator.batch.jobs import ERROR, INTERRUPTED, ProjectOutcome
from orchestrator.domain.checkpoint import INTERRUPTED as CP_INTERRUPTED
from orchestrator.engine.checkpoints import restored_state, resumed_budget
from orchestrator.llm.catalog import preserved
from orchestrator.state import RunStore
from tests.batch.scripted import ScriptedFactory, calls, jobs


@pytest.fixture(autouse=True)
def _catalog():
    with preserved():
        yield


def _run(driver: BatchDriver):
    return asyncio.run(driver.run())


def test_projects_share_one_budget_and_each_keeps_its_own(tmp_path, recorded):
    store = RunStore(tmp_path / "state")
    batch = jobs("batch-a", 5, budget_usd=0.02)
    driver = BatchDriver(
        "batch-a", batch, LocalBackend(ScriptedFactory(str(tmp_path)), store), max_usd=0.05, max_parallel=3
    )
    result = _run(driver)
    assert [o.position for o in result.outcomes] == [1, 2, 3, 4, 5]
    assert result.ledger.spent_usd <= 0.05 and result.ledger.held_usd == 0.0
    assert all(o.spent_usd <= 0.02 for o in result.outcomes)  # each project's own cap
    spent = math.fsum(o.spent_usd for o in result.outcomes)
    assert math.isclose(result.ledger.spent_usd, spent, abs_tol=1e-12)  # no kill: the ledger saw every call
    assert any(o.status == "budget_exhausted" for o in result.outcomes)  # the batch cap bit
    assert len(calls(tmp_path)) == result.usage.llm_calls
    # one pair for the batch; every project a root of its own, carrying the batch id
    starts = [p for p in recorded if isinstance(p, events.ProjectStarted)]
    assert len(starts) == 5 and {p.batch_id for p in starts} == {"batch-a"} and {p.parent_id for p in starts} == {None}
    (batch_start,) = [p for p in recorded if isinstance(p, events.BatchStarted)]
    (batch_end,) = [p for p in recorded if isinstance(p, events.BatchFinished)]
    assert batch_start.project_count == 5 and batch_end.attributes[attr.BATCH_SPENT_USD] == round(
        result.ledger.spent_usd, 8
    )
    assert [p for p in recorded if isinstance(p, events.BatchProgress)]
    for cp in (store.load(j.project_id) for j in batch):
        assert cp is not None and cp.finished or cp.status == "budget_exhausted"


class Failing(ScriptedFactory):
    def build(self, job, budget, store):
        if job.name == "p02":
            raise RuntimeError("this project cannot be built")
        return super().build(job, budget, store)


def test_a_failing_project_never_stops_the_others(tmp_path):
    store = RunStore(tmp_path / "state")
    result = _run(
        BatchDriver("batch-f", jobs("batch-f", 4), LocalBackend(Failing(), store), max_usd=5.0, max_parallel=2)
    )
    statuses = {o.name: o.status for o in result.outcomes}
    assert statuses["p02"] == ERROR and "cannot be built" in result.outcomes[1].error
    assert [s for n, s in statuses.items() if n != "p02"] == ["partial_success"] * 3
    assert result.status == "partial_success"


def test_interrupted_projects_checkpoint_and_a_resumed_batch_pays_nothing_twice(tmp_path, recorded):
    store = RunStore(tmp_path / "state")
    batch = jobs("batch-i", 3)
    factory = ScriptedFactory(str(tmp_path / "calls1"), slow=8.0)
    (tmp_path / "calls1").mkdir()
    driver = BatchDriver("batch-i", batch, LocalBackend(factory, store), max_usd=5.0, max_parallel=3)

    async def interrupt() -> object:
        task = asyncio.ensure_future(driver.run())
        while sum(isinstance(p, events.TaskFinished) for p in recorded) < 3:  # some tasks done, others running
            await asyncio.sleep(0.01)
        task.cancel()
        return await task

    first = asyncio.run(interrupt())
    assert first.interrupted and first.status == INTERRUPTED
    assert {o.status for o in first.outcomes} == {INTERRUPTED}
    checkpoints = {j.project_id: store.load(j.project_id) for j in batch}
    assert {cp.status for cp in checkpoints.values()} == {CP_INTERRUPTED}
    kept = {pid: set(cp.kept) for pid, cp in checkpoints.items()}
    assert sum(len(k) for k in kept.values()) >= 1

    # the batch goes on: the ledger from what was spent, every project from its checkpoint
    (tmp_path / "calls2").mkdir()
    spent_before = {pid: cp.spent_usd for pid, cp in checkpoints.items()}
    again = BatchDriver(
        "batch-i",
        batch,
        LocalBackend(ScriptedFactory(str(tmp_path / "calls2")), store),
        max_usd=5.0,
        max_parallel=3,
        spent_before=spent_before,
    )
    second = _run(again)
    assert {o.status for o in second.outcomes} == {"partial_success"}
    assert all(o.attempt == 2 for o in second.outcomes)
    for call in calls(tmp_path / "calls2"):  # no kept task made a call again
        assert call["task"] not in kept[call["project"]], call
        assert call["kind"] != "decompose"  # the plans were kept too
    assert math.isclose(second.ledger.spent_usd, math.fsum(o.spent_usd for o in second.outcomes), abs_tol=1e-12)


def test_one_trace_per_project_linked_to_the_batch_span(tmp_path, span_exporter):
    store = RunStore(tmp_path / "state")
    result = _run(
        BatchDriver("batch-t", jobs("batch-t", 3), LocalBackend(ScriptedFactory(), store), max_usd=5.0, max_parallel=3)
    )
    batch_span = span_exporter.by_name("run_batch")
    roots = span_exporter.spans("run_project")
    assert len(roots) == 3 and batch_span.parent is None
    assert len({s.context.trace_id for s in roots} | {batch_span.context.trace_id}) == 4  # a trace each
    for root in roots:
        assert root.parent is None and root.attributes[attr.ORCHESTRATOR_BATCH_ID] == "batch-t"
        (link,) = [lk for lk in root.links if lk.attributes.get(attr.ORCHESTRATOR_LINK) == "batch"]
        assert link.context.span_id == batch_span.context.span_id
        assert link.context.trace_id == batch_span.context.trace_id
        assert root.attributes[attr.ORCHESTRATOR_BATCH_TRACE_ID] == f"{batch_span.context.trace_id:032x}"
    a = batch_span.attributes
    assert a[attr.BATCH_COST_USD] == round(math.fsum(s.attributes[attr.PROJECT_COST_USD] for s in roots), 8)
    assert a[attr.BATCH_TOKENS_IN] == sum(s.attributes[attr.PROJECT_TOKENS_IN] for s in roots)
    assert a[attr.BATCH_TOKENS_OUT] == sum(s.attributes[attr.PROJECT_TOKENS_OUT] for s in roots)
    assert a[attr.BATCH_LLM_CALLS] == sum(s.attributes[attr.PROJECT_LLM_CALLS] for s in roots)
    assert a[attr.BATCH_STATUS] == result.status and a[attr.BATCH_PROJECTS_DONE] == 3
    assert not [e for e in batch_span.events if e.name == "batch_progress"]  # the live view's, not the trace's


def test_kept_projects_count_in_the_result_without_running(tmp_path):
    store = RunStore(tmp_path / "state")
    batch = jobs("batch-k", 2)
    first = _run(BatchDriver("batch-k", batch[:1], LocalBackend(ScriptedFactory(), store), max_usd=5.0, max_parallel=1))
    cp = store.load(batch[0].project_id)
    kept = ProjectOutcome(
        1, "p01", cp.project_id, cp.status, restored_state(cp, resumed_budget(cp), next_attempt=False), kept=True
    )
    second = _run(
        BatchDriver(
            "batch-k",
            [batch[1]],
            LocalBackend(ScriptedFactory(), store),
            max_usd=5.0,
            max_parallel=1,
            kept=[kept],
            spent_before={cp.project_id: cp.spent_usd},
        )
    )
    assert [o.kept for o in second.outcomes] == [True, False]
    assert second.usage.llm_calls == first.usage.llm_calls + second.outcomes[1].usage.llm_calls
    assert math.isclose(second.ledger.spent_usd, cp.spent_usd + second.outcomes[1].spent_usd, abs_tol=1e-12)


def test_the_time_cap_starts_nothing_late(tmp_path):
    store = RunStore(tmp_path / "state")
    batch = [replace(j, time_seconds=600) for j in jobs("batch-c", 3)]
    result = _run(
        BatchDriver(
            "batch-c",
            batch,
            LocalBackend(ScriptedFactory(slow=30.0), store),
            max_usd=5.0,
            max_parallel=1,
            time_seconds=1.5,
        )
    )
    assert result.outcomes[0].status in ("timed_out", "partial_success")
    assert {o.status for o in result.outcomes[1:]} <= {"not_started", "timed_out"}
    assert any(o.status == "not_started" for o in result.outcomes)
