"""The Orchestrator: decompose a project into tasks, schedule the DAG, run each task's
generate -> critique -> revise -> validate -> evaluate loop under a hard budget.

Every model is checked against the task's policies before its first use (``policy``);
failures - a call that fails, an output a validator rejects, a score below the threshold,
a budget running low - go to the remediation engine, whose decision the loop carries out
(``remediation``).

The engine talks to the outside world only through the client (LLM calls) and the event
bus (``orchestrator.events``); it never imports an observer or OpenTelemetry.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from . import events
from .api_clients import (
    APIResponse,
    BudgetExceededError,
    LLMCallError,
    TimeBudgetExceededError,
    UnifiedClient,
    worst_case_input_tokens,
)
from .models import (
    Budget,
    ProjectState,
    ProjectStatus,
    Task,
    TaskResult,
    TaskStatus,
    TaskType,
    get_model,
)
from .policy import ModelProfile, Policy, PolicyEngine, PolicyResult, PolicySet, PolicyViolationError
from .remediation import (
    Decision,
    RemediationConfig,
    RemediationEngine,
    Situation,
    Strategy,
    TaskRemediation,
    Trigger,
    adjust_prompt_instruction,
)
from .routing import Router
from .validators import ValidationResult, ValidatorConfig, run_validators

logger = logging.getLogger("orchestrator.engine")

MAX_TASKS = 15
LOCAL_PLANNER_MAX_TASKS = 4  # a 135M model cannot usefully plan more; keeps local runs short
PLATEAU_DELTA = 0.02
CRITIQUE_MAX_TOKENS = 400
EVALUATE_MAX_TOKENS = 200

_ID_CLEAN = re.compile(r"[^a-zA-Z0-9_-]+")


def decomposition_schema(max_tasks: int) -> dict:
    return {
        "type": "object",
        "properties": {
            "tasks": {
                "type": "array", "minItems": 1, "maxItems": max_tasks,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "maxLength": 40},
                        "type": {"type": "string", "enum": [t.value for t in TaskType]},
                        "prompt": {"type": "string", "maxLength": 800},
                        "depends_on": {"type": "array", "maxItems": 5,
                                       "items": {"type": "string", "maxLength": 40}},
                    },
                    "required": ["id", "type", "prompt", "depends_on"],
                },
            },
        },
        "required": ["tasks"],
    }


EVALUATION_SCHEMA = {
    "type": "object",
    "properties": {
        "reasons": {"type": "string", "maxLength": 300},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["reasons", "score"],
}


class _StopTask(Exception):
    """Budget or time can no longer pay for the task's next call."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.kind = kind  # "budget" or "time"


@dataclass
class _Round:
    output: str
    score: float
    passed_validators: bool
    reasons: str = ""
    model: str = ""
    failed: tuple[str, ...] = ()  # the validators that rejected the output


@dataclass
class _TaskRun:
    """One task's loop state: the model in use, the best round, the round in flight."""

    task: Task
    context: Mapping[str, str]
    result: TaskResult
    policies: tuple[Policy, ...]
    remediation: TaskRemediation
    candidates: list[str]
    threshold: float                # lowered by degrade_threshold
    model: str = ""
    reviewers: list[str] = field(default_factory=list)
    prompt: str = ""
    system: str = ""
    max_tokens: int = 0
    tried: set[str] = field(default_factory=set)
    failed_models: set[str] = field(default_factory=set)  # a call of theirs failed in this task
    checked: dict[str, PolicyResult] = field(default_factory=dict)
    best: _Round | None = None
    last: _Round | None = None      # the latest completed round
    draft: str | None = None        # steps of the round in flight, kept across a retry
    critique: str | None = None
    revised: str | None = None
    revised_by: str = ""
    instruction: str = ""           # adjust_prompt: the failure spelled out for the next revise
    skipped: set[str] = field(default_factory=set)
    accepted: bool = False          # degrade_threshold accepted the best output
    aborted: str | None = None
    stopped: bool = False           # a failure nothing remedied, or money/time ran out
    on_fail: tuple[str | None, str | None] = (None, None)
    last_round_cost: float = 0.0

    @property
    def rounds_left(self) -> int:
        return max(0, self.task.iterations_cap - self.result.iterations)

    @property
    def done(self) -> bool:
        best = self.best
        return bool(self.accepted or self.aborted or self.stopped or (
            best is not None and best.passed_validators and best.score >= self.threshold))


_NO_MODEL = object()  # fallback_model found no model


# ---------------------------------------------------------------------------------------
# Decomposition sanitising (pure functions: easy to test)
# ---------------------------------------------------------------------------------------

