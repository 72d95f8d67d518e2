"""The catalogue: every signal of the bus, with its payload type and what it means."""

from __future__ import annotations

from .bus import BusSignal
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


def _signal(name: str, payload: type[Event], when: str) -> BusSignal:
    return BusSignal(name, f"{when} Payload: :class:`{payload.__name__}`.", payload)


project_started = _signal("project_started", ProjectStarted, "Sent when run_project begins.")
project_finished = _signal("project_finished", ProjectFinished, "Sent when run_project ends, however it ends.")
task_started = _signal("task_started", TaskStarted, "Sent when a task starts running.")
task_finished = _signal("task_finished", TaskFinished, "Sent when a task's loop ends.")
llm_call_started = _signal("llm_call_started", LlmCallStarted, "Sent before each LLM call attempt (cached ones too).")
llm_call_finished = _signal("llm_call_finished", LlmCallFinished, "Sent after each LLM call attempt.")
policy_check_started = _signal("policy_check_started", PolicyCheckStarted,
                               "Sent before a model is checked against policies.")
policy_checked = _signal("policy_checked", PolicyChecked, "Sent with the result of a policy check.")
remediation_started = _signal("remediation_started", RemediationStarted,
                              "Sent when a remediation strategy is attempted.")
remediation_finished = _signal("remediation_finished", RemediationFinished,
                               "Sent with the outcome of a remediation attempt.")

budget_warning = _signal("budget_warning", BudgetWarning, "Point event: budget threshold crossed or call refused.")
cache_hit = _signal("cache_hit", CacheHit, "Point event: an LLM call was answered from the cache.")
validation_failed = _signal("validation_failed", ValidationFailed,
                            "Point event: a deterministic validator rejected an output.")
decomposition_fallback = _signal("decomposition_fallback", DecompositionFallback,
                                 "Point event: decomposition unusable, single task.")
model_unhealthy = _signal("model_unhealthy", ModelUnhealthy, "Point event: a model is excluded for the rest of the run.")
task_skipped = _signal("task_skipped", TaskSkipped, "Point event: a task will not run.")
iteration_scored = _signal("iteration_scored", IterationScored, "Point event: a task iteration was evaluated.")
llm_retry = _signal("llm_retry", LlmRetry, "Point event: a transient LLM error will be retried.")
tasks_planned = _signal("tasks_planned", TasksPlanned, "Point event: the task DAG is known, before scheduling.")
task_restored = _signal("task_restored", TaskRestored, "Point event: a resumed run kept a task's result.")
llm_call_dispatched = _signal("llm_call_dispatched", LlmCallDispatched,
                              "Point event: an LLM request really left (queueing ends).")
json_mode_rejected = _signal("json_mode_rejected", JsonModeRejected,
                             "Point event: an endpoint rejected a JSON response_format rung.")
acceptance_check = _signal("acceptance_check", AcceptanceCheck,
                           "Point event: an acceptance check ran against a task's code.")
local_model_loaded = _signal("local_model_loaded", LocalModelLoaded,
                             "Point event: the embedded model's worker process loaded the model.")
batch_started = _signal("batch_started", BatchStarted, "Sent when a batch of projects starts.")
batch_finished = _signal("batch_finished", BatchFinished, "Sent when a batch ends, however it ends.")
batch_progress = _signal("batch_progress", BatchProgress, "Point event: where a batch of projects stands.")

PAIRS: tuple[tuple[BusSignal, BusSignal], ...] = (
    (project_started, project_finished),
    (task_started, task_finished),
    (llm_call_started, llm_call_finished),
    (policy_check_started, policy_checked),
    (remediation_started, remediation_finished),
    (batch_started, batch_finished),
)
POINT_SIGNALS: tuple[BusSignal, ...] = (
    budget_warning, cache_hit, validation_failed, decomposition_fallback,
    model_unhealthy, task_skipped, iteration_scored, llm_retry, tasks_planned,
    llm_call_dispatched, json_mode_rejected, acceptance_check, task_restored, local_model_loaded,
    batch_progress,
)
ALL_SIGNALS: tuple[BusSignal, ...] = tuple(s for pair in PAIRS for s in pair) + POINT_SIGNALS
SIGNALS_BY_NAME: dict[str, BusSignal] = {s.name: s for s in ALL_SIGNALS}
