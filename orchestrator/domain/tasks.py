"""Tasks: what a project is split into, and the defaults each task type brings."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from .errors import ConfigError
from .values import JsonObject, finite_number, whole_number


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

    def check_fields(self) -> None:
        """The given optional fields are in range: ``acceptance_threshold`` a number in
        0..1, ``max_iterations`` and ``max_output_tokens`` whole numbers >= 1 (normalised
        in place); :class:`ConfigError` keyed by the field otherwise."""
        for key, check in (
            ("acceptance_threshold", lambda v: finite_number(v, minimum=0, maximum=1)),
            ("max_iterations", lambda v: whole_number(v, minimum=1)),
            ("max_output_tokens", lambda v: whole_number(v, minimum=1)),
        ):
            value = getattr(self, key)
            if value is None:
                continue
            try:
                setattr(self, key, check(value))
            except ConfigError as exc:
                raise exc.within(key) from None

    def to_dict(self) -> JsonObject:
        d = asdict(self)
        d["type"] = self.type.value
        d["checks"] = list(self.checks)
        return d


# -- the task graph -------------------------------------------------------------------
# Tasks a user wrote are checked by the project file's shape (orchestrator.cli.project_file)
# and then here: what a user wrote is never repaired, a broken graph is an error naming the tasks.


def check_task_graph(tasks: list[Task]) -> None:
    """Ids unique; every dependency names another task; no cycle.  Raises
    :class:`ConfigError` naming the tasks involved."""
    seen: set[str] = set()
    for task in tasks:
        if task.id in seen:
            raise ConfigError(f"duplicate task id {task.id!r} (each task needs its own id)", key="tasks")
        seen.add(task.id)
    for task in tasks:
        for dep in task.depends_on:
            if dep == task.id:
                raise ConfigError(f"task {task.id!r} depends on itself", key=f"tasks.{task.id}.depends_on")
            if dep not in seen:
                close = difflib.get_close_matches(dep, sorted(seen), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(
                    f"task {task.id!r} depends on {dep!r}, which is not a task ({hint}tasks: "
                    f"{', '.join(sorted(seen))})",
                    key=f"tasks.{task.id}.depends_on",
                )
    cycle = find_cycle(tasks)
    if cycle:
        raise ConfigError(f"dependency cycle: {' -> '.join(cycle)}", key="tasks")


def find_cycle(tasks: list[Task]) -> list[str]:
    """One dependency cycle as ``[a, b, ..., a]`` (a depends on b ...), or [] when the
    graph is acyclic.  Unknown dependencies are ignored."""
    deps = {t.id: [d for d in t.depends_on] for t in tasks}
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for root in deps:
        if state.get(root):
            continue
        path: list[str] = [root]
        stack = [iter(deps[root])]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            if nxt not in deps or state.get(nxt) == 2:
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            state[nxt] = 1
            path.append(nxt)
            stack.append(iter(deps[nxt]))
    return []
