"""Model choice for one task: the next untried, usable candidate that passes the task's
policies, the reviewers that go with it, and the worst-case cost estimates the cost
policies judge (the same worst case the budget reserves: :mod:`orchestrator.llm.pricing`).

Every model is policy-checked before its first use in a task (once per task and model;
each check is a ``policy_check`` pair), so a trace shows why a model was skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from ..governance.policy import PolicyViolationError
from ..llm.catalog import get_model
from ..llm.costing import worst_case_input_tokens
from .context import RunContext
from .prompts import system_prompt, task_prompt
from .task_state import Assignment, TaskRun


class ModelChooser:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def untried(self, run: TaskRun, cheaper: bool = False) -> Iterator[str]:
        """Candidates not tried yet for the task that the client can still call (cheaper
        than the current model, in input plus output price per 1M, when asked)."""
        limit = None
        if cheaper and run.use.model:
            limit = _list_price(run.use.model)
        for candidate in run.candidates.names:
            if candidate in run.candidates.tried or not self.ctx.client.is_usable(candidate):
                continue
            if limit is not None and _list_price(candidate) >= limit:
                continue
            yield candidate

    def switch(self, run: TaskRun, cheaper: bool = False) -> bool:
        """Move to the next untried, usable candidate that passes the task's policies (a
        cheaper one when asked).  False when there is none."""
        for candidate in list(self.untried(run, cheaper)):
            run.candidates.tried.add(candidate)
            if not self.allowed(run, candidate):
                continue
            self.use(run, candidate)
            return True
        return False

    def use(self, run: TaskRun, model: str) -> None:
        info = get_model(model)
        # a model that just failed this task is not asked to review its replacement
        reviewers = [
            r
            for r in self.ctx.router.reviewer_candidates(model, run.task.type)
            if r == model or r not in run.candidates.failed
        ]
        max_tokens = min(run.task.output_tokens_cap, info.max_output_tokens)
        cap = self.ctx.run_profile.generate_max_tokens
        if cap is not None and run.task.max_output_tokens is None:  # a task's own cap wins
            max_tokens = min(max_tokens, cap)
        run.use = Assignment(
            model,
            reviewers,
            task_prompt(run.task, run.context, info, max_tokens, self.ctx.project_brief),
            system_prompt(run.task.type),
            max_tokens,
        )
        run.result.model_used, run.result.reviewer_model = model, reviewers[0]

    def allowed(self, run: TaskRun, model: str) -> bool:
        """Policy check of ``model`` for the task.  No policies: allowed, nothing sent."""
        if not run.policies:
            return True
        checked = run.candidates.checked.get(model)
        if checked is None:
            call_cost, task_cost = self.estimates(run, model)
            checked = run.candidates.checked[model] = self.ctx.policy_engine.check(
                model, self.ctx.profile(model), run.policies, call_cost_usd=call_cost, task_cost_usd=task_cost
            )
        return checked.passed

    def estimates(self, run: TaskRun, model: str) -> tuple[float, float]:
        """Worst-case cost of one call of the task on ``model`` (prompt, context, the
        previous answer and a review, full output) and of the task (one generate and one
        revise per round, plus what the task spent already)."""
        info = get_model(model)
        task = run.task
        max_tokens = min(task.output_tokens_cap, info.max_output_tokens)
        context = sum(len(v.encode("utf-8")) for v in run.context.values())
        input_tokens = (
            worst_case_input_tokens(system_prompt(task.type), task.prompt)
            + len(self.ctx.project_brief.encode("utf-8"))
            + context
            + 2 * max_tokens
        )
        if not info.price_known:
            return math.inf, math.inf
        call = info.worst_case_cost(min(input_tokens, info.context_window), max_tokens)
        return call, run.result.cost_usd + call * (1 + task.iterations_cap)

    def policy_error(self, run: TaskRun) -> PolicyViolationError | str:
        if not run.policies:
            return "no usable model for this task type"
        return PolicyViolationError.for_candidates(run.task.id, run.policies, list(run.candidates.checked.values()))

    def has_fallback(self, run: TaskRun, cheaper: bool = False) -> bool:
        checked = run.candidates.checked
        return any(not (c in checked and not checked[c].passed) for c in self.untried(run, cheaper))


def _list_price(model: str) -> float:
    """Base-tier input plus output USD per 1M tokens (infinite when unknown): what
    "cheaper" compares."""
    info = get_model(model)
    if info.input_per_m is None or info.output_per_m is None:
        return math.inf
    return info.input_per_m + info.output_per_m
