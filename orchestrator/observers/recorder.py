"""EventRecorder: keeps every bus event in order; filters; writes and reads JSON lines.

Used by the ``orchestrator_events`` pytest fixture and the CLI's ``--events-jsonl``::

    with EventRecorder() as rec:
        state = asyncio.run(orch.run_project(...))
    assert rec.names().count("task_started") == len(state.tasks)
    assert all(p.status == "ok" for p in rec.of("llm_call_finished"))
    rec.write_jsonl("events.jsonl")

JSON lines hold ``payload.to_dict()`` (the ``signal`` name first, exceptions reduced to
their type and message).  Prompt, system and completion text are left out unless
``include_content=True``.  Every string of a line (field names included) goes through
:func:`~orchestrator.redaction.redact` before it is written, and a new file is made
0600.  :func:`read_jsonl` gives the dicts back, or payload objects with
``as_payloads=True``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Literal, Self, TypeVar, overload

from .. import events
from ..redaction import redact, redact_data
from .base import Handler, Observer, visible_fields

__all__ = ["EventRecorder", "read_jsonl", "payload_from_dict", "replay", "json_line", "CONTENT_FIELDS"]

CONTENT_FIELDS = tuple(sorted(events.CONTENT_FIELDS))
P = TypeVar("P", bound=events.Event)


def _signal_name(signal: str | events.BusSignal | type) -> str:
    if isinstance(signal, events.BusSignal):
        return signal.name
    if isinstance(signal, type) and issubclass(signal, events.Event):
        return signal.signal_name
    if isinstance(signal, str):
        if signal not in events.SIGNALS_BY_NAME:
            raise KeyError(f"unknown signal {signal!r}; known: {', '.join(events.SIGNALS_BY_NAME)}")
        return signal
    raise TypeError(f"not a signal: {signal!r}")


def json_line(payload: events.Event, include_content: bool = False) -> str:
    """One event as the JSON line the recorder writes: prompt, system and completion text
    left out and marked model text reduced to its length unless ``include_content``."""
    data = payload.to_dict()
    if not include_content:
        for key in CONTENT_FIELDS:
            data.pop(key, None)
        data = visible_fields(data, False)
        if isinstance(data.get("attributes"), dict):
            data["attributes"] = visible_fields(data["attributes"], False)
    return json.dumps(redact_data(data), default=lambda v: redact(str(v)), ensure_ascii=False, allow_nan=False)


def _private_opener(path: str, flags: int) -> int:
    """Open as ``open()`` would, but a file we make is 0600 (it holds the run's
    descriptions and ids); an existing file keeps its mode."""
    return os.open(path, flags, 0o600)


class EventRecorder(Observer):
    """Records every event of the bus, in the order sent.

    ``signals``: record only these (names, signals or payload classes); default all.
    ``jsonl_path``: also write each event to this file as it arrives (opened on
    subscribe with ``mode`` - ``"a"`` appends, ``"w"`` truncates - closed on unsubscribe).
    ``keep``: keep events in memory too (turn off for long runs that only stream).
    ``sink``: also hand each event's JSON line to this callable as it arrives (the CLI
    keeps them in the run store this way).
    """

    def __init__(
        self,
        signals: Iterable[str | events.BusSignal | type] | None = None,
        *,
        jsonl_path: str | Path | None = None,
        include_content: bool = False,
        mode: str = "a",
        keep: bool = True,
        sink: Callable[[str], object] | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("a", "w"):
            raise ValueError("mode must be 'a' or 'w'")
        self.mode = mode
        self.keep = keep
        self.events: list[events.Event] = []
        self._only = {_signal_name(s) for s in signals} if signals is not None else None
        self.jsonl_path = Path(jsonl_path) if jsonl_path is not None else None
        self.include_content = include_content
        self.sink = sink
        self._file: IO[str] | None = None
        self._lock = threading.Lock()

    # -- subscription ----------------------------------------------------------------
    def handlers(self) -> list[Handler]:
        return [(sig, self._record) for sig in events.ALL_SIGNALS if self._only is None or sig.name in self._only]

    def subscribe(self) -> Self:
        if self.jsonl_path is not None and self._file is None:
            self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(
                self.jsonl_path,
                self.mode,
                encoding="utf-8",  # closed in close()
                opener=_private_opener,
            )
            self.mode = "a"  # a second subscription appends
        return super().subscribe()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _record(self, payload: events.Event) -> None:
        with self._lock:
            if self.keep:
                self.events.append(payload)
            if self._file is not None or self.sink is not None:
                line = json_line(payload, self.include_content)
                if self._file is not None:
                    self._file.write(line + "\n")
                    self._file.flush()
                if self.sink is not None:
                    self.sink(line)

    # -- queries ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[events.Event]:
        return iter(list(self.events))

    def clear(self) -> None:
        with self._lock:
            self.events.clear()

    def names(self) -> list[str]:
        """Signal names in order."""
        return [p.signal_name for p in self.events]

    @overload
    def of(self, signal: type[P], /) -> list[P]: ...

    @overload
    def of(self, *signals: str | events.BusSignal | type[events.Event]) -> list[events.Event]: ...

    def of(self, *signals: str | events.BusSignal | type[events.Event]) -> list[Any]:
        """Events of the given signals (names, signal objects or payload classes), in order
        (typed as that class when one payload class is given)."""
        wanted = {_signal_name(s) for s in signals}
        return [p for p in self.events if p.signal_name in wanted]

    filter = of

    @overload
    def first(self, signal: type[P], /, **match: object) -> P: ...

    @overload
    def first(self, signal: str | events.BusSignal, /, **match: object) -> events.Event: ...

    def first(self, signal: str | events.BusSignal | type[events.Event], /, **match: object) -> events.Event:
        """The first event of ``signal`` whose fields equal ``match``; AssertionError if none."""
        for p in self.of(signal):
            if all(getattr(p, k, None) == v for k, v in match.items()):
                return p
        raise AssertionError(f"no {_signal_name(signal)} event matching {match!r} among {len(self.events)}")

    def pairs(self, kind: str | None = None) -> list[tuple[events.PairStart, events.PairFinish | None]]:
        """(start, finish) of every pair in start order; ``kind`` is a start signal's
        prefix such as ``"task"`` or ``"llm_call"``.  A missing finish is None."""
        finishes = {p.correlation_id: p for p in self.events if isinstance(p, events.PairFinish)}
        out = []
        for p in self.events:
            if isinstance(p, events.PairStart):
                if kind is None or p.signal_name.startswith(kind):
                    out.append((p, finishes.get(p.correlation_id)))
        return out

    def unfinished(self) -> list[events.PairStart]:
        """Starts without a finish (should be empty after any run)."""
        return [s for s, f in self.pairs() if f is None]

    def to_dicts(self, include_content: bool | None = None) -> list[dict[str, Any]]:
        """The events as their JSON lines hold them (parsed back: JSON's own values)."""
        content = self.include_content if include_content is None else include_content
        return [json.loads(json_line(p, content)) for p in self.events]

    # -- files -----------------------------------------------------------------------
    def write_jsonl(self, path: str | Path, include_content: bool | None = None) -> Path:
        """Write every recorded event, one JSON object a line; returns the path."""
        content = self.include_content if include_content is None else include_content
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            lines = [json_line(p, content) for p in self.events]
        with open(target, "w", encoding="utf-8", opener=_private_opener) as fh:
            fh.write("".join(line + "\n" for line in lines))
        return target

    @staticmethod
    def read_jsonl(path: str | Path, as_payloads: bool = False) -> list[dict[str, Any]] | list[events.Event]:
        return read_jsonl(path, True) if as_payloads else read_jsonl(path)


def payload_from_dict(data: dict[str, Any]) -> events.Event:
    """Rebuild a payload object from its JSON dict (the exception object is not
    restored: ``error_type`` and ``error_message`` carry it)."""
    data = dict(data)
    name = data.pop("signal")
    cls = events.SIGNALS_BY_NAME[name].payload_type
    if "attributes" in data and isinstance(data["attributes"], dict):
        data["attributes"] = MappingProxyType(data["attributes"])
    return cls(**data)


@overload
def read_jsonl(path: str | Path, as_payloads: Literal[False] = False) -> list[dict[str, Any]]: ...


@overload
def read_jsonl(path: str | Path, as_payloads: Literal[True]) -> list[events.Event]: ...


def read_jsonl(path: str | Path, as_payloads: bool = False) -> list[dict[str, Any]] | list[events.Event]:
    """The events of a JSON-lines file, as dicts (JSON read from a file: its values are
    whatever the file holds) or (``as_payloads``) payload objects."""
    dicts: list[dict[str, Any]] = []
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not a JSON line ({exc})") from None
            dicts.append(data)
    return [payload_from_dict(d) for d in dicts] if as_payloads else dicts


def replay(payloads: Iterable[events.Event | dict[str, Any]], *observers: Observer) -> int:
    """Feed recorded events (payload objects or their JSON dicts) to observers' handlers
    in order, without the bus: e.g. rebuild a run's spans from an ``--events-jsonl`` file
    with ``TracingObserver(provider, attach_context=False)`` (spans keep the recorded
    timestamps).  Returns the number of events replayed."""
    tables = []
    for obs in observers:
        table: dict[str, list[Callable[[Any], object]]] = {}
        for sig, receiver in obs.handlers():
            table.setdefault(sig.name, []).append(receiver)
        tables.append(table)
    count = 0
    for item in payloads:
        payload = payload_from_dict(item) if isinstance(item, dict) else item
        for table in tables:
            for receiver in table.get(payload.signal_name, ()):
                receiver(payload)
        count += 1
    return count
