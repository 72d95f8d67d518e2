"""Engine logic on a scripted provider: decomposition sanitising, DAG scheduling, the
per-task loop, budget, and what dependants of a failed task do."""

from __future__ import annotations

import asyncio
import json

import pytest

from orchestrator import events
from orchestrator.domain.budget import Budget
from orchestrator.domain.results import ProjectStatus, TaskStatus
from orchestrator.domain.tasks import Task, TaskType
from orchestrator.engine import Orchestrator, sanitize_tasks, topological_order
from orchestrator.llm.client import UnifiedClient
from orchestrator.llm.providers.base import ProviderError, ProviderRequest
from tests.assertions import assert_pairs_balanced
from tests.helpers import no_sleep
from tests.scripted import ScriptedProvider, decomposition


def _orch(provider, **kw):
    budget = kw.pop("budget", Budget(1.0, 600))
    client = UnifiedClient({"local": provider})
    return Orchestrator(budget=budget, client=client, **kw)


# -- decomposition sanitising -------------------------------------------------------------


def test_sanitize_drops_unknown_and_self_dependencies_and_renames_duplicates():
    tasks, notes = sanitize_tasks(
        {
            "tasks": [
                {"id": "a", "type": "code_generation", "prompt": "A", "depends_on": ["a", "ghost"]},
                {"id": "a", "type": "summarization", "prompt": "B", "depends_on": ["a"]},
                {"id": "c", "type": "nonsense", "prompt": "C", "depends_on": ["a_2"]},
                {"id": "d", "type": "code_review", "prompt": "", "depends_on": []},
            ]
        }
    )
    by_id = {t.id: t for t in tasks}
    assert list(by_id) == ["a", "a_2", "c"]
    assert by_id["a"].depends_on == []
    assert by_id["a_2"].depends_on == ["a"]  # "a" means the first task of that id
    assert by_id["c"].type == TaskType.COMPLEX_REASONING and by_id["c"].depends_on == ["a_2"]
    assert any("ghost" in n for n in notes) and any("renamed" in n for n in notes)


def test_sanitize_breaks_cycles_and_clamps():
    raw = [
        {"id": f"t{i}", "type": "summarization", "prompt": f"p{i}", "depends_on": [f"t{(i + 1) % 15}"]}
        for i in range(20)
    ]
    tasks, notes = sanitize_tasks(raw, max_tasks=15)
    assert len(tasks) == 15
    order = topological_order({t.id: t for t in tasks})
    assert sorted(order) == sorted(t.id for t in tasks)  # acyclic: every task is ordered
    position = {tid: i for i, tid in enumerate(order)}
    for t in tasks:
        for dep in t.depends_on:
            assert position[dep] < position[t.id]
    assert any("clamped" in n for n in notes) and any("cycle" in n for n in notes)


def test_sanitize_rejects_garbage():
    assert sanitize_tasks("not json")[0] == []
    assert sanitize_tasks({"tasks": [1, "x", {"id": "a"}]})[0] == []


def test_explicit_task_values_beat_type_defaults():
    t = Task("x", TaskType.CODE_GENERATION, "p", acceptance_threshold=0.1, max_iterations=7, max_output_tokens=9)
    assert (t.threshold, t.iterations_cap, t.output_tokens_cap) == (0.1, 7, 9)
    d = Task("y", TaskType.CODE_GENERATION, "p")
    assert (d.threshold, d.iterations_cap) == (0.85, 3)


# -- runs --------------------------------------------------------------------------------


async def test_run_completes_and_costs_add_up(recorded):
    provider = ScriptedProvider(
        plan=decomposition(
            {"id": "a", "type": "code_generation", "prompt": "write add", "depends_on": []},
            {"id": "b", "type": "code_review", "prompt": "review add", "depends_on": ["a"]},
        )
    )
    state = await _orch(provider).run_project("Build add", "add(1,1)==2")
    assert state.status == ProjectStatus.SUCCESS
    assert [state.results[t].status for t in ("a", "b")] == [TaskStatus.COMPLETED] * 2
    # b's prompt carried a's output as context
    review_prompts = [r.prompt for r in provider.requests if "review add" in r.prompt]
    assert review_prompts and "Output of a" in review_prompts[0]
    call_costs = sum(p.attributes.get("llm.cost_usd", 0.0) for p in recorded if isinstance(p, events.LlmCallFinished))
    assert call_costs == pytest.approx(state.budget.spent_usd)
    assert_pairs_balanced(recorded)