def sanitize_tasks(raw: object, max_tasks: int = MAX_TASKS) -> tuple[list[Task], list[str]]:
    """Turn an LLM's decomposition answer into a valid task DAG.

    Drops malformed entries, unknown and self dependencies; renames duplicate ids; breaks
    cycles (the earliest task of a cycle loses its dependencies on the rest); keeps at
    most ``max_tasks``.  Returns the tasks and notes on what was fixed.
    """
    notes: list[str] = []
    items = raw.get("tasks") if isinstance(raw, Mapping) else raw
    if not isinstance(items, list):
        return [], ["answer has no task list"]
    tasks: list[Task] = []
    first_id_of: dict[str, str] = {}
    raw_deps: list[list[str]] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            notes.append(f"entry {index} is not an object: dropped")
            continue
        prompt = str(item.get("prompt") or item.get("description") or "").strip()
        if not prompt:
            notes.append(f"entry {index} has no prompt: dropped")
            continue
        original = str(item.get("id") or f"task_{index + 1}")
        base = _ID_CLEAN.sub("_", original).strip("_")[:40] or f"task_{index + 1}"
        task_id, n = base, 2
        existing = {t.id for t in tasks}
        while task_id in existing:
            task_id, n = f"{base}_{n}", n + 1
        if task_id != base:
            notes.append(f"duplicate id {original!r} renamed to {task_id!r}")
        first_id_of.setdefault(original, task_id)
        first_id_of.setdefault(base, task_id)
        try:
            task_type = TaskType(str(item.get("type", "")).lower())
        except ValueError:
            task_type = TaskType.COMPLEX_REASONING
            notes.append(f"task {task_id}: unknown type {item.get('type')!r}, using complex_reasoning")
        deps = item.get("depends_on") or []
        raw_deps.append([str(d) for d in deps] if isinstance(deps, list) else [])
        tasks.append(Task(id=task_id, type=task_type, prompt=prompt))
    if len(tasks) > max_tasks:
        notes.append(f"{len(tasks)} tasks clamped to {max_tasks}")
        tasks, raw_deps = tasks[:max_tasks], raw_deps[:max_tasks]
    ids = {t.id for t in tasks}
    for task, deps in zip(tasks, raw_deps, strict=True):
        clean: list[str] = []
        for dep in deps:
            resolved = first_id_of.get(dep, first_id_of.get(_ID_CLEAN.sub("_", dep).strip("_"), dep))
            if resolved == task.id:
                notes.append(f"task {task.id}: self dependency dropped")
            elif resolved not in ids:
                notes.append(f"task {task.id}: unknown dependency {dep!r} dropped")
            elif resolved not in clean:
                clean.append(resolved)
        task.depends_on = clean
    _break_cycles(tasks, notes)
    return tasks, notes


def _break_cycles(tasks: list[Task], notes: list[str]) -> None:
    remaining = {t.id: t for t in tasks}
    done: set[str] = set()
    while remaining:
        ready = [t for t in remaining.values() if all(d in done for d in t.depends_on)]
        if not ready:
            victim = next(iter(remaining.values()))  # earliest in list order
            dropped = [d for d in victim.depends_on if d in remaining]
            victim.depends_on = [d for d in victim.depends_on if d not in remaining]
            notes.append(f"cycle broken: {victim.id} no longer depends on {', '.join(dropped)}")
            continue
        for t in ready:
            done.add(t.id)
            del remaining[t.id]


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


def guess_task_type(text: str) -> TaskType:
    lowered = text.lower()
    if any(w in lowered for w in ("function", "python", "code", "implement", "class ", "script", "api")):
        return TaskType.CODE_GENERATION
    if "summar" in lowered:
        return TaskType.SUMMARIZATION
    if any(w in lowered for w in ("extract", "json", "csv")):
        return TaskType.DATA_EXTRACTION
    if any(w in lowered for w in ("story", "poem", "essay", "write a blog")):
        return TaskType.CREATIVE_WRITING
    return TaskType.COMPLEX_REASONING


def parse_json_answer(text: str) -> object | None:
    """The JSON object in an answer (bare, fenced, or embedded in prose), or None."""
    text = text.strip()
    candidates = [text]
    fenced = re.findall(r"```(?:json)?\s*\n(.*?)```", text, re.DOTALL)
    candidates.extend(fenced)
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None


# ---------------------------------------------------------------------------------------
# The orchestrator
# ---------------------------------------------------------------------------------------

