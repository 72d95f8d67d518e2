"""The Orchestrator: decompose a project into tasks, schedule the DAG, run each task's
generate -> critique -> revise -> validate -> evaluate loop under a hard budget.

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
from dataclasses import dataclass

from . import events
from .api_clients import (
    APIResponse,
    BudgetExceededError,
    LLMCallError,
    TimeBudgetExceededError,
    UnifiedClient,
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
from .routing import Router
from .validators import run_validators

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
    ) -> None:
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
        self._stop_reason: str | None = None  # "budget" or "time" once either ran out
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
        with events.traced_project(project_id, project_description, success_criteria,
                                   self.budget.max_usd, self.budget.max_time_seconds) as span:
            try:
                if self.project_tasks:
                    tasks, notes = sanitize_tasks([t.to_dict() for t in self.project_tasks],
                                                  len(self.project_tasks))  # given tasks are not clamped
                    self._restore_explicit_settings(tasks)
                else:
                    tasks, notes = await self._decompose(project_description, success_criteria)
                state.notes.extend(notes)
                state.tasks = {t.id: t for t in tasks}
                state.execution_order = topological_order(state.tasks)
                if tasks:
                    await self._schedule(state)
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
                continue
            tasks, notes = sanitize_tasks(parse_json_answer(response.text), max_tasks)
            if tasks:
                return tasks, notes
            reason = "; ".join(notes) or "no usable task in the answer"
        fallback = Task(id="task_1", type=guess_task_type(description),
                        prompt=f"{description}\nSuccess criteria: {criteria}")
        events.emit(events.decomposition_fallback, reason=reason[:300])
        return [fallback], [f"decomposition unusable twice ({reason}); running the project as one task"]

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
                    running[asyncio.ensure_future(self._run_task(task, context))] = tid
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
    async def _run_task(self, task: Task, context: Mapping[str, str]) -> TaskResult:
        with events.traced_task(task.id, task.type.value, task.prompt) as span:
            result = TaskResult(task_id=task.id, status=TaskStatus.RUNNING)
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
        candidates = self.router.candidates(task.type)
        if not candidates:
            result.status, result.error = TaskStatus.FAILED, "no usable model for this task type"
            return
        best: _Round | None = None
        while candidates:
            model = candidates.pop(0)
            try:
                best = await self._iterate(task, context, result, model, best)
                break
            except LLMCallError as exc:
                result.error = str(exc)
                candidates = [c for c in candidates if self.client.is_usable(c)]
                if candidates:
                    result.fallback_count += 1
                    logger.info("task %s: %s failed (%s); falling back to %s", task.id, model,
                                exc.error_type, candidates[0])
            except _StopTask as exc:
                self._stop_reason = self._stop_reason or exc.kind
                result.error = str(exc)
                break
        if best is None:
            result.status = TaskStatus.FAILED
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

    def _account(self, result: TaskResult, response: APIResponse) -> None:
        result.cost_usd += response.cost_usd
        result.input_tokens += response.input_tokens
        result.output_tokens += response.output_tokens

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

    async def _iterate(self, task: Task, context: Mapping[str, str], result: TaskResult, model: str,
                       best: _Round | None) -> _Round | None:
        """Rounds of critique -> revise -> validate -> evaluate on ``model`` until the
        threshold, a plateau, the iteration cap, or the money/time for a round runs out."""
        info = get_model(model)
        reviewers = self.router.reviewer_candidates(model, task.type)
        result.model_used, result.reviewer_model = model, reviewers[0]
        max_tokens = min(task.output_tokens_cap, info.max_output_tokens)
        prompt = self._task_prompt(task, context, model, max_tokens)
        system = _SYSTEM_PROMPTS.get(task.type, _SYSTEM_PROMPTS[TaskType.COMPLEX_REASONING])
        stalls, previous = 0, None
        round_seconds = 0.0
        loop = asyncio.get_running_loop()
        while result.iterations < task.iterations_cap:
            if result.iterations and round_seconds > self.budget.remaining_seconds:
                raise _StopTask("not enough time left for another round", "time")
            started = loop.time()
            result.iterations += 1
            iteration = result.iterations
            if best is None:
                draft = (await self._call(result, model, prompt, system=system, max_tokens=max_tokens,
                                          temperature=0.3, call_type="generate")).text
                feedback = ""
            else:
                draft, feedback = best.output, best.reasons
            critique_prompt = (f"Task:\n{task.prompt}\n\nAnswer to review:\n{draft}\n\n"
                               + (f"Earlier evaluation: {feedback}\n\n" if feedback else "")
                               + "List the concrete problems of this answer and how to fix them. Be brief.")
            critique = (await self._with_reviewer(result, reviewers, lambda rv, p=critique_prompt, i=iteration: (
                self._call(result, rv, p, system="You are a strict, precise reviewer.",
                           max_tokens=min(CRITIQUE_MAX_TOKENS, max_tokens), temperature=0.2,
                           call_type="critique", variant=i)))).text
            revised = (await self._call(
                result, model,
                f"{prompt}\n\nYour previous answer:\n{draft}\n\nReview:\n{critique}\n\n"
                "Write the improved, complete answer.",
                system=system, max_tokens=max_tokens, temperature=0.3, call_type="revise",
                variant=iteration)).text
            checks = run_validators(revised, task)
            failed = [c for c in checks if not c.passed]
            for check in failed:
                events.emit(events.validation_failed, validator=check.validator, message=check.message[:300],
                            iteration=iteration)
            if failed:
                current = _Round(revised, 0.0, False, "; ".join(f"{c.validator}: {c.message}" for c in failed))
            else:
                score, reasons = await self._with_reviewer(
                    result, reviewers, lambda rv, out=revised: self._evaluate(result, rv, task, out))
                current = _Round(revised, score, True, reasons)
            if best is None or current.score > best.score or (not best.passed_validators and
                                                              current.passed_validators):
                best = current
            events.emit(events.iteration_scored, iteration=iteration, score=current.score,
                        best_score=best.score)
            round_seconds = loop.time() - started
            if best.passed_validators and best.score >= task.threshold:
                break
            if previous is not None and abs(current.score - previous) < PLATEAU_DELTA:
                stalls += 1
                if stalls >= 2:
                    break
            else:
                stalls = 0
            previous = current.score
        return best

    async def _with_reviewer(self, result: TaskResult, reviewers: list[str], make_call):
        """Run a critic/evaluator call, moving to the next reviewer when one fails; the
        task's own model is the last reviewer and its failure is the task model's failure."""
        while True:
            try:
                return await make_call(reviewers[0])
            except LLMCallError as exc:
                if len(reviewers) == 1:
                    raise
                logger.info("reviewer %s failed (%s); using %s", reviewers[0], exc.error_type, reviewers[1])
                reviewers.pop(0)
                result.reviewer_model = reviewers[0]

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
