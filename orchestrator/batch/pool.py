"""How a project's budget reaches the batch ledger: the :class:`~orchestrator.domain.budget.SharedPool`
a project's :class:`~orchestrator.domain.budget.Budget` holds, over a :class:`LedgerAccess`
(the ledger itself in the driver's process, or its Ray actor from a worker).

Why reservation ids are made here: a reservation whose wait is cancelled (Ctrl-C, a task
cancelled) may have been granted without the caller hearing of it.  The caller knows
the id it asked with, so it settles that id at $0 right away: the ledger releases the
hold if it was granted, and ignores the settle if not.  (On Ray, calls from one caller to
an actor run in the order sent, so the settle never overtakes its reserve.)
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Protocol

from ..domain.budget import PoolUnavailable
from .ledger import BatchLedger, LedgerSnapshot

__all__ = ["LedgerAccess", "LedgerPool", "InProcessLedger", "PoolUnavailable"]


class LedgerAccess(Protocol):
    """The batch ledger's operations, as a worker reaches them."""

    async def begin(self, project_id: str, holder: str) -> float: ...

    async def reserve(self, holder: str, project_id: str, rid: str, amount: float) -> bool: ...

    def settle(self, rid: str, actual: float) -> None: ...

    async def snapshot(self) -> LedgerSnapshot: ...


class InProcessLedger:
    """The ledger in this process (the local backend: one process, one event loop)."""

    def __init__(self, ledger: BatchLedger) -> None:
        self.ledger = ledger

    async def begin(self, project_id: str, holder: str) -> float:
        return self.ledger.begin(project_id, holder)

    async def reserve(self, holder: str, project_id: str, rid: str, amount: float) -> bool:
        return self.ledger.reserve(holder, project_id, rid, amount)

    def settle(self, rid: str, actual: float) -> None:
        self.ledger.settle(rid, actual)

    async def snapshot(self) -> LedgerSnapshot:
        return self.ledger.snapshot()


_ids = itertools.count(1)


class LedgerPool:
    """One attempt of one project, as a shared pool for its budget."""

    def __init__(self, access: LedgerAccess, project_id: str, holder: str) -> None:
        self.access = access
        self.project_id = project_id
        self.holder = holder
        self._prefix = f"{holder}:{os.getpid()}:"

    async def reserve(self, amount: float) -> object | None:
        rid = f"{self._prefix}{next(_ids)}"
        try:
            granted = await self.access.reserve(self.holder, self.project_id, rid, amount)
        except asyncio.CancelledError:
            self.access.settle(rid, 0.0)  # granted or not, nothing was sent
            raise
        except PoolUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the transport says, the answer is unknown
            self.access.settle(rid, 0.0)
            raise PoolUnavailable(f"{type(exc).__name__}: {exc}") from None
        return rid if granted else None

    def settle(self, ticket: object, actual: float) -> None:
        self.access.settle(str(ticket), actual)
