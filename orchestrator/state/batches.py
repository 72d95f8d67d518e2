"""Batches in the run store: a row per batch (its settings and last summary) and a row
per project (its position, name, project id and job), so ``orchestrator batch resume``
needs no batch file and ``orchestrator runs --batch ID`` can list a batch's runs.

Written by the batch's driver: when the batch starts (every project's row, in one
transaction, before any project runs) and when its status changes.
"""

from __future__ import annotations

import json
from typing import Any

from ..domain.batch import BatchProject, BatchRecord
from ..domain.checkpoint import StoreError
from ..redaction import redact
from .codec import dumps

__all__ = ["BatchTable"]


class BatchTable:
    """The batches of ``store``."""

    def __init__(self, store: Any) -> None:
        """``store``: the :class:`~.store.RunStore` (its transactions and history)."""
        self.store = store

    def create(self, record: BatchRecord) -> None:
        """Record a new batch and all its projects, in one transaction."""
        with self.store._write() as conn:  # noqa: SLF001 - the store's own transaction
            conn.execute(
                "INSERT INTO batches (batch_id, status, attempt, started_at, updated_at, budget_usd, record)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.batch_id,
                    record.status,
                    record.attempt,
                    record.started_at,
                    record.updated_at,
                    record.budget_usd,
                    _record_json(record),
                ),
            )
            conn.executemany(
                "INSERT INTO batch_projects (batch_id, position, name, project_id, job) VALUES (?, ?, ?, ?, ?)",
                [(record.batch_id, p.position, redact(p.name), p.project_id, dumps(p.job)) for p in record.projects],
            )

    def update(self, record: BatchRecord) -> None:
        """The batch's status, attempt, caps, settings and summary (its projects stay)."""
        with self.store._write() as conn:  # noqa: SLF001
            changed = conn.execute(
                "UPDATE batches SET status = ?, attempt = ?, updated_at = ?, budget_usd = ?,"
                " record = ? WHERE batch_id = ?",
                (
                    record.status,
                    record.attempt,
                    record.updated_at,
                    record.budget_usd,
                    _record_json(record),
                    record.batch_id,
                ),
            ).rowcount
        if not changed:
            raise StoreError(f"{self.store.path}: no batch {record.batch_id} to update")

    def load(self, batch_id: str) -> BatchRecord | None:
        if not self.store.exists:
            return None
        with self.store._read() as conn:  # noqa: SLF001
            row = conn.execute(
                "SELECT status, attempt, started_at, updated_at, budget_usd, record FROM batches WHERE batch_id = ?",
                (batch_id,),
            ).fetchone()
            if row is None:
                return None
            rows = conn.execute(
                "SELECT position, name, project_id, job FROM batch_projects WHERE batch_id = ? ORDER BY position",
                (batch_id,),
            ).fetchall()
        try:
            data = json.loads(row[5])
            projects = [BatchProject(int(p), str(n), str(pid), json.loads(job)) for p, n, pid, job in rows]
        except (ValueError, TypeError) as exc:
            raise StoreError(f"{self.store.path}: the record of batch {batch_id} is damaged ({exc})") from None
        return BatchRecord(
            batch_id=batch_id,
            status=str(row[0]),
            attempt=int(row[1]),
            started_at=float(row[2]),
            updated_at=float(row[3]),
            budget_usd=float(row[4]),
            settings=dict(data.get("settings") or {}),
            projects=projects,
            summary=data.get("summary"),
        )

    def ids(self) -> list[tuple[str, str, float, int]]:
        """Every batch: (id, status, started_at, project count), newest first."""
        if not self.store.exists:
            return []
        with self.store._read() as conn:  # noqa: SLF001
            return [
                (str(r[0]), str(r[1]), float(r[2]), int(r[3]))
                for r in conn.execute(
                    "SELECT b.batch_id, b.status, b.started_at, COUNT(p.position) FROM batches b"
                    " LEFT JOIN batch_projects p ON p.batch_id = b.batch_id"
                    " GROUP BY b.batch_id ORDER BY b.started_at DESC, b.batch_id"
                )
            ]

    def runs(self, batch_id: str) -> list[tuple[BatchProject, Any]]:
        """The batch's projects in order, each with its :class:`~.store.RunRow` (None: it never started)."""
        record = self.load(batch_id)
        if record is None:
            return []
        rows = {r.project_id: r for r in self.store.runs()}
        return [(p, rows.get(p.project_id)) for p in record.projects]


def _record_json(record: BatchRecord) -> str:
    data: dict[str, Any] = {"settings": record.settings, "summary": record.summary}
    return dumps(data)
