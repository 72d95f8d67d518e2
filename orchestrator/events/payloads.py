"""The payloads: one immutable ``msgspec`` struct per signal.

Each carries the correlation id of its pair, the id of the enclosing pair (``parent_id``),
the project id and a wall-clock timestamp in ns, so a recorded event log holds everything
needed to rebuild the span tree later.  (msgspec rather than frozen dataclasses: a frozen
dataclass writes each field through ``object.__setattr__``, which made building a payload
four times slower and was the largest cost of an emit point with a receiver.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import msgspec

__all__ = [
    "CONTENT_FIELDS",
    "ModelText",
    "Event",
    "PairStart",
    "PairFinish",
    "PointEvent",
    "ProjectStarted",
    "ProjectFinished",
    "BatchStarted",
    "BatchFinished",
    "TaskStarted",
    "TaskFinished",
    "LlmCallStarted",
    "LlmCallFinished",
    "PolicyCheckStarted",
    "PolicyChecked",
    "RemediationStarted",
    "RemediationFinished",
    "BudgetWarning",
    "CacheHit",
    "ValidationFailed",
    "DecompositionFallback",
    "ModelUnhealthy",
    "TaskSkipped",
    "IterationScored",
    "LlmRetry",
    "LlmCallDispatched",
    "LocalModelLoaded",
    "JsonModeRejected",
    "AcceptanceCheck",
    "TasksPlanned",
    "TaskRestored",
    "BatchProgress",
]

Scalar = str | bool | int | float
AttributeValue = Scalar | Sequence[Scalar] | None

CONTENT_FIELDS = frozenset({"prompt", "system", "completion", "sent_system"})
"""Payload fields holding model or prompt text: never logged, serialised only on opt-in."""


class ModelText(str):
    """A string an emitter marks as model-written or prompt-derived (an evaluator's
    reasons, a validator's output quoting the answer, a planner's notes).

    Why a marker: the privacy rule - no model or prompt text in a span, log line or event
    file unless content capture is on - is applied by the observers, and only the emitter
    knows which of its strings came from a model.  Observers show a marked value as
    ``[content omitted: N chars]`` unless content capture is on
    (:func:`orchestrator.observers.base.visible`)."""

    __slots__ = ()


_COMMON_FIELDS = ("correlation_id", "parent_id", "project_id", "timestamp_ns")
_NOT_SERIALISED = frozenset({"exception", "carrier"})


def _empty_attributes() -> Mapping[str, AttributeValue]:
    return MappingProxyType({})


# ---------------------------------------------------------------------------------------
# Payloads
# ---------------------------------------------------------------------------------------


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Common fields of every payload."""

    correlation_id: str
    """Unique id of the pair (start and finish share it) or of the point event."""
    parent_id: str | None
    """Correlation id of the enclosing pair, None at the root."""
    project_id: str | None
    timestamp_ns: int
    """Wall-clock time (``time.time_ns()``) when the event was sent."""

    signal_name: ClassVar[str] = ""
    """The name of the signal that sends this payload: set by the catalogue
    (:mod:`orchestrator.events.signals`), the one place that names it."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``signal`` first, then the common fields, then the payload's own
        (exceptions and the propagation carrier are left out)."""
        out: dict[str, Any] = {"signal": self.signal_name}
        for name in _COMMON_FIELDS:
            out[name] = getattr(self, name)
        for name in self.__struct_fields__:
            if name in _COMMON_FIELDS or name in _NOT_SERIALISED:
                continue
            value = getattr(self, name)
            out[name] = dict(value) if isinstance(value, Mapping) else value
        return out

    def __repr__(self) -> str:
        """Without prompt, system or completion text: a payload may end up in a log line."""
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self.__struct_fields__ if name not in CONTENT_FIELDS
        )
        return f"{type(self).__name__}({shown})"


class PairStart(Event, frozen=True, kw_only=True):
    """Base of start payloads; ``attributes`` holds the initial attributes of the pair."""

    attributes: Mapping[str, AttributeValue] = msgspec.field(default_factory=_empty_attributes)


class PairFinish(Event, frozen=True, kw_only=True):
    """Base of finish payloads.

    ``status`` is ``"ok"``, ``"error"`` (the body raised) or ``"cancelled"``.
    ``attributes`` holds the start attributes updated with everything set on the
    handle.  ``start_timestamp_ns`` repeats the start time so a finish alone gives the
    duration.
    """

    start_timestamp_ns: int
    status: str = "ok"
    error_type: str | None = None
    error_message: str | None = None
    exception: BaseException | None = None
    attributes: Mapping[str, AttributeValue] = msgspec.field(default_factory=_empty_attributes)

    @property
    def duration_ns(self) -> int:
        return self.timestamp_ns - self.start_timestamp_ns


