"""The one small base every observer builds on.

An observer is an object whose ``on_<signal name>`` methods receive the payloads of the
bus signals of the same name (``on_task_started``, ``on_llm_call_finished``,
``on_validation_failed``...).  ``subscribe()`` connects every such method that exists,
``unsubscribe()`` disconnects them; an observer is also a context manager that is
subscribed inside its ``with`` block.

Handlers are bound by name, so the names are checked: an ``on_*`` method that matches no
signal (``on_llm_call_finshed``) would otherwise never be called, silently.
``subscribe()`` raises :class:`UnknownHandlerError` for one, naming the nearest signal,
before connecting anything (and ``--observer`` refuses such an observer before a run).

Receivers are always connected strongly (``weak=False``): blinker's weak default would
silently drop the bound methods of an observer nobody else holds.

This module imports nothing from OpenTelemetry: observers that do not trace stay usable
without the ``tracing`` extra.
"""

from __future__ import annotations

import difflib
import threading
import weakref
from collections.abc import Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

from .. import events
from ..domain.errors import OrchestratorError
from ..redaction import redact

__all__ = [
    "Observer",
    "Subscribable",
    "Handler",
    "UnknownHandlerError",
    "unknown_handlers",
    "number",
    "redact",
    "register_span_source",
    "span_ids_for",
    "visible",
    "visible_fields",
    "apply_content_rule",
    "copy_attributes",
    "has_model_text",
    "whole",
]

HANDLER_PREFIX = "on_"

Handler = tuple[events.BusSignal, Callable[[Any], object]]
"""A signal and the receiver an observer connects to it (a receiver takes its own
signal's payload type: the table is heterogeneous, hence ``Any``)."""
V = TypeVar("V")


@runtime_checkable
class Subscribable(Protocol):
    """What ``--observer`` may load and the CLI subscribes: anything with these two
    methods (normally an :class:`Observer`; a user's plug-in need not derive from it)."""

    def subscribe(self) -> object: ...

    def unsubscribe(self) -> object: ...


class UnknownHandlerError(OrchestratorError, TypeError):
    """An observer has an ``on_*`` method that matches no signal (a misspelled handler,
    which would never be called)."""


