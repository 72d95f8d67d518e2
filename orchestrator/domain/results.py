"""Results: statuses of tasks and projects, a task's result, and a run's state."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from .budget import Budget
from .tasks import Task


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    DEGRADED = "degraded"
    FAILED = "failed"
    SKIPPED = "skipped"


class ProjectStatus(StrEnum):
    SUCCESS = "success"
    PARTIAL_SUCCESS = "partial_success"
    FAILED = "failed"
    BUDGET_EXHAUSTED = "budget_exhausted"
    TIMED_OUT = "timed_out"


@dataclass
class TaskResult:
    task_id: str
    output: str = ""
    score: float = 0.0
    status: TaskStatus = TaskStatus.PENDING
    model_used: str | None = None
    reviewer_model: str | None = None
    iterations: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    deterministic_check_passed: bool | None = None
    fallback_count: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d


@dataclass
class ProjectState:
    project_id: str
    description: str
    criteria: str
    budget: Budget
    tasks: dict[str, Task] = field(default_factory=dict)
    execution_order: list[str] = field(default_factory=list)
    results: dict[str, TaskResult] = field(default_factory=dict)
    status: ProjectStatus | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total_cost(self) -> float:
        return self.budget.spent_usd

    def to_dict(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id, "description": self.description,
            "criteria": self.criteria, "status": self.status.value if self.status else None,
            "tasks": {k: t.to_dict() for k, t in self.tasks.items()},
            "execution_order": list(self.execution_order),
            "results": {k: r.to_dict() for k, r in self.results.items()},
            "budget": self.budget.to_dict(), "notes": list(self.notes),
        }
