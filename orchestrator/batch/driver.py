"""The batch's driver: what runs when, the batch's event pair, the live view's events,
and the result.

It starts at most ``max_parallel`` projects at once (a backend may run fewer, e.g. Ray
by the CPUs it has), never starts one after the batch's time cap, and collects every
project's outcome - a failed project never stops the others.  On Ctrl-C (its task is
cancelled) it tells the backend to stop the running projects, waits a few seconds for
them to checkpoint, and returns the result marked ``interrupted``.

The batch is one ``batch_started``/``batch_finished`` pair; each project is a trace of
its own whose root links to the batch span (the span's context travels to every worker
in the job's carrier), so 10,000 projects are 10,000 small traces, not one huge one.
The batch span's totals are the sums of its projects' own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .. import attributes as attr
from .. import events
from ..domain.results import ProjectStatus, Usage
from ..redaction import redact
from .backend import Backend, BatchServices
from .jobs import ERROR, INTERRUPTED, NOT_STARTED, ProjectJob, ProjectOutcome, usage_total
from .ledger import LedgerSnapshot

__all__ = ["BatchDriver", "BatchResult", "batch_status"]

logger = logging.getLogger("orchestrator.batch")

STOP_SECONDS = 3.0
"""After Ctrl-C, how long running projects get to checkpoint and return (the command
must end within 5 s, closing the backend included: about 1 s for Ray on a loaded
machine).  A project that has not reported by then keeps its last checkpoint, and the
backend records it as interrupted (:meth:`~.backend.Backend.close`)."""


def batch_status(outcomes: Sequence[ProjectOutcome], interrupted: bool) -> str:
    """``success`` when every project succeeded; ``interrupted`` after Ctrl-C;
    ``partial_success`` when some project succeeded at least partly; else ``failed``."""
    if interrupted:
        return INTERRUPTED
    if outcomes and all(o.status == ProjectStatus.SUCCESS.value for o in outcomes):
        return ProjectStatus.SUCCESS.value
    if any(o.status in (ProjectStatus.SUCCESS.value, ProjectStatus.PARTIAL_SUCCESS.value) for o in outcomes):
        return ProjectStatus.PARTIAL_SUCCESS.value
    return ProjectStatus.FAILED.value


@dataclass
class BatchResult:
    """A batch's end: every project's outcome (in the batch file's order) and the ledger."""

    batch_id: str
    backend: str
    status: str
    max_usd: float
    time_seconds: float | None
    ledger: LedgerSnapshot
    outcomes: list[ProjectOutcome] = field(default_factory=list)
    started_at: float = 0.0
    ended_at: float = 0.0
    interrupted: bool = False

    @property
    def usage(self) -> Usage:
        """The sum of the projects' own totals."""
        return usage_total(self.outcomes)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.status] = out.get(o.status, 0) + 1
        return out

    def span_attributes(self) -> dict[str, Any]:
        usage = self.usage
        return {
            attr.BATCH_STATUS: self.status,
            attr.BATCH_PROJECTS_DONE: sum(1 for o in self.outcomes if o.finished),
            attr.BATCH_PROJECTS_FAILED: sum(1 for o in self.outcomes if o.failed),
            attr.BATCH_COST_USD: round(usage.cost_usd, 8),
            attr.BATCH_SPENT_USD: round(self.ledger.spent_usd, 8),
            attr.BATCH_TOKENS_IN: usage.input_tokens,
            attr.BATCH_TOKENS_OUT: usage.output_tokens,
            attr.BATCH_LLM_CALLS: usage.llm_calls,
            attr.BATCH_CACHED_CALLS: usage.cached_calls,
        }

    def to_dict(self) -> dict[str, Any]:
        """``batch-summary.json``."""
        usage = self.usage
        return {
            "batch_id": self.batch_id,
            "status": self.status,
            "backend": self.backend,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "seconds": round(max(0.0, self.ended_at - self.started_at), 3),
            "budget": {**self.ledger.to_dict(), "max_usd": self.max_usd},
            "time_seconds": self.time_seconds,
            "projects": {"total": len(self.outcomes), **self.counts()},
            "usage": usage.to_dict(),
            "results": [o.row() for o in self.outcomes],
        }


