"""Remediation: what the engine does when something goes wrong in a task.

When a *trigger* happens, the engine describes the situation (:class:`Situation`) and asks
the task's :class:`TaskRemediation` for a decision; it takes the first strategy of the
trigger's ordered *plan* that still has attempts left and applies now, and the engine
does it.  Every attempt is a ``remediation_started``/``remediation_finished`` pair on the
event bus (``remediation.strategy``, ``remediation.trigger``, ``remediation.success``),
opened with :meth:`RemediationEngine.attempt`.

Triggers:

* ``llm_error`` - a call of the task failed after the client's own retries (and after
  every critic/evaluator fallback).
* ``validation_failed`` - a round's output failed a deterministic validator.
* ``score_below_threshold`` - a round's output passed the validators but scored below the
  task's threshold (and the loop is not ending on a plateau).
* ``budget_low`` - before a round, the budget left holds less than ``budget_low_rounds``
  rounds of this task; or the budget refused a call.

Strategies (what the engine does; what ``remediation.success`` means):

* ``auto_retry`` - wait ``retry_delay_seconds`` and run the failed round again on the
  same model, keeping its finished steps (transient errors only, and only while the
  client has not marked the model unhealthy: with the client's defaults - 2 retries,
  unhealthy after 6 consecutive failures - a call that failed every attempt gets one
  more call before ``fallback_model``).  Success: the round completed.
* ``fallback_model`` - move to the next candidate model that is usable and passes the
  task's policies (for ``budget_low``: a cheaper one) and run the round on it.  Success:
  a model was found and the round completed (passed the validators, for
  ``validation_failed``; scored higher, for ``score_below_threshold``).
* ``adjust_prompt`` - run the next round with the failure spelled out in the revise
  prompt (the validators' messages, or the evaluator's score and reasons).  Success: that
  round passed the validators (``validation_failed``) or scored higher
  (``score_below_threshold``).
* ``degrade_threshold`` - lower the task's threshold by ``degrade_step`` (not below
  ``min_threshold``) and accept the best output so far if it now meets it (the task
  ends ``degraded``).  Success: the best output was accepted.
* ``skip_validator`` - only when every failed validator is listed in the
  ``skippable_validators`` of a policy of the task: stop running those validators for the
  task and score the output without them.  Success: the output passed the rest.
* ``abort_task`` - stop the task now; it keeps its best output (``degraded`` when that
  passed the validators, else ``failed``).  Success: always.

Default plans (each step: strategy x attempts per task):

=========================  ==============================================================
llm_error                  auto_retry x1, fallback_model x3, abort_task
validation_failed          adjust_prompt x2, skip_validator x1, fallback_model x1, abort_task
score_below_threshold      adjust_prompt x2, degrade_threshold x1
budget_low                 degrade_threshold x1, fallback_model x1
=========================  ==============================================================

Strategies that need another round (auto_retry, fallback_model, adjust_prompt,
abort_task) apply only while the task has rounds left.  When no step applies, the loop
goes on as it would without remediation; for ``llm_error`` that means the task fails with
the error, for a refused call that the task stops for lack of budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Annotated, ClassVar

from msgspec import UNSET, Meta, Struct, UnsetType, field

from .. import attributes as attr
from .. import events
from ..config import convert
from ..config.fields import Count, Fraction, NonNegative
from ..domain.errors import ConfigError

__all__ = [
    "Trigger",
    "Strategy",
    "Step",
    "RemediationConfig",
    "Situation",
    "Decision",
    "TaskRemediation",
    "RemediationEngine",
    "Attempt",
    "DEFAULT_PLANS",
    "STRATEGIES_FOR",
    "ConfigError",
]


class Trigger(StrEnum):
    LLM_ERROR = "llm_error"
    VALIDATION_FAILED = "validation_failed"
    SCORE_BELOW_THRESHOLD = "score_below_threshold"
    BUDGET_LOW = "budget_low"


class Strategy(StrEnum):
    AUTO_RETRY = "auto_retry"
    FALLBACK_MODEL = "fallback_model"
    ADJUST_PROMPT = "adjust_prompt"
    DEGRADE_THRESHOLD = "degrade_threshold"
    SKIP_VALIDATOR = "skip_validator"
    ABORT_TASK = "abort_task"


NEEDS_ROUND = frozenset({Strategy.AUTO_RETRY, Strategy.FALLBACK_MODEL, Strategy.ADJUST_PROMPT, Strategy.ABORT_TASK})
"""Strategies that only make sense while the task has rounds left."""
RUNS_ROUND = frozenset({Strategy.AUTO_RETRY, Strategy.FALLBACK_MODEL, Strategy.ADJUST_PROMPT})
"""Strategies whose attempt is the next round (the engine runs it inside the pair)."""

STRATEGIES_FOR: dict[Trigger, tuple[Strategy, ...]] = {
    Trigger.LLM_ERROR: (Strategy.AUTO_RETRY, Strategy.FALLBACK_MODEL, Strategy.ABORT_TASK),
    Trigger.VALIDATION_FAILED: (
        Strategy.ADJUST_PROMPT,
        Strategy.SKIP_VALIDATOR,
        Strategy.FALLBACK_MODEL,
        Strategy.DEGRADE_THRESHOLD,
        Strategy.ABORT_TASK,
    ),
    Trigger.SCORE_BELOW_THRESHOLD: (
        Strategy.ADJUST_PROMPT,
        Strategy.FALLBACK_MODEL,
        Strategy.DEGRADE_THRESHOLD,
        Strategy.ABORT_TASK,
    ),
    Trigger.BUDGET_LOW: (Strategy.DEGRADE_THRESHOLD, Strategy.FALLBACK_MODEL, Strategy.ABORT_TASK),
}
"""Which strategies make sense for which trigger (a plan may use only these)."""


class Step(Struct, frozen=True):
    strategy: Strategy
    max_attempts: int = 1

    def __str__(self) -> str:
        return f"{self.strategy.value} x{self.max_attempts}"


DEFAULT_PLANS: Mapping[Trigger, tuple[Step, ...]] = {
    Trigger.LLM_ERROR: (Step(Strategy.AUTO_RETRY, 1), Step(Strategy.FALLBACK_MODEL, 3), Step(Strategy.ABORT_TASK, 1)),
    Trigger.VALIDATION_FAILED: (
        Step(Strategy.ADJUST_PROMPT, 2),
        Step(Strategy.SKIP_VALIDATOR, 1),
        Step(Strategy.FALLBACK_MODEL, 1),
        Step(Strategy.ABORT_TASK, 1),
    ),
    Trigger.SCORE_BELOW_THRESHOLD: (Step(Strategy.ADJUST_PROMPT, 2), Step(Strategy.DEGRADE_THRESHOLD, 1)),
    Trigger.BUDGET_LOW: (Step(Strategy.DEGRADE_THRESHOLD, 1), Step(Strategy.FALLBACK_MODEL, 1)),
}


class RemediationConfig(Struct, frozen=True):
    """Plans per trigger (a trigger not given keeps its default plan; an empty plan turns
    remediation off for that trigger) and the strategies' settings.  From file-shaped
    data: :meth:`from_data`."""

    plans: Mapping[Trigger, tuple[Step, ...]] = field(default_factory=dict)
    retry_delay_seconds: float = 1.0
    degrade_step: float = 0.1
    min_threshold: float = 0.5
    budget_low_rounds: float = 2.0

    def __post_init__(self) -> None:
        for trigger, steps in self.plans.items():
            for index, step in enumerate(steps):
                _check_applies(step, trigger, f"plans.{trigger.value}[{index}]")

    def plan(self, trigger: Trigger | str) -> tuple[Step, ...]:
        trig = Trigger(trigger)
        return self.plans[trig] if trig in self.plans else DEFAULT_PLANS[trig]

    @classmethod
    def coerce(cls, value: object, source: str = "remediation") -> RemediationConfig:
        if value is None:
            return cls()
        if isinstance(value, RemediationConfig):
            return value
        return cls.from_data(value, source)

    @classmethod
    def from_data(cls, data: object, source: str = "") -> RemediationConfig:
        """``{plans: {llm_error: [auto_retry, {fallback_model: 2}]}, retry_delay_seconds: 2}``;
        the triggers may also be given at the top level.  One-line :class:`ConfigError`."""
        if data is None:
            return cls()
        shape: RemediationFile = convert(data, RemediationFile, source=source)
        return shape.config()

    def describe(self) -> list[str]:
        return [f"{t.value}: {', '.join(str(s) for s in self.plan(t)) or '(none)'}" for t in Trigger]


# -- the file shape (a project file's ``remediation`` key) -----------------------------------

StepItem = Annotated[
    Strategy | dict[Strategy, Count],
    Meta(extra={"expected": "a strategy name or {strategy: attempts}", "noun": "strategy"}),
]
Plan = Annotated[list[StepItem], Meta(extra={"expected": "a list of strategies"})] | None


class RemediationFile(Struct, frozen=True, forbid_unknown_fields=True):
    """What a file says: plans under ``plans`` or at the top level, and the settings."""

    described_as: ClassVar[str] = "a mapping with 'plans' and settings"

    plans: dict[Annotated[Trigger, Meta(extra={"noun": "trigger"})], Plan] | None = None
    llm_error: Plan | UnsetType = UNSET
    validation_failed: Plan | UnsetType = UNSET
    score_below_threshold: Plan | UnsetType = UNSET
    budget_low: Plan | UnsetType = UNSET
    retry_delay_seconds: NonNegative = 1.0
    degrade_step: NonNegative = 0.1
    min_threshold: Fraction = 0.5
    budget_low_rounds: NonNegative = 2.0

    def __post_init__(self) -> None:
        self.config()  # the plans' meaning: one strategy per step, each one that applies to its trigger

    def config(self) -> RemediationConfig:
        plans: dict[Trigger, tuple[Step, ...]] = {}
        written = [(f"plans.{t.value}", t, p) for t, p in (self.plans or {}).items()]
        written += [(t.value, t, getattr(self, t.value)) for t in Trigger if getattr(self, t.value) is not UNSET]
        for key, trigger, items in written:
            plans[trigger] = tuple(_step(item, f"{key}[{i}]", trigger) for i, item in enumerate(items or ()))
        return RemediationConfig(
            plans, self.retry_delay_seconds, self.degrade_step, self.min_threshold, self.budget_low_rounds
        )


def _step(item: Strategy | dict[Strategy, int], key: str, trigger: Trigger) -> Step:
    if isinstance(item, dict) and len(item) != 1:
        shown = {s.value: n for s, n in item.items()}
        raise ConfigError(f"a step is a strategy name or {{strategy: attempts}}, got {shown!r}"[:200], key=key)
    step = Step(*next(iter(item.items()))) if isinstance(item, dict) else Step(item)
    _check_applies(step, trigger, key)
    return step


def _check_applies(step: Step, trigger: Trigger, key: str) -> None:
    if step.strategy not in STRATEGIES_FOR[trigger]:
        raise ConfigError(
            f"{step.strategy.value} does not apply to {trigger.value} (use: "
            f"{', '.join(s.value for s in STRATEGIES_FOR[trigger])})",
            key=key,
        )


@dataclass(frozen=True)
class Situation:
    """What the engine knows when a trigger happens."""

    trigger: Trigger
    detail: str = ""
    rounds_left: int = 0
    transient: bool = False
    """llm_error: the error may pass (timeouts, rate limits, 5xx) and the model is still usable."""
    has_fallback: bool = False
    """An untried, usable candidate model not known to violate the policies (cheaper, for budget_low)."""
    best_passed: bool = False
    best_score: float = 0.0
    score: float = 0.0
    """The score of the round that triggered (score_below_threshold)."""
    threshold: float = 0.0
    failed_validators: tuple[str, ...] = ()
    skippable_validators: frozenset[str] = frozenset()
    time_left_seconds: float = math.inf


@dataclass(frozen=True)
class Decision:
    strategy: Strategy
    trigger: Trigger
    attempt: int
    situation: Situation
    delay_seconds: float = 0.0
    new_threshold: float | None = None
    skip: tuple[str, ...] = ()

    @property
    def runs_round(self) -> bool:
        return self.strategy in RUNS_ROUND


class Attempt:
    """One remediation attempt: sends the pair, carries ``success`` to the finish (False
    unless set; False when the body raises)."""

    __slots__ = ("decision", "success", "_handle")

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        self.success = False
        self._handle: events.PairContext | None = None

    def set_attribute(self, key: str, value: events.AttributeValue) -> None:
        if self._handle is not None:
            self._handle.set_attribute(key, value)

    def __enter__(self) -> Attempt:
        d = self.decision
        handle = self._handle = events.traced_remediation(d.strategy.value, d.trigger.value).__enter__()
        handle.set_attribute(attr.REMEDIATION_ATTEMPT, d.attempt)
        if d.situation.detail:
            # the detail quotes evaluators and validators: model text, shown only with content capture
            handle.set_attribute(attr.REMEDIATION_DETAIL, events.ModelText(d.situation.detail[:300]))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.set_attribute(attr.REMEDIATION_SUCCESS, bool(self.success) and exc is None)
            self._handle.__exit__(exc_type, exc, tb)


class TaskRemediation:
    """Per-task state: how many attempts of each plan step were used, and the history."""

    def __init__(self, config: RemediationConfig, task_id: str | None = None) -> None:
        self.config = config
        self.task_id = task_id
        self._used: dict[tuple[Trigger, int], int] = {}
        self.history: list[tuple[str, str, int]] = []  # (trigger, strategy, attempt)

    def decide(self, situation: Situation) -> Decision | None:
        """The first step of the trigger's plan with attempts left that applies now
        (one attempt is used), or None."""
        trigger = Trigger(situation.trigger)
        for index, step in enumerate(self.config.plan(trigger)):
            used = self._used.get((trigger, index), 0)
            if used >= step.max_attempts or not self.applies(step.strategy, situation):
                continue
            self._used[(trigger, index)] = used + 1
            self.history.append((trigger.value, step.strategy.value, used + 1))
            return self._decision(step.strategy, situation, used + 1)
        return None

    def applies(self, strategy: Strategy, s: Situation) -> bool:
        if strategy in NEEDS_ROUND and s.rounds_left <= 0:
            return False
        if strategy == Strategy.AUTO_RETRY:
            return s.transient and self.config.retry_delay_seconds < s.time_left_seconds
        if strategy == Strategy.FALLBACK_MODEL:
            return s.has_fallback
        if strategy == Strategy.DEGRADE_THRESHOLD:
            return s.best_passed and s.threshold > self.config.min_threshold
        if strategy == Strategy.SKIP_VALIDATOR:
            return bool(s.failed_validators) and set(s.failed_validators) <= set(s.skippable_validators)
        return True  # adjust_prompt, abort_task

    def _decision(self, strategy: Strategy, s: Situation, attempt: int) -> Decision:
        cfg = self.config
        if strategy == Strategy.AUTO_RETRY:
            return Decision(strategy, s.trigger, attempt, s, delay_seconds=cfg.retry_delay_seconds)
        if strategy == Strategy.DEGRADE_THRESHOLD:
            new = max(cfg.min_threshold, round(s.threshold - cfg.degrade_step, 6))
            return Decision(strategy, s.trigger, attempt, s, new_threshold=new)
        if strategy == Strategy.SKIP_VALIDATOR:
            return Decision(strategy, s.trigger, attempt, s, skip=tuple(s.failed_validators))
        return Decision(strategy, s.trigger, attempt, s)


class RemediationEngine:
    """Holds the configuration; gives each task its state and opens attempt pairs."""

    def __init__(self, config: RemediationConfig | None = None) -> None:
        self.config = config or RemediationConfig()

    def for_task(self, task_id: str | None = None) -> TaskRemediation:
        return TaskRemediation(self.config, task_id)

    @staticmethod
    def attempt(decision: Decision) -> Attempt:
        """``with engine.attempt(decision) as a: ...; a.success = ...``: the pair of one attempt."""
        return Attempt(decision)

    @classmethod
    def coerce(cls, value: object, source: str = "remediation") -> RemediationEngine:
        if isinstance(value, RemediationEngine):
            return value
        return cls(RemediationConfig.coerce(value, source))


def adjust_prompt_instruction(situation: Situation) -> str:
    """The text ``adjust_prompt`` adds to the next revise prompt."""
    if situation.trigger == Trigger.VALIDATION_FAILED:
        return (
            "An earlier version of the answer failed these automatic checks:\n"
            f"{situation.detail}\nMake sure the improved answer passes every one of them."
        )
    return (
        f"The evaluator scored the answer {situation.score:.2f}; at least {situation.threshold:.2f} "
        f"is needed. Its reasons: {situation.detail or 'none given'}\nAddress every point."
    )


def steps_of(plan: Sequence[Step]) -> str:
    return ", ".join(str(s) for s in plan)
