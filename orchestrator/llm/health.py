"""Model health: a circuit breaker per model, and the permanent exclusions.

Two kinds of trouble, two answers:

* **permanent** - the key was rejected (401/403), the model does not exist (404), the
  catalog forbids it (deprecated, no known price): the model is out for the rest of the
  run, at once, and stays out;
* **transient** - timeouts, 429, 5xx, malformed answers: ``threshold`` such failures in
  a row (counted over every call of the model, concurrent ones included; any answer
  resets the count) **open** the model's breaker.  While it is open nothing is sent to
  the model: calls wait for the cool-down (``cooldown`` seconds, doubling after each
  failed probe up to ``cooldown_max``), then one call goes as the **probe** (half-open)
  while the others wait for its outcome: an answer closes the breaker, a failure opens
  it again.  A model cooling down is still usable - a task whose only model it is waits
  rather than fails - but routing puts it after the healthy candidates.

Waiting is bounded by the run's time budget (a wait that cannot end in time fails the
call as a transient ``CircuitOpen`` error instead).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .. import events
from ..domain.errors import OrchestratorError

T = TypeVar("T")

logger = logging.getLogger("orchestrator.client")

DEFAULT_THRESHOLD = 6
"""Consecutive transient failures that open a breaker: two calls' worth of attempts with
the client's default 2 retries, so remediation's auto_retry gets its turn first."""
DEFAULT_COOLDOWN = 15.0
DEFAULT_COOLDOWN_MAX = 120.0


class CircuitOpen(OrchestratorError):
    """A call could not wait for the model's breaker to close within the time left."""


@dataclass
class _Breaker:
    failures: int = 0
    open: bool = False
    opened_at: float = 0.0
    cooldown: float = DEFAULT_COOLDOWN
    probing: bool = False
    reason: str = ""
    settled: asyncio.Event | None = field(default=None, repr=False)
    """Set when a probe ends (whatever its outcome); waiters then look again."""


