"""The YAML project file (``--file``): its shape, its tasks, and the options a run gets
from flags and file together (flags beat the file; the file beats defaults).

The file is read by the one loader (:mod:`orchestrator.config`): aliases, duplicate
keys, deep nesting and huge files are refused before anything is parsed further, and
every problem is one line naming the file, the key path and the reason.  Tasks a user
wrote are checked and kept as written, never repaired: a typo or a broken graph is an
error naming the task, so the run does what the file says or does not start.
(Repairing belongs to model output: :func:`orchestrator.engine.planning.sanitize_tasks`.)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from msgspec import Meta, Struct

from ..config import convert, read_document
from ..config.fields import Count, Fraction, Name, NonNegative, Positive, Text
from ..domain.errors import ConfigError
from ..domain.tasks import Task, TaskType, check_task_graph
from ..domain.values import finite_number, text_value, whole_number
from ..governance.config import RunConfig, Sections
from .errors import UsageError

TaskIds = Annotated[list[Name], Meta(extra={"expected": "a list of task ids (strings), e.g. [a, b]"})]


class TaskEntry(Struct, frozen=True, forbid_unknown_fields=True):
    """One task of the project file; unset numbers take the task type's defaults."""

    described_as: ClassVar[str] = "a mapping with at least 'prompt'"

    prompt: Text
    id: Name | None = None
    type: TaskType = TaskType.COMPLEX_REASONING
    depends_on: TaskIds | None = None
    acceptance_threshold: Fraction | None = None
    max_iterations: Count | None = None
    max_output_tokens: Count | None = None

    def __post_init__(self) -> None:
        _sendable(self.prompt, "prompt")

    def task(self, index: int) -> Task:
        return Task(
            id=self.id or f"task_{index + 1}",
            type=self.type,
            prompt=self.prompt,
            depends_on=list(self.depends_on or ()),
            acceptance_threshold=self.acceptance_threshold,
            max_iterations=self.max_iterations,
            max_output_tokens=self.max_output_tokens,
        )


Tasks = Annotated[list[TaskEntry], Meta(min_length=1, extra={"expected": "a non-empty list of tasks"})]
DirectoryPath = Annotated[str, Meta(pattern=r"\S", extra={"expected": "a directory path"})]


class ProjectFile(Sections, frozen=True, forbid_unknown_fields=True):
    """The project file: the project, its caps, optional tasks, and the governance keys."""

    described_as: ClassVar[str] = "a mapping with at least 'project'"

    project: Text | None = None
    criteria: str | None = None
    budget_usd: NonNegative | None = None
    time_seconds: Positive | None = None
    concurrency: Count | None = None
    output_dir: DirectoryPath | None = None
    tasks: Tasks | None = None

    def __post_init__(self) -> None:
        for key in ("project", "criteria"):
            value = getattr(self, key)
            if value is not None:
                _sendable(value, key)
        self.task_list()  # ids unique, dependencies known, no cycle

    def task_list(self) -> list[Task] | None:
        if self.tasks is None:
            return None
        tasks = [entry.task(index) for index, entry in enumerate(self.tasks)]
        check_task_graph(tasks)
        return tasks


def _sendable(value: str, key: str) -> None:
    try:
        text_value(value)
    except ConfigError as exc:
        raise exc.within(key) from None


@dataclass
class RunOptions:
    project: str
    criteria: str
    budget_usd: float = 8.0
    time_seconds: float = 5400.0
    concurrency: int = 4
    output_dir: str | None = None
    tasks: list[Task] | None = None
    file_data: dict[str, Any] | None = None
    """The project file as read (its governance keys are kept for a resume)."""
    sections: Sections | None = None
    """The project file's governance keys, checked."""
    config: RunConfig | None = None
    """Policies, remediation, validators: loaded once the catalog is final."""


def load_project_file(path: str) -> tuple[ProjectFile, dict[str, Any]]:
    """The project file, checked, and its data as read; one-line :class:`ConfigError`."""
    data = read_document(path, what="project", fmt="yaml")
    shape = convert(data, ProjectFile, source=path)
    return shape, data if isinstance(data, dict) else {}


def _number(name: str, value: object, *, positive: bool = False) -> float:
    """A flag's number: finite, >= 0 (> 0 when ``positive``); else one line naming the flag."""
    try:
        return finite_number(value, minimum=None if positive else 0, positive=positive)
    except ConfigError as exc:
        raise UsageError(f"{name} {exc.reason}") from None


def _count(name: str, value: object) -> int:
    """A flag's whole number >= 1; else one line naming the flag."""
    try:
        return whole_number(value, minimum=1)
    except ConfigError as exc:
        raise UsageError(f"{name} {exc.reason}") from None


def _text(name: str, value: object) -> str:
    try:
        return text_value(value, what="text")
    except ConfigError as exc:
        raise UsageError(f"{name} {exc.reason}") from None


def resolve_options(args: argparse.Namespace) -> RunOptions:
    """Flags beat the project file; the file beats defaults.  Every value is checked
    here, before anything runs - a file's value too when a flag overrides it (a broken
    file is reported, not silently half-used)."""
    file, data = load_project_file(args.file) if args.file else (ProjectFile(), {})
    project = _text("--project", args.project) if args.project is not None else (file.project or "")
    criteria = _text("--criteria", args.criteria) if args.criteria is not None else (file.criteria or "")
    if not project.strip():
        raise UsageError("no project given: use --project TEXT or --file project.yaml")
    opts = RunOptions(project=project.strip(), criteria=criteria.strip())
    if args.budget is not None:
        opts.budget_usd = _number("--budget", args.budget)
    elif file.budget_usd is not None:
        opts.budget_usd = file.budget_usd
    if args.time is not None:
        opts.time_seconds = _number("--time", args.time, positive=True)
    elif file.time_seconds is not None:
        opts.time_seconds = file.time_seconds
    if args.concurrency is not None:
        opts.concurrency = _count("--concurrency", args.concurrency)
    elif file.concurrency is not None:
        opts.concurrency = file.concurrency
    if args.output_dir is not None and not args.output_dir.strip():
        raise UsageError("--output-dir must be a directory path, got ''")
    opts.output_dir = args.output_dir if args.output_dir is not None else file.output_dir
    if args.max_tasks is not None and not 1 <= args.max_tasks <= 15:
        raise UsageError("--max-tasks must be between 1 and 15")
    opts.tasks = file.task_list()
    opts.file_data = data
    opts.sections = file
    return opts
