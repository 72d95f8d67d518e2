"""One project of a batch, run where a backend put it: in the driver's event loop (local)
or in a Ray worker process.  The same code for both, so both keep the same promises:

* the project's budget holds its own cap and reserves every call in the batch ledger
  too (:class:`~.pool.LedgerPool`); when the ledger cannot be reached, nothing starts;
* a project that has a checkpoint (a batch resumed, or a retry after its worker died)
  goes on from it - completed tasks are never paid twice - and starts with at least
  what the ledger says it spent in all its attempts, so its own cap holds across kills;
* its root span carries the batch id and links to the batch span
  (:func:`~orchestrator.events.batch_scope`);
* whatever happens, the worker returns a :class:`~.jobs.ProjectOutcome`: a failing
  project never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Protocol, runtime_checkable

from .. import events
from ..domain.budget import Budget
from ..domain.checkpoint import Checkpoint
from ..engine.checkpoints import CheckpointStore
from ..engine.orchestrator import Orchestrator
from ..redaction import redact
from .jobs import ERROR, INTERRUPTED, NOT_STARTED, ProjectFactory, ProjectJob, ProjectOutcome
from .pool import LedgerAccess, LedgerPool

__all__ = ["run_job", "EventLogStore", "SpentFloor", "worker_name"]

logger = logging.getLogger("orchestrator.batch")

FINISH_SECONDS = 5.0
"""How long closing a project's connections and flushing its spans may take."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@runtime_checkable
class EventLogStore(Protocol):
    """A checkpoint store that also keeps a project's event log (the run store, and its
    Ray actor): ``orchestrator report PROJECT_ID`` works for a batch's projects too."""

    def save_events(self, project_id: str, attempt: int, lines: Sequence[str]) -> None: ...


class SpentFloor:
    """The checkpoint store, but a project's checkpoint is loaded with at least
    ``floor`` spent: what the batch ledger booked for it in every attempt, calls made
    after its last checkpoint (and calls of a worker that died) included."""

    def __init__(self, store: CheckpointStore, project_id: str, floor: float) -> None:
        self.store = store
        self.project_id = project_id
        self.floor = floor

    def claim(self, project_id: str) -> AbstractContextManager[object]:
        return self.store.claim(project_id)

    def load(self, project_id: str) -> Checkpoint | None:
        cp = self.store.load(project_id)
        if cp is not None and project_id == self.project_id and cp.spent_usd < self.floor:
            cp = replace(cp, spent_usd=self.floor)
        return cp

    def save(self, checkpoint: Checkpoint) -> None:
        self.store.save(checkpoint)

    def save_events(self, project_id: str, attempt: int, lines: Sequence[str]) -> None:
        """The project's event lines, to the store's log (a store that keeps none: dropped)."""
        if isinstance(self.store, EventLogStore):
            self.store.save_events(project_id, attempt, lines)


async def run_job(
    job: ProjectJob,
    access: LedgerAccess,
    store: CheckpointStore,
    factory: ProjectFactory,
    carrier: Mapping[str, str] | None = None,
    observe: AbstractContextManager[object] | None = None,
    stop: Awaitable[object] | None = None,
) -> ProjectOutcome:
    """Run (or resume) ``job`` to its end; never raises (a cancel ends it as
    :data:`~.jobs.INTERRUPTED`, checkpointed).  ``observe``: held around the run (the Ray
    worker's event relay).  ``stop``: when it completes, the project is cancelled the same
    way (the driver's Ctrl-C, reaching a worker in another process)."""
    work = asyncio.ensure_future(_run_job(job, access, store, factory, carrier, observe))
    if stop is None:
        return await work
    stopper = asyncio.ensure_future(stop)
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not work.done():
            work.cancel()
        stopper.cancel()
    try:
        return await work
    except asyncio.CancelledError:  # stopped before it began
        _uncancel()
        return ProjectOutcome(job.position, job.name, job.project_id, NOT_STARTED, worker=worker_name())


async def _run_job(
    job: ProjectJob,
    access: LedgerAccess,
    store: CheckpointStore,
    factory: ProjectFactory,
    carrier: Mapping[str, str] | None,
    observe: AbstractContextManager[object] | None,
) -> ProjectOutcome:
    started = time.time()
    outcome = ProjectOutcome(job.position, job.name, job.project_id, ERROR, worker=worker_name(), started_at=started)
    seconds = job.time_left(started)
    if seconds < 1.0:
        outcome.status, outcome.error = NOT_STARTED, "the batch's time cap ran out before it started"
        outcome.ended_at = time.time()
        return outcome
    holder = f"{job.project_id}/{uuid.uuid4().hex[:12]}"
    try:
        floor = await access.begin(job.project_id, holder)
    except asyncio.CancelledError:
        outcome.status, outcome.ended_at = NOT_STARTED, time.time()
        return outcome
    except Exception as exc:  # noqa: BLE001 - no ledger, no call: the project does not start
        outcome.error = f"the batch ledger cannot be reached ({type(exc).__name__}: {redact(str(exc))[:200]})"
        outcome.ended_at = time.time()
        return outcome
    budget = Budget(job.budget_usd, seconds, pool=LedgerPool(access, job.project_id, holder))
    checkpoints = SpentFloor(store, job.project_id, floor)
    orch: Orchestrator | None = None
    try:
        orch = factory.build(job, budget, checkpoints)
        with observe or nullcontext(), events.batch_scope(job.batch_id, carrier):
            previous = checkpoints.load(job.project_id)
            if previous is None:
                state = await orch.run_project(job.description, job.criteria, job.project_id)
            else:
                state = await orch.resume(job.project_id)
        outcome.state = state
        outcome.status = state.status.value if state.status is not None else ERROR
    except asyncio.CancelledError:
        _uncancel()
        outcome.state = orch.state if orch is not None else None
        outcome.status = INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - one project's failure never stops the others
        outcome.state = getattr(exc, "state", None) or (orch.state if orch is not None else None)
        outcome.error = " ".join(redact(str(exc) or type(exc).__name__).split())[:300]
        outcome.status = ERROR
        if getattr(exc, "state", None) is not None and outcome.state is not None and outcome.state.status:
            outcome.status = outcome.state.status.value  # e.g. the policies left it no model
        logger.warning("project %s (%s) ended with an error: %s", job.name, job.project_id, outcome.error)
    finally:
        if orch is not None:
            try:
                await asyncio.wait_for(factory.finish(orch), FINISH_SECONDS)
            except BaseException:  # noqa: BLE001 - closing must not change the outcome
                logger.debug("finishing project %s failed", job.project_id, exc_info=True)
    if outcome.state is not None:
        outcome.state.budget.pool = None  # the outcome crosses processes; the pool stays here
    outcome.ended_at = time.time()
    return outcome


def _uncancel() -> None:
    """The cancel was handled (the outcome says interrupted): later awaits of this task
    (closing connections) must not see it again."""
    task = asyncio.current_task()
    if task is not None:
        while task.cancelling():
            task.uncancel()
