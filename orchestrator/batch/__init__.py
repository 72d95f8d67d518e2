"""Batches: many projects under one hard budget, in one process or on a Ray cluster.

* :mod:`.ledger` - :class:`BatchLedger`, the batch's one budget (the reserve/settle
  contract of :class:`~orchestrator.domain.budget.Budget`, exact sums, per attempt);
* :mod:`.pool` - how a project's budget reaches it (in this process or from a worker);
* :mod:`.jobs` - a project to run, how it ended, who builds its engine;
* :mod:`.worker` - one project run to its end wherever a backend put it;
* :mod:`.backend` - the backend protocol and the local backend (asyncio, no new dependency);
* :mod:`.ray_backend` - the Ray backend (the ``ray`` extra; the only module importing ``ray``);
* :mod:`.relay` - Ray workers' events back to the driver;
* :mod:`.driver` - what runs when, the batch's events, the result.

An emitter like the engine: it sends ``batch_started``/``batch_finished`` and
``batch_progress`` on the bus and never imports observers or OpenTelemetry.

Python::

    from orchestrator.batch import BatchDriver, LocalBackend, ProjectJob
    result = asyncio.run(BatchDriver("batch-1", jobs, LocalBackend(factory, store), max_usd=5.0,
                                     max_parallel=4).run())
"""

from __future__ import annotations

from .backend import Backend, BatchServices, LocalBackend
from .driver import BatchDriver, BatchResult
from .jobs import ProjectFactory, ProjectJob, ProjectOutcome
from .ledger import BatchLedger, LedgerSnapshot

__all__ = [
    "Backend",
    "BatchDriver",
    "BatchLedger",
    "BatchResult",
    "BatchServices",
    "LedgerSnapshot",
    "LocalBackend",
    "ProjectFactory",
    "ProjectJob",
    "ProjectOutcome",
]
