"""Where a batch's projects run: the backend protocol, and the local backend (one
process, the existing asyncio engine, no new dependency).

A backend starts the shared services (the ledger, the store's owner), runs one project
per :meth:`Backend.launch`, answers the ledger's state for the live view, stops running
projects on Ctrl-C, and closes what it started.  The driver (:mod:`.driver`) decides
what runs when; a backend only runs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..engine.checkpoints import CheckpointStore
from .jobs import ProjectFactory, ProjectJob, ProjectOutcome
from .ledger import BatchLedger, LedgerSnapshot
from .pool import InProcessLedger
from .worker import run_job

__all__ = ["Backend", "BatchServices", "LocalBackend"]


@dataclass(frozen=True)
class BatchServices:
    """What a backend needs to open: the batch's cap, what its projects spent in earlier
    attempts (a resumed batch), and the batch span's context for the projects to link to."""

    batch_id: str
    max_usd: float
    spent_before: Mapping[str, float] = field(default_factory=dict)
    carrier: Mapping[str, str] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    async def open(self, services: BatchServices) -> None:
        """Start the ledger and the store's owner (and, for Ray, the cluster)."""

    def launch(self, job: ProjectJob) -> asyncio.Future[ProjectOutcome]:
        """Start one project; the future's result is its outcome."""

    async def snapshot(self) -> LedgerSnapshot:
        """The ledger now."""

    def stop(self) -> None:
        """Ctrl-C: tell every running project to stop (each checkpoints and returns
        :data:`~.jobs.INTERRUPTED`)."""

    async def close(self, stopped: Collection[str] = ()) -> LedgerSnapshot:
        """Book what is still held as spent, stop what was started; the final ledger.
        ``stopped``: the projects the driver recorded as interrupted; one still stored as
        running (its worker could not save its end in time) is stored as interrupted."""

    def kill_now(self) -> None:
        """A second Ctrl-C: end whatever this backend started, at once (no waiting)."""


class LocalBackend:
    """Every project in this process, as asyncio tasks on the driver's loop.  Projects
    share the embedded model's worker process (one per model file and process; its
    generations are serialised) and the run store (this process writes it)."""

    name = "local"

    def __init__(self, factory: ProjectFactory, store: CheckpointStore) -> None:
        self.factory = factory
        self.store = store
        self.ledger: BatchLedger | None = None
        self._access: InProcessLedger | None = None
        self._carrier: Mapping[str, str] = {}
        self._tasks: set[asyncio.Task[ProjectOutcome]] = set()

    async def open(self, services: BatchServices) -> None:
        self.ledger = BatchLedger(services.max_usd, services.spent_before)
        self._access = InProcessLedger(self.ledger)
        self._carrier = dict(services.carrier)

    def launch(self, job: ProjectJob) -> asyncio.Future[ProjectOutcome]:
        assert self._access is not None, "open() first"
        task = asyncio.get_running_loop().create_task(
            run_job(job, self._access, self.store, self.factory, self._carrier), name=f"project {job.name}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def snapshot(self) -> LedgerSnapshot:
        assert self.ledger is not None, "open() first"
        return self.ledger.snapshot()

    def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def close(self, stopped: Collection[str] = ()) -> LedgerSnapshot:
        """``stopped`` needs nothing here: a project that outlives the driver's wait is
        cancelled again when the command's loop closes, and saves its own end then."""
        assert self.ledger is not None, "open() first"
        self.ledger.close()
        return self.ledger.snapshot()

    def kill_now(self) -> None:
        """Nothing of its own to end: the process is the batch."""
