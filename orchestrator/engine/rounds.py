"""One round of a task: generate (first round) -> critique -> revise -> validate ->
evaluate, and the calls it makes.

Steps done before a failure are kept in the task's :class:`PendingRound`, so a retried
round resumes after them.  A validator failure scores the round 0 whatever the
evaluator would say.  Critic and evaluator calls go to the first reviewer the policies
allow and move to the next when one fails; the task's own model is the last reviewer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from .. import events
from ..domain.results import TaskResult, Usage
from ..domain.tasks import Task
from ..domain.values import JsonSchema
from ..governance.acceptance import CheckReport
from ..governance.validators import ValidationResult, run_validators
from ..llm.catalog import get_model
from ..llm.client import APIResponse, BudgetExceededError, LLMCallError, TimeBudgetExceededError
from .checks import prelude
from .context import CallRefused, RunContext
from .model_choice import ModelChooser
from .outcomes import CallFailed, Refused, Round, RoundOutcome, Verdict
from .planning import parse_json_answer
from .prompts import (
    CRITIC_SYSTEM,
    EVALUATION_SCHEMA,
    EVALUATOR_SYSTEM,
    critique_prompt,
    evaluation_prompt,
    revise_prompt,
)
from .task_state import TaskRun

logger = logging.getLogger("orchestrator.engine")

T = TypeVar("T")


class RoundRunner:
    def __init__(self, ctx: RunContext, chooser: ModelChooser) -> None:
        self.ctx = ctx
        self.chooser = chooser

    async def outcome(self, run: TaskRun) -> RoundOutcome:
        """The next round, with a failed or refused call as an outcome, not an exception."""
        try:
            return await self.round(run)
        except LLMCallError as exc:
            return CallFailed(exc)
        except CallRefused as exc:
            return Refused(exc.kind, str(exc))

    async def round(self, run: TaskRun) -> Round:
        task, result, use, pending = run.task, run.result, run.use, run.pending
        profile = self.ctx.run_profile
        iteration = result.iterations + 1
        if pending.draft is None:
            if run.best is None:
                pending.draft = (
                    await self.call(
                        result,
                        use.model,
                        use.prompt,
                        system=use.system,
                        max_tokens=use.max_tokens,
                        temperature=0.3,
                        call_type="generate",
                    )
                ).text
            else:
                pending.draft = run.best.output
        draft = pending.draft
        if task.checks and run.best is None and pending.draft_verdict is None:
            # the checks are the ground truth: a first draft that passes needs no review
            pending.draft_verdict = await self.validate(run, draft, stage="draft")
        draft_verdict = pending.draft_verdict
        if draft_verdict is not None and draft_verdict.passed and not profile.review_passing_draft:
            current = await self.conclude_round(run, draft, draft_verdict, use.model)
            result.iterations = iteration
            pending.clear()
            return current
        failing = (
            draft_verdict.report
            if draft_verdict is not None
            else (CheckReport(run.best.checks) if run.best is not None and run.best.checks else None)
        )
        if failing is not None and failing.passed:
            failing = None
        if pending.critique is None:
            if failing is not None and profile.critique_from_checks:
                pending.critique = failing.critique()  # the failing checks are the review
            else:
                feedback = "\n".join(
                    p
                    for p in (failing.critique() if failing else "", run.best.reasons if run.best is not None else "")
                    if p
                )
                prompt = critique_prompt(task, draft, feedback)
                pending.critique = (
                    await self.with_reviewer(
                        run,
                        lambda rv: self.call(
                            result,
                            rv,
                            prompt,
                            system=CRITIC_SYSTEM,
                            max_tokens=min(profile.critique_max_tokens, use.max_tokens),
                            temperature=0.2,
                            call_type="critique",
                            variant=iteration,
                        ),
                    )
                ).text
        if pending.revised is None:
            instruction = pending.instruction
            if failing is not None and not profile.critique_from_checks:
                instruction = "\n\n".join(p for p in (failing.critique(), instruction) if p)
            pending.revised = (
                await self.call(
                    result,
                    use.model,
                    revise_prompt(use.prompt, draft, pending.critique, instruction),
                    system=use.system,
                    max_tokens=use.max_tokens,
                    temperature=0.3,
                    call_type="revise",
                    variant=iteration,
                )
            ).text
            pending.revised_by = use.model
        revised, revised_by = pending.revised, pending.revised_by
        verdict = await self.validate(run, revised)
        if not verdict.passed and draft_verdict is not None and draft_verdict.passed:
            # the revision broke what the draft got right: the round keeps the draft
            revised, revised_by, verdict = draft, use.model, draft_verdict
        current = await self.conclude_round(run, revised, verdict, revised_by)
        result.iterations = iteration
        pending.clear()
        return current

    async def conclude_round(self, run: TaskRun, output: str, verdict: Verdict, model: str) -> Round:
        """The round's result for ``output``: score 0 when a validator rejected it; else
        the evaluator's score, lifted to the task's threshold when its acceptance checks
        all passed (the checks, not the model's self-grade, decide).  The evaluator's own
        score travels apart (``evaluator_score``), None when no evaluator was asked."""
        emit_failures(list(verdict.failed), run.result.iterations + 1)
        if verdict.failed:
            return Round(
                output,
                0.0,
                False,
                "; ".join(f"{c.validator}: {c.message}" for c in verdict.failed),
                model,
                tuple(c.validator for c in verdict.failed),
                verdict.checks,
            )
        report, task = verdict.report, run.task
        if report is not None and report.results:
            if self.ctx.run_profile.evaluate_passing_checks or self.ctx.criteria.prose:
                score, reasons = await self.with_reviewer(run, lambda rv: self.evaluate(run.result, rv, task, output))
                return Round(
                    output,
                    max(score, task.threshold),
                    True,
                    f"{report.summary()}; evaluator: {reasons}",
                    model,
                    checks=report.results,
                    evaluator_score=score,
                )
            return Round(output, task.threshold, True, report.summary(), model, checks=report.results)
        score, reasons = await self.with_reviewer(run, lambda rv: self.evaluate(run.result, rv, task, output))
        return Round(output, score, True, reasons, model, evaluator_score=score)

    async def validate(self, run: TaskRun, output: str, stage: str = "revision") -> Verdict:
        """The task's validators and, when it has acceptance checks, the checks.  The
        checks take the place of ``python_syntax`` and ``pytest``: they decide whether the
        code works."""
        task = run.task
        skip = set(run.skipped_validators)
        if task.checks:
            skip |= {"python_syntax", "pytest"}
        # in a thread: the pytest and ruff validators run subprocesses
        results = await asyncio.to_thread(run_validators, output, task, self.ctx.validators, skip=skip)
        failed = [c for c in results if not c.passed]
        report = None
        if task.checks and not failed:
            report = await self.ctx.checks.run(
                task, output, prelude(run.context, self.ctx.tasks), run.result.iterations + 1, stage
            )
            if not report.passed:
                failed.append(ValidationResult("acceptance", False, report.summary()))
        return Verdict(tuple(failed), report)

    async def call(
        self,
        result: TaskResult,
        model: str,
        prompt: str,
        *,
        system: str,
        max_tokens: int,
        temperature: float,
        call_type: str,
        json_schema: JsonSchema | None = None,
        variant: int = 0,
    ) -> APIResponse:
        """One client call booked on the task; a refusal for money or time is :class:`CallRefused`."""
        try:
            response = await self.ctx.client.call(
                model,
                prompt,
                system=system,
                max_tokens=max_tokens,
                temperature=temperature,
                json_schema=json_schema,
                call_type=call_type,
                variant=variant,
            )
        except BudgetExceededError as exc:
            raise CallRefused(str(exc), "budget") from None
        except TimeBudgetExceededError as exc:
            raise CallRefused(str(exc), "time") from None
        except LLMCallError as exc:
            result.book(calls=exc.attempts)  # failed attempts are calls too (each had its span)
            raise
        book(result, response)
        if not response.cached:
            self.ctx.observe_latency(response.model, response.latency_ms)
        return response

    async def with_reviewer(self, run: TaskRun, make_call: Callable[[str], Awaitable[T]]) -> T:
        """Run a critic/evaluator call on the first reviewer the policies allow, moving to
        the next when one fails; the task's own model is the last reviewer and its failure
        is the task model's failure."""
        reviewers = run.use.reviewers
        while True:
            reviewer = reviewers[0]
            if len(reviewers) > 1 and reviewer != run.use.model and not self.chooser.allowed(run, reviewer):
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

    async def evaluate(self, result: TaskResult, evaluator: str, task: Task, output: str) -> tuple[float, str]:
        """The evaluator's score 0..1 and reasons; two samples averaged on remote
        evaluators, one on the local model; an unusable answer scores 0."""
        samples = 1 if get_model(evaluator).is_local else self.ctx.evaluation_samples
        scores: list[float] = []
        reasons: list[str] = []
        prompt = evaluation_prompt(task, output, self.ctx.criteria.prose)
        for sample in range(samples):
            response = await self.call(
                result,
                evaluator,
                prompt,
                system=EVALUATOR_SYSTEM,
                max_tokens=self.ctx.run_profile.evaluate_max_tokens,
                temperature=0.0 if sample == 0 else 0.7,
                call_type="evaluate",
                json_schema=EVALUATION_SCHEMA,
                variant=sample,
            )
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


def emit_failures(failed: list[ValidationResult], iteration: int) -> None:
    for check in failed:
        # a validator's message quotes the answer (a syntax error's line, pytest's output);
        # the acceptance checks' summary names only the user's checks and the errors' kinds
        message = check.message[:300]
        events.emit(
            events.validation_failed,
            validator=check.validator,
            iteration=iteration,
            message=message if check.validator == "acceptance" else events.ModelText(message),
        )


def book(owner: TaskResult | Usage, response: APIResponse) -> None:
    """Count a call's attempts, tokens and cost on its owner (a task, or the planning)."""
    owner.book(
        calls=max(1, response.attempts),
        input_tokens=response.input_tokens,
        output_tokens=response.output_tokens,
        cost_usd=response.cost_usd,
        cached=response.cached,
    )
