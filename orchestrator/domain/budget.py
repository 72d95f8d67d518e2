"""The budget: USD and wall-clock caps, with reservations so concurrent calls cannot overshoot."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    """Where money goes; the budget keeps spend per phase."""

    DECOMPOSITION = "decomposition"
    GENERATION = "generation"
    CROSS_REVIEW = "cross_review"
    EVALUATION = "evaluation"


CALL_TYPE_PHASE: dict[str, Phase] = {
    "decompose": Phase.DECOMPOSITION,
    "generate": Phase.GENERATION,
    "revise": Phase.GENERATION,
    "critique": Phase.CROSS_REVIEW,
    "evaluate": Phase.EVALUATION,
}


class Budget:
    """USD and wall-clock caps that are never exceeded.

    Callers ``reserve`` the worst-case cost of a call before sending it and ``settle``
    the real cost afterwards, so concurrent calls cannot together overshoot the cap.
    """

    def __init__(self, max_usd: float = 8.0, max_time_seconds: float = 5400.0) -> None:
        if max_usd < 0 or max_time_seconds <= 0:
            raise ValueError("budget must be >= 0 USD and time > 0 seconds")
        self.max_usd = float(max_usd)
        self.max_time_seconds = float(max_time_seconds)
        self.spent_usd = 0.0
        self.reserved_usd = 0.0
        self.phase_spend: dict[str, float] = {p.value: 0.0 for p in Phase}
        self._started = time.monotonic()

    def restart_clock(self, already_elapsed: float = 0.0) -> None:
        """Start counting now; ``already_elapsed`` seconds (earlier attempts of a resumed
        run) count against the time cap too."""
        self._started = time.monotonic() - max(0.0, already_elapsed)

    def restore_spend(self, spent_usd: float, phase_spend: dict[str, float]) -> None:
        """Carry on from what earlier attempts of a resumed run spent."""
        self.spent_usd = float(spent_usd)
        for phase, usd in phase_spend.items():
            self.phase_spend[phase] = float(usd)

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.max_usd - self.spent_usd - self.reserved_usd)

    @property
    def elapsed_seconds(self) -> float:
        return time.monotonic() - self._started

    @property
    def remaining_seconds(self) -> float:
        return max(0.0, self.max_time_seconds - self.elapsed_seconds)

    def can_afford(self, cost: float) -> bool:
        return cost <= self.remaining_usd + 1e-12

    def reserve(self, cost: float) -> bool:
        """Hold ``cost`` for a call about to be sent; False (nothing held) if it does not fit."""
        if not self.can_afford(cost):
            return False
        self.reserved_usd += cost
        return True

    def settle(self, reserved: float, actual: float, phase: Phase | str) -> None:
        """Release a reservation and book the real cost (never above the reservation's cap)."""
        self.reserved_usd = max(0.0, self.reserved_usd - reserved)
        self.spent_usd += actual
        key = phase.value if isinstance(phase, Phase) else phase
        self.phase_spend[key] = self.phase_spend.get(key, 0.0) + actual

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_usd": self.max_usd, "spent_usd": round(self.spent_usd, 8),
            "remaining_usd": round(self.remaining_usd, 8),
            "max_time_seconds": self.max_time_seconds,
            "elapsed_seconds": round(self.elapsed_seconds, 3), "phase_spend": dict(self.phase_spend),
        }
