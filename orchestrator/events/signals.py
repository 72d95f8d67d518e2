"""The catalogue: every signal of the bus, with its payload type and what it means.

This is the one place an event is declared.  Adding one takes a payload class
(:mod:`.payloads`), one line here (``_point`` or ``_pair``: name, payload, when it is
sent; the name in ``__all__``), and its row in the events catalogue of the docs;
``tests/events/test_catalogue.py`` checks that the three agree.  The catalogue gives each payload class its
``signal_name``, and builds :data:`PAIRS`, :data:`POINT_SIGNALS`, :data:`ALL_SIGNALS` and
:data:`SIGNALS_BY_NAME` from the declarations in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from .bus import BusSignal, PointSignal
from .payloads import (
    AcceptanceCheck,
    BatchFinished,
    BatchProgress,
    BatchStarted,
    BudgetWarning,
    CacheHit,
    DecompositionFallback,
    Event,
    IterationScored,
    JsonModeRejected,
    LlmCallDispatched,
    LlmCallFinished,
    LlmCallStarted,
    LlmRetry,
    LocalModelLoaded,
    ModelUnhealthy,
    PairFinish,
    PairStart,
    PointEvent,
    PolicyChecked,
    PolicyCheckStarted,
    ProjectFinished,
    ProjectStarted,
    RemediationFinished,
    RemediationStarted,
    TaskFinished,
    TaskRestored,
    TaskSkipped,
    TasksPlanned,
    TaskStarted,
    ValidationFailed,
)

__all__ = [
    "PAIRS",
    "POINT_SIGNALS",
    "ALL_SIGNALS",
    "SIGNALS_BY_NAME",
    "project_started",
    "project_finished",
    "task_started",
    "task_finished",
    "llm_call_started",
    "llm_call_finished",
    "policy_check_started",
    "policy_checked",
    "remediation_started",
    "remediation_finished",
    "batch_started",
    "batch_finished",
    "budget_warning",
    "cache_hit",
    "validation_failed",
    "decomposition_fallback",
    "model_unhealthy",
    "task_skipped",
    "iteration_scored",
    "llm_retry",
    "tasks_planned",
    "task_restored",
    "llm_call_dispatched",
    "json_mode_rejected",
    "acceptance_check",
    "local_model_loaded",
    "batch_progress",
]

P = ParamSpec("P")
E = TypeVar("E", bound=PointEvent)

_pairs: list[tuple[BusSignal, BusSignal]] = []
_points: list[BusSignal] = []


def _doc(when: str, payload: type[Event]) -> str:
    return f"{when} Payload: :class:`{payload.__name__}`."


def _named(name: str, payload: type[Event]) -> None:
    """Give ``payload`` its signal's name; a payload class belongs to one signal only."""
    if payload.__dict__.get("signal_name", name) != name:
        raise TypeError(f"{payload.__name__} is already the payload of {payload.__dict__['signal_name']}")
    payload.signal_name = name


def _pair(
    start_name: str,
    start: type[PairStart],
    start_when: str,
    finish_name: str,
    finish: type[PairFinish],
    finish_when: str,
) -> tuple[BusSignal, BusSignal]:
    """A start/finish pair (sent by a ``traced_*`` helper)."""
    _named(start_name, start)
    _named(finish_name, finish)
    pair = (
        BusSignal(start_name, _doc(start_when, start), start),
        BusSignal(finish_name, _doc(finish_when, finish), finish),
    )
    _pairs.append(pair)
    return pair


def _point(name: str, payload: Callable[P, E], when: str) -> PointSignal[P, E]:
    """A point event (sent by :func:`~orchestrator.events.emit`), typed by its payload."""
    signal = PointSignal(name, "", payload)
    signal.__doc__ = _doc(when, signal.payload_type)
    _named(name, signal.payload_type)
    _points.append(signal)
    return signal


# --- pairs, in the order observers see them listed -------------------------------------
project_started, project_finished = _pair(
    "project_started",
    ProjectStarted,
    "Sent when run_project begins.",
    "project_finished",
    ProjectFinished,
    "Sent when run_project ends, however it ends.",
)
task_started, task_finished = _pair(
    "task_started",
    TaskStarted,
    "Sent when a task starts running.",
    "task_finished",
    TaskFinished,
    "Sent when a task's loop ends.",
)
llm_call_started, llm_call_finished = _pair(
    "llm_call_started",
    LlmCallStarted,
    "Sent before each LLM call attempt (cached ones too).",
    "llm_call_finished",
    LlmCallFinished,
    "Sent after each LLM call attempt.",
)
policy_check_started, policy_checked = _pair(
    "policy_check_started",
    PolicyCheckStarted,
    "Sent before a model is checked against policies.",
    "policy_checked",
    PolicyChecked,
    "Sent with the result of a policy check.",
)
remediation_started, remediation_finished = _pair(
    "remediation_started",
    RemediationStarted,
    "Sent when a remediation strategy is attempted.",
    "remediation_finished",
    RemediationFinished,
    "Sent with the outcome of a remediation attempt.",
)
batch_started, batch_finished = _pair(
    "batch_started",
    BatchStarted,
    "Sent when a batch of projects starts.",
    "batch_finished",
    BatchFinished,
    "Sent when a batch ends, however it ends.",
)

# --- point events ----------------------------------------------------------------------
budget_warning = _point("budget_warning", BudgetWarning, "Point event: budget threshold crossed or call refused.")
cache_hit = _point("cache_hit", CacheHit, "Point event: an LLM call was answered from the cache.")
validation_failed = _point(
    "validation_failed", ValidationFailed, "Point event: a deterministic validator rejected an output."
)
decomposition_fallback = _point(
    "decomposition_fallback", DecompositionFallback, "Point event: decomposition unusable, single task."
)
model_unhealthy = _point("model_unhealthy", ModelUnhealthy, "Point event: a model is excluded for the rest of the run.")
task_skipped = _point("task_skipped", TaskSkipped, "Point event: a task will not run.")
iteration_scored = _point("iteration_scored", IterationScored, "Point event: a task iteration was evaluated.")
llm_retry = _point("llm_retry", LlmRetry, "Point event: a transient LLM error will be retried.")
tasks_planned = _point("tasks_planned", TasksPlanned, "Point event: the task DAG is known, before scheduling.")
llm_call_dispatched = _point(
    "llm_call_dispatched", LlmCallDispatched, "Point event: an LLM request really left (queueing ends)."
)
json_mode_rejected = _point(
    "json_mode_rejected", JsonModeRejected, "Point event: an endpoint rejected a JSON response_format rung."
)
acceptance_check = _point(
    "acceptance_check", AcceptanceCheck, "Point event: an acceptance check ran against a task's code."
)
task_restored = _point("task_restored", TaskRestored, "Point event: a resumed run kept a task's result.")
local_model_loaded = _point(
    "local_model_loaded", LocalModelLoaded, "Point event: the embedded model's worker process loaded the model."
)
batch_progress = _point("batch_progress", BatchProgress, "Point event: where a batch of projects stands.")

PAIRS: tuple[tuple[BusSignal, BusSignal], ...] = tuple(_pairs)
POINT_SIGNALS: tuple[BusSignal, ...] = tuple(_points)
ALL_SIGNALS: tuple[BusSignal, ...] = tuple(s for pair in PAIRS for s in pair) + POINT_SIGNALS
SIGNALS_BY_NAME: dict[str, BusSignal] = {s.name: s for s in ALL_SIGNALS}
