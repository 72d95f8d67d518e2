"""The Orchestrator: decompose a project into tasks, schedule the DAG, run each task's
generate -> critique -> revise -> validate -> evaluate loop under a hard budget.

Every model is checked against the task's policies before its first use; failures - a
call that fails, an output a validator rejects, a score below the threshold, a budget
running low - go to the remediation engine, whose decision the task loop carries out.
The parts: :mod:`.planning`, :mod:`.scheduling`, :mod:`.model_choice`,
:mod:`.task_runner` (with :mod:`.rounds` and :mod:`.remedies`), :mod:`.checkpoints`.

With a run store (``store=``), the run is checkpointed when it starts, once the plan is
known, after every task settles, and when it ends or is interrupted; ``resume`` goes on
from the last checkpoint of a stopped run.

What a user gives (the project, the criteria, their tasks' ids and prompts) enters a run
here, and is redacted here (:func:`~orchestrator.redaction.redact`): a key pasted into a
prompt is masked before any model, span, event, checkpoint or file sees it, and the rest
of the text is kept.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import replace

from .. import attributes as attr
from .. import events
from ..domain.budget import Budget
from ..domain.checkpoint import INTERRUPTED, RUNNING, Checkpoint, UnknownProjectError
from ..domain.results import ProjectState, ProjectStatus, TaskStatus
from ..domain.tasks import Task, TaskType, check_task_graph
from ..governance.acceptance import parse_criteria
from ..governance.policy import Policy, PolicyEngine, PolicySet, PolicyViolationError
from ..governance.remediation import RemediationConfig, RemediationEngine
from ..governance.sandbox import SANDBOX_CHOICES, Sandbox, resolve, using
from ..governance.validators import ValidatorConfig
from ..llm.catalog import get_model
from ..llm.client import UnifiedClient
from ..llm.routing import Router
from ..redaction import redact
from .checkpoints import Checkpointer, CheckpointStore, governance_settings, restored_state, resumed_budget
from .checks import assign_checks
from .context import RunContext
from .planning import Plan, Planner
from .profile import PROFILE_CHOICES, RunProfile, resolve_profile
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
        policies: PolicySet | list[Policy] | Mapping[str, object] | None = None,
        remediation: RemediationConfig | RemediationEngine | Mapping[str, object] | None = None,
        validators: ValidatorConfig | Mapping[str, object] | None = None,
        policy_engine: PolicyEngine | None = None,
        profile: str | RunProfile = "auto",
        store: CheckpointStore | None = None,
        run_settings: Mapping[str, object] | None = None,
        sandbox: str | Sandbox = "auto",
    ) -> None:
        """``policies``: a :class:`~orchestrator.governance.policy.PolicySet`, a list of
        :class:`~orchestrator.governance.policy.Policy` (global ones), or policy-file-shaped
        data.  ``remediation``: a :class:`~orchestrator.governance.remediation.RemediationConfig`,
        its data, or a :class:`~orchestrator.governance.remediation.RemediationEngine`.
        ``validators``: a :class:`~orchestrator.governance.validators.ValidatorConfig` or
        its data.  ``project_tasks``: run as given, never repaired (the fields in range,
        ids unique, every dependency a task, no cycle).  Bad data raises a one-line
        :class:`~orchestrator.domain.errors.ConfigError` (a ValueError).  ``profile``:
        ``auto`` (``local`` when the planner is the embedded model, else ``full``),
        ``local``, ``full`` or a :class:`~.profile.RunProfile`.  ``store``: where
        checkpoints go (e.g. ``orchestrator.state.RunStore()``), needed by :meth:`resume`.
        ``run_settings``: JSON-ready data kept with the checkpoints (the CLI keeps its
        flags there).  ``sandbox``: where model-written code and acceptance checks run
        (``auto``: bwrap, else unshare; ``none`` opts out of isolation), or a resolved
        :class:`~orchestrator.governance.sandbox.Sandbox`; a run where it cannot work
        raises :class:`~orchestrator.governance.sandbox.SandboxUnavailable` (a
        ValueError) before any work."""
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
        if not isinstance(profile, RunProfile) and profile not in PROFILE_CHOICES:
            raise ValueError(f"unknown profile {profile!r} (known: {', '.join(PROFILE_CHOICES)})")
        if not isinstance(sandbox, Sandbox) and sandbox not in SANDBOX_CHOICES:
            raise ValueError(f"unknown sandbox {sandbox!r} (known: {', '.join(SANDBOX_CHOICES)})")
        if project_tasks:  # what a user wrote is checked, never repaired: a broken graph is an error
            project_tasks = [redacted_task(task) for task in project_tasks]
            for task in project_tasks:
                task.check_fields()
            check_task_graph(list(project_tasks))
        self.profile = profile
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
        self.store = store
        self.run_settings = dict(run_settings or {})
        self.sandbox = sandbox
        self.state: ProjectState | None = None  # the run in progress or last run: kept when interrupted
        self.context: RunContext | None = None

    def _new_context(self, brief: str, criteria: str) -> RunContext:
        return RunContext(
            budget=self.budget,
            client=self.client,
            router=self.router,
            policies=self.policies,
            policy_engine=self.policy_engine,
            remediation=self.remediation,
            validators=self.validators,
            evaluation_samples=self.evaluation_samples,
            sleep=getattr(self.client, "_sleep", None) or asyncio.sleep,  # auto_retry's pause
            project_brief=brief,
            criteria=parse_criteria(criteria),
        )

    # -- the run ---------------------------------------------------------------------
    async def run_project(
        self, project_description: str, success_criteria: str, project_id: str | None = None
    ) -> ProjectState:
        """Run one project to its end: plan it into tasks (or take ``project_tasks``), run
        them as a DAG under the budget, and return the final state, whatever happened.

        ``success_criteria`` lines that are Python become acceptance checks run in the
        sandbox; the rest is judged by the evaluator.  ``project_id`` defaults to a new
        ``proj-...`` id (give one to resume it later by name).  Raises
        :class:`~orchestrator.governance.policy.PolicyViolationError` (its ``.state`` is
        the empty result) when the policies leave the project no model, before any call;
        :class:`~orchestrator.governance.sandbox.SandboxUnavailable` when the sandbox asked
        for cannot work here; a store's ``ProjectBusyError`` when another process runs the
        same project id.  A task that fails, a provider that errs or a budget that runs out
        shows in the returned state's statuses, not as an exception."""
        project_id = project_id or new_project_id()
        box = self._sandbox()
        project_description, success_criteria = redact(project_description), redact(success_criteria)
        self.budget.restart_clock()
        state = ProjectState(
            project_id=project_id, description=project_description, criteria=success_criteria, budget=self.budget
        )
        if self.store is None:
            return await self._execute(state, None, box)
        with self.store.claim(project_id):
            return await self._execute(state, None, box)

    async def resume(
        self, project_id: str, *, max_usd: float | None = None, max_time_seconds: float | None = None
    ) -> ProjectState:
        """Go on with a stopped run from its last checkpoint: completed and degraded tasks
        keep their results and do not run again; every other task runs.  The budget goes
        on from what was spent, under the original caps unless ``max_usd`` /
        ``max_time_seconds`` raise them; the time cap counts the time earlier attempts
        ran.  A finished run is returned as stored, nothing run.  Uses this
        orchestrator's client, policies, remediation and validators.

        Raises :class:`~orchestrator.domain.checkpoint.UnknownProjectError`,
        :class:`~orchestrator.domain.checkpoint.ProjectBusyError` (another process runs
        it now), ``ValueError`` for a lower cap."""
        if self.store is None:
            raise ValueError("resume needs a run store: Orchestrator(store=orchestrator.state.RunStore())")
        box = self._sandbox()
        with self.store.claim(project_id):
            cp = self.store.load(project_id)
            if cp is None:
                raise UnknownProjectError(project_id)
            if cp.finished:
                self.state = restored_state(cp, resumed_budget(cp), next_attempt=False)
                return self.state
            pool = self.budget.pool  # a batch's ledger stays shared across the resume
            self.budget = resumed_budget(cp, max_usd, max_time_seconds)
            self.budget.pool = pool
            return await self._execute(restored_state(cp, self.budget), cp, box)

    def _sandbox(self) -> Sandbox:
        """The sandbox this run's model-written code will run in, checked now (before any
        work): SandboxUnavailable when it cannot run here."""
        return self.sandbox if isinstance(self.sandbox, Sandbox) else resolve(self.sandbox)

    def _settings(self) -> dict[str, object]:
        profile = self.profile if isinstance(self.profile, str) else self.profile.name
        return {
            "engine": {
                "budget_usd": self.budget.max_usd,
                "time_seconds": self.budget.max_time_seconds,
                "concurrency": self.concurrency,
                "only_model": self.only_model,
                "max_tasks": self.max_tasks,
                "evaluation_samples": self.evaluation_samples,
                "profile": profile,
                **governance_settings(self.policies, self.remediation, self.validators),
            },
            **self.run_settings,
        }

    async def _execute(self, state: ProjectState, previous: Checkpoint | None, box: Sandbox) -> ProjectState:
        with using(box):  # the checks and validators of this run (in their threads too) run in it
            return await self._execute_in(state, previous, box)

    async def _execute_in(self, state: ProjectState, previous: Checkpoint | None, box: Sandbox) -> ProjectState:
        self.client.budget = self.budget
        state.sandbox = box.level
        if not box.isolated:
            state.notes.append(
                "sandbox none: model-written code and acceptance checks ran WITHOUT isolation "
                "(they could read your files and environment, reach the network and end this run)"
            )
        ctx = self.context = self._new_context(
            f"Project: {state.description}" + (f"\nSuccess criteria: {state.criteria}" if state.criteria else ""),
            state.criteria,
        )
        self.state = state
        saver = Checkpointer(
            self.store, state, settings=previous.settings if previous else self._settings(), previous=previous
        )
        links = saver.links()
        ended = False
        saver.save(RUNNING)  # before anything is seen: a run whose start was seen can be resumed
        with events.traced_project(
            state.project_id,
            state.description,
            state.criteria,
            self.budget.max_usd,
            self.budget.max_time_seconds,
            attempt=state.attempt,
            links=links,
        ) as span:
            saver.root(span.carrier)  # saved with the next checkpoint
            span.set_attribute(attr.ORCHESTRATOR_SANDBOX, box.level)
            try:
                if self.policies:
                    refuse_when_no_model_fits(ctx, self.policies, self.policy_engine, self.router, self.project_tasks)
                if state.tasks:  # the plan of a resumed run: its profile and checks as they were
                    ctx.run_profile = resolve_profile(state.profile or self.profile, False)
                    ctx.criteria, _ = assign_checks(list(state.tasks.values()), ctx.criteria)
                else:
                    plan = await self._plan(ctx, state.description, state.criteria)
                    state.planning = plan.usage
                    state.profile = ctx.run_profile.name
                    ctx.criteria, check_notes = assign_checks(plan.tasks, ctx.criteria)
                    saver.plan_notes = [*plan.notes, *check_notes]
                    state.notes.extend(saver.plan_notes)
                    state.tasks = {t.id: t for t in plan.tasks}
                    state.execution_order = topological_order(state.tasks)
                    saver.save(RUNNING)
                ctx.tasks = state.tasks
                events.emit(events.tasks_planned, task_count=len(state.tasks), task_ids=tuple(state.execution_order))
                if state.restored:
                    self._announce_restored(state)
                if state.tasks:
                    runner = TaskRunner(ctx, settled=lambda _tid: saver.save(RUNNING))
                    await schedule(
                        state, runner.run, self.concurrency, lambda: ctx.stop_reason, lambda _tid: saver.save(RUNNING)
                    )
                ended = True
            except PolicyViolationError as exc:
                # raised before any call was sent (preflight, planner check): the caller
                # still gets the state, with the reason, to report and write out
                state.notes.append(str(exc))
                exc.state = state
                ended = True
                raise
            except asyncio.CancelledError:
                state.notes.append("interrupted: the results so far are kept, unfinished tasks failed")
                raise
            finally:
                state.status = final_status(state, ctx)
                saver.save(state.status.value if ended else INTERRUPTED)
                usage = state.usage  # every call: planning and every task's, remediations included
                span.set_attributes(
                    {
                        attr.PROJECT_STATUS: state.status.value,
                        attr.PROJECT_COST_USD: round(usage.cost_usd, 8),
                        attr.PROJECT_TOKENS_IN: usage.input_tokens,
                        attr.PROJECT_TOKENS_OUT: usage.output_tokens,
                        attr.PROJECT_LLM_CALLS: usage.llm_calls,
                        attr.PROJECT_CACHED_CALLS: usage.cached_calls,
                        attr.PROJECT_TASK_COUNT: len(state.tasks),
                    }
                )
                if state.profile:
                    span.set_attribute(attr.ORCHESTRATOR_PROFILE, state.profile)
        return state

    @staticmethod
    def _announce_restored(state: ProjectState) -> None:
        state.notes.append(
            f"resumed (attempt {state.attempt}): kept {len(state.restored)} result(s) from the "
            f"checkpoint: {', '.join(state.restored)}"
        )
        for tid in state.execution_order:
            if tid in state.restored:
                r = state.results[tid]
                events.emit(
                    events.task_restored,
                    task_id=tid,
                    status=r.status.value,
                    score=r.score,
                    from_attempt=state.restored[tid],
                    model=r.model_used or "",
                    cost_usd=r.cost_usd,
                    tokens_in=r.input_tokens,
                    tokens_out=r.output_tokens,
                )

    async def _plan(self, ctx: RunContext, description: str, criteria: str) -> Plan:
        planner = Planner(ctx, self.max_tasks)
        if self.project_tasks:  # checked at construction and kept as given (copies: a run changes none)
            candidates = ctx.router.planner_candidates()
            ctx.run_profile = resolve_profile(self.profile, bool(candidates) and get_model(candidates[0]).is_local)
            return Plan([replace(t, depends_on=list(t.depends_on)) for t in self.project_tasks])
        model = planner.choose()
        ctx.run_profile = resolve_profile(self.profile, get_model(model).is_local)
        plan = planner.one_task(description, criteria, ctx.run_profile) or await planner.decompose(
            description, criteria, model, ctx.run_profile
        )
        if plan.stop_reason:
            ctx.stop(plan.stop_reason)
        return plan

    # -- policies --------------------------------------------------------------------