class PointEvent(Event, frozen=True, kw_only=True):
    """Base of point events (become span events on the current span).

    Why the common fields have defaults here: :func:`~orchestrator.events.emit` takes a
    point event's own fields as typed keyword arguments (mypy reads them from the payload
    class) and fills the ids and timestamp in itself, so they must not be required
    arguments of the class.  An emitted event always has them; only a payload built by
    hand (a test, a replay) may leave them at these defaults."""

    correlation_id: str = ""
    parent_id: str | None = None
    project_id: str | None = None
    timestamp_ns: int = 0
    task_id: str | None = None
    """The task the event happened in; ``emit`` fills in the caller's task unless given."""


# --- project ---------------------------------------------------------------------------
class ProjectStarted(PairStart, frozen=True, kw_only=True):
    """``attempt`` is 1 for a first run, 2.. for a resumed one; a resumed run's
    ``links`` are the propagation carriers of earlier attempts' roots (oldest first), which
    a tracing observer reads with the configured propagator and turns into span links (a
    plain string is taken as a W3C ``traceparent``, as event logs of earlier versions hold).
    ``carrier``: a tracing observer writes this root's context here on start with the
    configured propagator (``OTEL_PROPAGATORS``), and the engine keeps it in the checkpoint
    (so the emitters stay free of OpenTelemetry)."""

    description: str
    criteria: str
    budget_usd: float
    time_limit_seconds: float
    attempt: int = 1
    links: tuple[Mapping[str, str] | str, ...] = ()
    carrier: dict[str, str] = msgspec.field(default_factory=dict)
    batch_id: str | None = None
    """The batch this run belongs to (``orchestrator batch``), else None."""
    batch_carrier: dict[str, str] = msgspec.field(default_factory=dict)
    """The batch span's context (what a tracing observer wrote into ``batch_started``'s
    carrier): a tracing observer links this root to it.  Each project of a batch is a
    trace of its own, linked to the batch's."""


class ProjectFinished(PairFinish, frozen=True, kw_only=True):
    """Attributes include ``project.status``, ``project.cost_usd``,
    ``project.tokens_in``, ``project.tokens_out``, ``project.task_count``."""

    description: str
    criteria: str
    budget_usd: float
    time_limit_seconds: float


# --- batch -----------------------------------------------------------------------------
class BatchStarted(PairStart, frozen=True, kw_only=True):
    """A batch of projects starts (``orchestrator batch``).  ``carrier``: a tracing
    observer writes the batch span's context here; the batch hands it to every project,
    whose root (a trace of its own) links to it."""

    batch_id: str
    project_count: int
    budget_usd: float
    time_limit_seconds: float
    max_parallel: int
    backend: str
    carrier: dict[str, str] = msgspec.field(default_factory=dict)


class BatchFinished(PairFinish, frozen=True, kw_only=True):
    """Attributes include ``batch.status``, ``batch.projects_done``,
    ``batch.projects_failed``, ``batch.cost_usd``, ``batch.spent_usd`` and the token and
    call totals (the sums of the projects' own totals)."""

    batch_id: str
    project_count: int
    budget_usd: float
    time_limit_seconds: float
    max_parallel: int
    backend: str


class BatchProgress(PointEvent, frozen=True, kw_only=True):
    """Where a batch stands: sent by the driver when a project starts or ends and every
    few seconds.  ``spent_usd`` is the batch ledger's (every call of every project, in
    every process); ``eta_seconds`` a guess from the pace so far (None before the first
    project ends)."""

    batch_id: str
    total: int
    done: int
    running: int
    failed: int
    spent_usd: float
    max_usd: float
    eta_seconds: float | None = None


# --- task ------------------------------------------------------------------------------
class TaskStarted(PairStart, frozen=True, kw_only=True):
    task_id: str
    task_type: str


class TaskFinished(PairFinish, frozen=True, kw_only=True):
    """Attributes include ``task.status``, ``task.score``, ``task.iterations``,
    ``task.model``, ``task.cost_usd``, ``task.tokens_in``, ``task.tokens_out``."""

    task_id: str
    task_type: str


# --- llm call --------------------------------------------------------------------------
class LlmCallStarted(PairStart, frozen=True, kw_only=True):
    """``prompt``/``system`` are carried for observers that opt in to content capture;
    observers must not record them by default."""

    model: str
    call_type: str
    provider: str = ""
    task_id: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    attempt: int = 1
    output_type: str = "text"
    """``json`` when the answer must match a JSON schema, else ``text``."""
    server_address: str | None = None
    server_port: int | None = None
    prompt: str | None = None
    system: str | None = None
    carrier: dict[str, str] = msgspec.field(default_factory=dict)
    """Propagation headers for the outgoing request.  The one mutable field: a tracing
    observer may write the call's context here on start with the configured propagator
    (W3C ``traceparent`` by default, see ``OTEL_PROPAGATORS``); the client sends whatever
    it holds with the provider request (emitters stay free of OpenTelemetry)."""


