"""Tasks: what a project is split into, and the defaults each task type brings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class TaskType(StrEnum):
    CODE_GENERATION = "code_generation"
    CODE_REVIEW = "code_review"
    COMPLEX_REASONING = "complex_reasoning"
    CREATIVE_WRITING = "creative_writing"
    DATA_EXTRACTION = "data_extraction"
    SUMMARIZATION = "summarization"
    EVALUATION = "evaluation"


@dataclass(frozen=True, slots=True)
class TypeDefaults:
    threshold: float
    max_iterations: int
    max_output_tokens: int


TASK_TYPE_DEFAULTS: dict[TaskType, TypeDefaults] = {
    TaskType.CODE_GENERATION: TypeDefaults(0.85, 3, 2048),
    TaskType.CODE_REVIEW: TypeDefaults(0.75, 2, 1500),
    TaskType.COMPLEX_REASONING: TypeDefaults(0.80, 3, 2048),
    TaskType.CREATIVE_WRITING: TypeDefaults(0.70, 2, 1500),
    TaskType.DATA_EXTRACTION: TypeDefaults(0.90, 3, 1024),
    TaskType.SUMMARIZATION: TypeDefaults(0.75, 2, 800),
    TaskType.EVALUATION: TypeDefaults(0.80, 2, 800),
}


@dataclass
class Task:
    """One unit of work. ``None`` fields take the task type's defaults; given values win."""

    id: str
    type: TaskType
    prompt: str
    depends_on: list[str] = field(default_factory=list)
    acceptance_threshold: float | None = None
    max_iterations: int | None = None
    max_output_tokens: int | None = None
    checks: tuple[str, ...] = ()
    """Acceptance checks (Python expressions or asserts from the criteria) this task's
    code must pass; assigned by the engine."""

    @property
    def defaults(self) -> TypeDefaults:
        return TASK_TYPE_DEFAULTS[self.type]

    @property
    def threshold(self) -> float:
        return self.acceptance_threshold if self.acceptance_threshold is not None else self.defaults.threshold

    @property
    def iterations_cap(self) -> int:
        return self.max_iterations if self.max_iterations is not None else self.defaults.max_iterations

    @property
    def output_tokens_cap(self) -> int:
        return self.max_output_tokens if self.max_output_tokens is not None else self.defaults.max_output_tokens

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["type"] = self.type.value
        d["checks"] = list(self.checks)
        return d
