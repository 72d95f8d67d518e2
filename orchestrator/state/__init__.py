"""The run store: checkpoints of runs in SQLite, so a stopped run can be resumed and past
runs listed.

``RunStore(state_dir=None)`` opens (or creates) ``runs.sqlite3`` in the state directory
(default: ``$ORCHESTRATOR_STATE_DIR``, else the user data directory) and implements the
engine's checkpoint store: ``claim`` (a per-project lock held for a run's lifetime),
``load`` and ``save`` (one transaction per checkpoint), plus the history the CLI shows
(``runs``, ``delete``).

An emitter-level package: it imports the domain only, never observers or OpenTelemetry.
"""

from __future__ import annotations

from ..domain.checkpoint import Checkpoint, ProjectBusyError, StoreError, UnknownProjectError
from .paths import DB_NAME, default_state_dir
from .schema import SCHEMA_VERSION
from .store import RunRow, RunStore

__all__ = [
    "Checkpoint",
    "DB_NAME",
    "ProjectBusyError",
    "RunRow",
    "RunStore",
    "SCHEMA_VERSION",
    "StoreError",
    "UnknownProjectError",
    "default_state_dir",
]
