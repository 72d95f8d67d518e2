"""The store's schema, its version, and what happens to a store of another version.

Why versioned: the store outlives the program that wrote it; a newer release must either
migrate an older store (in one transaction, so a crash mid-way leaves the old one whole)
or refuse it in one line, and an older release must never write into a newer store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from ..domain.checkpoint import StoreError

SCHEMA_VERSION = 3

_RUN_EVENTS = """CREATE TABLE run_events (
        project_id TEXT NOT NULL REFERENCES runs(project_id) ON DELETE CASCADE,
        attempt INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        events BLOB NOT NULL,
        PRIMARY KEY (project_id, attempt, seq)
    )"""
"""Each attempt's event log: batches of zlib-compressed JSON lines, in ``seq`` order
(version 2)."""

_BATCHES = (
    """CREATE TABLE batches (
        batch_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        started_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        budget_usd REAL NOT NULL,
        record TEXT NOT NULL
    )""",
    """CREATE TABLE batch_projects (
        batch_id TEXT NOT NULL REFERENCES batches(batch_id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        project_id TEXT NOT NULL,
        job TEXT NOT NULL,
        PRIMARY KEY (batch_id, position)
    )""",
    "CREATE INDEX batch_projects_by_project ON batch_projects (project_id)",
)
"""Batches (``orchestrator batch``) and their projects (version 3)."""

CREATE: tuple[str, ...] = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE runs (
        project_id TEXT PRIMARY KEY,
        description TEXT NOT NULL,
        status TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        started_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        spent_usd REAL NOT NULL,
        tasks_total INTEGER NOT NULL,
        tasks_done INTEGER NOT NULL,
        checkpoint TEXT NOT NULL
    )""",
    """CREATE TABLE task_results (
        project_id TEXT NOT NULL REFERENCES runs(project_id) ON DELETE CASCADE,
        task_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        status TEXT NOT NULL,
        result TEXT NOT NULL,
        PRIMARY KEY (project_id, task_id)
    )""",
    "CREATE INDEX runs_by_start ON runs (started_at)",
    _RUN_EVENTS,
    *_BATCHES,
)

MIGRATIONS: Mapping[int, Sequence[str]] = {1: (_RUN_EVENTS,), 2: _BATCHES}
"""SQL that takes a store from version ``n`` to ``n + 1``; a store older than the oldest
key (or with no entry on its way up) is refused."""


def prepare(conn: sqlite3.Connection, where: str) -> None:
    """Create the schema in an empty store, migrate an older one, or raise a one-line
    :class:`StoreError` for one this version cannot use.  Runs under a write lock, so two
    processes opening a new store at once do not both create it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            for statement in CREATE:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        else:
            version = _version(conn, tables, where)
            if version != SCHEMA_VERSION:
                _migrate(conn, version, where)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _version(conn: sqlite3.Connection, tables: set[str], where: str) -> int:
    if "schema_version" not in tables:
        raise StoreError(f"{where}: not a run store of this program (no schema version); use another --state-dir")
    rows = conn.execute("SELECT version FROM schema_version").fetchall()
    if len(rows) != 1 or not isinstance(rows[0][0], int):
        raise StoreError(f"{where}: the schema version is unreadable; use another --state-dir")
    return int(rows[0][0])


def _migrate(conn: sqlite3.Connection, version: int, where: str) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{where}: store schema version {version} is newer than this orchestrator "
            f"understands ({SCHEMA_VERSION}); upgrade multi-llm-orchestrator or use another --state-dir"
        )
    steps = [MIGRATIONS.get(v) for v in range(version, SCHEMA_VERSION)]
    if any(step is None for step in steps):
        raise StoreError(
            f"{where}: store schema version {version} is too old to migrate to {SCHEMA_VERSION}; "
            "move the file away or use another --state-dir"
        )
    for step in steps:
        for statement in step or ():
            conn.execute(statement)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
