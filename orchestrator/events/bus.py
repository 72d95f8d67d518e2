"""The bus itself: :class:`BusSignal` (strong connections, receivers isolated from each
other's exceptions, delivery) and whether anything listens at all.

Receivers are connected strongly by default (blinker's weak default silently drops bound
methods of observers nobody else holds) and a receiver that raises - anything,
``CancelledError`` included - is logged once and skipped, so a broken observer never
breaks a run or starves other observers.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar

from blinker import ANY, Signal

from ..redaction import redact
from .payloads import Event, PointEvent

__all__ = ["BusSignal", "PointSignal", "is_active"]

logger = logging.getLogger("orchestrator.events")

Receiver = Callable[..., Any]
F = TypeVar("F", bound=Receiver)
P = ParamSpec("P")
E = TypeVar("E", bound=PointEvent)

_NOT_CONTAINED = (KeyboardInterrupt, SystemExit, GeneratorExit)

_ACTIVE = False  # True while at least one receiver is connected to any bus signal
_FAILED_RECEIVERS: weakref.WeakSet[Any] = weakref.WeakSet()  # logged once each; an id could be reused
_SIGNALS: weakref.WeakSet[BusSignal] = weakref.WeakSet()  # every bus signal, for _refresh_active


class BusSignal(Signal):
    """A blinker signal that connects strongly, calls receivers in connection order and
    isolates receivers from each other's exceptions."""

    def __init__(self, name: str, doc: str, payload_type: type[Event]) -> None:
        super().__init__(doc)
        self.name = name
        self.payload_type = payload_type
        self._snapshot: tuple[Any, ...] | None = None
        _SIGNALS.add(self)

    def __repr__(self) -> str:
        return f"<BusSignal {self.name}>"

    def connect(self, receiver: F, sender: Any = ANY, weak: bool = False) -> F:
        result = super().connect(receiver, sender, weak=weak)
        self._snapshot = None
        _refresh_active()
        return result

    def disconnect(self, receiver: Receiver, sender: Any = ANY) -> None:
        super().disconnect(self._stored(receiver), sender)
        self._snapshot = None
        _refresh_active()

    def _stored(self, receiver: Receiver) -> Receiver:
        """The connected object equal to ``receiver``: blinker keys a builtin bound method
        (``events_list.append``) by the id of the method object, which is new at every
        attribute access, so ``disconnect(lst.append)`` would silently leave it connected."""
        live = [r() if isinstance(r, weakref.ref) else r for r in self.receivers.values()]
        for stored in live:
            if stored is receiver:
                return receiver
        for stored in live:
            if stored is not None and stored == receiver:
                return stored
        return receiver

    def send(self, sender: Any = None, /, *, _async_wrapper: Any = None,
             **kwargs: Any) -> list[tuple[Receiver, Any]]:
        """Deliver ``sender`` (the payload) to every receiver; a raising receiver is
        logged once and does not stop the others."""
        if self.is_muted:
            return []
        receivers = self._snapshot
        if receivers is None:  # rebuilt after each connect/disconnect, not on every send
            receivers = self._snapshot = tuple(self.receivers.values())
        results: list[tuple[Receiver, Any]] = []
        for receiver in receivers:
            if isinstance(receiver, weakref.ref):  # WeakMethod too
                receiver = receiver()  # a live weakref, or None when collected
                if receiver is None:
                    continue
            try:
                value = receiver(sender, **kwargs) if kwargs else receiver(sender)
            except _NOT_CONTAINED:
                raise
            except (Exception, asyncio.CancelledError) as exc:  # a broken observer must never break the run
                _report_failure(self.name, receiver, exc)
                continue
            results.append((receiver, value))
        return results

    def _deliver(self, payload: Event) -> None:
        """:meth:`send` for the emit helpers, which never read the receivers' return values
        (building that list was a tenth of a pair's cost on the bus)."""
        if self.is_muted:
            return
        receivers = self._snapshot
        if receivers is None:
            receivers = self._snapshot = tuple(self.receivers.values())
        for receiver in receivers:
            if isinstance(receiver, weakref.ref):  # WeakMethod too
                receiver = receiver()
                if receiver is None:
                    continue
            try:
                receiver(payload)
            except _NOT_CONTAINED:
                raise
            except (Exception, asyncio.CancelledError) as exc:  # a broken observer must never break the run
                _report_failure(self.name, receiver, exc)


def _report_failure(signal: str, receiver: Receiver, exc: BaseException) -> None:
    try:
        if receiver in _FAILED_RECEIVERS:
            return
        _FAILED_RECEIVERS.add(receiver)
    except TypeError:  # not weakly referenceable: log every failure rather than guess by id
        pass
    logger.warning("event receiver %r failed on %s and is skipped for this event: %s: %s",
                   getattr(receiver, "__qualname__", receiver), signal, type(exc).__name__,
                   redact(str(exc))[:300])


def _refresh_active() -> None:
    global _ACTIVE
    _ACTIVE = any(s.receivers for s in _SIGNALS)


def is_active() -> bool:
    """True when at least one receiver listens on the bus."""
    return _ACTIVE


class PointSignal(BusSignal, Generic[P, E]):
    """A point event's signal, typed by its payload: ``P`` is the payload class's keyword
    parameters, so :func:`~orchestrator.events.emit` checks an emitter's fields against
    the payload's (a misspelled or missing field is a type error at the call site) without
    building the payload when nobody listens.  At run time it is a :class:`BusSignal`."""

    def __init__(self, name: str, doc: str, payload_type: Callable[P, E]) -> None:
        if not (isinstance(payload_type, type) and issubclass(payload_type, PointEvent)):
            raise TypeError(f"{name}: a point signal's payload must be a PointEvent subclass, not {payload_type!r}")
        super().__init__(name, doc, payload_type)
