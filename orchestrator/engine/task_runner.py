"""One task, start to end: choose a model, run rounds until the threshold, a plateau,
the iteration cap, an abort, or until money or time for a round runs out; every
trigger goes to the remediation engine.

The task's ``task_started``/``task_finished`` pair encloses everything it does, so its
LLM calls, policy checks and remediations nest under its span.  An interrupted task
keeps its best output so far.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from .. import attributes as attr
from .. import events
from ..domain.results import TaskResult, TaskStatus
from ..domain.tasks import Task
from ..governance.remediation import Decision, Trigger
from .context import CallRefused, RunContext
from .model_choice import ModelChooser
from .outcomes import CallFailed, NoFallback, Refused, Round
from .remedies import Remedies, record_round
from .rounds import RoundRunner
from .task_state import CandidateState, TaskRun, Unanswered

PLATEAU_DELTA = 0.02


class TaskRunner:
    """``settled(task_id)`` is called once a task's result is final, still inside its
    ``task_started``/``task_finished`` pair: a checkpoint saved there holds the result
    before anyone can see the task finish (a kill right after ``task_finished`` never
    loses it)."""

    def __init__(self, ctx: RunContext, settled: Callable[[str], None] | None = None) -> None:
        self.ctx = ctx
        self.settled = settled
        self.chooser = ModelChooser(ctx)
        self.rounds = RoundRunner(ctx, self.chooser)
        self.remedies = Remedies(ctx, self.chooser, self.rounds)

    async def run(
        self, task: Task, context: Mapping[str, str], results: dict[str, TaskResult] | None = None
    ) -> TaskResult:
        """``results``: where the result lives while the task runs, so that an interrupted
        run still has it (with the best output so far)."""
        with events.traced_task(task.id, task.type.value, task.prompt) as span:
            result = TaskResult(task_id=task.id, status=TaskStatus.RUNNING)
            if results is not None:
                results[task.id] = result
            try:
                await self._loop(task, context, result)
            finally:
                if result.status == TaskStatus.RUNNING:
                    result.status = TaskStatus.FAILED
                    result.error = result.error or "interrupted"
                if result.score is not None:  # absent when no evaluator scored the kept output
                    span.set_attribute(attr.TASK_SCORE, round(result.score, 4))
                span.set_attributes(
                    {
                        attr.TASK_STATUS: result.status.value,
                        attr.TASK_THRESHOLD: task.threshold,
                        attr.TASK_ITERATIONS: result.iterations,
                        attr.TASK_MODEL: result.model_used or "",
                        attr.TASK_REVIEWER_MODEL: result.reviewer_model or "",
                        attr.TASK_COST_USD: round(result.cost_usd, 8),
                        attr.TASK_TOKENS_IN: result.input_tokens,
                        attr.TASK_TOKENS_OUT: result.output_tokens,
                        attr.TASK_FALLBACK_COUNT: result.fallback_count,
                        attr.TASK_LLM_CALLS: result.llm_calls,
                        attr.TASK_CACHED_CALLS: result.cached_calls,
                    }
                )
                if task.checks:
                    span.set_attributes(
                        {attr.TASK_CHECKS_TOTAL: len(task.checks), attr.TASK_CHECKS_PASSED: result.checks_passed}
                    )
                if self.settled is not None:
                    self.settled(task.id)
            return result

    async def _loop(self, task: Task, context: Mapping[str, str], result: TaskResult) -> None:
        ctx = self.ctx
        run = TaskRun(
            task,
            context,
            result,
            ctx.policies.for_task(task) if ctx.policies else (),
            ctx.remediation.for_task(task.id),
            CandidateState(ctx.router.candidates(task.type)),
            task.threshold,
        )
        if not run.candidates.names:
            result.status, result.error = TaskStatus.FAILED, "no usable model for this task type"
            return
        if not self.chooser.switch(run):
            result.status, result.error = TaskStatus.FAILED, str(self.chooser.policy_error(run))
            return
        try:
            await self._rounds(run)
        except CallRefused as exc:  # raised while a remediation scored an output
            self.remedies.stop(run, exc.kind, str(exc))
        except asyncio.CancelledError:  # interrupted: the best output so far is kept
            conclude(run)
            if result.status != TaskStatus.COMPLETED:
                result.status, result.error = TaskStatus.FAILED, "interrupted"
            raise
        conclude(run)

    async def _rounds(self, run: TaskRun) -> None:
        ctx, remedies = self.ctx, self.remedies
        task, result = run.task, run.result
        loop = asyncio.get_running_loop()
        action: Decision | None = None
        round_seconds = 0.0
        stalls, previous = 0, None
        while not run.done:
            if result.iterations >= task.iterations_cap:
                break
            if result.iterations and round_seconds > ctx.budget.remaining_seconds:
                remedies.stop(run, "time", "not enough time left for another round")
                break
            if action is None and remedies.budget_low(run):
                action = await remedies.on_trigger(
                    run,
                    remedies.situation(
                        run,
                        Trigger.BUDGET_LOW,
                        f"${ctx.budget.remaining_usd:.6f} left, the last round cost ${run.last_round_cost:.6f}",
                        cheaper=True,
                    ),
                )
                if run.done:
                    break
            started, spent_before = loop.time(), result.cost_usd
            pending, action = action, None
            outcome = await remedies.round_with(run, pending)
            match outcome:
                case NoFallback():
                    action = await remedies.ask_again_without_fallback(run, outcome)
                case CallFailed(error=error):
                    # auto_retry only while the client still sends to the model: once it marked
                    # the model unhealthy it refuses the call, and a "retry" would send nothing
                    retryable = bool(error.last.transient) and ctx.client.is_usable(error.model)
                    run.candidates.failed.add(error.model)
                    action = await remedies.on_trigger(
                        run,
                        remedies.situation(run, Trigger.LLM_ERROR, str(error), transient=retryable),
                        Unanswered(str(error)),
                    )
                case Refused(kind="budget", reason=reason):
                    action = await remedies.on_trigger(
                        run,
                        remedies.situation(run, Trigger.BUDGET_LOW, reason, cheaper=True),
                        Unanswered(reason, "budget"),
                    )
                case Refused(kind=kind, reason=reason):
                    remedies.stop(run, kind, reason)
                case Round():
                    round_seconds = loop.time() - started
                    run.last_round_cost = result.cost_usd - spent_before
                    record_round(run, outcome)
                    if run.done:
                        break
                    if outcome.passed_validators:
                        if previous is not None and abs(outcome.score - previous) < PLATEAU_DELTA:
                            stalls += 1
                            if stalls >= 2:
                                break
                        else:
                            stalls = 0
                        previous = outcome.score
                        if outcome.score < run.threshold:
                            action = await remedies.on_trigger(
                                run,
                                remedies.situation(
                                    run, Trigger.SCORE_BELOW_THRESHOLD, outcome.reasons, score=outcome.score
                                ),
                            )
                    else:
                        action = await remedies.on_trigger(
                            run,
                            remedies.situation(run, Trigger.VALIDATION_FAILED, outcome.reasons, failed=outcome.failed),
                        )


def conclude(run: TaskRun) -> None:
    """The task's result from its best round: completed, degraded or failed."""
    task, result, best = run.task, run.result, run.best
    result.model_used = best.model if best is not None and best.model else run.use.model
    if best is None:
        result.status = TaskStatus.FAILED
        result.error = result.error or "no output"
        result.checks = [
            {"check": c, "passed": False, "error_type": "NotRun", "error": "no output"} for c in task.checks
        ]
        return
    result.output, result.score = best.output, best.evaluator_score
    result.deterministic_check_passed = best.passed_validators
    result.checks = [c.to_dict() for c in best.checks] or [
        {"check": c, "passed": False, "error_type": "NotRun", "error": "the output failed another validator first"}
        for c in task.checks
    ]
    if best.score >= task.threshold and best.passed_validators:
        result.status, result.error = TaskStatus.COMPLETED, None
    elif best.output.strip() and best.passed_validators:
        result.status = TaskStatus.DEGRADED
    else:
        result.status = TaskStatus.FAILED
        result.error = result.error or "no output passed the validators"