async def test_dependants_of_a_failed_task_are_skipped(recorded):
    def answer(req: ProviderRequest):
        return "def broken(:\n" if "write broken" in req.prompt else "fine"

    provider = ScriptedProvider(
        answer=answer,
        plan=decomposition(
            {"id": "a", "type": "code_generation", "prompt": "write broken", "depends_on": []},
            {"id": "b", "type": "summarization", "prompt": "summarize a", "depends_on": ["a"]},
            {"id": "c", "type": "summarization", "prompt": "independent", "depends_on": []},
        ),
    )
    state = await _orch(provider).run_project("p", "c")
    assert state.results["a"].status == TaskStatus.FAILED
    assert state.results["b"].status == TaskStatus.SKIPPED
    assert state.results["c"].status == TaskStatus.COMPLETED
    assert state.status == ProjectStatus.PARTIAL_SUCCESS
    skipped = [p for p in recorded if isinstance(p, events.TaskSkipped)]
    assert [s.task_id for s in skipped] == ["b"]
    assert any(isinstance(p, events.ValidationFailed) and p.validator == "python_syntax" for p in recorded)


async def test_unusable_decomposition_falls_back_to_one_task(recorded):
    provider = ScriptedProvider(plan="this is not json at all")
    state = await _orch(provider).run_project("Build a small calculator", "works")
    assert list(state.tasks) == ["task_1"]
    assert len(provider.calls_of("decompose")) == 2  # one more try before falling back
    assert any(isinstance(p, events.DecompositionFallback) for p in recorded)
    assert state.results["task_1"].status == TaskStatus.COMPLETED


async def test_scheduler_has_no_level_barrier():
    """b depends only on the fast a; it must start before the slow c finishes."""
    starts: dict[str, float] = {}
    loop = asyncio.get_running_loop()

    class Timed(ScriptedProvider):
        async def complete(self, request):
            for tid in ("fast", "slow", "after"):
                if f"do {tid}" in request.prompt:
                    starts.setdefault(tid, loop.time())
                    await asyncio.sleep(0.3 if tid == "slow" else 0.01)
            return await super().complete(request)

    provider = Timed(
        plan=decomposition(
            {"id": "fast", "type": "summarization", "prompt": "do fast", "depends_on": []},
            {"id": "slow", "type": "summarization", "prompt": "do slow", "depends_on": []},
            {"id": "after", "type": "summarization", "prompt": "do after", "depends_on": ["fast"]},
        )
    )
    state = await _orch(provider, concurrency=4).run_project("p", "c")
    assert state.status == ProjectStatus.SUCCESS
    assert starts["after"] - starts["slow"] < 0.3


async def test_concurrency_bound_is_respected():
    running = 0
    peak = 0

    class Counting(ScriptedProvider):
        async def complete(self, request):
            nonlocal running, peak
            if request.json_schema is None:
                running += 1
                peak = max(peak, running)
                await asyncio.sleep(0.02)
                running -= 1
            return await super().complete(request)

    plan = decomposition(
        *({"id": f"t{i}", "type": "summarization", "prompt": f"p{i}", "depends_on": []} for i in range(8))
    )
    await _orch(Counting(plan=plan), concurrency=3).run_project("p", "c")
    assert peak == 3


async def test_budget_is_never_exceeded_and_status_says_why():
    provider = ScriptedProvider(
        name="openai",
        tokens=(2000, 2000),
        score=0.1,
        plan=decomposition(
            *({"id": f"t{i}", "type": "complex_reasoning", "prompt": f"p{i}", "depends_on": []} for i in range(5))
        ),
    )
    budget = Budget(max_usd=0.05, max_time_seconds=600)
    client = UnifiedClient({"openai": provider})
    state = await Orchestrator(budget=budget, client=client, only_model="gpt-4o").run_project("p", "c")
    assert budget.spent_usd <= budget.max_usd
    assert state.status == ProjectStatus.BUDGET_EXHAUSTED
    assert budget.spent_usd > 0