class BatchDriver:
    """Runs ``jobs`` on ``backend`` under one budget of ``max_usd``.

    ``kept``: outcomes of projects that finished in an earlier attempt of the batch (not
    run again, in the result).  ``spent_before``: what each project spent before (the
    ledger starts from it).  ``on_outcome``: called in the driver as each project ends
    (the command line writes its outputs); an exception there is logged, never fatal.
    """

    def __init__(
        self,
        batch_id: str,
        jobs: Sequence[ProjectJob],
        backend: Backend,
        *,
        max_usd: float,
        max_parallel: int,
        time_seconds: float | None = None,
        kept: Sequence[ProjectOutcome] = (),
        spent_before: Mapping[str, float] | None = None,
        on_outcome: Callable[[ProjectOutcome], None] | None = None,
        progress_every: float = 2.0,
        stop_seconds: float = STOP_SECONDS,
    ) -> None:
        if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
            raise ValueError(f"max_parallel must be a whole number >= 1, got {max_parallel!r}")
        self.batch_id = batch_id
        self.jobs = list(jobs)
        self.backend = backend
        self.max_usd = float(max_usd)
        self.max_parallel = max_parallel
        self.time_seconds = time_seconds
        self.kept = list(kept)
        self.spent_before = dict(spent_before or {})
        self.on_outcome = on_outcome
        self.progress_every = progress_every
        self.stop_seconds = stop_seconds
        self.outcomes: dict[int, ProjectOutcome] = {o.position: o for o in self.kept}
        self.running: dict[asyncio.Future[ProjectOutcome], ProjectJob] = {}
        self.launched: dict[int, float] = {}
        """When each project was handed to the backend (its time, if it never reports)."""
        self.deadline: float | None = None
        self._started = 0.0
        self._done_here = 0

    @property
    def total(self) -> int:
        return len(self.jobs) + len(self.kept)

    async def run(self) -> BatchResult:
        """Run the batch to its end (or until cancelled: then ``interrupted``)."""
        self._started = time.time()
        if self.time_seconds is not None:
            self.deadline = self._started + self.time_seconds
        interrupted = False
        with events.traced_batch(
            self.batch_id, self.total, self.max_usd, self.time_seconds or 0.0, self.max_parallel, self.backend.name
        ) as span:
            services = BatchServices(self.batch_id, self.max_usd, self.spent_before, dict(span.carrier))
            try:
                await self.backend.open(services)
            except asyncio.CancelledError:
                interrupted = True
                _uncancel()
            except BaseException:
                await self._close_quietly()
                raise
            try:
                if not interrupted:
                    await self._loop()
            except asyncio.CancelledError:
                interrupted = True
                _uncancel()
                await self._stop()
            finally:
                ledger = await self._close_quietly()
                result = self._result(ledger, interrupted)
                span.set_attributes(result.span_attributes())
        return result

    # -- the loop ----------------------------------------------------------------------
    async def _loop(self) -> None:
        pending = deque(self.jobs)
        while pending or self.running:
            while pending and len(self.running) < self.max_parallel:
                job = pending.popleft()
                if self.deadline is not None and time.time() >= self.deadline:
                    self._record(
                        ProjectOutcome(
                            job.position,
                            job.name,
                            job.project_id,
                            NOT_STARTED,
                            error="the batch's time cap ran out before it started",
                        )
                    )
                    continue
                future = self.backend.launch(replace(job, deadline=self.deadline))
                self.running[future] = job
                self.launched[job.position] = time.time()
            if not self.running:
                break
            await self._progress()
            done, _ = await asyncio.wait(
                list(self.running), timeout=self.progress_every, return_when=asyncio.FIRST_COMPLETED
            )
            for future in done:
                self._settle(self.running.pop(future), future)
        await self._progress()

    def _settle(self, job: ProjectJob, future: asyncio.Future[ProjectOutcome]) -> None:
        try:
            outcome = future.result()
        except BaseException as exc:  # noqa: BLE001 - e.g. Ray gave up on a worker that kept dying
            message = " ".join(redact(str(exc) or type(exc).__name__).split())
            outcome = ProjectOutcome(
                job.position,
                job.name,
                job.project_id,
                ERROR,
                error=f"{type(exc).__name__}: {message}"[:300],
                ended_at=time.time(),
            )
        self._done_here += 1
        self._record(outcome)

    def _record(self, outcome: ProjectOutcome) -> None:
        self.outcomes[outcome.position] = outcome
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception:  # noqa: BLE001 - a display or write problem must not stop the batch
                logger.warning("handling the outcome of %s failed", outcome.name, exc_info=True)

    async def _stop(self) -> None:
        """Ctrl-C: the running projects checkpoint and return; projects not started stay
        unstarted (``batch resume`` runs them)."""
        self.backend.stop()
        if self.running:
            done, _ = await asyncio.wait(list(self.running), timeout=self.stop_seconds)
            for future in done:
                self._settle(self.running.pop(future), future)
            for future, job in list(self.running.items()):
                future.cancel()
                self._record(
                    ProjectOutcome(
                        job.position,
                        job.name,
                        job.project_id,
                        INTERRUPTED,
                        error="stopped before it could report",
                        started_at=self.launched.get(job.position, 0.0),
                        ended_at=time.time(),
                    )
                )
            self.running.clear()
        for job in self.jobs:
            if job.position not in self.outcomes:
                self._record(ProjectOutcome(job.position, job.name, job.project_id, NOT_STARTED))

    async def _progress(self) -> None:
        try:
            snapshot = await asyncio.wait_for(self.backend.snapshot(), 5.0)
        except Exception:  # noqa: BLE001 - the live view waits for the next one
            return
        if not events.batch_progress.receivers:
            return
        done = len(self.outcomes)
        failed = sum(1 for o in self.outcomes.values() if o.failed)
        eta = None
        if self._done_here:
            rate = self._done_here / max(1e-9, time.time() - self._started)
            eta = round((self.total - done) / rate, 1) if rate > 0 else None
        events.emit(
            events.batch_progress,
            batch_id=self.batch_id,
            total=self.total,
            done=done,
            running=len(self.running),
            failed=failed,
            spent_usd=snapshot.spent_usd,
            max_usd=self.max_usd,
            eta_seconds=eta,
        )

    async def _close_quietly(self) -> LedgerSnapshot:
        stopped = [o.project_id for o in self.outcomes.values() if o.status == INTERRUPTED and not o.kept]
        try:
            return await self.backend.close(stopped)
        except Exception:  # noqa: BLE001 - the result must still be reported
            logger.warning("closing the %s backend failed", self.backend.name, exc_info=True)
            return LedgerSnapshot(self.max_usd, math.nan, 0.0, 0, 0, 0.0, "the ledger was lost")

    def _result(self, ledger: LedgerSnapshot, interrupted: bool) -> BatchResult:
        outcomes = [self.outcomes[p] for p in sorted(self.outcomes)]
        return BatchResult(
            self.batch_id,
            self.backend.name,
            batch_status(outcomes, interrupted),
            self.max_usd,
            self.time_seconds,
            ledger,
            outcomes,
            self._started,
            time.time(),
            interrupted,
        )


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        while task.cancelling():
            task.uncancel()
