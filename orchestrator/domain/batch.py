"""A batch's record in the run store: what ``orchestrator batch resume`` needs to go on
with a batch without its file, and what ``orchestrator runs --batch ID`` lists.

It lives in the domain for the same reason as the checkpoint: the batch package writes
it, the store keeps it, and neither knows the other's types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BATCH_RUNNING = "running"


@dataclass
class BatchProject:
    """One project of a batch: its place in the batch file, its name and its project id
    (given when the batch starts, so the store maps the batch to its runs before any of
    them ran), and ``job``: the JSON-ready data its worker builds it from."""

    position: int
    name: str
    project_id: str
    job: dict[str, Any] = field(default_factory=dict)


@dataclass
class BatchRecord:
    """A batch: ``status`` is ``running`` (or was killed while it was), ``interrupted``,
    or the batch's final status; ``settings``: JSON-ready (backend, parallelism, caps, the
    command line's flags); ``summary``: the last ``batch-summary.json``."""

    batch_id: str
    status: str
    started_at: float
    updated_at: float
    budget_usd: float
    settings: dict[str, Any] = field(default_factory=dict)
    projects: list[BatchProject] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    attempt: int = 1