def unknown_handlers(observer: object) -> list[str]:
    """One line per ``on_*`` method of ``observer`` that matches no signal of the bus,
    naming the nearest signal's handler when one is close (empty when all match)."""
    known = [HANDLER_PREFIX + name for name in events.SIGNALS_BY_NAME]
    problems = []
    for attr_name in sorted(dir(observer)):
        if not attr_name.startswith(HANDLER_PREFIX) or attr_name in known:
            continue
        if not callable(getattr(observer, attr_name, None)):
            continue
        close = difflib.get_close_matches(attr_name, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else "handlers are on_<signal name> (see the event catalogue)"
        problems.append(f"{type(observer).__name__}.{attr_name} matches no signal: {hint}")
    return problems


class Observer:
    """Base class: define ``on_<signal_name>(payload)`` methods and subscribe.

    Example::

        class SlowCallAlarm(Observer):
            def on_llm_call_finished(self, p: events.LlmCallFinished) -> None:
                if p.duration_ns > 30e9:
                    print("slow call", p.model, p.call_type)

        with SlowCallAlarm():
            asyncio.run(orchestrator.run_project(...))
    """

    def __init__(self) -> None:
        self._connected: list[Handler] = []
        self._sub_lock = threading.Lock()

    # -- which receivers -------------------------------------------------------------
    def handlers(self) -> list[Handler]:
        """(signal, receiver) pairs to connect: every ``on_<name>`` method defined."""
        out = []
        for sig in events.ALL_SIGNALS:
            method = getattr(self, HANDLER_PREFIX + sig.name, None)
            if callable(method):
                out.append((sig, method))
        return out

    # -- lifecycle -------------------------------------------------------------------
    @property
    def subscribed(self) -> bool:
        return bool(getattr(self, "_connected", None))

    def subscribe(self) -> Self:
        """Connect every handler (strongly); a second call does nothing.  Returns self.
        Raises :class:`UnknownHandlerError`, connecting nothing, when an ``on_*`` method
        matches no signal."""
        if not hasattr(self, "_connected"):  # a subclass forgot super().__init__()
            Observer.__init__(self)
        with self._sub_lock:
            if self._connected:
                return self
            problems = unknown_handlers(self)
            if problems:
                raise UnknownHandlerError("; ".join(problems))
            pairs = self.handlers()
            for sig, receiver in pairs:
                sig.connect(receiver, weak=False)
            self._connected = list(pairs)
        return self

    def unsubscribe(self) -> None:
        """Disconnect every handler, then :meth:`close`.  Safe to call twice."""
        if not hasattr(self, "_connected"):
            return
        with self._sub_lock:
            pairs, self._connected = self._connected, []
            for sig, receiver in pairs:
                sig.disconnect(receiver)
        if pairs:
            self.close()

    def close(self) -> None:
        """Called once after unsubscribing: release resources (end spans, stop displays)."""

    def __enter__(self) -> Self:
        return self.subscribe()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unsubscribe()


# ---------------------------------------------------------------------------------------
# Span ids of pairs, for observers that want to log them (no OpenTelemetry import here)
# ---------------------------------------------------------------------------------------


def visible(value: V, capture_content: bool) -> V | str:
    """The content rule, in one place: a value the emitter marked as model or prompt text
    (:class:`~orchestrator.events.ModelText`) is shown only with content capture on
    (redacted of secrets); otherwise it is reduced to its length.  Other values pass."""
    if isinstance(value, events.ModelText):
        return redact(value) if capture_content else f"[content omitted: {len(value)} chars]"
    return value


def visible_fields(fields: Mapping[str, V], capture_content: bool) -> dict[str, V | str]:
    """:func:`visible` applied to every value of an attribute or field mapping (a new dict)."""
    return {key: visible(value, capture_content) for key, value in fields.items()}


def copy_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict of a payload's attributes.  A payload holds a read-only view of a dict,
    whose ``copy()`` is that dict's own (``dict(view)`` goes key by key, six times slower)."""
    if type(attrs) is MappingProxyType or type(attrs) is dict:
        return attrs.copy()
    return dict(attrs)


def has_model_text(attrs: Mapping[str, Any]) -> bool:
    """Whether any value is marked model text (``in`` over ``map(type, ...)`` runs in C:
    a quarter of the cost of a Python loop over a span's dozen values)."""
    return events.ModelText in map(type, attrs.values())


def apply_content_rule(attrs: dict[str, object], capture_content: bool) -> dict[str, object]:
    """:func:`visible` applied in place to the values that need it; returns ``attrs``.
    On the span hot path: most attribute dicts hold no marked text and are left as they are."""
    model_text = events.ModelText
    for key, value in attrs.items():
        if type(value) is model_text:
            attrs[key] = visible(value, capture_content)
    return attrs


def number(value: object) -> float | None:
    """An attribute value as a number (ints and floats; not bools, strings or lists)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def whole(value: object) -> int | None:
    """An attribute value as an int (token counts), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


class SpanSource(Protocol):
    def span_ids(self, correlation_id: str) -> tuple[str, str] | None: ...


_span_sources: list[weakref.ref[SpanSource]] = []


def register_span_source(source: SpanSource) -> None:
    """Register an object with ``span_ids(correlation_id) -> (trace_id, span_id) | None``
    (the tracing observer does, for its live and recently finished spans)."""
    if not any(r() is source for r in _span_sources):
        _span_sources.append(weakref.ref(source))


def unregister_span_source(source: SpanSource) -> None:
    _span_sources[:] = [r for r in _span_sources if r() is not None and r() is not source]


def span_ids_for(correlation_id: str | None) -> tuple[str, str] | None:
    """(trace id, span id) as hex of the span made for a pair, when one was made."""
    if not correlation_id:
        return None
    for ref in tuple(_span_sources):
        source = ref()
        if source is not None:
            ids = source.span_ids(correlation_id)
            if ids is not None:
                return ids
    return None
