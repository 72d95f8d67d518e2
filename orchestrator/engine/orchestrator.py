"""The Orchestrator: decompose a project into tasks, schedule the DAG, run each task's
generate -> critique -> revise -> validate -> evaluate loop under a hard budget.

Every model is checked against the task's policies before its first use; failures - a
call that fails, an output a validator rejects, a score below the threshold, a budget
running low - go to the remediation engine, whose decision the task loop carries out.
The parts: :mod:`.planning`, :mod:`.scheduling`, :mod:`.model_choice`,
:mod:`.task_runner` (with :mod:`.rounds` and :mod:`.remedies`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .. import attributes as attr
from .. import events
from ..domain.budget import Budget
from ..domain.results import ProjectState, ProjectStatus, TaskStatus
from ..domain.tasks import Task, TaskType, check_task_graph
from ..governance.policy import Policy, PolicyEngine, PolicySet, PolicyViolationError
from ..governance.remediation import RemediationConfig, RemediationEngine
from ..governance.validators import ValidatorConfig
from ..llm.client import UnifiedClient
from ..llm.routing import Router
from .context import RunContext
from .planning import Plan, Planner
from .scheduling import schedule, topological_order
from .task_runner import TaskRunner


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
        """``policies``: a :class:`~orchestrator.governance.policy.PolicySet`, a list of
        :class:`~orchestrator.governance.policy.Policy` (global ones), or policy-file-shaped
        data.  ``remediation``: a :class:`~orchestrator.governance.remediation.RemediationConfig`,
        its data, or a :class:`~orchestrator.governance.remediation.RemediationEngine`.
        ``validators``: a :class:`~orchestrator.governance.validators.ValidatorConfig` or
        its data.  ``project_tasks``: run as given, never repaired (the fields in range,
        ids unique, every dependency a task, no cycle).  Bad data raises a one-line
        :class:`~orchestrator.domain.errors.ConfigError` (a ValueError)."""
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
        if project_tasks:  # what a user wrote is checked, never repaired: a broken graph is an error
            for task in project_tasks:
                task.check_fields()
            check_task_graph(list(project_tasks))
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
        self.state: ProjectState | None = None  # the run in progress or last run: kept when interrupted
        self.context: RunContext | None = None

    def _new_context(self, brief: str) -> RunContext:
        return RunContext(
            budget=self.budget, client=self.client, router=self.router, policies=self.policies,
            policy_engine=self.policy_engine, remediation=self.remediation, validators=self.validators,
            evaluation_samples=self.evaluation_samples,
            sleep=getattr(self.client, "_sleep", None) or asyncio.sleep,  # auto_retry's pause
            project_brief=brief)

    # -- the run ---------------------------------------------------------------------
    async def run_project(self, project_description: str, success_criteria: str,
                          project_id: str | None = None) -> ProjectState:
        project_id = project_id or f"proj-{uuid.uuid4().hex[:12]}"
        self.budget.restart_clock()
        self.client.budget = self.budget
        ctx = self.context = self._new_context(f"Project: {project_description}" + (
            f"\nSuccess criteria: {success_criteria}" if success_criteria else ""))
        state = ProjectState(project_id=project_id, description=project_description,
                             criteria=success_criteria, budget=self.budget)
        self.state = state
        with events.traced_project(project_id, project_description, success_criteria,
                                   self.budget.max_usd, self.budget.max_time_seconds) as span:
            try:
                if self.policies:
                    self._preflight(ctx)
                plan = await self._plan(ctx, project_description, success_criteria)
                state.planning = plan.usage
                state.notes.extend(plan.notes)
                state.tasks = {t.id: t for t in plan.tasks}
                state.execution_order = topological_order(state.tasks)
                events.emit(events.tasks_planned, task_count=len(plan.tasks),
                            task_ids=tuple(state.execution_order))
                if plan.tasks:
                    runner = TaskRunner(ctx)
                    await schedule(state, runner.run, self.concurrency, lambda: ctx.stop_reason)
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
                state.status = final_status(state, ctx)
                usage = state.usage  # every call: planning and every task's, remediations included
                span.set_attributes({
                    attr.PROJECT_STATUS: state.status.value,
                    attr.PROJECT_COST_USD: round(usage.cost_usd, 8),
                    attr.PROJECT_TOKENS_IN: usage.input_tokens,
                    attr.PROJECT_TOKENS_OUT: usage.output_tokens,
                    attr.PROJECT_LLM_CALLS: usage.llm_calls,
                    attr.PROJECT_CACHED_CALLS: usage.cached_calls,
                    attr.PROJECT_TASK_COUNT: len(state.tasks),
                })
        return state

    async def _plan(self, ctx: RunContext, description: str, criteria: str) -> Plan:
        if self.project_tasks:  # checked at construction and kept as given (copies: a run changes none)
            return Plan([replace(t, depends_on=list(t.depends_on)) for t in self.project_tasks])
        plan = await Planner(ctx, self.max_tasks).decompose(description, criteria)
        if plan.stop_reason:
            ctx.stop(plan.stop_reason)
        return plan

    # -- policies --------------------------------------------------------------------
    def _preflight(self, ctx: RunContext) -> None:
        """Stop before spending anything when the policies leave the project nothing to
        run: no compliant usable model for any explicit task, or for any task type when
        the project is to be decomposed.  (A silent feasibility check: the real checks,
        with their events, happen when a model is about to be used.)"""
        engine = self.policy_engine
        if self.project_tasks:
            groups = [(self.policies.for_task(t), self.router.candidates(t.type)) for t in self.project_tasks]
        else:
            groups = [(self.policies.for_type(tt), self.router.candidates(tt)) for tt in TaskType]
        details: dict[str, str] = {}  # "model: reason", once each, whatever the group
        for policies, candidates in groups:
            results = [engine.evaluate(m, ctx.profile(m), policies) for m in candidates]
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


def final_status(state: ProjectState, ctx: RunContext) -> ProjectStatus:
    results = [state.results.get(tid) for tid in state.tasks]
    statuses = [r.status if r else TaskStatus.SKIPPED for r in results]
    if statuses and all(s == TaskStatus.COMPLETED for s in statuses):
        return ProjectStatus.SUCCESS
    if ctx.stop_reason == "budget":
        return ProjectStatus.BUDGET_EXHAUSTED
    if ctx.stop_reason == "time":
        return ProjectStatus.TIMED_OUT
    if any(s in (TaskStatus.COMPLETED, TaskStatus.DEGRADED) for s in statuses):
        return ProjectStatus.PARTIAL_SUCCESS
    return ProjectStatus.FAILED
