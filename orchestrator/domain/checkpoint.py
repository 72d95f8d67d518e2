"""A run's checkpoint: what the run store keeps so that a stopped run can go on.

It lives in the domain (not in ``state``) because two parts share it without knowing
each other: the engine builds checkpoints and restores runs from them, the store writes
and reads them, and only the CLI (or the caller in Python) connects the two.

Statuses of a stored run: ``running`` (a process is running it, or was killed while it
did), ``interrupted`` (Ctrl-C, or an error stopped it), or the final project status.
``success``, ``partial_success`` and ``failed`` are finished; ``budget_exhausted`` and
``timed_out`` ran out of money or time and may go on with a higher cap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

from .errors import OrchestratorError
from .results import TaskResult, TaskStatus, Usage
from .tasks import Task

RUNNING = "running"
INTERRUPTED = "interrupted"
FINISHED_STATUSES = frozenset({"success", "partial_success", "failed"})
"""A run that ended with one of these has nothing left to resume."""
KEPT_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.DEGRADED})
"""Results a resume keeps; every other task runs again."""
SETTLED_STATUSES = KEPT_STATUSES | {TaskStatus.FAILED, TaskStatus.SKIPPED}
"""Results worth saving: a task still running has none yet."""


class StoreError(OrchestratorError):
    """The run store cannot be used (unreadable, corrupt, or of a schema this version
    cannot migrate); ``str()`` is one line naming the file."""


class UnknownProjectError(StoreError):
    """No run with this project id is stored."""

    def __init__(self, project_id: str) -> None:
        super().__init__(f"unknown project id {project_id!r} (see 'orchestrator runs')")
        self.project_id = project_id


class ProjectBusyError(StoreError):
    """Another process (or another run in this one) is running this project right now."""

    def __init__(self, project_id: str, holder: str = "") -> None:
        who = f" (pid {holder})" if holder else ""
        super().__init__(
            f"project {project_id} is being run by another process{who}; wait for it to end or stop it first"
        )
        self.project_id = project_id
        self.holder = holder


class RootSpan(TypedDict):
    """An attempt's root span: the propagation carrier a tracing observer filled, and its
    W3C ``traceparent`` when it has one (a checkpoint of an older version has only that)."""

    attempt: int
    carrier: NotRequired[dict[str, str]]
    traceparent: NotRequired[str]


@dataclass
class Checkpoint:
    """Everything saved about a run, after decomposition and after every task settles.

    ``tasks`` is ``None`` until the plan is known (a run stopped while decomposing plans
    again on resume).  ``results`` holds settled results only; ``result_attempts`` says
    which attempt produced each.  ``roots`` lists each attempt's root span (when it was traced)
    as the propagation ``carrier`` a tracing observer filled, plus its ``traceparent``
    when the carrier has one, so a resumed run can link to them.
    ``settings`` is JSON-ready: the engine's own settings and whatever the caller asked to
    keep (the CLI keeps its flags there to rebuild the run).
    """

    project_id: str
    description: str
    criteria: str
    status: str = RUNNING
    attempt: int = 1
    started_at: float = 0.0
    updated_at: float = 0.0
    tasks: list[Task] | None = None
    execution_order: list[str] = field(default_factory=list)
    plan_notes: list[str] = field(default_factory=list)
    profile: str = ""
    """The run profile the plan was made for (``local`` or ``full``; empty before the plan)."""
    results: dict[str, TaskResult] = field(default_factory=dict)
    result_attempts: dict[str, int] = field(default_factory=dict)
    max_usd: float = 0.0
    max_time_seconds: float = 0.0
    spent_usd: float = 0.0
    planning: Usage = field(default_factory=Usage)
    """The calls of the decomposition that made ``tasks`` (none for given tasks)."""
    phase_spend: dict[str, float] = field(default_factory=dict)
    elapsed_seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    """JSON read back from the store (written by any version): its users check what they take."""
    versions: dict[str, str] = field(default_factory=dict)
    roots: list[RootSpan] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def kept(self) -> dict[str, TaskResult]:
        """The results a resume keeps (completed and degraded tasks)."""
        return {tid: r for tid, r in self.results.items() if r.status in KEPT_STATUSES}

    @property
    def rerun_usd(self) -> float:
        """Money spent on work a resume does again: tasks that were running, failed or
        skipped, and a decomposition that did not finish.  It stays in the budget (it was
        spent); with the response cache on, the calls that had finished are not paid twice."""
        kept = sum(r.cost_usd for r in self.kept.values())
        plan = self.planning.cost_usd if self.tasks is not None else 0.0
        return max(0.0, self.spent_usd - kept - plan)

    @property
    def tasks_total(self) -> int:
        return len(self.tasks) if self.tasks is not None else 0

    @property
    def tasks_done(self) -> int:
        return len(self.kept)
