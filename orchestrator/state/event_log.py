"""Each attempt's event log, kept in the run store beside its checkpoints.

Why in the store: ``orchestrator report PROJECT_ID`` and ``orchestrator replay
PROJECT_ID`` need nothing but the id, also for a run that was killed and resumed (each
attempt's events are kept apart, in order).

Why it looks like this:

* the lines are the event recorder's JSON lines (the content rule applied there: no
  prompt or model text unless content capture was on); this module only keeps them,
  so the store still imports nothing but ``domain``;
* lines wait in memory and are written in batches, each batch one row of
  zlib-compressed JSON lines (a run's log is a few percent of its text size);
* the batch waiting when a checkpoint is saved goes into the checkpoint's own
  transaction, so a result the store keeps always has the calls that made it in the
  log; between checkpoints a :class:`PeriodicFlush` writes what waits about once a
  second, so a kill loses at most that much of the log.
"""

from __future__ import annotations

import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterable, Sequence

__all__ = ["EventLog", "PeriodicFlush", "insert_events", "pack", "unpack", "write_log"]


def pack(lines: Iterable[str]) -> bytes:
    """JSON lines as one compressed blob."""
    return zlib.compress("".join(line + "\n" for line in lines).encode("utf-8"), 6)


def unpack(blob: bytes) -> list[str]:
    """The lines of a blob made by :func:`pack` (ValueError when it is damaged)."""
    try:
        text = zlib.decompress(blob).decode("utf-8")
    except (zlib.error, UnicodeDecodeError) as exc:
        raise ValueError(f"damaged event log batch ({exc})") from None
    return [line for line in text.split("\n") if line]


class EventLog:
    """The lines of one attempt of one run waiting to be written; thread-safe."""

    def __init__(self, project_id: str, attempt: int) -> None:
        self.project_id = project_id
        self.attempt = attempt
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self.written = 0
        """Lines written to the store so far."""

    def add(self, line: str) -> None:
        """One event's JSON line (the recorder's sink)."""
        with self._lock:
            self._lines.append(line)

    def take(self) -> list[str]:
        """The waiting lines, removed; :meth:`put_back` them when the write fails."""
        with self._lock:
            lines, self._lines = self._lines, []
        return lines

    def put_back(self, lines: list[str]) -> None:
        with self._lock:
            self._lines[:0] = lines

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._lines)


class PeriodicFlush:
    """Calls ``flush`` every ``seconds`` on a daemon thread until :meth:`stop`; a flush
    that raises is reported once through ``on_error`` and tried again next time."""

    def __init__(
        self, flush: Callable[[], object], seconds: float = 1.0, on_error: Callable[[BaseException], None] | None = None
    ) -> None:
        self._flush = flush
        self._seconds = seconds
        self._on_error = on_error
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._failed = False
        self._thread = threading.Thread(target=self._loop, name="orchestrator-event-log", daemon=True)

    def start(self) -> PeriodicFlush:
        self._thread.start()
        return self

    def wake(self) -> None:
        """Flush now rather than at the next tick (a moment worth keeping: a task finished)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._flush()
            except Exception as exc:  # noqa: BLE001 - a full disk must not stop the run
                if not self._failed and self._on_error is not None:
                    self._on_error(exc)
                self._failed = True

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread (the caller flushes what is left)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


def insert_events(conn: sqlite3.Connection, project_id: str, attempt: int, lines: Sequence[str]) -> None:
    """One row of ``run_events``: ``lines`` packed, after the attempt's last batch."""
    seq = conn.execute(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM run_events WHERE project_id = ? AND attempt = ?", (project_id, attempt)
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO run_events (project_id, attempt, seq, events) VALUES (?, ?, ?, ?)",
        (project_id, attempt, seq, pack(lines)),
    )


def write_log(conn: sqlite3.Connection, log: EventLog) -> int:
    """What waits in ``log``, written in the caller's transaction; a failed write puts the
    lines back for the next try.  Returns how many were written."""
    lines = log.take()
    if not lines:
        return 0
    try:
        insert_events(conn, log.project_id, log.attempt, lines)
    except BaseException:
        log.put_back(lines)
        raise
    log.written += len(lines)
    return len(lines)
