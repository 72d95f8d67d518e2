"""Checkpoints to and from the store's rows: JSON text, typed back on the way in.

Why JSON and not pickle: a store must stay readable by another version of the program
(and by a person with ``sqlite3``), and must never run code when loaded.  Every string
goes through :func:`~orchestrator.redaction.redact` on the way out: the engine redacts
what a user gave where it enters a run, and this catches a key in model-written text or
in the settings a run keeps (a policy file's data, an error message).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import Any

from ..domain.checkpoint import Checkpoint
from ..domain.results import TaskResult, TaskStatus, Usage
from ..domain.tasks import Task, TaskType
from ..redaction import redact, redact_data

_RESULT_FIELDS = {f.name for f in fields(TaskResult)}
_TASK_FIELDS = {f.name for f in fields(Task)}
_USAGE_FIELDS = {f.name for f in fields(Usage)}


def dumps(value: object) -> str:
    """Compact, redacted JSON; what JSON cannot hold (a date from a YAML file) becomes its text."""
    return json.dumps(redact_data(value), separators=(",", ":"), sort_keys=True, default=lambda v: redact(str(v)))


def checkpoint_json(cp: Checkpoint) -> str:
    """The checkpoint without its results (they are rows of their own)."""
    data = asdict(cp)
    data.pop("results")
    data["tasks"] = [t.to_dict() for t in cp.tasks] if cp.tasks is not None else None
    return dumps(data)


def result_json(result: TaskResult) -> str:
    return dumps(result.to_dict())


def task_from(data: dict[str, Any]) -> Task:
    values = {k: v for k, v in data.items() if k in _TASK_FIELDS}
    values["type"] = TaskType(values["type"])
    values["depends_on"] = [str(d) for d in values.get("depends_on") or []]
    if "checks" in values:
        values["checks"] = tuple(str(c) for c in values["checks"] or ())
    return Task(**values)


def result_from(data: dict[str, Any]) -> TaskResult:
    values = {k: v for k, v in data.items() if k in _RESULT_FIELDS}
    values["status"] = TaskStatus(values["status"])
    return TaskResult(**values)


def checkpoint_from(text: str, results: dict[str, TaskResult]) -> Checkpoint:
    """Raises ValueError/KeyError/TypeError on a damaged record (the store reports it)."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("a checkpoint record is not a JSON object")
    known = {f.name for f in fields(Checkpoint)}
    values = {k: v for k, v in data.items() if k in known}
    tasks = values.get("tasks")
    values["tasks"] = [task_from(t) for t in tasks] if tasks is not None else None
    values["results"] = results
    planning = values.get("planning")
    values["planning"] = Usage(**{k: v for k, v in planning.items() if k in _USAGE_FIELDS}) if planning else Usage()
    return Checkpoint(**values)