class ModelHealth:
    """The health of every model a client calls; see the module docstring."""

    def __init__(
        self,
        *,
        threshold: int = DEFAULT_THRESHOLD,
        cooldown: float = DEFAULT_COOLDOWN,
        cooldown_max: float = DEFAULT_COOLDOWN_MAX,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = max(1, threshold)
        self.cooldown = cooldown
        self.cooldown_max = max(cooldown, cooldown_max)
        self._sleep = sleep
        self._clock = clock
        self.unhealthy: dict[str, str] = {}
        """Models out for the rest of the run, with the reason."""
        self._breakers: dict[str, _Breaker] = {}

    # -- state -----------------------------------------------------------------------
    def cooling_down(self, model: str) -> bool:
        """The model's breaker is open (it failed repeatedly and is not yet known to be back)."""
        breaker = self._breakers.get(model)
        return breaker is not None and breaker.open

    def failures(self, model: str) -> int:
        breaker = self._breakers.get(model)
        return breaker.failures if breaker is not None else 0

    def mark_unhealthy(self, model: str, reason: str) -> None:
        """Out for the rest of the run (a permanent error); once, with one event."""
        if model not in self.unhealthy:
            self.unhealthy[model] = reason
            logger.warning("model %s marked unhealthy for the rest of the run: %s", model, reason)
            events.emit(events.model_unhealthy, model=model, reason=reason)
        breaker = self._breakers.get(model)
        if breaker is not None:
            self._settle_probe(breaker)

    # -- around each attempt -----------------------------------------------------------
    async def admit(self, model: str, time_left: Callable[[], float] | None = None) -> bool:
        """Wait until an attempt on ``model`` may be sent.  True when this attempt is the
        half-open probe.  Raises :class:`CircuitOpen` when the wait would outlast
        ``time_left()`` (seconds) - the run's time budget."""
        while True:
            breaker = self._breakers.get(model)
            if breaker is None or not breaker.open or model in self.unhealthy:
                return False
            remaining = breaker.opened_at + breaker.cooldown - self._clock()
            if remaining > 0:
                if time_left is not None and remaining >= time_left() - 1.0:
                    raise CircuitOpen(
                        f"{model} is cooling down after repeated failures ({breaker.reason}); "
                        f"{remaining:.1f}s left of its cool-down is more than the time left"
                    )
                opened = breaker.opened_at
                await self._sleep(remaining)
                if breaker.opened_at != opened or not breaker.open:
                    continue  # a probe ended meanwhile: look again
                # waited the cool-down out (also when an injected sleep does not move the clock)
                breaker.opened_at = min(opened, self._clock() - breaker.cooldown)
            if not breaker.probing:
                breaker.probing = True
                breaker.settled = asyncio.Event()
                return True
            settled = breaker.settled
            if settled is not None:
                await settled.wait()

    def succeeded(self, model: str, probe: bool = False) -> None:
        """An answer came back: the count resets and an open breaker closes."""
        breaker = self._breakers.get(model)
        if breaker is None:
            return
        breaker.failures = 0
        if breaker.open:
            logger.info("model %s answered again: its circuit breaker is closed", model)
            breaker.open, breaker.cooldown, breaker.reason = False, self.cooldown, ""
        if probe:
            self._settle_probe(breaker)

    def failed(self, model: str, *, transient: bool, fatal: bool, reason: str, probe: bool = False) -> None:
        """A failed attempt: permanent errors exclude the model; transient ones count
        toward (or, for a probe, re-open) its breaker; other errors (a rejected request)
        say nothing about the model's health but that it answered."""
        if fatal:
            self.mark_unhealthy(model, reason)
            return
        if not transient:
            self.succeeded(model, probe)
            return
        breaker = self._breakers.setdefault(model, _Breaker(cooldown=self.cooldown))
        breaker.failures += 1
        if probe:
            breaker.cooldown = min(self.cooldown_max, breaker.cooldown * 2)
            breaker.opened_at, breaker.reason = self._clock(), reason
            logger.warning("model %s: probe failed (%s); next probe in %.0fs", model, reason, breaker.cooldown)
            self._settle_probe(breaker)
        elif not breaker.open and breaker.failures >= self.threshold:
            breaker.open, breaker.opened_at = True, self._clock()
            breaker.reason = f"{breaker.failures} consecutive failures, last {reason}"
            logger.warning(
                "model %s: circuit breaker open after %s; probe in %.0fs", model, breaker.reason, breaker.cooldown
            )
            events.emit(
                events.model_unhealthy,
                model=model,
                reason=f"{breaker.reason}; probed again after a {breaker.cooldown:g}s cool-down",
            )

    async def through(
        self, model: str, time_left: Callable[[], float] | None, attempt: Callable[[], Awaitable[T]]
    ) -> T:
        """One attempt through the model's circuit breaker: wait while it is open (the
        half-open probe goes alone), and tell it the outcome.  A breaker that stays open
        past the time left is a transient ``CircuitOpen`` provider error."""
        from .providers.base import ProviderError

        try:
            probe = await self.admit(model, time_left)
        except CircuitOpen as exc:
            raise ProviderError(str(exc), transient=True, error_type="CircuitOpen") from None
        told = False
        try:
            result = await attempt()
            told = True
            self.succeeded(model, probe)
            return result
        except ProviderError as exc:
            told = True
            self.failed(
                model,
                transient=exc.transient,
                fatal=exc.fatal_for_model,
                reason=f"{exc.error_type}: {exc}",
                probe=probe,
            )
            raise
        finally:
            if not told:  # refused for money or time, or cancelled: no news of the model
                self.abandoned(model, probe)

    def abandoned(self, model: str, probe: bool) -> None:
        """The attempt ended without an outcome (cancelled): a probe lets the next caller probe."""
        breaker = self._breakers.get(model)
        if probe and breaker is not None:
            self._settle_probe(breaker)

    @staticmethod
    def _settle_probe(breaker: _Breaker) -> None:
        breaker.probing = False
        if breaker.settled is not None:
            breaker.settled.set()
            breaker.settled = None
