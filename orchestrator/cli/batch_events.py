"""Each batch project's event log in the run store, so ``orchestrator report PROJECT_ID``
and ``orchestrator replay PROJECT_ID`` work for a project of a batch as for a run.

Why it looks like this:

* many projects run at once in one process (the local backend), so one event recorder
  per process turns each event into its JSON line once - with the content rule: prompt
  and model text only with ``--capture-content`` - and the line goes to the log of the
  project whose asyncio task sent it: a context variable set when the project is built,
  inherited by every task the engine starts for it.  Events of no project (the batch's
  own, and events relayed from Ray workers to the driver) are not logged here: a Ray
  worker logs its own projects' events where it runs them;
* the lines wait in memory and go to the store right after each checkpoint of their
  project, under that checkpoint's attempt, and once more at the project's end.  On
  Ray the store's owner is an actor, so this is one call per checkpoint, not one per
  event.  A worker killed between checkpoints loses the lines since its last one (the
  checkpoint itself is never lost);
* a store that cannot keep the log costs the log (one warning), never the project.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from ..batch.worker import EventLogStore
from ..domain.checkpoint import Checkpoint
from ..engine.checkpoints import CheckpointStore

if TYPE_CHECKING:
    from ..observers.recorder import EventRecorder

__all__ = ["ProjectEventLog", "RecordingStore", "current_log", "finish_project", "record_project"]

logger = logging.getLogger("orchestrator.batch")

_current: ContextVar[ProjectEventLog | None] = ContextVar("orchestrator_batch_event_log", default=None)
_recorders: dict[bool, tuple[EventRecorder, int]] = {}
"""The process's recorders (by content rule), each with how many projects use it: it is
subscribed while one does, so a process that runs no project has no receiver of ours."""
_recorders_lock = threading.Lock()


class ProjectEventLog:
    """One project's event lines, waiting for its next checkpoint; thread-safe."""

    def __init__(self, store: CheckpointStore, project_id: str, include_content: bool) -> None:
        self.store = store
        self.project_id = project_id
        self.include_content = include_content
        self.attempt: int | None = None
        """The attempt of the project's last checkpoint (None before its first)."""
        self.written = 0
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._warned = False

    def add(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)

    @property
    def pending(self) -> Sequence[str]:
        with self._lock:
            return list(self._lines)

    def flush(self) -> None:
        """Write what waits under the last checkpoint's attempt (nothing before the first:
        a report needs the run's row anyway).  Never raises; a failed write keeps the
        lines for the next try."""
        if self.attempt is None or not isinstance(self.store, EventLogStore):
            return
        with self._lock:
            lines, self._lines = self._lines, []
        if not lines:
            return
        try:
            self.store.save_events(self.project_id, self.attempt, lines)
            self.written += len(lines)
        except Exception as exc:  # noqa: BLE001 - the log is worth less than the project
            with self._lock:
                self._lines[:0] = lines
            if not self._warned:
                self._warned = True
                logger.warning("the event log of %s is not kept: %s: %s", self.project_id, type(exc).__name__, exc)


class RecordingStore:
    """The project's checkpoint store, writing its waiting event lines right after each
    checkpoint (the engine's ``CheckpointStore``)."""

    def __init__(self, inner: CheckpointStore, log: ProjectEventLog) -> None:
        self.inner = inner
        self.log = log

    def claim(self, project_id: str) -> AbstractContextManager[object]:
        return self.inner.claim(project_id)

    def load(self, project_id: str) -> Checkpoint | None:
        return self.inner.load(project_id)

    def save(self, checkpoint: Checkpoint) -> None:
        self.inner.save(checkpoint)
        if checkpoint.project_id == self.log.project_id:
            self.log.attempt = checkpoint.attempt
            self.log.flush()


def _route(include_content: bool) -> EventRecorder:
    from ..observers.recorder import EventRecorder

    def sink(line: str) -> None:
        log = _current.get()
        if log is not None and log.include_content == include_content:
            log.add(line)

    return EventRecorder(keep=False, include_content=include_content, sink=sink)


def record_project(store: CheckpointStore, project_id: str, include_content: bool) -> RecordingStore:
    """Start keeping the event log of the project built in this asyncio task (call it
    where the project is built, in the task that runs it); returns the store to build
    the project's engine with."""
    with _recorders_lock:
        recorder, users = _recorders.get(include_content) or (_route(include_content).subscribe(), 0)
        _recorders[include_content] = (recorder, users + 1)
    log = ProjectEventLog(store, project_id, include_content)
    _current.set(log)
    return RecordingStore(store, log)


def finish_project() -> None:
    """The project of this task has ended: write its last lines, and unsubscribe the
    recorder when no other project of this process uses it.  Never raises."""
    log = _current.get()
    if log is None:
        return
    _current.set(None)
    log.flush()
    with _recorders_lock:
        recorder, users = _recorders.get(log.include_content, (None, 0))
        if recorder is None:
            return
        if users > 1:
            _recorders[log.include_content] = (recorder, users - 1)
            return
        del _recorders[log.include_content]
    recorder.unsubscribe()


def current_log() -> ProjectEventLog | None:
    """The event log of the project this task runs (None outside a batch project)."""
    return _current.get()
