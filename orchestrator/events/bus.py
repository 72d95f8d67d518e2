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
from collections.abc import Callable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar

from blinker import ANY, Signal

from ..redaction import redact
from .payloads import AttributeValue, Event, PairFinish, PointEvent

__all__ = ["BusSignal", "PairReceiver", "PairFailure", "PointSignal", "is_active"]

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
        self._plain: tuple[Any, ...] = ()  # the snapshot without the pair receivers
        self._fast: tuple[PairReceiver, ...] = ()  # the pair receivers, called directly by the pair helpers
        self._only: PairReceiver | None = None  # the one receiver, when it is a pair receiver
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

    def send(self, sender: Any = None, /, *, _async_wrapper: Any = None, **kwargs: Any) -> list[tuple[Receiver, Any]]:
        """Deliver ``sender`` (the payload) to every receiver; a raising receiver is
        logged once and does not stop the others."""
        if self.is_muted:
            return []
        receivers = self._snapshot
        if receivers is None:  # rebuilt after each connect/disconnect, not on every send
            receivers = self._lanes()
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

    def _lanes(self) -> tuple[Any, ...]:
        """Rebuild the snapshot (after a connect/disconnect) and its two lanes: the pair
        receivers, which a pair helper calls directly, and the others."""
        snapshot = self._snapshot = tuple(self.receivers.values())
        self._fast = tuple(r for r in snapshot if isinstance(r, PairReceiver))
        self._plain = tuple(r for r in snapshot if not isinstance(r, PairReceiver))
        self._only = self._fast[0] if len(snapshot) == 1 and self._fast else None
        return snapshot

    def _deliver(self, payload: Event) -> None:
        """:meth:`send` for the emit helpers, which never read the receivers' return values
        (building that list was a tenth of a pair's cost on the bus)."""
        if self.is_muted:
            return
        receivers = self._snapshot
        if receivers is None:
            receivers = self._lanes()
        self._deliver_to(receivers, payload)

    def _deliver_to(self, receivers: tuple[Any, ...], payload: Event) -> None:
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


PairFailure = tuple[str, str | None, str | None, BaseException | None]
"""How a pair ended when not ok: (status, error type, message, exception), as its finish
payload would say."""


class PairReceiver:
    """A receiver of both signals of a pair that the pair helpers call directly, without
    a finish payload: ``started(start_payload)`` returns the receiver's own state for the
    pair, and ``finished(state, end_ns, attributes, content, failure)`` gets it back with
    only what the finish adds (``attributes``: what was set on the handle, read-only;
    ``content``: completion/sent_system or None; ``failure``: None when ok).

    Connect the same object to the start and the finish signal.  Sent or replayed
    payloads reach it as to any receiver: a start goes to ``started``, a finish to
    ``on_finish``.  Why: a tracing observer keeps per-pair state (the span) that the bus
    can hand back, and building, sending and looking up a finish payload was a third of
    a traced pair's cost.  A pair receiver sees a start before the other receivers and
    a finish after them, so what it opens encloses what they do."""

    __slots__ = ("started", "finished", "on_finish", "__weakref__")

    def __init__(
        self,
        started: Callable[[Any], object],
        finished: Callable[[Any, int, Mapping[str, AttributeValue], dict[str, str] | None, PairFailure | None], object],
        on_finish: Callable[[Any], object],
    ) -> None:
        self.started = started
        self.finished = finished
        self.on_finish = on_finish

    def __call__(self, payload: Event) -> object:
        if isinstance(payload, PairFinish):
            return self.on_finish(payload)
        return self.started(payload)

    def __repr__(self) -> str:
        return f"<PairReceiver {getattr(self.started, '__qualname__', self.started)}>"


def _report_failure(signal: str, receiver: Receiver, exc: BaseException) -> None:
    try:
        if receiver in _FAILED_RECEIVERS:
            return
        _FAILED_RECEIVERS.add(receiver)
    except TypeError:  # not weakly referenceable: log every failure rather than guess by id
        pass
    logger.warning(
        "event receiver %r failed on %s and is skipped for this event: %s: %s",
        getattr(receiver, "__qualname__", receiver),
        signal,
        type(exc).__name__,
        redact(str(exc))[:300],
    )


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
