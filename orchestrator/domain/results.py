"""Results: statuses of tasks and projects, a task's result, and a run's state."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TypedDict

from .budget import Budget
from .tasks import Task
from .values import JsonObject


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
class Usage:
    """What LLM calls consumed.  ``llm_calls`` counts every attempt (each is one
    ``llm_call`` span), cached answers included; ``cached_calls`` the answers served from
    the cache, which count no tokens and cost $0 (no provider processed them)."""

    llm_calls: int = 0
    cached_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def book(
        self, *, calls: int, input_tokens: int = 0, output_tokens: int = 0, cost_usd: float = 0.0, cached: bool = False
    ) -> None:
        self.llm_calls += calls
        if cached:
            self.cached_calls += calls
            return
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cost_usd += cost_usd

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.llm_calls + other.llm_calls,
            self.cached_calls + other.cached_calls,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cost_usd + other.cost_usd,
        )

    def to_dict(self) -> JsonObject:
        d = asdict(self)
        d["cost_usd"] = round(self.cost_usd, 8)
        return d


class CheckRecord(TypedDict):
    """One acceptance check's result on a task's kept output, as ``summary.json`` and the
    run store hold it."""

    check: str
    passed: bool
    error_type: str | None
    """The failure's kind (``AssertionError``, ``Timeout``, ``NotRun``...); None when it passed."""
    error: str


@dataclass
class TaskResult:
    task_id: str
    output: str = ""
    score: float | None = None
    """The evaluator's score (0..1) of the kept output; None when no evaluator scored it
    (its acceptance checks decided alone, a validator rejected it, or it never ran).  The
    status says whether the task met its threshold."""
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
    llm_calls: int = 0
    cached_calls: int = 0
    checks: list[CheckRecord] = field(default_factory=list)
    """The acceptance checks' results on the kept output."""

    @property
    def checks_passed(self) -> int:
        return sum(1 for c in self.checks if c.get("passed"))

    @property
    def usage(self) -> Usage:
        return Usage(self.llm_calls, self.cached_calls, self.input_tokens, self.output_tokens, self.cost_usd)

    def book(
        self, *, calls: int, input_tokens: int = 0, output_tokens: int = 0, cost_usd: float = 0.0, cached: bool = False
    ) -> None:
        """Count one call's attempts (see :class:`Usage` for what a cached answer counts)."""
        usage = self.usage
        usage.book(
            calls=calls, input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost_usd, cached=cached
        )
        self.llm_calls, self.cached_calls = usage.llm_calls, usage.cached_calls
        self.input_tokens, self.output_tokens, self.cost_usd = usage.input_tokens, usage.output_tokens, usage.cost_usd

    def to_dict(self) -> JsonObject:
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
    planning: Usage = field(default_factory=Usage)
    """The decomposition's calls, which belong to no task."""
    profile: str = ""
    """The run profile used (``local`` or ``full``)."""
    sandbox: str = ""
    """The isolation model-written code ran under in this attempt (``bwrap``, ``unshare``
    or ``none``)."""
    attempt: int = 1
    """1 for a first run; a resumed run is attempt 2, 3..."""
    restored: dict[str, int] = field(default_factory=dict)
    """Results kept from the checkpoint of an earlier attempt: task id -> that attempt."""

    @property
    def total_cost(self) -> float:
        return self.budget.spent_usd

    @property
    def usage(self) -> Usage:
        """Every call of the run: planning plus every task's (remediation calls are their task's)."""
        total = Usage() + self.planning
        for result in self.results.values():
            total = total + result.usage
        return total

    def to_dict(self) -> JsonObject:
        return {
            "project_id": self.project_id,
            "description": self.description,
            "criteria": self.criteria,
            "status": self.status.value if self.status else None,
            "tasks": {k: t.to_dict() for k, t in self.tasks.items()},
            "execution_order": list(self.execution_order),
            "results": {k: r.to_dict() for k, r in self.results.items()},
            "budget": self.budget.to_dict(),
            "notes": list(self.notes),
            "profile": self.profile,
            "sandbox": self.sandbox,
            "planning": self.planning.to_dict(),
            "usage": self.usage.to_dict(),
            "attempt": self.attempt,
            "restored": dict(self.restored),
        }