async def test_threshold_plateau_and_iteration_cap():
    scores = iter([0.5, 0.51, 0.515, 0.9])

    class Plateau(ScriptedProvider):
        async def complete(self, request):
            if request.json_schema and "score" in request.json_schema["properties"]:
                self.score = next(scores)
            return await super().complete(request)

    provider = Plateau(plan=decomposition({"id": "t", "type": "summarization", "prompt": "p", "depends_on": []}))
    tasks = [Task("t", TaskType.SUMMARIZATION, "p", max_iterations=10, acceptance_threshold=0.95)]
    state = await _orch(provider, project_tasks=tasks).run_project("p", "c")
    result = state.results["t"]
    assert result.iterations == 3  # 0.5 -> 0.51 -> 0.515: two changes < 0.02 stop the loop
    assert result.score == pytest.approx(0.515) and result.status == TaskStatus.DEGRADED


async def test_llm_error_falls_back_to_the_next_candidate():
    bad = ScriptedProvider(name="openai", answer=ProviderError("boom", transient=True, status_code=503))
    good = ScriptedProvider(
        name="local", plan=decomposition({"id": "t", "type": "summarization", "prompt": "p", "depends_on": []})
    )
    bad.plan = good.plan
    client = UnifiedClient({"openai": bad, "local": good}, sleep=no_sleep)
    state = await Orchestrator(budget=Budget(5, 600), client=client).run_project("p", "c")
    result = state.results["t"]
    assert result.status == TaskStatus.COMPLETED and result.model_used == "smollm2-135m"
    assert result.fallback_count >= 1


async def test_raising_receiver_does_not_change_the_outcome(recorded):
    def broken(payload):
        raise RuntimeError("observer exploded")

    plan = decomposition({"id": "t", "type": "summarization", "prompt": "p", "depends_on": []})
    baseline = await _orch(ScriptedProvider(plan=plan)).run_project("p", "c", project_id="same")
    for sig in events.ALL_SIGNALS:
        sig.connect(broken)
    try:
        again = await _orch(ScriptedProvider(plan=plan)).run_project("p", "c", project_id="same")
    finally:
        for sig in events.ALL_SIGNALS:
            sig.disconnect(broken)
    assert again.status == baseline.status
    assert json.dumps({k: r.to_dict() for k, r in again.results.items()}) == json.dumps(
        {k: r.to_dict() for k, r in baseline.results.items()}
    )
    assert_pairs_balanced(recorded)


async def test_time_cap_stops_the_run_with_timed_out():
    plan = decomposition(
        *({"id": f"t{i}", "type": "summarization", "prompt": f"p{i}", "depends_on": []} for i in range(4))
    )
    provider = ScriptedProvider(plan=plan, latency=0.3, score=0.1)
    budget = Budget(max_usd=1.0, max_time_seconds=2.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    state = await _orch(provider, budget=budget, concurrency=1).run_project("p", "c")
    assert state.status == ProjectStatus.TIMED_OUT
    assert loop.time() - started < 2.0 + 0.5  # no call was started that the cap could not hold
    assert any(r.status == TaskStatus.SKIPPED for r in state.results.values())


async def test_dependency_context_is_truncated_to_the_window():
    huge = "x" * 200_000

    def answer(req: ProviderRequest):
        return huge if "make big" in req.prompt else "short"

    provider = ScriptedProvider(
        answer=answer,
        plan=decomposition(
            {"id": "big", "type": "summarization", "prompt": "make big", "depends_on": []},
            {"id": "user", "type": "summarization", "prompt": "use big", "depends_on": ["big"]},
        ),
    )
    await _orch(provider).run_project("p", "c")
    prompts = [r.prompt for r in provider.requests if "use big" in r.prompt and r.prompt.startswith("Context")]
    assert prompts, "the dependant's generate prompt carries the context"
    window_chars = 8192 * 3  # SmolLM2's window, at the engine's 3 characters per token
    assert len(prompts[0]) < window_chars and "[...truncated]" in prompts[0]