def redacted_task(task: Task) -> Task:
    """A copy of a user's task with its id, prompt and dependencies redacted (a task
    without secrets is returned as is)."""
    clean = replace(
        task, id=redact(task.id), prompt=redact(task.prompt), depends_on=[redact(d) for d in task.depends_on]
    )
    return task if clean == task else clean


def new_project_id() -> str:
    return f"proj-{uuid.uuid4().hex[:12]}"


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


def refuse_when_no_model_fits(
    ctx: RunContext, policies: PolicySet, engine: PolicyEngine, router: Router, project_tasks: list[Task] | None
) -> None:
    """Stop before spending anything when the policies leave the project nothing to
    run: no compliant usable model for any explicit task, or for any task type when
    the project is to be decomposed.  (A silent feasibility check: the real checks,
    with their events, happen when a model is about to be used.)"""
    if project_tasks:
        groups = [(policies.for_task(t), router.candidates(t.type)) for t in project_tasks]
    else:
        groups = [(policies.for_type(tt), router.candidates(tt)) for tt in TaskType]
    details: dict[str, str] = {}  # "model: reason", once each, whatever the group
    for group_policies, candidates in groups:
        results = [engine.evaluate(m, ctx.profile(m), group_policies) for m in candidates]
        if not candidates or any(r.passed for r in results):
            return
        for r in results:
            details.setdefault(f"{r.model}: {r.reason}", "")
    names = ", ".join(
        sorted(
            {p.name for p in policies.global_policies}
            | {p.name for v in policies.by_task_type.values() for p in v}
            | {p.name for v in policies.by_task.values() for p in v}
        )
    )
    shown = list(details)[:4]
    more = f"; and {len(details) - 4} more" if len(details) > 4 else ""
    raise PolicyViolationError(
        f"project: no usable model satisfies the policies {names} for any task; "
        f"nothing was run or spent: {'; '.join(shown)}{more}"
    )
