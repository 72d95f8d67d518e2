"""Checkpoints and resume in the engine, on a scripted provider and a real run store:
which tasks run again, the budget and clock across the break, the checkpoint hooks,
two resumes at once, and the trace of a resumed run linked to the original."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import pytest

from orchestrator import events
from orchestrator.domain.budget import Budget
from orchestrator.domain.checkpoint import Checkpoint, ProjectBusyError, UnknownProjectError
from orchestrator.domain.results import ProjectStatus, TaskStatus
from orchestrator.engine import Orchestrator
from orchestrator.engine.checkpoints import resumed_budget
from orchestrator.llm.catalog import ModelInfo, preserved, register_model
from orchestrator.llm.client import UnifiedClient
from orchestrator.llm.providers.base import ProviderRequest, ProviderResponse
from orchestrator.state import RunStore
from tests.assertions import assert_pairs_balanced
from tests.scripted import ScriptedProvider, decomposition

PRICED = "scripted-priced"
PLAN = decomposition(
    {"id": "alpha", "type": "summarization", "prompt": "ALPHA notes", "depends_on": []},
    {"id": "beta", "type": "summarization", "prompt": "BETA notes", "depends_on": []},
    {"id": "code", "type": "code_generation", "prompt": "CODE add", "depends_on": []},
    {"id": "dep", "type": "summarization", "prompt": "DEP of code", "depends_on": ["code"]},
    {"id": "slow", "type": "summarization", "prompt": "SLOW one", "depends_on": []},
)


@pytest.fixture(autouse=True)
def _priced_model():
    with preserved():  # the catalog is put back after the test
        register_model(ModelInfo(PRICED, "local", 2.0, 6.0, 8192, 512, region="local"))
        yield


@dataclass
class Script(ScriptedProvider):
    """beta scores low (degraded); code is broken Python while ``broken`` (fails, so dep
    is skipped); slow and the planner block while ``block_slow`` / ``block_plan``."""

    broken: bool = True
    block_slow: bool = True
    block_plan: bool = False

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.requests.append(request)
        props = (request.json_schema or {}).get("properties", {})
        if "tasks" in props:
            if self.block_plan:
                await asyncio.Event().wait()
            return ProviderResponse(PLAN, 30, 40, "stop", request.model)
        if "SLOW" in request.prompt and self.block_slow:
            await asyncio.Event().wait()
        if "score" in props:
            score = 0.5 if "BETA" in request.prompt else 0.95
            return ProviderResponse(json.dumps({"reasons": "r", "score": score}), 20, 10, "stop", request.model)
        if "CODE" in request.prompt:
            text = (
                "```python\ndef add(a, b) return\n```"
                if self.broken
                else "```python\ndef add(a, b):\n    return a + b\n```"
            )
        else:
            text = f"answer {abs(hash(request.prompt)) % 1000}"
        return ProviderResponse(text, 100, 50, "stop", request.model)


def _orch(store: RunStore, provider: ScriptedProvider, budget: Budget | None = None) -> Orchestrator:
    return Orchestrator(
        budget=budget or Budget(1.0, 600),
        client=UnifiedClient({"local": provider}),
        store=store,
        only_model=PRICED,
        max_tasks=5,
        validators={"code_generation": ["python_syntax"]},
    )


async def _interrupted_run(store: RunStore, provider: Script) -> str:
    """Run until every task but 'slow' settled, then cancel (as Ctrl-C does)."""
    orch = _orch(store, provider)
    run = asyncio.ensure_future(orch.run_project("Five tasks", "all done"))
    for _ in range(2000):
        await asyncio.sleep(0.005)
        state = orch.state
        if (
            state
            and len([r for r in state.results.values() if r.status not in (TaskStatus.RUNNING, TaskStatus.PENDING)])
            == 4
        ):
            break
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    return orch.state.project_id


async def test_resume_keeps_completed_and_degraded_and_runs_the_rest(tmp_path, recorded):
    store = RunStore(tmp_path)
    pid = await _interrupted_run(store, Script())
    cp = store.load(pid)
    assert cp.status == "interrupted"
    statuses = {t: r.status for t, r in cp.results.items()}
    assert statuses == {
        "alpha": TaskStatus.COMPLETED,
        "beta": TaskStatus.DEGRADED,
        "code": TaskStatus.FAILED,
        "dep": TaskStatus.SKIPPED,
        "slow": TaskStatus.FAILED,
    }
    assert cp.results["slow"].error == "interrupted" and cp.spent_usd > 0
    first_attempt = list(recorded)
    recorded.clear()

    provider = Script(broken=False, block_slow=False)
    state = await _orch(store, provider).resume(pid)
    assert state.status == ProjectStatus.PARTIAL_SUCCESS  # beta stays degraded
    assert state.attempt == 2 and state.restored == {"alpha": 1, "beta": 1}
    assert {t: r.status for t, r in state.results.items()} == {
        "alpha": TaskStatus.COMPLETED,
        "beta": TaskStatus.DEGRADED,
        "code": TaskStatus.COMPLETED,
        "dep": TaskStatus.COMPLETED,
        "slow": TaskStatus.COMPLETED,
    }
    assert state.results["alpha"] == cp.results["alpha"] and state.results["beta"] == cp.results["beta"]
    # kept tasks are not started again and no call is made for them
    started = [p.task_id for p in recorded if isinstance(p, events.TaskStarted)]
    assert sorted(started) == ["code", "dep", "slow"]
    assert [p.task_id for p in recorded if isinstance(p, events.TaskRestored)] == ["alpha", "beta"]
    assert not [
        r
        for r in provider.requests
        if "ALPHA" in r.prompt or "BETA" in r.prompt or "tasks" in (r.json_schema or {}).get("properties", {})
    ]
    # the budget went on from what was spent; the project total is the sum of both attempts' calls
    calls = [p for p in first_attempt + recorded if isinstance(p, events.LlmCallFinished)]
    assert state.budget.spent_usd == pytest.approx(sum(p.attributes.get("llm.cost_usd", 0.0) for p in calls))
    assert state.budget.max_usd == 1.0
    # one project id, one run_project pair per attempt, every pair closed
    assert {p.project_id for p in first_attempt + recorded} == {pid}
    assert_pairs_balanced(recorded)
    (start,) = [p for p in recorded if isinstance(p, events.ProjectStarted)]
    assert start.attempt == 2 and start.attributes["orchestrator.resumed_from"] == pid
    final = store.load(pid)
    assert final.status == "partial_success" and final.attempt == 2
    assert final.result_attempts == {"alpha": 1, "beta": 1, "code": 2, "dep": 2, "slow": 2}
    assert any("kept 2 result(s)" in n for n in state.notes)


async def test_checkpoints_after_start_plan_every_task_and_end(tmp_path):
    saved: list[Checkpoint] = []

    class Recording(RunStore):
        def save(self, checkpoint: Checkpoint) -> None:
            saved.append(checkpoint)
            super().save(checkpoint)

    provider = Script(broken=False, block_slow=False)
    state = await _orch(Recording(tmp_path), provider).run_project("Five tasks", "all done")
    assert [c.status for c in saved] == ["running"] * 7 + ["partial_success"]
    assert saved[0].tasks is None and saved[1].tasks is not None and not saved[1].results
    counts = [len(c.results) for c in saved[1:]]  # tasks that finish together are in the first of their saves
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] == 5
    assert saved[-1].planning == state.planning and saved[-1].planning.cost_usd > 0
    assert saved[-1].planning.cost_usd == pytest.approx(state.budget.phase_spend["decomposition"])
    assert saved[-1].spent_usd == pytest.approx(state.budget.spent_usd)
    assert saved[-1].versions["catalog"] and saved[-1].versions["package"]
    assert saved[-1].settings["engine"]["only_model"] == PRICED


async def test_a_store_that_fails_never_fails_the_run(tmp_path, caplog):
    class Broken(RunStore):
        def save(self, checkpoint: Checkpoint) -> None:
            raise OSError("disk full")

    state = await _orch(Broken(tmp_path), Script(broken=False, block_slow=False)).run_project("Five", "done")
    assert state.status == ProjectStatus.PARTIAL_SUCCESS
    assert sum("checkpoint not saved" in n for n in state.notes) == 1
    assert sum("checkpoint not saved" in r.message for r in caplog.records) == 1


async def test_a_run_stopped_while_planning_plans_again(tmp_path):
    store = RunStore(tmp_path)
    orch = _orch(store, Script(block_plan=True))
    run = asyncio.ensure_future(orch.run_project("Five tasks", "all done"))
    await asyncio.sleep(0.1)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    cp = store.load(orch.state.project_id)
    assert cp.status == "interrupted" and cp.tasks is None
    state = await _orch(store, Script(broken=False, block_slow=False)).resume(cp.project_id)
    assert len(state.results) == 5 and state.restored == {}


async def test_budget_goes_on_from_what_was_spent_and_caps_only_rise(tmp_path):
    store = RunStore(tmp_path)
    provider = Script(broken=False, block_slow=False)
    # a budget that runs out part-way: resumable with a higher cap
    state = await _orch(store, provider, Budget(0.004, 600)).run_project("Five tasks", "all done")
    pid = state.project_id
    assert state.status == ProjectStatus.BUDGET_EXHAUSTED
    cp = store.load(pid)
    assert not cp.finished and cp.spent_usd <= 0.004
    with pytest.raises(ValueError, match="can only raise the budget"):
        await _orch(store, provider).resume(pid, max_usd=0.001)
    same = await _orch(store, provider).resume(pid)  # the original cap: still out of money
    assert same.status == ProjectStatus.BUDGET_EXHAUSTED and same.budget.max_usd == 0.004
    assert same.budget.spent_usd <= 0.004 + 1e-12
    more = await _orch(store, provider).resume(pid, max_usd=1.0)
    assert more.budget.max_usd == 1.0 and more.status == ProjectStatus.PARTIAL_SUCCESS
    assert all(r.status in (TaskStatus.COMPLETED, TaskStatus.DEGRADED) for r in more.results.values())
    assert more.budget.spent_usd >= cp.spent_usd


def test_the_time_cap_counts_the_time_earlier_attempts_ran():
    cp = Checkpoint(
        "p",
        "d",
        "c",
        status="timed_out",
        max_usd=1.0,
        max_time_seconds=600,
        elapsed_seconds=590,
        spent_usd=0.5,
        phase_spend={"generation": 0.5},
    )
    budget = resumed_budget(cp)
    assert 9 < budget.remaining_seconds <= 10 and budget.elapsed_seconds >= 590
    assert budget.spent_usd == 0.5 and budget.remaining_usd == pytest.approx(0.5)
    raised = resumed_budget(cp, max_time_seconds=900)
    assert 309 < raised.remaining_seconds <= 310
    with pytest.raises(ValueError, match="only raise the time cap"):
        resumed_budget(cp, max_time_seconds=60)


async def test_a_finished_run_is_returned_as_stored(tmp_path, recorded):
    store = RunStore(tmp_path)
    provider = Script(broken=False, block_slow=False)
    state = await _orch(store, provider).run_project("Five tasks", "all done")
    recorded.clear()
    calls = len(provider.requests)
    again = await _orch(store, provider).resume(state.project_id)
    assert not recorded and len(provider.requests) == calls  # nothing ran, nothing was sent
    assert again.status == state.status and again.results == state.results and again.attempt == 1


async def test_a_changed_catalog_is_noted_on_resume(tmp_path):
    store = RunStore(tmp_path)
    pid = await _interrupted_run(store, Script())
    cp = store.load(pid)
    cp.versions["catalog"] = "000000000000"
    store.save(cp)
    state = await _orch(store, Script(broken=False, block_slow=False)).resume(pid)
    assert any(
        n.startswith("resumed with other versions than the checkpoint's (catalog 000000000000 -> ") for n in state.notes
    )


async def test_unknown_ids_and_a_missing_store(tmp_path):
    with pytest.raises(UnknownProjectError, match="unknown project id 'proj-nope'"):
        await _orch(RunStore(tmp_path), Script()).resume("proj-nope")
    with pytest.raises(ValueError, match="needs a run store"):
        await Orchestrator(client=UnifiedClient({"local": Script()})).resume("proj-x")


async def test_two_resumes_at_once_one_is_refused(tmp_path):
    store = RunStore(tmp_path)
    pid = await _interrupted_run(store, Script())
    provider = Script(broken=False, block_slow=False, latency=0.05)
    results = await asyncio.gather(
        _orch(RunStore(tmp_path), provider).resume(pid),
        _orch(RunStore(tmp_path), provider).resume(pid),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, ProjectBusyError)]
    done = [r for r in results if not isinstance(r, BaseException)]
    assert len(refused) == 1 and len(done) == 1, results
    assert done[0].attempt == 2 and store.load(pid).attempt == 2


async def test_the_resumed_root_links_to_the_original(tmp_path, span_exporter):
    from opentelemetry.sdk.trace import ReadableSpan

    from orchestrator.otel.devtree import render_span_tree

    store = RunStore(tmp_path)
    pid = await _interrupted_run(store, Script())
    (first_root,) = [s for s in span_exporter.get_finished_spans() if s.name == "run_project"]
    assert store.load(pid).roots[0]["traceparent"] == (
        f"00-{first_root.context.trace_id:032x}-{first_root.context.span_id:016x}-{first_root.context.trace_flags:02x}"
    )
    span_exporter.clear()
    await _orch(store, Script(broken=False, block_slow=False)).resume(pid)
    spans: list[ReadableSpan] = list(span_exporter.get_finished_spans())
    (root,) = [s for s in spans if s.name == "run_project"]
    assert root.attributes["project.id"] == pid and root.attributes["orchestrator.attempt"] == 2
    assert root.attributes["orchestrator.resumed_from"] == pid
    assert root.attributes["orchestrator.original_trace_id"] == f"{first_root.context.trace_id:032x}"
    (link,) = root.links
    assert (link.context.trace_id, link.context.span_id) == (first_root.context.trace_id, first_root.context.span_id)
    assert root.context.trace_id != first_root.context.trace_id  # a new trace, linked
    assert sorted(s.name for s in spans if s.name.startswith("task:")) == ["task:code", "task:dep", "task:slow"]
    assert sorted(e.attributes["task_id"] for e in root.events if e.name == "task_restored") == ["alpha", "beta"]
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render_span_tree(spans))
    text = console.export_text()
    assert "resumed: attempt 2" in text
    assert "task:alpha  from checkpoint (attempt 1)" in text and "task:beta  from checkpoint (attempt 1)" in text
