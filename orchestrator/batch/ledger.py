"""The batch ledger: one hard budget for every project of a batch, in every process.

It keeps the contract of :class:`~orchestrator.domain.budget.Budget`: a call's worst case
is reserved before it is sent and its real cost settled afterwards; a reservation is
admitted only while spent + held + it <= the cap, computed on exact sums
(:class:`~orchestrator.domain.budget.ExactSum`), so projects running at once - in one
process or on many machines - can never together overshoot it; a cost above its
reservation is booked as reported and halts the ledger.

What a single run's budget does not need, and why:

* **Holders.** Every reservation belongs to a *holder*: one attempt of one project (one
  run in one worker process).  A worker can die mid-call, and then its reservations can
  never be settled - the call may have been sent and paid.  So they are booked as spent,
  at their worst case, when the project's next attempt begins (:meth:`begin`) or when
  the batch ends (:meth:`close`).  Spend is never under-counted, and since every hold was
  admitted under the cap, spent <= cap keeps holding whoever dies when.
* **Per project.** The ledger knows what each project has spent in every attempt
  (settled and abandoned), so a project retried after a worker died resumes with at
  least that much spent against its own cap: per-project caps hold across kills too.
* **Late news is ignored.**  A settle for a reservation that was already booked as
  abandoned changes nothing (its worst case is already spent).

The ledger is plain, synchronous and single-owner: in the local backend it lives in the
driver's process; on Ray one actor owns it (calls run one at a time), see
:mod:`.ray_backend`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..domain.budget import ExactSum

__all__ = ["BatchLedger", "LedgerSnapshot"]


@dataclass(frozen=True)
class _Hold:
    holder: str
    project_id: str
    amount: float


@dataclass(frozen=True)
class LedgerSnapshot:
    """The ledger at one moment (JSON-ready with :meth:`to_dict`)."""

    max_usd: float
    spent_usd: float
    held_usd: float
    reservations: int
    refused: int
    abandoned_usd: float
    overrun: str | None = None
    projects: dict[str, float] = field(default_factory=dict)

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.max_usd - math.fsum([self.spent_usd, self.held_usd]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_usd": self.max_usd,
            "spent_usd": round(self.spent_usd, 8),
            "held_usd": round(self.held_usd, 8),
            "remaining_usd": round(self.remaining_usd, 8),
            "reservations": self.reservations,
            "refused": self.refused,
            "abandoned_usd": round(self.abandoned_usd, 8),
            **({"overrun": self.overrun} if self.overrun else {}),
        }


class BatchLedger:
    """The money of a batch.  ``spent_before``: what each project spent in earlier
    attempts of the batch (a resumed batch goes on from there)."""

    def __init__(self, max_usd: float, spent_before: Mapping[str, float] | None = None) -> None:
        if not (0 <= max_usd < math.inf):
            raise ValueError(f"the batch budget must be a finite number >= 0 USD, got {max_usd!r}")
        self.max_usd = float(max_usd)
        self._spent = ExactSum()
        self._held = ExactSum()
        self._abandoned = ExactSum()
        self._holds: dict[str, _Hold] = {}
        self._project: dict[str, ExactSum] = {}
        self._current: dict[str, str] = {}  # project id -> its live holder
        self._lock = threading.Lock()
        self.overrun: str | None = None
        self.reservations = 0
        self.refused = 0
        for project_id, usd in (spent_before or {}).items():
            usd = float(usd)
            if math.isfinite(usd) and usd > 0:
                self._spent.add(usd)
                self._project_sum(project_id).add(usd)

    # -- attempts ----------------------------------------------------------------------
    def begin(self, project_id: str, holder: str) -> float:
        """A new attempt (``holder``) of ``project_id`` starts: the reservations its
        earlier attempts still hold are booked as spent (that worker is gone).  Returns
        what the project has spent in all attempts so far."""
        with self._lock:
            previous = self._current.get(project_id)
            if previous is not None and previous != holder:
                self._abandon(previous)
            self._current[project_id] = holder
            return self._project_sum(project_id).value()

    def abandon(self, holder: str) -> float:
        """Book every reservation ``holder`` still holds as spent, at its worst case (its
        worker died: the calls may have been paid).  Returns the amount."""
        with self._lock:
            return self._abandon(holder)

    def close(self) -> float:
        """The batch ends: whatever is still held is booked as spent.  Returns the amount."""
        with self._lock:
            holders = {h.holder for h in self._holds.values()}
            return math.fsum(self._abandon(h) for h in holders)

    # -- calls -------------------------------------------------------------------------
    def reserve(self, holder: str, project_id: str, rid: str, amount: float) -> bool:
        """Hold ``amount`` for a call of ``project_id`` about to be sent (``rid``: the
        caller's id for it); False (nothing held) when it does not fit, after an overrun,
        or for an amount that is not a finite number >= 0."""
        with self._lock:
            if self.overrun is not None or not (0 <= amount < math.inf) or rid in self._holds:
                self.refused += 1
                return False
            if math.fsum([*self._spent.partials, *self._held.partials, amount]) > self.max_usd:
                self.refused += 1
                return False
            self._held.add(float(amount))
            self._holds[rid] = _Hold(holder, project_id, float(amount))
            self.reservations += 1
            return True

    def settle(self, rid: str, actual: float) -> None:
        """Release reservation ``rid`` and book the call's real cost, as reported.  A cost
        above the reservation halts the ledger (nothing is admitted after it).  An unknown
        ``rid`` (refused, or already booked as abandoned) changes nothing."""
        with self._lock:
            hold = self._holds.pop(rid, None)
            if hold is None:
                return
            self._held.add(-hold.amount)
            actual = float(actual) if math.isfinite(actual) and actual > 0 else 0.0
            self._spent.add(actual)
            self._project_sum(hold.project_id).add(actual)
            if actual > hold.amount:
                self.overrun = self.overrun or (
                    f"a call of {hold.project_id} cost ${actual:.6f}, above its reservation ${hold.amount:.6f}"
                )

    # -- reading -----------------------------------------------------------------------
    @property
    def spent_usd(self) -> float:
        return self._spent.value()

    @property
    def held_usd(self) -> float:
        return max(0.0, self._held.value())

    def project_spent(self, project_id: str) -> float:
        with self._lock:
            return self._project_sum(project_id).value()

    def snapshot(self) -> LedgerSnapshot:
        with self._lock:
            return LedgerSnapshot(
                max_usd=self.max_usd,
                spent_usd=self._spent.value(),
                held_usd=max(0.0, self._held.value()),
                reservations=self.reservations,
                refused=self.refused,
                abandoned_usd=self._abandoned.value(),
                overrun=self.overrun,
                projects={p: s.value() for p, s in self._project.items()},
            )

    # -- inside the lock -----------------------------------------------------------------
    def _project_sum(self, project_id: str) -> ExactSum:
        total = self._project.get(project_id)
        if total is None:
            total = self._project[project_id] = ExactSum()
        return total

    def _abandon(self, holder: str) -> float:
        booked = []
        for rid, hold in list(self._holds.items()):
            if hold.holder != holder:
                continue
            del self._holds[rid]
            self._held.add(-hold.amount)
            self._spent.add(hold.amount)
            self._abandoned.add(hold.amount)
            self._project_sum(hold.project_id).add(hold.amount)
            booked.append(hold.amount)
        return math.fsum(booked)