class LlmCallFinished(PairFinish, frozen=True, kw_only=True):
    """Attributes include ``llm.tokens_in``, ``llm.tokens_out``, ``llm.cost_usd``,
    ``llm.latency_ms``, ``llm.cached``, ``llm.finish_reason``, ``llm.response_model``.
    ``completion`` is the answer text (content capture is opt-in for observers)."""

    model: str
    call_type: str
    provider: str = ""
    task_id: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    attempt: int = 1
    completion: str | None = None
    sent_system: str | None = None
    """The system instructions the adapter really sent when they differ from the start's
    ``system`` (e.g. with the JSON schema added); content, like ``completion``."""


# --- policy ----------------------------------------------------------------------------
class PolicyCheckStarted(PairStart, frozen=True, kw_only=True):
    policy_count: int
    model: str | None = None
    task_id: str | None = None


class PolicyChecked(PairFinish, frozen=True, kw_only=True):
    """Attributes include ``policy.passed`` and ``policy.violations``."""

    policy_count: int
    model: str | None = None
    task_id: str | None = None


# --- remediation -----------------------------------------------------------------------
class RemediationStarted(PairStart, frozen=True, kw_only=True):
    strategy: str
    trigger: str
    task_id: str | None = None


class RemediationFinished(PairFinish, frozen=True, kw_only=True):
    """Attributes include ``remediation.success``."""

    strategy: str
    trigger: str
    task_id: str | None = None


# --- point events ----------------------------------------------------------------------
class BudgetWarning(PointEvent, frozen=True, kw_only=True):
    """Spend crossed a warning fraction of the budget, or a call was refused."""

    spent_usd: float
    max_usd: float
    fraction: float
    reason: str = ""


class CacheHit(PointEvent, frozen=True, kw_only=True):
    model: str
    call_type: str
    cache_key: str


class ValidationFailed(PointEvent, frozen=True, kw_only=True):
    validator: str
    message: str
    iteration: int = 0


class DecompositionFallback(PointEvent, frozen=True, kw_only=True):
    """The decomposition answer was unusable twice (once when a local planner timed out);
    the project runs as one task."""

    reason: str


class ModelUnhealthy(PointEvent, frozen=True, kw_only=True):
    model: str
    reason: str


class TaskSkipped(PointEvent, frozen=True, kw_only=True):
    """A task did not run (a dependency failed or was skipped, or no budget/time)."""

    reason: str


class IterationScored(PointEvent, frozen=True, kw_only=True):
    """A round ended.  ``score`` is what the loop decides by: the evaluator's score, 0 when
    a validator rejected the output, at least the task's threshold when its acceptance
    checks all passed; ``evaluator_score`` is the evaluator's own, None when no evaluator
    was asked."""

    iteration: int
    score: float
    best_score: float
    evaluator_score: float | None = None


class LlmRetry(PointEvent, frozen=True, kw_only=True):
    """A transient provider error; the call is retried after ``delay_seconds``."""

    model: str
    attempt: int
    error_type: str
    delay_seconds: float


class LlmCallDispatched(PointEvent, frozen=True, kw_only=True):
    """The request really left: after the wait for the client's concurrency limit and,
    on the local model, for the generation lock.  Everything before is queueing."""

    model: str
    queue_ms: float


class LocalModelLoaded(PointEvent, frozen=True, kw_only=True):
    """The embedded model's worker process loaded the model (at the first call, or after a
    crash): how long it took, and whether llama.cpp's fast CPU kernels are on."""

    model: str
    load_ms: float
    safe_mode: bool
    kernels: str
    """Why the fast kernels are on or off (the CPU's flags, a crash, the user's setting)."""
    restarts: int = 0
    """Crashes of this model's worker so far in the process."""


class JsonModeRejected(PointEvent, frozen=True, kw_only=True):
    """An OpenAI-compatible endpoint rejected a ``response_format`` rung of the JSON
    ladder; the adapter steps down to the next one within the same call."""

    model: str
    mode: str
    status_code: int | None = None
    error_type: str = ""


class AcceptanceCheck(PointEvent, frozen=True, kw_only=True):
    """One acceptance check (a Python criterion) was run against a task's code.

    ``check`` is the user's own criterion; ``error_type`` the kind of failure
    (``AssertionError``, ``NameError``, ``Timeout``...), never its message, which may
    quote values the model's code produced.  ``stage``: ``draft`` (the first answer) or
    ``revision``."""

    check: str
    passed: bool
    error_type: str | None = None
    iteration: int = 0
    stage: str = "revision"
    duration_ms: float = 0.0
    """How long the sandboxed run took that ran this check (with the round's other checks:
    they run together, so they share it); the event is sent when it ended."""


class TasksPlanned(PointEvent, frozen=True, kw_only=True):
    """The task DAG is known (decomposed or given); progress displays take the total here."""

    task_count: int
    task_ids: tuple[str, ...] = ()


class TaskRestored(PointEvent, frozen=True, kw_only=True):
    """A resumed run kept this task's result from the checkpoint: it does not run again."""

    status: str
    score: float | None = None
    """The evaluator's score of the kept result; None when no evaluator gave one."""
    from_attempt: int = 1
    model: str = ""
    cost_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
