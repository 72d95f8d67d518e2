"""Domain types: tasks, budget, results and statuses, configuration errors and
the exception root (:class:`OrchestratorError`).

The bottom of the stack: this package imports nothing else of the orchestrator, so any
part (engine, client, governance, state, CLI) can share these types without a cycle.
"""

from __future__ import annotations

from .budget import CALL_TYPE_PHASE, Budget, Phase
from .errors import ConfigError, OrchestratorError
from .results import ProjectState, ProjectStatus, TaskResult, TaskStatus, Usage
from .tasks import TASK_TYPE_DEFAULTS, Task, TaskType, TypeDefaults

__all__ = [
    "Budget",
    "CALL_TYPE_PHASE",
    "ConfigError",
    "OrchestratorError",
    "Phase",
    "ProjectState",
    "ProjectStatus",
    "TASK_TYPE_DEFAULTS",
    "Task",
    "TaskResult",
    "TaskStatus",
    "TaskType",
    "TypeDefaults",
    "Usage",
]
