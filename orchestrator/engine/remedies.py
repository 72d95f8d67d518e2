"""Carrying out the remediation engine's decisions inside one task.

The remediation engine decides (``orchestrator.governance.remediation``); this module
does: a strategy that needs a round (auto_retry, fallback_model, adjust_prompt) runs the
round *inside* its ``remediation`` pair, so the round's calls are its children; the
others (degrade_threshold, skip_validator, abort_task) are done at once.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from .. import attributes as attr
from .. import events
from ..governance.remediation import Decision, Situation, Strategy, Trigger, adjust_prompt_instruction
from ..llm.client import LLMCallError
from .context import RunContext, StopKind
from .model_choice import ModelChooser
from .outcomes import NoFallback, Round, RoundOutcome
from .rounds import RoundRunner, emit_failures
from .task_state import TaskRun, Unanswered

logger = logging.getLogger("orchestrator.engine")


class Remedies:
    def __init__(self, ctx: RunContext, chooser: ModelChooser, rounds: RoundRunner) -> None:
        self.ctx = ctx
        self.chooser = chooser
        self.rounds = rounds

    def situation(
        self,
        run: TaskRun,
        trigger: Trigger,
        detail: str = "",
        *,
        transient: bool = False,
        cheaper: bool = False,
        failed: tuple[str, ...] = (),
        score: float = 0.0,
    ) -> Situation:
        best = run.best
        return Situation(
            trigger=trigger,
            detail=detail[:600],
            rounds_left=run.rounds_left,
            transient=transient,
            has_fallback=self.chooser.has_fallback(run, cheaper),
            best_passed=bool(best is not None and best.passed_validators and best.output.strip()),
            best_score=best.score if best is not None else 0.0,
            score=score,
            threshold=run.threshold,
            failed_validators=failed,
            skippable_validators=frozenset(v for p in run.policies for v in p.skippable_validators),
            time_left_seconds=self.ctx.budget.remaining_seconds,
        )

    def budget_low(self, run: TaskRun) -> bool:
        rounds = self.ctx.remediation.config.budget_low_rounds
        return run.last_round_cost > 0 and self.ctx.budget.remaining_usd < rounds * run.last_round_cost

    async def on_trigger(
        self, run: TaskRun, situation: Situation, unanswered: Unanswered | None = None
    ) -> Decision | None:
        """Ask the remediation engine and do what it decides.  Returns the decision when
        the next round carries it out (auto_retry, fallback_model, adjust_prompt); the
        others are done here.  When nothing is decided and the loop cannot go on (a
        failed or refused call is ``unanswered``), the task stops with that error."""
        run.unanswered = unanswered
        decision = run.remediation.decide(situation)
        if decision is None:
            self.give_up(run, unanswered)
            return None
        logger.info(
            "task %s: %s -> %s (attempt %d)",
            run.task.id,
            situation.trigger.value,
            decision.strategy.value,
            decision.attempt,
        )
        if decision.runs_round:
            return decision
        with self.ctx.remediation.attempt(decision) as attempt:
            if decision.strategy == Strategy.ABORT_TASK:
                run.aborted = f"aborted by remediation after {situation.trigger.value}: {situation.detail[:300]}"
                run.result.error = run.aborted
                attempt.success = True
            elif decision.strategy == Strategy.DEGRADE_THRESHOLD:
                assert decision.new_threshold is not None
                run.threshold = decision.new_threshold
                attempt.set_attribute(attr.REMEDIATION_THRESHOLD, run.threshold)
                best = run.best
                if best is not None and best.passed_validators and best.score >= run.threshold:
                    run.accepted = attempt.success = True
            elif decision.strategy == Strategy.SKIP_VALIDATOR:
                attempt.set_attribute(attr.REMEDIATION_SKIPPED_VALIDATORS, list(decision.skip))
                attempt.success = await self.skip_validators(run, decision)
        self.give_up(run, unanswered)  # when the failed call is still unanswered
        return None

    async def ask_again_without_fallback(self, run: TaskRun, outcome: NoFallback) -> Decision | None:
        """fallback_model found nothing: the same trigger, knowing there is no fallback."""
        return await self.on_trigger(run, replace(outcome.decision.situation, has_fallback=False), run.unanswered)

    def give_up(self, run: TaskRun, unanswered: Unanswered | None) -> None:
        """Nothing remedied a failed or refused call: the task stops with its error (a
        refusal for money or time also stops the run from starting new tasks)."""
        if unanswered is None or run.done:
            return
        if unanswered.stop_kind:
            self.stop(run, unanswered.stop_kind, unanswered.error)
        else:
            run.result.error = unanswered.error
            run.stopped = True

    def stop(self, run: TaskRun, kind: StopKind, message: str) -> None:
        """Money or time ran out: the task stops, and the run will not start new tasks."""
        self.ctx.stop(kind)
        run.result.error = message
        run.stopped = True

    async def round_with(self, run: TaskRun, decision: Decision | None) -> RoundOutcome:
        """The next round; inside the remediation pair when a decision asked for it."""
        if decision is None:
            return await self.rounds.outcome(run)
        before = run.best.score if run.best is not None else 0.0
        with self.ctx.remediation.attempt(decision) as attempt:
            if decision.strategy == Strategy.AUTO_RETRY:
                if decision.delay_seconds > 0:
                    await self.ctx.sleep(decision.delay_seconds)
            elif decision.strategy == Strategy.FALLBACK_MODEL:
                previous = run.use.model
                if not self.chooser.switch(run, cheaper=decision.trigger == Trigger.BUDGET_LOW):
                    return NoFallback(decision)
                run.result.fallback_count += 1
                attempt.set_attribute(attr.REMEDIATION_FROM_MODEL, previous)
                attempt.set_attribute(attr.REMEDIATION_TO_MODEL, run.use.model)
                logger.info("task %s: falling back from %s to %s", run.task.id, previous, run.use.model)
            elif decision.strategy == Strategy.ADJUST_PROMPT:
                run.pending.instruction = adjust_prompt_instruction(decision.situation)
            outcome = await self.rounds.outcome(run)
            if isinstance(outcome, Round):
                if decision.trigger == Trigger.VALIDATION_FAILED:
                    attempt.success = outcome.passed_validators
                elif decision.trigger == Trigger.SCORE_BELOW_THRESHOLD:
                    attempt.success = outcome.passed_validators and outcome.score > before
                else:
                    attempt.success = True
        return outcome

    async def skip_validators(self, run: TaskRun, decision: Decision) -> bool:
        """skip_validator: stop running the skipped validators for this task and score the
        latest output without them."""
        run.skipped_validators.update(decision.skip)
        last = run.last
        if last is None:
            return False
        verdict = await self.rounds.validate(run, last.output)
        if not verdict.passed:
            emit_failures(list(verdict.failed), run.result.iterations)
            return False
        try:
            current = await self.rounds.conclude_round(run, last.output, verdict, last.model)
        except LLMCallError:
            return False
        record_round(run, current)
        return True


def record_round(run: TaskRun, current: Round) -> None:
    best = run.record(current)
    events.emit(
        events.iteration_scored,
        iteration=run.result.iterations,
        score=current.score,
        best_score=best.score,
        evaluator_score=current.evaluator_score,
    )
