"""The event stream from Ray workers back to the driver.

Without an OTLP endpoint a worker's events have nowhere to go but the driver: its live
view, its ``--events-jsonl`` file and its dev-mode span tree are fed by them.  A worker
subscribes a :class:`Forwarder` for the length of a project; it turns each event into
its JSON-ready dict (content fields only on request; the model-text marks survive, they
are a ``str`` subclass) and pushes them in small batches to the store's owner, which the
driver drains.  The driver :func:`deliver` s them on its own bus, each in a fresh
context, so observers that attach context per asyncio task are not confused by events
of many projects arriving from one loop.

With an endpoint, workers export their spans themselves and nothing is relayed.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable
from types import MappingProxyType, TracebackType
from typing import Any

from .. import events

__all__ = ["Forwarder", "deliver", "rebuild"]

logger = logging.getLogger("orchestrator.batch")

DRIVER_SIGNALS = frozenset({"batch_started", "batch_finished", "batch_progress"})
"""The driver's own signals: never relayed."""

Push = Callable[[list[dict[str, Any]], bool], None]
"""``push(batch, wait)``: send a batch of event dicts; ``wait``: return once delivered."""


class Forwarder:
    """Relays this process's bus events through ``push`` while entered."""

    def __init__(
        self, push: Push, *, include_content: bool = False, flush_every: float = 0.25, max_batch: int = 200
    ) -> None:
        self.push = push
        self.include_content = include_content
        self.flush_every = flush_every
        self.max_batch = max_batch
        self._buffer: list[dict[str, Any]] = []
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._signals = [s for s in events.ALL_SIGNALS if s.name not in DRIVER_SIGNALS]

    def __enter__(self) -> Forwarder:
        for signal in self._signals:
            signal.connect(self._on_event, weak=False)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signal in self._signals:
            signal.disconnect(self._on_event)
        self.flush(wait=True)

    def _on_event(self, payload: events.Event) -> None:
        data = payload.to_dict()
        if not self.include_content:
            for key in events.CONTENT_FIELDS:
                data.pop(key, None)
        with self._lock:
            self._buffer.append(data)
            due = (
                len(self._buffer) >= self.max_batch
                or time.monotonic() - self._last >= self.flush_every
                or isinstance(payload, (events.ProjectStarted, events.ProjectFinished, events.TaskFinished))
            )
        if due:
            self.flush(wait=False)

    def flush(self, *, wait: bool) -> None:
        with self._lock:
            batch, self._buffer = self._buffer, []
            self._last = time.monotonic()
        if not batch and not wait:
            return
        try:
            self.push(batch, wait)
        except Exception:  # noqa: BLE001 - the live view loses events; the run goes on
            logger.warning("could not relay %d events to the batch's driver", len(batch), exc_info=True)


def rebuild(data: dict[str, Any]) -> events.Event | None:
    """The payload object of a relayed dict (None for a signal this version lacks)."""
    data = dict(data)
    signal = events.SIGNALS_BY_NAME.get(str(data.pop("signal", "")))
    if signal is None:
        return None
    if isinstance(data.get("attributes"), dict):
        data["attributes"] = MappingProxyType(data["attributes"])
    for key in ("links", "task_ids"):
        if isinstance(data.get(key), list):
            data[key] = tuple(data[key])
    try:
        return signal.payload_type(**data)
    except TypeError:
        logger.debug("a relayed %s event did not fit its payload type", signal.name, exc_info=True)
        return None


def deliver(batch: Iterable[dict[str, Any]]) -> int:
    """Send relayed events on this process's bus, each in a fresh context; returns the count."""
    count = 0
    for data in batch:
        payload = rebuild(data)
        if payload is None:
            continue
        signal = events.SIGNALS_BY_NAME[payload.signal_name]
        contextvars.Context().run(signal.send, payload)
        count += 1
    return count