class Orchestrator:
    """Runs projects.  One instance may run several projects one after the other; each
    run gets the budget given at construction (its clock restarts at each run)."""

    def __init__(
        self,
        budget: Budget | None = None,
        client: UnifiedClient | None = None,
        concurrency: int = 4,
        *,
        only_model: str | None = None,
        max_tasks: int | None = None,
        evaluation_samples: int = 2,
        project_tasks: list[Task] | None = None,
        policies: PolicySet | list[Policy] | Mapping[str, Any] | None = None,
        remediation: RemediationConfig | RemediationEngine | Mapping[str, Any] | None = None,
        validators: ValidatorConfig | Mapping[str, Any] | None = None,
        policy_engine: PolicyEngine | None = None,
    ) -> None:
        """``policies``: a :class:`~orchestrator.policy.PolicySet`, a list of
        :class:`~orchestrator.policy.Policy` (global ones), or policy-file-shaped data.
        ``remediation``: a :class:`~orchestrator.remediation.RemediationConfig`, its data,
        or a :class:`~orchestrator.remediation.RemediationEngine`.  ``validators``: a
        :class:`~orchestrator.validators.ValidatorConfig` or its data.  Bad data raises
        a one-line :class:`~orchestrator._config_errors.ConfigError` (a ValueError)."""
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.budget = budget or Budget()
        self.client = client or UnifiedClient()
        self.concurrency = concurrency
        self.only_model = only_model
        self.router = Router(self.client, only_model)
        self.max_tasks = max_tasks
        self.evaluation_samples = max(1, evaluation_samples)
        self.project_tasks = project_tasks
        self.policies = PolicySet.coerce(policies)
        self.policy_engine = policy_engine or PolicyEngine()
        self.remediation = RemediationEngine.coerce(remediation)
        self.validators = ValidatorConfig.coerce(validators)
        self._sleep = getattr(self.client, "_sleep", None) or asyncio.sleep  # auto_retry's pause
        self._latency_ms: dict[str, float] = {}  # observed per model (moving average), for policies
        self._stop_reason: str | None = None  # "budget" or "time" once either ran out
        self.state: ProjectState | None = None  # the run in progress or last run: kept when interrupted
        self._project_brief = ""

    # -- the run ---------------------------------------------------------------------
    async def run_project(self, project_description: str, success_criteria: str,
                          project_id: str | None = None) -> ProjectState:
        project_id = project_id or f"proj-{uuid.uuid4().hex[:12]}"
        self.budget.restart_clock()
        self.client.budget = self.budget
        self._stop_reason = None
        self._project_brief = f"Project: {project_description}" + (
            f"\nSuccess criteria: {success_criteria}" if success_criteria else "")
        state = ProjectState(project_id=project_id, description=project_description,
                             criteria=success_criteria, budget=self.budget)
        self.state = state
        with events.traced_project(project_id, project_description, success_criteria,
                                   self.budget.max_usd, self.budget.max_time_seconds) as span:
            try:
                if self.policies:
                    self._preflight()
                if self.project_tasks:
                    tasks, notes = sanitize_tasks([t.to_dict() for t in self.project_tasks],
                                                  len(self.project_tasks))  # given tasks are not clamped
                    self._restore_explicit_settings(tasks)
                else:
                    tasks, notes = await self._decompose(project_description, success_criteria)
                state.notes.extend(notes)
                state.tasks = {t.id: t for t in tasks}
                state.execution_order = topological_order(state.tasks)
                events.emit(events.tasks_planned, task_count=len(tasks),
                            task_ids=tuple(state.execution_order))
                if tasks:
                    await self._schedule(state)
            except PolicyViolationError as exc:
                # raised before any call was sent (preflight, planner check): the caller
                # still gets the state, with the reason, to report and write out
                state.notes.append(str(exc))
                exc.state = state
                raise
            except asyncio.CancelledError:
                state.notes.append("interrupted: the results so far are kept, unfinished tasks failed")
                raise
            finally:
                state.status = self._final_status(state)
                span.set_attributes({
                    "project.status": state.status.value,
                    "project.cost_usd": round(self.budget.spent_usd, 8),
                    "project.tokens_in": sum(r.input_tokens for r in state.results.values()),
                    "project.tokens_out": sum(r.output_tokens for r in state.results.values()),
                    "project.task_count": len(state.tasks),
                })
        return state

    # -- policies --------------------------------------------------------------------
    def _preflight(self) -> None:
        """Stop before spending anything when the policies leave the project nothing to
        run: no compliant usable model for any explicit task, or for any task type when
        the project is to be decomposed.  (A silent feasibility check: the real checks,
        with their events, happen when a model is about to be used.)"""
        engine = self.policy_engine
        if self.project_tasks:
            groups = [(f"task {t.id}", self.policies.for_task(t), self.router.candidates(t.type))
                      for t in self.project_tasks]
        else:
            groups = [(f"task type {tt.value}", self.policies.for_type(tt), self.router.candidates(tt))
                      for tt in TaskType]
        details: dict[str, str] = {}  # "model: reason", once each, whatever the group
        for _label, policies, candidates in groups:
            results = [engine.evaluate(m, self._profile(m), policies) for m in candidates]
            if not candidates or any(r.passed for r in results):
                return
            for r in results:
                details.setdefault(f"{r.model}: {r.reason}", "")
        names = ", ".join(sorted({p.name for p in self.policies.global_policies}
                                 | {p.name for v in self.policies.by_task_type.values() for p in v}
                                 | {p.name for v in self.policies.by_task.values() for p in v}))
        shown = list(details)[:4]
        more = f"; and {len(details) - 4} more" if len(details) > 4 else ""
        raise PolicyViolationError(f"project: no usable model satisfies the policies {names} for any task; "
                                   f"nothing was run or spent: {'; '.join(shown)}{more}")

    def _profile(self, model: str) -> ModelProfile:
        return ModelProfile.from_catalog(model, self._latency_ms.get(model))

    def _restore_explicit_settings(self, tasks: list[Task]) -> None:
        given = {t.id: t for t in self.project_tasks or []}
        for task in tasks:
            src = given.get(task.id)
            if src is not None:
                task.type = src.type
                task.acceptance_threshold = src.acceptance_threshold
                task.max_iterations = src.max_iterations
                task.max_output_tokens = src.max_output_tokens

    def _final_status(self, state: ProjectState) -> ProjectStatus:
        results = [state.results.get(tid) for tid in state.tasks]
        statuses = [r.status if r else TaskStatus.SKIPPED for r in results]
        if statuses and all(s == TaskStatus.COMPLETED for s in statuses):
            return ProjectStatus.SUCCESS
        if self._stop_reason == "budget":
            return ProjectStatus.BUDGET_EXHAUSTED
        if self._stop_reason == "time":
            return ProjectStatus.TIMED_OUT
        if any(s in (TaskStatus.COMPLETED, TaskStatus.DEGRADED) for s in statuses):
            return ProjectStatus.PARTIAL_SUCCESS
        return ProjectStatus.FAILED

    # -- decomposition ---------------------------------------------------------------
    async def _decompose(self, description: str, criteria: str) -> tuple[list[Task], list[str]]:
        planners = self.router.planner_candidates()
        if not planners:
            raise RuntimeError("no usable model: set a provider key or install the 'local' extra")
        planner = planners[0]
        policies = self.policies.for_project()
        if policies:  # the planner gets the project description: the global policies apply
            results = []
            for candidate in planners:
                results.append(self.policy_engine.check(candidate, self._profile(candidate), policies))
                if results[-1].passed:
                    break
            if not results[-1].passed:
                raise PolicyViolationError.for_candidates(None, policies, results, "project (decomposition)")
            planner = results[-1].model
        max_tasks = self.max_tasks or (LOCAL_PLANNER_MAX_TASKS if get_model(planner).is_local else MAX_TASKS)
        schema = decomposition_schema(max_tasks)
        system = ("You are a software project planner. Split the project into small, concrete tasks. "
                  "Answer only with JSON matching the schema.")
        prompt = (
            f"Project: {description}\nSuccess criteria: {criteria}\n\n"
            f"Return between 1 and {max_tasks} tasks. Each task has a short id, a type "
            f"(one of {', '.join(t.value for t in TaskType)}), a prompt that says exactly what to "
            "produce for this project, and depends_on: the ids of tasks whose output it needs."
        )
        reason = ""
        for variant in range(2):
            try:
                response = await self.client.call(
                    planner, prompt, system=system, max_tokens=min(1500, get_model(planner).max_output_tokens),
                    temperature=0.2 if variant == 0 else 0.5, json_schema=schema, call_type="decompose",
                    variant=variant, bypass_cache=variant > 0)
            except (BudgetExceededError, TimeBudgetExceededError) as exc:
                self._stop_reason = "budget" if isinstance(exc, BudgetExceededError) else "time"
                return [], [f"decomposition not affordable: {exc}"]
            except LLMCallError as exc:
                reason = f"decomposition call failed: {exc}"
                planner = self._next_planner(planners, planner, policies)
                continue
            tasks, notes = sanitize_tasks(parse_json_answer(response.text), max_tasks)
            if tasks:
                return tasks, notes
            reason = "; ".join(notes) or "no usable task in the answer"
        fallback = Task(id="task_1", type=guess_task_type(description),
                        prompt=f"{description}\nSuccess criteria: {criteria}")
        events.emit(events.decomposition_fallback, reason=reason[:300])
        return [fallback], [f"decomposition unusable twice ({reason}); running the project as one task"]

    def _next_planner(self, planners: list[str], planner: str, policies: Any) -> str:
        """``planner`` while the client still sends to it; once it is out for the run (a
        rejected key, an unknown model, repeated failures), the next usable candidate that
        passes the project's policies, so one dead provider does not cost the plan."""
        if self.client.is_usable(planner):
            return planner
        for candidate in planners[planners.index(planner) + 1:]:
            if self.client.is_usable(candidate) and (
                    not policies or self.policy_engine.check(candidate, self._profile(candidate), policies).passed):
                return candidate
        return planner

    # -- scheduling ------------------------------------------------------------------
    async def _schedule(self, state: ProjectState) -> None:
        """Start every task whose dependencies are done, up to ``concurrency`` at once,
        longest remaining chain first.  Dependants of a failed or skipped task are skipped."""
        tasks = state.tasks
        dependants: dict[str, list[str]] = {tid: [] for tid in tasks}
        for tid, t in tasks.items():
            for dep in t.depends_on:
                dependants[dep].append(tid)
        rank: dict[str, int] = {}
        for tid in reversed(state.execution_order):
            rank[tid] = 1 + max((rank[c] for c in dependants[tid]), default=0)
        waiting = {tid: len(t.depends_on) for tid, t in tasks.items()}
        position = {tid: i for i, tid in enumerate(state.execution_order)}
        ready = [(-rank[tid], position[tid], tid) for tid, n in waiting.items() if n == 0]
        heapq.heapify(ready)
        running: dict[asyncio.Task, str] = {}

        def release(tid: str) -> None:
            for child in dependants[tid]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    heapq.heappush(ready, (-rank[child], position[child], child))

        try:
            while ready or running:
                while ready and len(running) < self.concurrency:
                    _, _, tid = heapq.heappop(ready)
                    task = tasks[tid]
                    bad = [d for d in task.depends_on
                           if state.results[d].status in (TaskStatus.FAILED, TaskStatus.SKIPPED)]
                    if bad or self._stop_reason:
                        reason = (f"dependency {', '.join(bad)} did not succeed" if bad
                                  else f"{self._stop_reason} exhausted")
                        state.results[tid] = TaskResult(task_id=tid, status=TaskStatus.SKIPPED, error=reason)
                        events.emit(events.task_skipped, task_id=tid, reason=reason)
                        release(tid)
                        continue
                    context = {d: state.results[d].output for d in task.depends_on}
                    running[asyncio.ensure_future(self._run_task(task, context, state.results))] = tid
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

    # -- one task --------------------------------------------------------------------
    async def _run_task(self, task: Task, context: Mapping[str, str],
                        results: dict[str, TaskResult] | None = None) -> TaskResult:
        """``results``: where the result lives while the task runs, so that an interrupted
        run still has it (with the best output so far)."""
        with events.traced_task(task.id, task.type.value, task.prompt) as span:
            result = TaskResult(task_id=task.id, status=TaskStatus.RUNNING)
            if results is not None:
                results[task.id] = result
            try:
                await self._task_loop(task, context, result)
            finally:
                if result.status == TaskStatus.RUNNING:
                    result.status = TaskStatus.FAILED
                    result.error = result.error or "interrupted"
                span.set_attributes({
                    "task.status": result.status.value, "task.score": round(result.score, 4),
                    "task.iterations": result.iterations, "task.model": result.model_used or "",
                    "task.reviewer_model": result.reviewer_model or "",
                    "task.cost_usd": round(result.cost_usd, 8), "task.tokens_in": result.input_tokens,
                    "task.tokens_out": result.output_tokens, "task.fallback_count": result.fallback_count,
                })
            return result

    async def _task_loop(self, task: Task, context: Mapping[str, str], result: TaskResult) -> None:
        run = _TaskRun(task, context, result, self.policies.for_task(task) if self.policies else (),
                       self.remediation.for_task(task.id), self.router.candidates(task.type), task.threshold)
        if not run.candidates:
            result.status, result.error = TaskStatus.FAILED, "no usable model for this task type"
            return
        if not self._switch_model(run):
            result.status, result.error = TaskStatus.FAILED, str(self._policy_error(run))
            return
        try:
            await self._rounds(run)
        except _StopTask as exc:  # raised while a remediation scored an output
            self._stop(run, exc.kind, str(exc))
        except asyncio.CancelledError:  # interrupted: the best output so far is kept
            self._conclude(run)
            if result.status != TaskStatus.COMPLETED:
                result.status, result.error = TaskStatus.FAILED, "interrupted"
            raise
        self._conclude(run)

    async def _rounds(self, run: _TaskRun) -> None:
        """Rounds until the threshold, a plateau, the iteration cap, an abort, or the
        money/time for a round runs out; every trigger goes to the remediation engine."""
        task, result = run.task, run.result
        loop = asyncio.get_running_loop()
        action: Decision | None = None
        round_seconds = 0.0
        stalls, previous = 0, None
        while not run.done:
            if result.iterations >= task.iterations_cap:
                break
            if result.iterations and round_seconds > self.budget.remaining_seconds:
                self._stop(run, "time", "not enough time left for another round")
                break
            if action is None and self._budget_low(run):
                action = await self._on_trigger(run, self._situation(
                    run, Trigger.BUDGET_LOW, f"${self.budget.remaining_usd:.6f} left, the last round cost "
                                             f"${run.last_round_cost:.6f}", cheaper=True))
                if run.done:
                    break
            started, spent_before = loop.time(), result.cost_usd
            pending, action = action, None
            outcome = await self._round_with(run, pending)
            if outcome is _NO_MODEL:  # fallback_model found nothing: ask again without it
                assert pending is not None
                action = await self._on_trigger(run, replace(pending.situation, has_fallback=False),
                                                *run.on_fail)
                continue
            if isinstance(outcome, LLMCallError):
                # auto_retry only while the client still sends to the model: once it marked the
                # model unhealthy it refuses the call, and a "retry" would send nothing
                retryable = bool(outcome.last.transient) and self.client.is_usable(outcome.model)
                run.failed_models.add(outcome.model)
                action = await self._on_trigger(run, self._situation(
                    run, Trigger.LLM_ERROR, str(outcome), transient=retryable), str(outcome))
                continue
            if isinstance(outcome, _StopTask):
                if outcome.kind == "budget":
                    action = await self._on_trigger(run, self._situation(
                        run, Trigger.BUDGET_LOW, str(outcome), cheaper=True), str(outcome), "budget")
                else:
                    self._stop(run, outcome.kind, str(outcome))
                continue
            current: _Round = outcome  # type: ignore[assignment]
            round_seconds = loop.time() - started
            run.last_round_cost = result.cost_usd - spent_before
            self._record_round(run, current)
            if run.done:
                break
            if current.passed_validators:
                if previous is not None and abs(current.score - previous) < PLATEAU_DELTA:
                    stalls += 1
                    if stalls >= 2:
                        break
                else:
                    stalls = 0
                previous = current.score
                if current.score < run.threshold:
                    action = await self._on_trigger(run, self._situation(
                        run, Trigger.SCORE_BELOW_THRESHOLD, current.reasons, score=current.score))
            else:
                action = await self._on_trigger(run, self._situation(
                    run, Trigger.VALIDATION_FAILED, current.reasons, failed=current.failed))

    def _conclude(self, run: _TaskRun) -> None:
        task, result, best = run.task, run.result, run.best
        result.model_used = best.model if best is not None and best.model else run.model
        if best is None:
            result.status = TaskStatus.FAILED
            result.error = result.error or "no output"
            return
        result.output, result.score = best.output, best.score
        result.deterministic_check_passed = best.passed_validators
        if best.score >= task.threshold and best.passed_validators:
            result.status, result.error = TaskStatus.COMPLETED, None
        elif best.output.strip() and best.passed_validators:
            result.status = TaskStatus.DEGRADED
        else:
            result.status = TaskStatus.FAILED
            result.error = result.error or "no output passed the validators"

    def _stop(self, run: _TaskRun, kind: str, message: str) -> None:
        """Money or time ran out: the task stops, and the run will not start new tasks."""
        self._stop_reason = self._stop_reason or kind
        run.result.error = message
        run.stopped = True

    def _record_round(self, run: _TaskRun, current: _Round) -> None:
        best = run.best
        if best is None or current.score > best.score or (not best.passed_validators and current.passed_validators):
            run.best = best = current
        run.last = current
        events.emit(events.iteration_scored, iteration=run.result.iterations, score=current.score,
                    best_score=best.score)

    # -- models and policies ---------------------------------------------------------
    def _untried(self, run: _TaskRun, cheaper: bool):
        """Candidates not tried yet for the task that the client can still call (cheaper
        than the current model, in input plus output price per 1M, when asked)."""
        limit = None
        if cheaper and run.model:
            current = get_model(run.model)
            limit = current.input_per_m + current.output_per_m
        for candidate in run.candidates:
            if candidate in run.tried or not self.client.is_usable(candidate):
                continue
            if limit is not None:
                info = get_model(candidate)
                if info.input_per_m + info.output_per_m >= limit:
                    continue
            yield candidate

    def _switch_model(self, run: _TaskRun, cheaper: bool = False) -> bool:
        """Move to the next untried, usable candidate that passes the task's policies (a
        cheaper one when asked).  False when there is none."""
        for candidate in list(self._untried(run, cheaper)):
            run.tried.add(candidate)
            if not self._allowed(run, candidate):
                continue
            self._use_model(run, candidate)
            return True
        return False

    def _use_model(self, run: _TaskRun, model: str) -> None:
        info = get_model(model)
        run.model = model
        # a model that just failed this task is not asked to review its replacement
        run.reviewers = [r for r in self.router.reviewer_candidates(model, run.task.type)
                         if r == model or r not in run.failed_models]
        run.max_tokens = min(run.task.output_tokens_cap, info.max_output_tokens)
        run.prompt = self._task_prompt(run.task, run.context, model, run.max_tokens)
        run.system = _SYSTEM_PROMPTS.get(run.task.type, _SYSTEM_PROMPTS[TaskType.COMPLEX_REASONING])
        run.result.model_used, run.result.reviewer_model = model, run.reviewers[0]

    def _allowed(self, run: _TaskRun, model: str) -> bool:
        """Policy check of ``model`` for the task (once per task and model; each check is a
        policy_check pair).  No policies: allowed, nothing sent."""
        if not run.policies:
            return True
        checked = run.checked.get(model)
        if checked is None:
            call_cost, task_cost = self._estimates(run, model)
            checked = run.checked[model] = self.policy_engine.check(
                model, self._profile(model), run.policies, call_cost_usd=call_cost, task_cost_usd=task_cost)
        return checked.passed

    def _estimates(self, run: _TaskRun, model: str) -> tuple[float, float]:
        """Worst-case cost of one call of the task on ``model`` (prompt, context, the
        previous answer and a review, full output) and of the task (one generate and one
        revise per round, plus what the task spent already)."""
        info = get_model(model)
        task = run.task
        max_tokens = min(task.output_tokens_cap, info.max_output_tokens)
        context = sum(len(v.encode("utf-8")) for v in run.context.values())
        input_tokens = (worst_case_input_tokens(_SYSTEM_PROMPTS.get(task.type, ""), task.prompt)
                        + len(self._project_brief.encode("utf-8")) + context + 2 * max_tokens)
        call = info.cost(min(input_tokens, info.context_window), max_tokens)
        return call, run.result.cost_usd + call * (1 + task.iterations_cap)

    def _policy_error(self, run: _TaskRun) -> PolicyViolationError | str:
        if not run.policies:
            return "no usable model for this task type"
        return PolicyViolationError.for_candidates(run.task.id, run.policies, list(run.checked.values()))

    def _has_fallback(self, run: _TaskRun, cheaper: bool = False) -> bool:
        return any(not (c in run.checked and not run.checked[c].passed) for c in self._untried(run, cheaper))

    # -- remediation -----------------------------------------------------------------
    def _budget_low(self, run: _TaskRun) -> bool:
        rounds = self.remediation.config.budget_low_rounds
        return run.last_round_cost > 0 and self.budget.remaining_usd < rounds * run.last_round_cost

    def _situation(self, run: _TaskRun, trigger: Trigger, detail: str = "", *, transient: bool = False,
                   cheaper: bool = False, failed: tuple[str, ...] = (), score: float = 0.0) -> Situation:
        best = run.best
        return Situation(
            trigger=trigger, detail=detail[:600], rounds_left=run.rounds_left, transient=transient,
            has_fallback=self._has_fallback(run, cheaper),
            best_passed=bool(best is not None and best.passed_validators and best.output.strip()),
            best_score=best.score if best is not None else 0.0, score=score, threshold=run.threshold,
            failed_validators=failed,
            skippable_validators=frozenset(v for p in run.policies for v in p.skippable_validators),
            time_left_seconds=self.budget.remaining_seconds,
        )

    async def _on_trigger(self, run: _TaskRun, situation: Situation, fatal: str | None = None,
                          stop_kind: str | None = None) -> Decision | None:
        """Ask the remediation engine and do what it decides.  Returns the decision when
        it is carried out by the next round (auto_retry, fallback_model, adjust_prompt);
        the others are done here.  When nothing is decided and the loop cannot go on
        (``fatal``: a failed call, a refused one), the task stops with that error."""
        run.on_fail = (fatal, stop_kind)
        decision = run.remediation.decide(situation)
        if decision is None:
            self._give_up(run, fatal, stop_kind)
            return None
        logger.info("task %s: %s -> %s (attempt %d)", run.task.id, situation.trigger.value,
                    decision.strategy.value, decision.attempt)
        if decision.runs_round:
            return decision
        with self.remediation.attempt(decision) as attempt:
            if decision.strategy == Strategy.ABORT_TASK:
                run.aborted = f"aborted by remediation after {situation.trigger.value}: {situation.detail[:300]}"
                run.result.error = run.aborted
                attempt.success = True
            elif decision.strategy == Strategy.DEGRADE_THRESHOLD:
                assert decision.new_threshold is not None
                run.threshold = decision.new_threshold
                attempt.set_attribute("remediation.threshold", run.threshold)
                best = run.best
                if best is not None and best.passed_validators and best.score >= run.threshold:
                    run.accepted = attempt.success = True
            elif decision.strategy == Strategy.SKIP_VALIDATOR:
                attempt.set_attribute("remediation.skipped_validators", list(decision.skip))
                attempt.success = await self._skip_validators(run, decision)
        self._give_up(run, fatal, stop_kind)  # when the failed call is still unanswered
        return None

    def _give_up(self, run: _TaskRun, fatal: str | None, stop_kind: str | None) -> None:
        """Nothing remedied a failed or refused call: the task stops with its error (a
        refusal for money or time also stops the run from starting new tasks)."""
        if fatal is None or run.done:
            return
        if stop_kind:
            self._stop(run, stop_kind, fatal)
        else:
            run.result.error = fatal
            run.stopped = True

    async def _round_with(self, run: _TaskRun, decision: Decision | None) -> object:
        """The next round; inside the remediation pair when a decision asked for it."""
        if decision is None:
            return await self._round_outcome(run)
        before = run.best.score if run.best is not None else 0.0
        with self.remediation.attempt(decision) as attempt:
            if decision.strategy == Strategy.AUTO_RETRY:
                if decision.delay_seconds > 0:
                    await self._sleep(decision.delay_seconds)
            elif decision.strategy == Strategy.FALLBACK_MODEL:
                previous = run.model
                if not self._switch_model(run, cheaper=decision.trigger == Trigger.BUDGET_LOW):
                    return _NO_MODEL
                run.result.fallback_count += 1
                attempt.set_attribute("remediation.from_model", previous)
                attempt.set_attribute("remediation.to_model", run.model)
                logger.info("task %s: falling back from %s to %s", run.task.id, previous, run.model)
            elif decision.strategy == Strategy.ADJUST_PROMPT:
                run.instruction = adjust_prompt_instruction(decision.situation)
            outcome = await self._round_outcome(run)
            if isinstance(outcome, _Round):
                if decision.trigger == Trigger.VALIDATION_FAILED:
                    attempt.success = outcome.passed_validators
                elif decision.trigger == Trigger.SCORE_BELOW_THRESHOLD:
                    attempt.success = outcome.passed_validators and outcome.score > before
                else:
                    attempt.success = True
        return outcome

    async def _skip_validators(self, run: _TaskRun, decision: Decision) -> bool:
        """skip_validator: stop running the skipped validators for this task and score the
        latest output without them."""
        run.skipped.update(decision.skip)
        last = run.last
        if last is None:
            return False
        failed = [c for c in await self._validate(run, last.output) if not c.passed]
        if failed:
            self._emit_failures(failed, run.result.iterations)
            return False
        try:
            score, reasons = await self._with_reviewer(
                run, lambda rv: self._evaluate(run.result, rv, run.task, last.output))
        except LLMCallError:
            return False
        self._record_round(run, _Round(last.output, score, True, reasons, last.model))
        return True

    # -- one round -------------------------------------------------------------------
    async def _round_outcome(self, run: _TaskRun) -> object:
        try:
            return await self._round(run)
        except (LLMCallError, _StopTask) as exc:
            return exc

    async def _round(self, run: _TaskRun) -> _Round:
        """generate (first round) -> critique -> revise -> validate -> evaluate.  Steps done
        before a failure are kept in ``run`` so a retried round resumes after them."""
        task, result, model = run.task, run.result, run.model
        iteration = result.iterations + 1
        if run.draft is None:
            if run.best is None:
                run.draft = (await self._call(result, model, run.prompt, system=run.system,
                                              max_tokens=run.max_tokens, temperature=0.3,
                                              call_type="generate")).text
            else:
                run.draft = run.best.output
        draft = run.draft
        if run.critique is None:
            feedback = run.best.reasons if run.best is not None else ""
            critique_prompt = (f"Task:\n{task.prompt}\n\nAnswer to review:\n{draft}\n\n"
                               + (f"Earlier evaluation: {feedback}\n\n" if feedback else "")
                               + "List the concrete problems of this answer and how to fix them. Be brief.")
            run.critique = (await self._with_reviewer(run, lambda rv: self._call(
                result, rv, critique_prompt, system="You are a strict, precise reviewer.",
                max_tokens=min(CRITIQUE_MAX_TOKENS, run.max_tokens), temperature=0.2,
                call_type="critique", variant=iteration))).text
        if run.revised is None:
            instruction = f"{run.instruction}\n\n" if run.instruction else ""
            run.revised = (await self._call(
                result, model,
                f"{run.prompt}\n\nYour previous answer:\n{draft}\n\nReview:\n{run.critique}\n\n"
                f"{instruction}Write the improved, complete answer.",
                system=run.system, max_tokens=run.max_tokens, temperature=0.3, call_type="revise",
                variant=iteration)).text
            run.revised_by = model
        revised = run.revised
        failed = [c for c in await self._validate(run, revised) if not c.passed]
        self._emit_failures(failed, iteration)
        if failed:
            current = _Round(revised, 0.0, False, "; ".join(f"{c.validator}: {c.message}" for c in failed),
                             run.revised_by, tuple(c.validator for c in failed))
        else:
            score, reasons = await self._with_reviewer(
                run, lambda rv: self._evaluate(result, rv, task, revised))
            current = _Round(revised, score, True, reasons, run.revised_by)
        result.iterations = iteration
        run.draft = run.critique = run.revised = None
        run.instruction = ""
        return current

    async def _validate(self, run: _TaskRun, output: str) -> list[ValidationResult]:
        # in a thread: the pytest and ruff validators run subprocesses
        return await asyncio.to_thread(run_validators, output, run.task, self.validators, skip=run.skipped)

    @staticmethod
    def _emit_failures(failed: list[ValidationResult], iteration: int) -> None:
        for check in failed:
            events.emit(events.validation_failed, validator=check.validator, message=check.message[:300],
                        iteration=iteration)

    def _account(self, result: TaskResult, response: APIResponse) -> None:
        result.cost_usd += response.cost_usd
        result.input_tokens += response.input_tokens
        result.output_tokens += response.output_tokens
        if not response.cached:
            seen = self._latency_ms.get(response.model)
            self._latency_ms[response.model] = (response.latency_ms if seen is None
                                                else 0.7 * seen + 0.3 * response.latency_ms)

    async def _call(self, result: TaskResult, model: str, prompt: str, *, system: str, max_tokens: int,
                    temperature: float, call_type: str, json_schema: dict | None = None,
                    variant: int = 0) -> APIResponse:
        try:
            response = await self.client.call(model, prompt, system=system, max_tokens=max_tokens,
                                              temperature=temperature, json_schema=json_schema,
                                              call_type=call_type, variant=variant)
        except BudgetExceededError as exc:
            raise _StopTask(str(exc), "budget") from None
        except TimeBudgetExceededError as exc:
            raise _StopTask(str(exc), "time") from None
        self._account(result, response)
        return response

    def _task_prompt(self, task: Task, context: Mapping[str, str], model: str, max_tokens: int) -> str:
        prompt = task.prompt
        if self._project_brief and self._project_brief not in prompt:
            # a task prompt from a weak planner can be vague; the project keeps it grounded
            prompt = f"{self._project_brief}\n\nYour part: {prompt}"
        if not context:
            return prompt
        info = get_model(model)
        # room for context, in characters (about 3 per token), after the prompt and answer
        room_tokens = info.context_window - max_tokens - len(prompt.encode()) // 2 - 600
        room_chars = max(0, room_tokens * 3)
        per_dep = room_chars // max(1, len(context))
        parts = []
        for dep_id, output in context.items():
            text = output if len(output) <= per_dep else output[:per_dep] + "\n[...truncated]"
            parts.append(f"### Output of {dep_id}\n{text}")
        return "Context from earlier tasks:\n" + "\n\n".join(parts) + f"\n\n### Your task\n{prompt}"

    async def _with_reviewer(self, run: _TaskRun, make_call):
        """Run a critic/evaluator call on the first reviewer the policies allow, moving to
        the next when one fails; the task's own model is the last reviewer and its failure
        is the task model's failure."""
        reviewers = run.reviewers
        while True:
            reviewer = reviewers[0]
            if len(reviewers) > 1 and reviewer != run.model and not self._allowed(run, reviewer):
                reviewers.pop(0)
                continue
            run.result.reviewer_model = reviewer
            try:
                return await make_call(reviewer)
            except LLMCallError as exc:
                if len(reviewers) == 1:
                    raise
                logger.info("reviewer %s failed (%s); using %s", reviewer, exc.error_type, reviewers[1])
                reviewers.pop(0)

    async def _evaluate(self, result: TaskResult, evaluator: str, task: Task, output: str) -> tuple[float, str]:
        samples = 1 if get_model(evaluator).is_local else self.evaluation_samples
        scores: list[float] = []
        reasons: list[str] = []
        prompt = (f"Task:\n{task.prompt}\n\nAnswer:\n{output}\n\n"
                  "Does the answer solve the task correctly and completely? Answer in JSON: first "
                  "your reasons in one or two sentences, then a score from 0 (wrong) to 1 (perfect).")
        for sample in range(samples):
            response = await self._call(result, evaluator, prompt, system="You are an exacting evaluator.",
                                        max_tokens=EVALUATE_MAX_TOKENS, temperature=0.0 if sample == 0 else 0.7,
                                        call_type="evaluate", json_schema=EVALUATION_SCHEMA, variant=sample)
            parsed = parse_json_answer(response.text)
            if isinstance(parsed, Mapping):
                try:
                    scores.append(min(1.0, max(0.0, float(parsed.get("score", 0.0)))))
                    reasons.append(str(parsed.get("reasons", ""))[:300])
                    continue
                except (TypeError, ValueError):
                    pass
            scores.append(0.0)
            reasons.append("evaluator answer unusable")
        return sum(scores) / len(scores), " | ".join(r for r in reasons if r)


_SYSTEM_PROMPTS: dict[TaskType, str] = {
    TaskType.CODE_GENERATION: "You are an expert Python developer. Answer with complete, runnable code "
                              "in one ```python block.",
    TaskType.CODE_REVIEW: "You are a senior code reviewer. Be specific and actionable.",
    TaskType.COMPLEX_REASONING: "You are a careful analyst. Reason step by step and state the conclusion.",
    TaskType.CREATIVE_WRITING: "You are a skilled writer.",
    TaskType.DATA_EXTRACTION: "You extract data precisely. Answer with valid JSON only.",
    TaskType.SUMMARIZATION: "You write faithful, concise summaries.",
    TaskType.EVALUATION: "You are an impartial evaluator.",
}
