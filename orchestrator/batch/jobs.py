"""What crosses between the batch's driver and its workers: a project to run
(:class:`ProjectJob`), how it ended (:class:`ProjectOutcome`), and who builds the engine
for it (:class:`ProjectFactory`).

Why a job is plain data: it goes to another process (or machine) and into the run store,
so a resumed batch rebuilds every project without the batch file.  What the engine is
built from (models, providers, policies, cache) is the factory's business: the command
line gives its own (``orchestrator.cli.batch_runner``), a Python caller or a test another.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..domain.budget import Budget
from ..domain.results import ProjectState, ProjectStatus, Usage
from ..engine.checkpoints import CheckpointStore
from ..engine.orchestrator import Orchestrator

__all__ = ["ProjectJob", "ProjectOutcome", "ProjectFactory", "INTERRUPTED", "ERROR", "NOT_STARTED"]

INTERRUPTED = "interrupted"
"""A project the batch stopped (Ctrl-C): checkpointed, resumed by ``batch resume``."""
ERROR = "error"
"""A project that could not run to an end (its worker died for good, the engine raised)."""
NOT_STARTED = "not_started"
"""A project the batch never started (its time cap ran out, or it was stopped first)."""


@dataclass(frozen=True)
class ProjectJob:
    """One project of a batch.  ``settings``: JSON-ready data the factory builds the
    engine from; ``deadline``: the wall clock (``time.time()``) at which the batch's time
    cap ends, or None."""

    batch_id: str
    position: int
    name: str
    project_id: str
    description: str
    criteria: str
    budget_usd: float
    time_seconds: float
    settings: Mapping[str, Any] = field(default_factory=dict)
    deadline: float | None = None

    def time_left(self, now: float) -> float:
        """The project's time cap, cut to what the batch has left."""
        if self.deadline is None:
            return self.time_seconds
        return min(self.time_seconds, self.deadline - now)


@dataclass
class ProjectOutcome:
    """How one project ended in this attempt of the batch (or an earlier one: ``kept``)."""

    position: int
    name: str
    project_id: str
    status: str
    """A project status (``success``...), or :data:`INTERRUPTED`, :data:`ERROR`, :data:`NOT_STARTED`."""
    state: ProjectState | None = None
    error: str | None = None
    worker: str = ""
    """``host:pid`` of the process that ran it."""
    started_at: float = 0.0
    ended_at: float = 0.0
    kept: bool = False
    """Finished in an earlier attempt of the batch: not run again."""

    @property
    def usage(self) -> Usage:
        return self.state.usage if self.state is not None else Usage()

    @property
    def attempt(self) -> int:
        return self.state.attempt if self.state is not None else 0

    @property
    def spent_usd(self) -> float:
        """What the project's own budget booked (its cap's view, kept work and reruns)."""
        return self.state.budget.spent_usd if self.state is not None else 0.0

    @property
    def finished(self) -> bool:
        """Ended with a project status (nothing left to resume, or out of money or time)."""
        return self.status in {s.value for s in ProjectStatus}

    @property
    def failed(self) -> bool:
        return self.status in (ProjectStatus.FAILED.value, ERROR)

    @property
    def seconds(self) -> float:
        """0 when either end is unknown (a project stopped before it reported its start)."""
        return max(0.0, self.ended_at - self.started_at) if self.ended_at and self.started_at else 0.0

    def row(self) -> dict[str, Any]:
        """The project's line of ``batch-summary.json``."""
        usage, state = self.usage, self.state
        done = sum(1 for r in state.results.values() if r.status.value in ("completed", "degraded")) if state else 0
        return {
            "position": self.position,
            "name": self.name,
            "project_id": self.project_id,
            "status": self.status,
            "attempt": self.attempt,
            "kept": self.kept,
            "tasks_done": done,
            "tasks_total": len(state.tasks) if state else 0,
            "llm_calls": usage.llm_calls,
            "cached_calls": usage.cached_calls,
            "tokens_in": usage.input_tokens,
            "tokens_out": usage.output_tokens,
            "cost_usd": round(usage.cost_usd, 8),
            "spent_usd": round(self.spent_usd, 8),
            "seconds": round(self.seconds, 3),
            "worker": self.worker,
            **({"error": self.error} if self.error else {}),
        }


def usage_total(outcomes: list[ProjectOutcome]) -> Usage:
    """The sum of the projects' own totals (what the batch span and summary report)."""
    total = Usage()
    for outcome in outcomes:
        u = outcome.usage
        total.llm_calls += u.llm_calls
        total.cached_calls += u.cached_calls
        total.input_tokens += u.input_tokens
        total.output_tokens += u.output_tokens
    total.cost_usd = math.fsum(o.usage.cost_usd for o in outcomes)
    return total


class ProjectFactory(Protocol):
    """Builds the engine for one project of a batch, in the process that runs it.

    ``build`` gets the project's budget (it holds the batch ledger's pool: keep it) and
    the checkpoint store to give the engine; ``finish`` runs after the project however it
    ended (close connections, flush spans).  A factory must be picklable to run on Ray
    (a module-level class with plain-data fields is)."""

    def build(self, job: ProjectJob, budget: Budget, store: CheckpointStore) -> Orchestrator: ...

    async def finish(self, orchestrator: Orchestrator) -> None: ...
