"""Domain types: budget, tasks, results, project state, and the model catalog.

The catalog is data, not code: prices, windows and routing live in tables here so that
the engine, the client and the CLI read one source of truth.
"""

from __future__ import annotations

import time
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


class Phase(StrEnum):
    """Where money goes; the budget keeps spend per phase."""

    DECOMPOSITION = "decomposition"
    GENERATION = "generation"
    CROSS_REVIEW = "cross_review"
    EVALUATION = "evaluation"


CALL_TYPE_PHASE: dict[str, Phase] = {
    "decompose": Phase.DECOMPOSITION,
    "generate": Phase.GENERATION,
    "revise": Phase.GENERATION,
    "critique": Phase.CROSS_REVIEW,
    "evaluate": Phase.EVALUATION,
}


# ---------------------------------------------------------------------------------------
# Model catalog
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model: who serves it, what it costs (USD per 1M tokens), how much it reads."""

    name: str
    provider: str
    input_per_m: float
    output_per_m: float
    context_window: int
    max_output_tokens: int = 4096
    region: str = "us"
    tags: tuple[str, ...] = ()

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_m + output_tokens * self.output_per_m) / 1_000_000

    @property
    def is_local(self) -> bool:
        return self.provider == "local"


LOCAL_MODEL = "smollm2-135m"

# Prices in USD per 1M tokens (input, output), list prices of November 2026.
CATALOG: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo(LOCAL_MODEL, "local", 0.0, 0.0, 8192, 512, region="local",
                  tags=("no_train", "pii_allowed", "offline")),
        ModelInfo("gpt-4o", "openai", 2.50, 10.00, 128_000, 16_384, tags=("no_train",)),
        ModelInfo("gpt-4o-mini", "openai", 0.15, 0.60, 128_000, 16_384, tags=("no_train",)),
        ModelInfo("gpt-4.1", "openai", 2.00, 8.00, 1_047_576, 32_768, tags=("no_train",)),
        ModelInfo("gpt-4.1-mini", "openai", 0.40, 1.60, 1_047_576, 32_768, tags=("no_train",)),
        ModelInfo("claude-sonnet-4-5", "anthropic", 3.00, 15.00, 200_000, 64_000, tags=("no_train",)),
        ModelInfo("claude-haiku-4-5", "anthropic", 1.00, 5.00, 200_000, 64_000, tags=("no_train",)),
        ModelInfo("claude-opus-4-1", "anthropic", 15.00, 75.00, 200_000, 32_000, tags=("no_train",)),
        ModelInfo("gemini-2.5-pro", "google", 1.25, 10.00, 1_048_576, 65_536),
        ModelInfo("gemini-2.5-flash", "google", 0.30, 2.50, 1_048_576, 65_536),
        ModelInfo("deepseek-chat", "deepseek", 0.28, 0.42, 128_000, 8_192, region="cn"),
        ModelInfo("deepseek-reasoner", "deepseek", 0.28, 0.42, 128_000, 65_536, region="cn"),
        ModelInfo("kimi-k2-0905-preview", "kimi", 0.60, 2.50, 262_144, 16_384, region="cn"),
        ModelInfo("kimi-k2-turbo-preview", "kimi", 1.15, 8.00, 262_144, 16_384, region="cn"),
        ModelInfo("kimi-k2-thinking", "kimi", 0.60, 2.50, 262_144, 32_768, region="cn"),
        # OpenRouter ids are "<upstream>/<model>"; it bills the upstream's list price
        ModelInfo("openai/gpt-4o-mini", "openrouter", 0.15, 0.60, 128_000, 16_384),
        ModelInfo("anthropic/claude-sonnet-4.5", "openrouter", 3.00, 15.00, 1_000_000, 64_000),
        ModelInfo("google/gemini-2.5-flash", "openrouter", 0.30, 2.50, 1_048_576, 65_535),
        ModelInfo("meta-llama/llama-3.3-70b-instruct", "openrouter", 0.13, 0.40, 131_072, 16_384),
    )
}


def register_model(info: ModelInfo) -> ModelInfo | None:
    """Add (or replace) a catalog entry, e.g. a model served by a local server; returns
    the entry it replaced (None if new), so a caller can put it back after the run."""
    previous = CATALOG.get(info.name)
    CATALOG[info.name] = info
    return previous


def unregister_model(name: str, previous: ModelInfo | None = None) -> None:
    """Undo :func:`register_model`: restore ``previous`` or drop the entry."""
    if previous is None:
        CATALOG.pop(name, None)
    else:
        CATALOG[name] = previous


def get_model(name: str) -> ModelInfo:
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(CATALOG))}") from None


# Ordered candidates per task type: the first available, healthy and policy-compliant wins.
ROUTING: dict[TaskType, tuple[str, ...]] = {
    TaskType.CODE_GENERATION: ("claude-sonnet-4-5", "gpt-4.1", "deepseek-chat", "gemini-2.5-pro",
                               "kimi-k2-0905-preview", "gpt-4o-mini", "anthropic/claude-sonnet-4.5", LOCAL_MODEL),
    TaskType.CODE_REVIEW: ("gpt-4.1", "claude-sonnet-4-5", "gemini-2.5-pro", "deepseek-chat",
                           "gpt-4o-mini", "google/gemini-2.5-flash", LOCAL_MODEL),
    TaskType.COMPLEX_REASONING: ("claude-opus-4-1", "gpt-4.1", "gemini-2.5-pro", "deepseek-reasoner",
                                 "claude-sonnet-4-5", "anthropic/claude-sonnet-4.5", LOCAL_MODEL),
    TaskType.CREATIVE_WRITING: ("claude-sonnet-4-5", "gpt-4o", "gemini-2.5-flash", "kimi-k2-0905-preview",
                                "anthropic/claude-sonnet-4.5", LOCAL_MODEL),
    TaskType.DATA_EXTRACTION: ("gpt-4o-mini", "gemini-2.5-flash", "claude-haiku-4-5", "deepseek-chat",
                               "openai/gpt-4o-mini", LOCAL_MODEL),
    TaskType.SUMMARIZATION: ("gemini-2.5-flash", "gpt-4o-mini", "claude-haiku-4-5", "deepseek-chat",
                             "google/gemini-2.5-flash", LOCAL_MODEL),
    TaskType.EVALUATION: ("gpt-4.1-mini", "claude-haiku-4-5", "gemini-2.5-flash", "deepseek-chat",
                          "openai/gpt-4o-mini", LOCAL_MODEL),
}

# Planner (decomposition) and evaluator preferences.
PLANNER_CANDIDATES: tuple[str, ...] = ("claude-sonnet-4-5", "gpt-4.1", "gemini-2.5-pro", "deepseek-chat",
                                       "gpt-4o-mini", "anthropic/claude-sonnet-4.5", LOCAL_MODEL)


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


# ---------------------------------------------------------------------------------------
# Tasks and results
# ---------------------------------------------------------------------------------------

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
        return d


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


class Budget:
    """USD and wall-clock caps that are never exceeded.

    Callers ``reserve`` the worst-case cost of a call before sending it and ``settle``
    the real cost afterwards, so concurrent calls cannot together overshoot the cap.
    """

    def __init__(self, max_usd: float = 8.0, max_time_seconds: float = 5400.0) -> None:
        if max_usd < 0 or max_time_seconds <= 0:
            raise ValueError("budget must be >= 0 USD and time > 0 seconds")
        self.max_usd = float(max_usd)
        self.max_time_seconds = float(max_time_seconds)
        self.spent_usd = 0.0
        self.reserved_usd = 0.0
        self.phase_spend: dict[str, float] = {p.value: 0.0 for p in Phase}
        self._started = time.monotonic()

    def restart_clock(self) -> None:
        self._started = time.monotonic()

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.max_usd - self.spent_usd - self.reserved_usd)

    @property
    def elapsed_seconds(self) -> float:
        return time.monotonic() - self._started

    @property
    def remaining_seconds(self) -> float:
        return max(0.0, self.max_time_seconds - self.elapsed_seconds)

    def can_afford(self, cost: float) -> bool:
        return cost <= self.remaining_usd + 1e-12

    def reserve(self, cost: float) -> bool:
        """Hold ``cost`` for a call about to be sent; False (nothing held) if it does not fit."""
        if not self.can_afford(cost):
            return False
        self.reserved_usd += cost
        return True

    def settle(self, reserved: float, actual: float, phase: Phase | str) -> None:
        """Release a reservation and book the real cost (never above the reservation's cap)."""
        self.reserved_usd = max(0.0, self.reserved_usd - reserved)
        self.spent_usd += actual
        key = phase.value if isinstance(phase, Phase) else phase
        self.phase_spend[key] = self.phase_spend.get(key, 0.0) + actual

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_usd": self.max_usd, "spent_usd": round(self.spent_usd, 8),
            "remaining_usd": round(self.remaining_usd, 8),
            "max_time_seconds": self.max_time_seconds,
            "elapsed_seconds": round(self.elapsed_seconds, 3), "phase_spend": dict(self.phase_spend),
        }


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
