"""The budget: USD and wall-clock caps, with reservations so concurrent calls cannot overshoot."""

from __future__ import annotations

import math
import time
from enum import StrEnum
from typing import Protocol

from .errors import OrchestratorError
from .values import JsonObject


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


class ExactSum:
    """A running sum of floats kept exact (Shewchuk's non-overlapping partials, as in
    :func:`math.fsum`): adding and then subtracting a reservation leaves no rounding
    residue, and the budget compares correctly rounded exact sums, so its guarantee
    holds exactly, not within an epsilon."""

    __slots__ = ("_partials",)

    def __init__(self) -> None:
        self._partials: list[float] = []

    def add(self, x: float) -> None:
        partials = self._partials
        i = 0
        for y in partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                partials[i] = lo
                i += 1
            x = hi
        partials[i:] = [x]

    def value(self) -> float:
        """The exact sum, correctly rounded."""
        return math.fsum(self._partials)

    @property
    def partials(self) -> tuple[float, ...]:
        """Floats whose exact sum is this sum."""
        return tuple(self._partials)


class SharedPool(Protocol):
    """Money shared with other runs: a batch's ledger (``orchestrator.batch``), possibly
    in another process or on another machine.

    A run with a pool reserves every call twice: first against its own :class:`Budget`
    (its own cap), then here (the batch's cap); the call is sent only when both hold it.
    ``reserve`` returns a ticket, or None when the pool's cap cannot cover ``amount``; it
    raises :class:`PoolUnavailable` when the pool cannot answer (then no call starts).
    ``settle`` books the call's real cost against its ticket; it never raises and never
    waits (a pool that is gone keeps the reservation, which counts as spent).
    """

    async def reserve(self, amount: float) -> object | None: ...

    def settle(self, ticket: object, actual: float) -> None: ...


class PoolUnavailable(OrchestratorError):
    """A shared pool (the batch ledger) could not be asked; no call may start."""


class Budget:
    """USD and wall-clock caps that are never exceeded by an honest provider.

    Callers ``reserve`` the worst-case cost of a call before sending it and ``settle``
    the real cost afterwards, so concurrent calls cannot together overshoot the cap:
    a reservation is admitted only while spent + held + it <= max (exactly), and a call
    that costs at most its reservation keeps that true.  A call that cost more (a
    provider reporting more usage than the worst case allowed) is booked as reported -
    spend is never hidden - and halts the budget: no reservation is admitted after it.
    """

    def __init__(
        self, max_usd: float = 8.0, max_time_seconds: float = 5400.0, *, pool: SharedPool | None = None
    ) -> None:
        if not (0 <= max_usd < math.inf) or not (0 < max_time_seconds < math.inf):
            raise ValueError(
                f"budget must be a finite number >= 0 USD and time a finite number > 0 seconds, "
                f"got {max_usd!r} USD and {max_time_seconds!r} s"
            )
        self.max_usd = float(max_usd)
        self.max_time_seconds = float(max_time_seconds)
        self._spent = ExactSum()
        self._held = ExactSum()
        self.phase_spend: dict[str, float] = {p.value: 0.0 for p in Phase}
        self.overrun: str | None = None
        """Set when a call cost more than its reservation; from then on nothing is admitted."""
        self.warned_fraction = 0.0
        """The highest spend fraction a ``budget_warning`` was sent for."""
        self._started = time.monotonic()
        self.pool = pool
        """Money shared with other runs (a batch's ledger): every call is reserved there too."""

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
    def spent_usd(self) -> float:
        return self._spent.value()

    @spent_usd.setter
    def spent_usd(self, value: float) -> None:  # a resumed run starts from what was spent
        self._spent = ExactSum()
        self._spent.add(float(value))

    @property
    def reserved_usd(self) -> float:
        return max(0.0, self._held.value())

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.max_usd - math.fsum([self.spent_usd, self.reserved_usd]))

    @property
    def elapsed_seconds(self) -> float:
        return time.monotonic() - self._started

    @property
    def remaining_seconds(self) -> float:
        return max(0.0, self.max_time_seconds - self.elapsed_seconds)

    def can_afford(self, cost: float) -> bool:
        """Whether a call of worst case ``cost`` would be admitted now."""
        if self.overrun is not None or not (0 <= cost < math.inf):
            return False
        # the exact spent + held + cost, correctly rounded, <= max.  Rounding is monotonic,
        # so as long as every call costs at most its reservation, the rounded spend (and
        # spend + held) stays <= max: spent_usd <= max_usd holds exactly, not within an epsilon
        return math.fsum([*self._spent.partials, *self._held.partials, cost]) <= self.max_usd

    def reserve(self, cost: float) -> bool:
        """Hold ``cost`` for a call about to be sent; False (nothing held) if it does not
        fit, or after an overrun."""
        if not self.can_afford(cost):
            return False
        self._held.add(float(cost))
        return True

    def release(self, reserved: float) -> None:
        """Give back a reservation whose call was never sent (nothing is booked)."""
        self._held.add(-float(reserved))

    def settle(self, reserved: float, actual: float, phase: Phase | str) -> bool:
        """Release a reservation and book the real cost, as reported.  False when the cost
        was above the reservation (an overrun: the budget halts, see :attr:`overrun`)."""
        self._held.add(-float(reserved))
        actual = float(actual) if math.isfinite(actual) and actual > 0 else 0.0
        self._spent.add(actual)
        key = phase.value if isinstance(phase, Phase) else phase
        self.phase_spend[key] = self.phase_spend.get(key, 0.0) + actual
        if actual > reserved:
            self.overrun = self.overrun or (f"a call cost ${actual:.6f}, above its reservation ${reserved:.6f}")
            return False
        return True

    def to_dict(self) -> JsonObject:
        return {
            "max_usd": self.max_usd,
            "spent_usd": round(self.spent_usd, 8),
            "remaining_usd": round(self.remaining_usd, 8),
            "max_time_seconds": self.max_time_seconds,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "phase_spend": dict(self.phase_spend),
            **({"overrun": self.overrun} if self.overrun else {}),
        }
