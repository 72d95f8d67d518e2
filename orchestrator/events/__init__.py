"""The event bus: every signal the orchestrator emits, their payloads, and the emit helpers.

Emitters (engine, client, policy engine, remediation engine) import only this package.
Observers subscribe to the signals here; nothing in this package knows about them or
about OpenTelemetry.

One module per job:

* :mod:`.bus` - :class:`BusSignal`: strong connections, delivery, receivers isolated from
  each other's exceptions; whether anything listens at all;
* :mod:`.context` - the caller's project, task and enclosing pair (context variables),
  correlation ids, the batch a run belongs to;
* :mod:`.payloads` - one immutable ``msgspec`` struct per signal;
* :mod:`.signals` - the catalogue: every signal with its payload type and doc;
* :mod:`.pairs` - the ``traced_*`` helpers that send start/finish pairs;
* :mod:`.points` - :func:`emit` for point events, typed by the signal's payload.

Design notes (why, not what):

* Signals come in start/finish pairs. The ``traced_*`` helpers send the pair from the
  same asyncio task, and the finish exactly once, also on error or cancellation, so an
  observer can keep per-pair state keyed by ``correlation_id`` and trust it will be
  released.
* With no receiver connected anywhere on the bus, every helper returns one shared
  do-nothing handle: no payload is built, no context variable touched.
"""

from __future__ import annotations

from .bus import BusSignal, is_active
from .context import BatchScope as BatchScope
from .context import EventContext as EventContext
from .context import batch_scope, current_batch, current_ids, new_correlation_id
from .pairs import (
    PairContext,
    traced_batch,
    traced_llm_call,
    traced_policy_check,
    traced_project,
    traced_remediation,
    traced_task,
)
from .pairs import PairHandle as PairHandle
from .payloads import (
    CONTENT_FIELDS,
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
    ModelText,
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
from .payloads import AttributeValue as AttributeValue
from .payloads import Scalar as Scalar
from .points import emit
from .signals import (
    ALL_SIGNALS,
    PAIRS,
    POINT_SIGNALS,
    SIGNALS_BY_NAME,
    acceptance_check,
    batch_finished,
    batch_progress,
    batch_started,
    budget_warning,
    cache_hit,
    decomposition_fallback,
    iteration_scored,
    json_mode_rejected,
    llm_call_dispatched,
    llm_call_finished,
    llm_call_started,
    llm_retry,
    local_model_loaded,
    model_unhealthy,
    policy_check_started,
    policy_checked,
    project_finished,
    project_started,
    remediation_finished,
    remediation_started,
    task_finished,
    task_restored,
    task_skipped,
    task_started,
    tasks_planned,
    validation_failed,
)

__all__ = [
    "BusSignal", "Event", "PairStart", "PairFinish", "PointEvent", "PairContext",
    "ProjectStarted", "ProjectFinished", "TaskStarted", "TaskFinished",
    "LlmCallStarted", "LlmCallFinished", "PolicyCheckStarted", "PolicyChecked",
    "RemediationStarted", "RemediationFinished",
    "BudgetWarning", "CacheHit", "ValidationFailed", "DecompositionFallback",
    "ModelUnhealthy", "TaskSkipped", "IterationScored", "LlmRetry", "TasksPlanned",
    "project_started", "project_finished", "task_started", "task_finished",
    "llm_call_started", "llm_call_finished", "policy_check_started", "policy_checked",
    "remediation_started", "remediation_finished",
    "budget_warning", "cache_hit", "validation_failed", "decomposition_fallback",
    "model_unhealthy", "task_skipped", "iteration_scored", "llm_retry", "tasks_planned",
    "LlmCallDispatched", "JsonModeRejected", "llm_call_dispatched", "json_mode_rejected", "ModelText",
    "AcceptanceCheck", "acceptance_check", "TaskRestored", "task_restored",
    "LocalModelLoaded", "local_model_loaded",
    "BatchStarted", "BatchFinished", "BatchProgress", "batch_started", "batch_finished", "batch_progress",
    "traced_batch", "batch_scope", "current_batch",
    "ALL_SIGNALS", "PAIRS", "POINT_SIGNALS", "SIGNALS_BY_NAME", "CONTENT_FIELDS",
    "traced_project", "traced_task", "traced_llm_call", "traced_policy_check",
    "traced_remediation", "emit", "is_active", "current_ids", "new_correlation_id",
]

