"""RunStore: the SQLite file of checkpoints, and the history of runs.

Why it looks like this:

* WAL mode with ``synchronous=FULL`` and one ``BEGIN IMMEDIATE`` transaction per
  checkpoint: a kill (or a power cut) at any instant leaves the last committed
  checkpoint whole and the file readable; readers (``orchestrator runs``) never block
  the run writing;
* every process opens its own connection; a busy timeout lets runs of different
  projects share one store;
* the per-project lock (:mod:`.lock`) is a file lock, not a row, so a killed run never
  leaves a stale claim behind;
* private whatever the umask: the directory is made 0700 and the database (with its
  ``-wal`` and ``-shm``, which SQLite makes with the database's mode) 0600;
* a new store is built whole in a temporary file and linked into place, so
  ``runs.sqlite3`` is never seen empty: a zero-byte store is damage (history lost), and
  refused in one line like any other file that is not a run store;
* ``create=False`` (the read-only commands: ``runs``, ``runs show``, ``resume``) never
  makes a store: where there is none, it reads as empty.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..domain.checkpoint import FINISHED_STATUSES, INTERRUPTED, RUNNING, Checkpoint, ProjectBusyError, StoreError
from ..files import private_dir, tighten_file
from ..redaction import redact
from . import codec
from .batches import BatchTable
from .event_log import EventLog, insert_events, unpack, write_log
from .lock import ProjectLock, is_locked, lock_path
from .paths import DB_NAME, default_state_dir
from .schema import prepare
from .store_file import check_store_file, create_store_file

BUSY_TIMEOUT_MS = 10_000


@dataclass(frozen=True, slots=True)
class RunRow:
    """One line of ``orchestrator runs``.  ``live``: a process runs it right now."""

    project_id: str
    description: str
    status: str
    attempt: int
    started_at: float
    updated_at: float
    spent_usd: float
    tasks_total: int
    tasks_done: int
    live: bool

    @property
    def resumable(self) -> bool:
        return not self.live and self.status not in FINISHED_STATUSES

    @property
    def shown_status(self) -> str:
        """``running`` only while a process runs it; a run that was killed shows ``stopped``."""
        if self.status == RUNNING and not self.live:
            return "stopped"
        return self.status


class RunStore:
    """The run store in ``state_dir`` (default: :func:`default_state_dir`).

    Opening creates the directory (0700) and the store (0600), or checks the schema
    version (migrating an older store, refusing one it cannot use); problems, a
    zero-byte file included, are one-line :class:`StoreError`.  With ``create=False``
    nothing is created: a store that is not there reads as empty (no runs), and
    ``claim``/``save`` are refused.  Implements the engine's ``CheckpointStore``."""

    def __init__(self, state_dir: str | Path | None = None, *, create: bool = True) -> None:
        self.dir = Path(state_dir).expanduser() if state_dir is not None else default_state_dir()
        self.path = self.dir / DB_NAME
        self.lock_dir = self.dir / "locks"
        self._mutex = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        ours = state_dir is None  # the default directory is ours by name: an existing one is tightened
        self._event_log: EventLog | None = None
        try:
            if self.dir.exists() and not self.dir.is_dir():
                raise NotADirectoryError(f"{self.dir} is not a directory")
            if not create and not (self.path.exists() or self.path.is_symlink()):
                return  # a read-only command where there is no store: nothing to read, nothing made
            private_dir(self.dir, tighten=ours)
            check_store_file(self.path)
            if not self.path.exists():
                create_store_file(self.dir, self.path)
            for suffix in ("", "-wal", "-shm"):
                tighten_file(f"{self.path}{suffix}")
            self._conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the run store ({_reason(exc)})") from None
        conn = self._conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot use WAL mode here (got {mode}); use another --state-dir")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            prepare(conn, str(self.path))
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(
                f"{self.path}: not a readable run store ({_reason(exc)}); move it away or use another --state-dir"
            ) from None
        except BaseException:
            conn.close()
            raise

    @property
    def batches(self) -> BatchTable:
        """The batches recorded here (``orchestrator batch``)."""
        return BatchTable(self)

    @property
    def exists(self) -> bool:
        """False for a ``create=False`` store that found no file (it reads as empty)."""
        return self._conn is not None

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None:
                self._conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the engine's side -----------------------------------------------------------
    @contextmanager
    def claim(self, project_id: str) -> Iterator[ProjectLock]:
        """Hold the project for a run; :class:`ProjectBusyError` at once if another has it."""
        self._writable()
        lock = ProjectLock(lock_path(self.lock_dir, project_id), project_id)
        try:
            lock.acquire()
        except OSError as exc:
            raise StoreError(f"{lock.path}: cannot lock ({_reason(exc)})") from None
        try:
            yield lock
        finally:
            lock.release()

    def save(self, checkpoint: Checkpoint) -> None:
        """Write the checkpoint in one transaction: the run's row and its results together."""
        cp = checkpoint
        record = codec.checkpoint_json(cp)
        rows = [
            (cp.project_id, redact(tid), cp.result_attempts.get(tid, cp.attempt), r.status.value, codec.result_json(r))
            for tid, r in cp.results.items()
        ]
        with self._write() as conn:
            conn.execute(
                "INSERT INTO runs (project_id, description, status, attempt, started_at, updated_at, spent_usd,"
                " tasks_total, tasks_done, checkpoint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (project_id) DO UPDATE SET description = excluded.description,"
                " status = excluded.status, attempt = excluded.attempt, updated_at = excluded.updated_at,"
                " spent_usd = excluded.spent_usd, tasks_total = excluded.tasks_total,"
                " tasks_done = excluded.tasks_done, checkpoint = excluded.checkpoint",
                (
                    cp.project_id,
                    redact(cp.description),
                    cp.status,
                    cp.attempt,
                    cp.started_at,
                    cp.updated_at or time.time(),
                    cp.spent_usd,
                    cp.tasks_total,
                    cp.tasks_done,
                    record,
                ),
            )
            conn.execute("DELETE FROM task_results WHERE project_id = ?", (cp.project_id,))
            conn.executemany(
                "INSERT INTO task_results (project_id, task_id, attempt, status, result) VALUES (?, ?, ?, ?, ?)", rows
            )
            if self._event_log is not None and self._event_log.project_id == cp.project_id:
                write_log(conn, self._event_log)  # the events up to this checkpoint, with it

    def load(self, project_id: str) -> Checkpoint | None:
        """The last checkpoint of a project, or None when no run has this id."""
        if self._conn is None:
            return None
        with self._read() as conn:
            row = conn.execute("SELECT checkpoint FROM runs WHERE project_id = ?", (project_id,)).fetchone()
            if row is None:
                return None
            results = conn.execute(
                "SELECT task_id, attempt, result FROM task_results WHERE project_id = ? ORDER BY rowid", (project_id,)
            ).fetchall()
        try:
            parsed = {tid: codec.result_from(json.loads(text)) for tid, _, text in results}
            cp = codec.checkpoint_from(row[0], parsed)
            cp.result_attempts = {tid: int(attempt) for tid, attempt, _ in results}
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"{self.path}: the record of {project_id} is damaged ({exc}); "
                f"remove it with 'orchestrator runs rm {project_id}'"
            ) from None
        return cp

    # -- event logs ------------------------------------------------------------------
    def attach_event_log(self, log: EventLog | None) -> None:
        """Keep ``log``'s lines in the store: with every checkpoint of its project (in the
        checkpoint's transaction) and on :meth:`flush_events`.  None detaches."""
        self._event_log = log

    def flush_events(self) -> int:
        """Write the attached log's waiting lines now, once its run has a row (its first
        checkpoint); returns how many were written.  A failed write keeps them for the
        next try and raises :class:`StoreError`."""
        log = self._event_log
        if log is None or not log.pending:
            return 0
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE project_id = ?", (log.project_id,)).fetchone() is None:
                return 0
            return write_log(conn, log)

    def save_events(self, project_id: str, attempt: int, lines: Sequence[str]) -> None:
        """Append ``lines`` (event JSON lines) to the event log of ``project_id``'s
        ``attempt`` in one transaction: how a batch's projects, many at once and perhaps in
        other processes, keep theirs (a run of its own attaches an :class:`EventLog`)."""
        if lines:
            with self._write() as conn:
                insert_events(conn, project_id, attempt, lines)

    def event_logs(self, project_id: str) -> dict[int, list[str]]:
        """Each attempt's event lines (attempt -> JSON lines, in the order sent); empty when
        none were kept (a run of another version, or no events recorded)."""
        if self._conn is None:
            return {}
        with self._read() as conn:
            rows = conn.execute(
                "SELECT attempt, events FROM run_events WHERE project_id = ? ORDER BY attempt, seq", (project_id,)
            ).fetchall()
        out: dict[int, list[str]] = {}
        try:
            for attempt, blob in rows:
                out.setdefault(int(attempt), []).extend(unpack(bytes(blob)))
        except ValueError as exc:
            raise StoreError(f"{self.path}: the event log of {project_id} is damaged ({exc})") from None
        return out

    # -- history ---------------------------------------------------------------------
    def runs(self) -> list[RunRow]:
        """Every stored run, newest first."""
        if self._conn is None:
            return []
        with self._read() as conn:
            rows = conn.execute(
                "SELECT project_id, description, status, attempt, started_at, updated_at,"
                " spent_usd, tasks_total, tasks_done FROM runs"
                " ORDER BY started_at DESC, project_id"
            ).fetchall()
        return [
            RunRow(
                project_id=r[0],
                description=r[1],
                status=r[2],
                attempt=r[3],
                started_at=r[4],
                updated_at=r[5],
                spent_usd=r[6],
                tasks_total=r[7],
                tasks_done=r[8],
                live=self.is_running(r[0]),
            )
            for r in rows
        ]

    def is_running(self, project_id: str) -> bool:
        return is_locked(lock_path(self.lock_dir, project_id))

    def delete(self, project_id: str) -> bool:
        """Remove a run (False when unknown).  A run in progress is refused
        (:class:`ProjectBusyError`): its next checkpoint would bring it back."""
        if self._conn is None:
            return False
        path = lock_path(self.lock_dir, project_id)
        with self.claim(project_id):
            with self._write() as conn:
                gone = conn.execute("DELETE FROM runs WHERE project_id = ?", (project_id,)).rowcount
            path.unlink(missing_ok=True)
        return bool(gone)

    def mark_interrupted(self, project_id: str) -> bool:
        """Record a run that stopped without saving its end as ``interrupted``, its last
        checkpoint kept: a batch worker that Ray cancelled, or that did not answer, before
        it could save.  Only a ``running`` run that nobody holds (a live one saves its own
        end: :class:`ProjectBusyError`); False when there was nothing to change."""
        with self.claim(project_id):
            checkpoint = self.load(project_id)
            if checkpoint is None or checkpoint.status != RUNNING:
                return False
            checkpoint.status, checkpoint.updated_at = INTERRUPTED, time.time()
            self.save(checkpoint)
        return True

    def older_than(self, seconds: float) -> list[str]:
        """Ids of runs last updated more than ``seconds`` ago."""
        cutoff = time.time() - seconds
        if self._conn is None:
            return []
        with self._read() as conn:
            return [
                r[0]
                for r in conn.execute("SELECT project_id FROM runs WHERE updated_at < ? ORDER BY started_at", (cutoff,))
            ]

    # -- transactions ----------------------------------------------------------------
    def _writable(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: no run store here (opened without creating one)")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._writable()
        with self._mutex:
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                raise StoreError(f"{self.path}: write failed ({_reason(exc)})") from None
            except BaseException:
                _rollback(conn)
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._writable()
        with self._mutex:
            try:
                yield conn
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: read failed ({_reason(exc)})") from None


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


__all__ = ["ProjectBusyError", "RunRow", "RunStore"]
