"""A call and the budget: its reservation before it is sent, its cost afterwards, and
the ``budget_warning`` events that tell observers how the money goes.

The guarantee (see :class:`~orchestrator.domain.budget.Budget`): a call is sent only
once its worst case is reserved, and the worst case is a true upper bound for an honest
provider (:mod:`.costing`, :mod:`.pricing`), so spend never exceeds the cap.  A provider
that reports more usage than that bound is booked as reported, a ``budget_warning``
whose reason starts with ``overrun`` is sent, and no new call is admitted.

A run of a batch also reserves in the batch's shared pool (:func:`reserve_shared`), after
its own budget: a call is sent only when both hold its worst case, so neither the
project's cap nor the batch's is exceeded.  A pool that cannot answer refuses the call.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from .. import events
from ..domain.budget import Budget, Phase, PoolUnavailable
from .errors import BudgetExceededError, TimeBudgetExceededError
from .model_info import ModelInfo
from .providers.base import ProviderResponse

logger = logging.getLogger("orchestrator.client")

WARN_FRACTIONS = (0.5, 0.8, 0.95)
"""Spend fractions a ``budget_warning`` is sent for, once each."""


def _fraction(budget: Budget) -> float:
    return budget.spent_usd / budget.max_usd if budget.max_usd else 1.0


def reserve(budget: Budget, model: str, worst: float) -> None:
    """Hold the call's worst case, or refuse it (nothing is sent) for money or time."""
    if budget.remaining_seconds < 1.0:
        raise TimeBudgetExceededError(f"{budget.remaining_seconds:.1f}s left of the time budget; {model} not called")
    if budget.overrun is not None:
        raise BudgetExceededError(f"the budget is halted after an overrun ({budget.overrun}); {model} not called")
    if not budget.reserve(worst):
        events.emit(
            events.budget_warning,
            spent_usd=budget.spent_usd,
            max_usd=budget.max_usd,
            fraction=_fraction(budget),
            reason=f"call to {model} refused: worst case ${worst:.6f} > remaining ${budget.remaining_usd:.6f}",
        )
        raise BudgetExceededError(
            f"worst-case cost ${worst:.6f} of {model} exceeds the remaining ${budget.remaining_usd:.6f}"
        )


async def reserve_shared(budget: Budget, model: str, worst: float) -> object | None:
    """After :func:`reserve`: hold the worst case in the budget's shared pool too (a
    batch's ledger).  Returns the pool's ticket (None without a pool).  When the pool
    refuses or cannot answer, or the wait is cancelled, the run's own reservation is
    given back and nothing is sent."""
    pool = budget.pool
    if pool is None:
        return None
    try:
        ticket = await pool.reserve(worst)
    except asyncio.CancelledError:
        budget.release(worst)
        raise
    except PoolUnavailable as exc:
        budget.release(worst)
        events.emit(
            events.budget_warning,
            spent_usd=budget.spent_usd,
            max_usd=budget.max_usd,
            fraction=_fraction(budget),
            reason=f"call to {model} refused: the batch budget cannot be asked ({exc})",
        )
        raise BudgetExceededError(f"the batch budget cannot be asked ({exc}); {model} not called") from None
    if ticket is None:
        budget.release(worst)
        events.emit(
            events.budget_warning,
            spent_usd=budget.spent_usd,
            max_usd=budget.max_usd,
            fraction=_fraction(budget),
            reason=f"call to {model} refused: worst case ${worst:.6f} is more than the batch budget has left",
        )
        raise BudgetExceededError(f"worst-case cost ${worst:.6f} of {model} exceeds what the batch budget has left")
    return ticket


def settle_shared(budget: Budget, ticket: object | None, cost: float) -> None:
    """Book the call's cost in the shared pool against its ticket (never raises)."""
    if ticket is None or budget.pool is None:
        return
    try:
        budget.pool.settle(ticket, cost)
    except Exception:  # noqa: BLE001 - a pool that is gone keeps the reservation: it counts as spent
        logger.warning("the batch ledger could not book a call's cost; its reservation stays spent")


def settle(budget: Budget, model: str, worst: float, cost: float, phase: Phase) -> None:
    """Book the call's cost against its reservation; warn on an overrun and at the
    warning fractions."""
    if not budget.settle(worst, cost, phase):
        # the provider reported more usage than the worst case allowed: booked as reported
        # (spend is never hidden), and the budget admits no new call
        logger.warning("%s cost $%.6f, above its reservation $%.6f: no new call will be sent", model, cost, worst)
        events.emit(
            events.budget_warning,
            spent_usd=budget.spent_usd,
            max_usd=budget.max_usd,
            fraction=_fraction(budget),
            reason=f"overrun: {model} reported usage costing ${cost:.6f}, above its reservation "
            f"${worst:.6f}; no new call is sent",
        )
    if budget.max_usd <= 0:
        return
    fraction = _fraction(budget)
    crossed = [f for f in WARN_FRACTIONS if budget.warned_fraction < f <= fraction]
    if crossed:
        budget.warned_fraction = crossed[-1]
        events.emit(
            events.budget_warning,
            spent_usd=budget.spent_usd,
            max_usd=budget.max_usd,
            fraction=fraction,
            reason=f"spent {crossed[-1]:.0%} of the budget",
        )


def call_cost(info: ModelInfo, raw: ProviderResponse, sent_at: datetime) -> float:
    """The call's cost from the usage the provider reported, priced at ``sent_at``."""
    if not info.price_known:  # only without a USD budget (refused under one)
        logger.warning("%s has no known price: its cost is not counted", info.name)
        return 0.0
    tokens_in = max(0, raw.input_tokens)
    cache_read = min(max(0, raw.cache_read_tokens), tokens_in)
    cache_write = min(max(0, raw.cache_write_tokens), tokens_in - cache_read)
    return info.cost(
        tokens_in, max(0, raw.output_tokens), cache_read_tokens=cache_read, cache_write_tokens=cache_write, at=sent_at
    )
