"""The event bus: every signal the orchestrator emits, their payloads, and the emit helpers.

Emitters (engine, client, policy engine, remediation engine) import only this module.
Observers subscribe to the signals here; nothing in this module knows about them or
about OpenTelemetry.

Design notes (why, not what):

* Signals come in start/finish pairs. The ``traced_*`` helpers send the pair from the
  same asyncio task, and the finish exactly once, also on error or cancellation, so an
  observer can keep per-pair state keyed by ``correlation_id`` and trust it will be
  released.
* Payloads are immutable ``msgspec`` structs carrying the correlation id of the pair, the
  id of the enclosing pair (``parent_id``), the project id and a wall-clock timestamp in
  ns.  A recorded event log therefore holds everything needed to rebuild the span tree
  later.  (msgspec rather than frozen dataclasses: a frozen dataclass writes each field
  through ``object.__setattr__``, which made building a payload four times slower and
  was the largest cost of an emit point with a receiver.)
* With no receiver connected anywhere on the bus, every helper returns one shared
  do-nothing handle: no payload is built, no context variable touched.
* Receivers are connected strongly by default (blinker's weak default silently drops
  bound methods of observers nobody else holds) and a receiver that raises - anything,
  ``CancelledError`` included - is logged once and skipped, so a broken observer never
  breaks a run or starves other observers.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import os
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from time import time_ns
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, NamedTuple, Protocol, TypeVar

import msgspec
from blinker import ANY, Signal
from msgspec.structs import force_setattr

from . import attributes as attr
from .redaction import redact

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

logger = logging.getLogger("orchestrator.events")

Scalar = str | bool | int | float
AttributeValue = Scalar | Sequence[Scalar] | None
Receiver = Callable[..., Any]
F = TypeVar("F", bound=Receiver)

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
_NOT_CONTAINED = (KeyboardInterrupt, SystemExit, GeneratorExit)

_ACTIVE = False  # True while at least one receiver is connected to any bus signal
_FAILED_RECEIVERS: weakref.WeakSet[Any] = weakref.WeakSet()  # logged once each; an id could be reused


class BusSignal(Signal):
    """A blinker signal that connects strongly, calls receivers in connection order and
    isolates receivers from each other's exceptions."""

    def __init__(self, name: str, doc: str, payload_type: type[Event]) -> None:
        super().__init__(doc)
        self.name = name
        self.payload_type = payload_type
        self._snapshot: tuple[Any, ...] | None = None

    def __repr__(self) -> str:
        return f"<BusSignal {self.name}>"

    def connect(self, receiver: F, sender: Any = ANY, weak: bool = False) -> F:
        result = super().connect(receiver, sender, weak=weak)
        self._snapshot = None
        _refresh_active()
        return result

    def disconnect(self, receiver: Receiver, sender: Any = ANY) -> None:
        super().disconnect(self._stored(receiver), sender)
        self._snapshot = None
        _refresh_active()

    def _stored(self, receiver: Receiver) -> Receiver:
        """The connected object equal to ``receiver``: blinker keys a builtin bound method
        (``events_list.append``) by the id of the method object, which is new at every
        attribute access, so ``disconnect(lst.append)`` would silently leave it connected."""
        live = [r() if isinstance(r, weakref.ref) else r for r in self.receivers.values()]
        for stored in live:
            if stored is receiver:
                return receiver
        for stored in live:
            if stored is not None and stored == receiver:
                return stored
        return receiver

    def send(self, sender: Any = None, /, *, _async_wrapper: Any = None,
             **kwargs: Any) -> list[tuple[Receiver, Any]]:
        """Deliver ``sender`` (the payload) to every receiver; a raising receiver is
        logged once and does not stop the others."""
        if self.is_muted:
            return []
        receivers = self._snapshot
        if receivers is None:  # rebuilt after each connect/disconnect, not on every send
            receivers = self._snapshot = tuple(self.receivers.values())
        results: list[tuple[Receiver, Any]] = []
        for receiver in receivers:
            if isinstance(receiver, weakref.ref):  # WeakMethod too
                receiver = receiver()  # a live weakref, or None when collected
                if receiver is None:
                    continue
            try:
                value = receiver(sender, **kwargs) if kwargs else receiver(sender)
            except _NOT_CONTAINED:
                raise
            except (Exception, asyncio.CancelledError) as exc:  # a broken observer must never break the run
                _report_failure(self.name, receiver, exc)
                continue
            results.append((receiver, value))
        return results

    def _deliver(self, payload: Event) -> None:
        """:meth:`send` for the emit helpers, which never read the receivers' return values
        (building that list was a tenth of a pair's cost on the bus)."""
        if self.is_muted:
            return
        receivers = self._snapshot
        if receivers is None:
            receivers = self._snapshot = tuple(self.receivers.values())
        for receiver in receivers:
            if isinstance(receiver, weakref.ref):  # WeakMethod too
                receiver = receiver()
                if receiver is None:
                    continue
            try:
                receiver(payload)
            except _NOT_CONTAINED:
                raise
            except (Exception, asyncio.CancelledError) as exc:  # a broken observer must never break the run
                _report_failure(self.name, receiver, exc)


def _report_failure(signal: str, receiver: Receiver, exc: BaseException) -> None:
    try:
        if receiver in _FAILED_RECEIVERS:
            return
        _FAILED_RECEIVERS.add(receiver)
    except TypeError:  # not weakly referenceable: log every failure rather than guess by id
        pass
    logger.warning("event receiver %r failed on %s and is skipped for this event: %s: %s",
                   getattr(receiver, "__qualname__", receiver), signal, type(exc).__name__,
                   redact(str(exc))[:300])


def _refresh_active() -> None:
    global _ACTIVE
    _ACTIVE = any(s.receivers for s in ALL_SIGNALS)


def is_active() -> bool:
    """True when at least one receiver listens on the bus."""
    return _ACTIVE


_ID_PREFIX = os.urandom(4).hex()
_id_counter = itertools.count(1)


def _reseed_ids() -> None:  # a forked child must not repeat its parent's ids
    global _ID_PREFIX, _id_counter
    _ID_PREFIX, _id_counter = os.urandom(4).hex(), itertools.count(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_ids)


def new_correlation_id() -> str:
    """16 hex chars, unique per pair (and per attempt: every retry is a new pair): a
    random per-process prefix and a counter (cheaper than 8 random bytes per pair)."""
    return _ID_PREFIX + "%08x" % (next(_id_counter) & 0xFFFFFFFF)


# ---------------------------------------------------------------------------------------
# Context: project id, task id and the enclosing pair, carried by one context variable so
# that concurrent asyncio tasks each see their own.
# ---------------------------------------------------------------------------------------

class EventContext(NamedTuple):
    project_id: str | None = None
    task_id: str | None = None
    parent_id: str | None = None


_Ids = tuple[str | None, str | None, str | None]  # an EventContext as a plain tuple: 10x cheaper to make
_ROOT_CTX: _Ids = (None, None, None)
_ctx: contextvars.ContextVar[_Ids] = contextvars.ContextVar("orchestrator_event_ctx", default=_ROOT_CTX)


class BatchScope(NamedTuple):
    batch_id: str
    carrier: Mapping[str, str]


_batch: contextvars.ContextVar[BatchScope | None] = contextvars.ContextVar("orchestrator_batch", default=None)


@contextmanager
def batch_scope(batch_id: str, carrier: Mapping[str, str] | None = None) -> Iterator[None]:
    """Runs started inside belong to batch ``batch_id``: their ``project_started`` carries
    the batch id and the batch span's ``carrier``, and they start at the root of the event
    tree (each project is a trace of its own, linked to the batch, never a child of it)."""
    scope_token = _batch.set(BatchScope(batch_id, dict(carrier or {})))
    ctx_token = _ctx.set(_ROOT_CTX)
    try:
        yield
    finally:
        _ctx.reset(ctx_token)
        _batch.reset(scope_token)


def current_batch() -> BatchScope | None:
    """The batch the caller runs in (see :func:`batch_scope`), or None."""
    return _batch.get()


def current_ids() -> EventContext:
    """The project id, task id and enclosing pair's correlation id of the caller."""
    return EventContext(*_ctx.get())


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
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__struct_fields__
                          if name not in CONTENT_FIELDS)
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
    """Base of point events (become span events on the current span)."""

    task_id: str | None = None


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
    signal_name: ClassVar[str] = "project_started"


class ProjectFinished(PairFinish, frozen=True, kw_only=True):
    """Attributes include ``project.status``, ``project.cost_usd``,
    ``project.tokens_in``, ``project.tokens_out``, ``project.task_count``."""

    description: str
    criteria: str
    budget_usd: float
    time_limit_seconds: float
    signal_name: ClassVar[str] = "project_finished"


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
    signal_name: ClassVar[str] = "batch_started"


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
    signal_name: ClassVar[str] = "batch_finished"


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
    signal_name: ClassVar[str] = "batch_progress"


# --- task ------------------------------------------------------------------------------
class TaskStarted(PairStart, frozen=True, kw_only=True):
    task_id: str
    task_type: str
    signal_name: ClassVar[str] = "task_started"


class TaskFinished(PairFinish, frozen=True, kw_only=True):
    """Attributes include ``task.status``, ``task.score``, ``task.iterations``,
    ``task.model``, ``task.cost_usd``, ``task.tokens_in``, ``task.tokens_out``."""

    task_id: str
    task_type: str
    signal_name: ClassVar[str] = "task_finished"


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
    signal_name: ClassVar[str] = "llm_call_started"


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
    signal_name: ClassVar[str] = "llm_call_finished"


# --- policy ----------------------------------------------------------------------------
class PolicyCheckStarted(PairStart, frozen=True, kw_only=True):
    policy_count: int
    model: str | None = None
    task_id: str | None = None
    signal_name: ClassVar[str] = "policy_check_started"


class PolicyChecked(PairFinish, frozen=True, kw_only=True):
    """Attributes include ``policy.passed`` and ``policy.violations``."""

    policy_count: int
    model: str | None = None
    task_id: str | None = None
    signal_name: ClassVar[str] = "policy_checked"


# --- remediation -----------------------------------------------------------------------
class RemediationStarted(PairStart, frozen=True, kw_only=True):
    strategy: str
    trigger: str
    task_id: str | None = None
    signal_name: ClassVar[str] = "remediation_started"


class RemediationFinished(PairFinish, frozen=True, kw_only=True):
    """Attributes include ``remediation.success``."""

    strategy: str
    trigger: str
    task_id: str | None = None
    signal_name: ClassVar[str] = "remediation_finished"


# --- point events ----------------------------------------------------------------------
class BudgetWarning(PointEvent, frozen=True, kw_only=True):
    """Spend crossed a warning fraction of the budget, or a call was refused."""

    spent_usd: float
    max_usd: float
    fraction: float
    reason: str = ""
    signal_name: ClassVar[str] = "budget_warning"


class CacheHit(PointEvent, frozen=True, kw_only=True):
    model: str
    call_type: str
    cache_key: str
    signal_name: ClassVar[str] = "cache_hit"


class ValidationFailed(PointEvent, frozen=True, kw_only=True):
    validator: str
    message: str
    iteration: int = 0
    signal_name: ClassVar[str] = "validation_failed"


class DecompositionFallback(PointEvent, frozen=True, kw_only=True):
    """The decomposition answer was unusable twice (once when a local planner timed out);
    the project runs as one task."""

    reason: str
    signal_name: ClassVar[str] = "decomposition_fallback"


class ModelUnhealthy(PointEvent, frozen=True, kw_only=True):
    model: str
    reason: str
    signal_name: ClassVar[str] = "model_unhealthy"


class TaskSkipped(PointEvent, frozen=True, kw_only=True):
    """A task did not run (a dependency failed or was skipped, or no budget/time)."""

    reason: str
    signal_name: ClassVar[str] = "task_skipped"


class IterationScored(PointEvent, frozen=True, kw_only=True):
    """A round ended.  ``score`` is what the loop decides by: the evaluator's score, 0 when
    a validator rejected the output, at least the task's threshold when its acceptance
    checks all passed; ``evaluator_score`` is the evaluator's own, None when no evaluator
    was asked."""

    iteration: int
    score: float
    best_score: float
    evaluator_score: float | None = None
    signal_name: ClassVar[str] = "iteration_scored"


class LlmRetry(PointEvent, frozen=True, kw_only=True):
    """A transient provider error; the call is retried after ``delay_seconds``."""

    model: str
    attempt: int
    error_type: str
    delay_seconds: float
    signal_name: ClassVar[str] = "llm_retry"


class LlmCallDispatched(PointEvent, frozen=True, kw_only=True):
    """The request really left: after the wait for the client's concurrency limit and,
    on the local model, for the generation lock.  Everything before is queueing."""

    model: str
    queue_ms: float
    signal_name: ClassVar[str] = "llm_call_dispatched"


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
    signal_name: ClassVar[str] = "local_model_loaded"


class JsonModeRejected(PointEvent, frozen=True, kw_only=True):
    """An OpenAI-compatible endpoint rejected a ``response_format`` rung of the JSON
    ladder; the adapter steps down to the next one within the same call."""

    model: str
    mode: str
    status_code: int | None = None
    error_type: str = ""
    signal_name: ClassVar[str] = "json_mode_rejected"


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
    signal_name: ClassVar[str] = "acceptance_check"


class TasksPlanned(PointEvent, frozen=True, kw_only=True):
    """The task DAG is known (decomposed or given); progress displays take the total here."""

    task_count: int
    task_ids: tuple[str, ...] = ()
    signal_name: ClassVar[str] = "tasks_planned"


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
    signal_name: ClassVar[str] = "task_restored"


# ---------------------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------
# Emit helpers
# ---------------------------------------------------------------------------------------

class PairContext(Protocol):
    """What a ``traced_*`` helper returns: a context manager whose ``set_attribute``
    values travel with the finish signal."""

    @property
    def correlation_id(self) -> str | None: ...

    @property
    def carrier(self) -> dict[str, str]: ...

    def set_attribute(self, key: str, value: AttributeValue) -> None: ...

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None: ...

    def set_completion(self, text: str) -> None: ...

    def set_sent_system(self, text: str) -> None: ...

    def __enter__(self) -> PairContext: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class _NoopHandle:
    """The one shared handle used when nobody listens: every method does nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoopHandle:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        pass

    def set_completion(self, text: str) -> None:
        pass

    def set_sent_system(self, text: str) -> None:
        pass

    @property
    def correlation_id(self) -> None:
        return None

    @property
    def carrier(self) -> dict[str, str]:
        return {}


_NOOP = _NoopHandle()


FinishFactory = Callable[[Any, int, Mapping[str, AttributeValue], "dict[str, str] | None", "BaseException | None"],
                         "PairFinish"]
"""Builds a pair's finish payload from its start payload and what the finish adds (time,
attributes, content, the exception it ended with): one per pair type, each naming its
fields.  Why not one generic ``**fields`` merge: that was the largest cost of a pair with
a receiver.  And why the ok path names fewer fields (leaving status and error at their
defaults): CPython builds a dict for a call with more than 15 keyword arguments, which
tripled the cost of making a payload."""


def _failure(exc: BaseException | None) -> tuple[str, str | None, str | None]:
    """(status, error type, message) of a pair that ended with ``exc`` (None: ok)."""
    if exc is None:
        return "ok", None, None
    status = "cancelled" if isinstance(exc, asyncio.CancelledError) else "error"
    return status, type(exc).__name__, str(exc)[:500]


class PairHandle:
    """Context manager that sends a start/finish pair; ``set_attribute`` values travel
    with the finish signal."""

    __slots__ = ("_start_signal", "_finish_signal", "_finish", "_attrs", "_token", "_start", "_content",
                 "_ctx_update")

    def __init__(self, start_signal: BusSignal, finish_signal: BusSignal, start: PairStart,
                 finish: FinishFactory, attrs: dict[str, AttributeValue], ctx: _Ids) -> None:
        self._start_signal = start_signal
        self._finish_signal = finish_signal
        self._start = start
        self._finish = finish
        self._attrs = attrs.copy()  # the start payload keeps its own, unchanged
        self._token: contextvars.Token[_Ids] | None = None
        self._content: dict[str, str] | None = None  # completion, sent_system (LLM pairs)
        self._ctx_update = ctx

    @property
    def correlation_id(self) -> str:
        return self._start.correlation_id

    @property
    def start_payload(self) -> PairStart:
        return self._start

    @property
    def carrier(self) -> dict[str, str]:
        """Propagation headers observers filled on start (empty for pairs without one)."""
        carrier: dict[str, str] | None = getattr(self._start, "carrier", None)
        return carrier or {}

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._attrs[key] = value

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self._attrs.update(attributes)

    def set_completion(self, text: str) -> None:
        """The LLM answer text; observers record it only on content-capture opt-in."""
        self._set_content("completion", text)

    def set_sent_system(self, text: str) -> None:
        """The system instructions really sent, when an adapter changed them (content)."""
        self._set_content("sent_system", text)

    def _set_content(self, name: str, text: str) -> None:
        if self._content is None:
            self._content = {}
        self._content[name] = text

    def __enter__(self) -> PairHandle:
        self._token = _ctx.set(self._ctx_update)
        self._start_signal._deliver(self._start)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        start = self._start
        if self._token is not None:
            try:
                _ctx.reset(self._token)
            except ValueError:  # exited in another context: fall back to the parent ids
                _ctx.set((start.project_id, self._ctx_update[1], start.parent_id))
            self._token = None
        self._finish_signal._deliver(self._finish(start, time_ns(), MappingProxyType(self._attrs), self._content,
                                                  exc))
        return None


def _finish_project(s: ProjectStarted, ts: int, attrs: Mapping[str, AttributeValue],
                    content: dict[str, str] | None, exc: BaseException | None) -> ProjectFinished:
    status, error_type, message = _failure(exc)
    return ProjectFinished(correlation_id=s.correlation_id, parent_id=s.parent_id, project_id=s.project_id,
                           timestamp_ns=ts, start_timestamp_ns=s.timestamp_ns, status=status, error_type=error_type,
                           error_message=message, exception=exc, attributes=attrs, description=s.description,
                           criteria=s.criteria, budget_usd=s.budget_usd, time_limit_seconds=s.time_limit_seconds)


def _finish_task(s: TaskStarted, ts: int, attrs: Mapping[str, AttributeValue], content: dict[str, str] | None,
                 exc: BaseException | None) -> TaskFinished:
    status, error_type, message = _failure(exc)
    return TaskFinished(correlation_id=s.correlation_id, parent_id=s.parent_id, project_id=s.project_id,
                        timestamp_ns=ts, start_timestamp_ns=s.timestamp_ns, status=status, error_type=error_type,
                        error_message=message, exception=exc, attributes=attrs, task_id=s.task_id,
                        task_type=s.task_type)


def _finish_llm(s: LlmCallStarted, ts: int, attrs: Mapping[str, AttributeValue], content: dict[str, str] | None,
                exc: BaseException | None) -> LlmCallFinished:
    if exc is None and content is None:  # the common case, in at most 15 keyword arguments
        return LlmCallFinished(correlation_id=s.correlation_id, parent_id=s.parent_id, project_id=s.project_id,
                               timestamp_ns=ts, start_timestamp_ns=s.timestamp_ns, attributes=attrs, model=s.model,
                               call_type=s.call_type, provider=s.provider, task_id=s.task_id,
                               max_tokens=s.max_tokens, temperature=s.temperature, attempt=s.attempt)
    status, error_type, message = _failure(exc)
    completion = content.get("completion") if content else None
    sent_system = content.get("sent_system") if content else None
    return LlmCallFinished(correlation_id=s.correlation_id, parent_id=s.parent_id, project_id=s.project_id,
                           timestamp_ns=ts, start_timestamp_ns=s.timestamp_ns, status=status, error_type=error_type,
                           error_message=message, exception=exc, attributes=attrs, model=s.model,
                           call_type=s.call_type, provider=s.provider, task_id=s.task_id, max_tokens=s.max_tokens,
                           temperature=s.temperature, attempt=s.attempt, completion=completion,
                           sent_system=sent_system)


def _finish_policy(s: PolicyCheckStarted, ts: int, attrs: Mapping[str, AttributeValue],
                   content: dict[str, str] | None, exc: BaseException | None) -> PolicyChecked:
    status, error_type, message = _failure(exc)
    return PolicyChecked(correlation_id=s.correlation_id, parent_id=s.parent_id, project_id=s.project_id,
                         timestamp_ns=ts, start_timestamp_ns=s.timestamp_ns, status=status, error_type=error_type,
                         error_message=message, exception=exc, attributes=attrs, policy_count=s.policy_count,
                         model=s.model, task_id=s.task_id)


def _finish_remediation(s: RemediationStarted, ts: int, attrs: Mapping[str, AttributeValue],
                        content: dict[str, str] | None, exc: BaseException | None) -> RemediationFinished:
    status, error_type, message = _failure(exc)
    return RemediationFinished(correlation_id=s.correlation_id, parent_id=s.parent_id, project_id=s.project_id,
                               timestamp_ns=ts, start_timestamp_ns=s.timestamp_ns, status=status,
                               error_type=error_type, error_message=message, exception=exc, attributes=attrs,
                               strategy=s.strategy, trigger=s.trigger, task_id=s.task_id)


def traced_project(project_id: str, description: str, criteria: str = "",
                   budget_usd: float = 0.0, time_limit_seconds: float = 0.0, *,
                   attempt: int = 1, links: Sequence[Mapping[str, str] | str] = ()) -> PairContext:
    """The root pair of a run: ``project_started``/``project_finished``.  A resumed run
    passes its ``attempt`` number and the carriers of earlier attempts' roots (what a
    tracing observer wrote into their ``carrier``)."""
    if not _ACTIVE:
        return _NOOP
    parent_cid = _ctx.get()[2]
    cid = _ID_PREFIX + "%08x" % (next(_id_counter) & 0xFFFFFFFF)  # new_correlation_id(), inlined
    attrs: dict[str, AttributeValue] = {attr.PROJECT_ID: project_id,
                                        attr.PROJECT_DESCRIPTION: description[:200],
                                        attr.ORCHESTRATOR_ATTEMPT: attempt}
    if attempt > 1:
        attrs[attr.ORCHESTRATOR_RESUMED_FROM] = project_id
    scope = _batch.get()
    if scope is None:
        start = ProjectStarted(correlation_id=cid, parent_id=parent_cid, project_id=project_id,
                               timestamp_ns=time_ns(), attributes=MappingProxyType(attrs), description=description,
                               criteria=criteria, budget_usd=budget_usd, time_limit_seconds=time_limit_seconds,
                               attempt=attempt, links=tuple(links))
    else:  # a project of a batch: its id on the root, the batch span's context for the link
        attrs[attr.ORCHESTRATOR_BATCH_ID] = scope.batch_id
        start = ProjectStarted(correlation_id=cid, parent_id=parent_cid, project_id=project_id,
                               timestamp_ns=time_ns(), attributes=MappingProxyType(attrs), description=description,
                               criteria=criteria, budget_usd=budget_usd, time_limit_seconds=time_limit_seconds,
                               attempt=attempt, links=tuple(links), batch_id=scope.batch_id,
                               batch_carrier=dict(scope.carrier))
    return PairHandle(project_started, project_finished, start, _finish_project, attrs, (project_id, "", cid))


def _finish_batch(s: BatchStarted, ts: int, attrs: Mapping[str, AttributeValue], content: dict[str, str] | None,
                  exc: BaseException | None) -> BatchFinished:
    status, error_type, message = _failure(exc)
    return BatchFinished(correlation_id=s.correlation_id, parent_id=s.parent_id, project_id=s.project_id,
                         timestamp_ns=ts, start_timestamp_ns=s.timestamp_ns, status=status, error_type=error_type,
                         error_message=message, exception=exc, attributes=attrs, batch_id=s.batch_id,
                         project_count=s.project_count, budget_usd=s.budget_usd,
                         time_limit_seconds=s.time_limit_seconds, max_parallel=s.max_parallel, backend=s.backend)


def traced_batch(batch_id: str, project_count: int, budget_usd: float, time_limit_seconds: float,
                 max_parallel: int, backend: str) -> PairContext:
    """The pair of a whole batch: ``batch_started``/``batch_finished`` (sent by the batch's
    driver; its projects' runs are pairs of their own, see :func:`batch_scope`)."""
    if not _ACTIVE:
        return _NOOP
    parent = _ctx.get()
    cid = new_correlation_id()
    attrs: dict[str, AttributeValue] = {attr.BATCH_ID: batch_id, attr.BATCH_PROJECT_COUNT: project_count,
                                        attr.BATCH_BUDGET_USD: budget_usd, attr.BATCH_MAX_PARALLEL: max_parallel,
                                        attr.BATCH_BACKEND: backend}
    start = BatchStarted(correlation_id=cid, parent_id=parent[2], project_id=parent[0], timestamp_ns=time_ns(),
                         attributes=MappingProxyType(attrs), batch_id=batch_id, project_count=project_count,
                         budget_usd=budget_usd, time_limit_seconds=time_limit_seconds, max_parallel=max_parallel,
                         backend=backend)
    return PairHandle(batch_started, batch_finished, start, _finish_batch, attrs, (parent[0], "", cid))


def traced_task(task_id: str, task_type: str, description: str = "") -> PairContext:
    """``task_started``/``task_finished`` around one task's whole loop."""
    if not _ACTIVE:
        return _NOOP
    pid, tid, parent_cid = _ctx.get()
    cid = _ID_PREFIX + "%08x" % (next(_id_counter) & 0xFFFFFFFF)  # new_correlation_id(), inlined
    attrs: dict[str, AttributeValue] = {attr.TASK_ID: task_id, attr.TASK_TYPE: task_type}
    if description:
        attrs[attr.TASK_DESCRIPTION] = description[:200]
    start = TaskStarted(correlation_id=cid, parent_id=parent_cid, project_id=pid,
                        timestamp_ns=time_ns(), attributes=MappingProxyType(attrs), task_id=task_id,
                        task_type=task_type)
    return PairHandle(task_started, task_finished, start, _finish_task, attrs,
                      (pid, task_id, cid))


def traced_llm_call(model: str, call_type: str, *, provider: str = "",
                    max_tokens: int | None = None, temperature: float | None = None,
                    attempt: int = 1, prompt: str | None = None, system: str | None = None,
                    output_type: str = "text", server_address: str | None = None,
                    server_port: int | None = None) -> PairContext:
    """``llm_call_started``/``llm_call_finished`` around one LLM call attempt."""
    if not _ACTIVE:
        return _NOOP
    pid, tid, parent_cid = _ctx.get()
    cid = _ID_PREFIX + "%08x" % (next(_id_counter) & 0xFFFFFFFF)  # new_correlation_id(), inlined
    attrs: dict[str, AttributeValue] = {attr.LLM_MODEL: model, attr.LLM_CALL_TYPE: call_type}
    start = LlmCallStarted(correlation_id=cid, parent_id=parent_cid, project_id=pid,
                           timestamp_ns=time_ns(), attributes=MappingProxyType(attrs), model=model,
                           call_type=call_type, provider=provider, task_id=tid or None,
                           max_tokens=max_tokens, temperature=temperature, prompt=prompt, system=system,
                           server_address=server_address, server_port=server_port)
    # the two fields most calls leave at their defaults are set apart, on the new payload
    # nobody has seen yet: a call with more than 15 keyword arguments costs three times as much
    if attempt != 1:
        force_setattr(start, "attempt", attempt)
    if output_type != "text":
        force_setattr(start, "output_type", output_type)
    return PairHandle(llm_call_started, llm_call_finished, start, _finish_llm, attrs,
                      (pid, tid, cid))


def traced_policy_check(policy_count: int, *, model: str | None = None) -> PairContext:
    """``policy_check_started``/``policy_checked`` around one policy evaluation."""
    if not _ACTIVE:
        return _NOOP
    pid, tid, parent_cid = _ctx.get()
    cid = _ID_PREFIX + "%08x" % (next(_id_counter) & 0xFFFFFFFF)  # new_correlation_id(), inlined
    attrs: dict[str, AttributeValue] = {attr.POLICY_COUNT: policy_count}
    if model:
        attrs[attr.POLICY_MODEL] = model
    start = PolicyCheckStarted(correlation_id=cid, parent_id=parent_cid, project_id=pid,
                               timestamp_ns=time_ns(), attributes=MappingProxyType(attrs),
                               policy_count=policy_count, model=model, task_id=tid or None)
    return PairHandle(policy_check_started, policy_checked, start, _finish_policy, attrs,
                      (pid, tid, cid))


def traced_remediation(strategy: str, trigger: str) -> PairContext:
    """``remediation_started``/``remediation_finished`` around one remediation attempt."""
    if not _ACTIVE:
        return _NOOP
    pid, tid, parent_cid = _ctx.get()
    cid = _ID_PREFIX + "%08x" % (next(_id_counter) & 0xFFFFFFFF)  # new_correlation_id(), inlined
    attrs: dict[str, AttributeValue] = {attr.REMEDIATION_STRATEGY: strategy, attr.REMEDIATION_TRIGGER: trigger}
    start = RemediationStarted(correlation_id=cid, parent_id=parent_cid, project_id=pid,
                               timestamp_ns=time_ns(), attributes=MappingProxyType(attrs), strategy=strategy,
                               trigger=trigger, task_id=tid or None)
    return PairHandle(remediation_started, remediation_finished, start, _finish_remediation, attrs,
                      (pid, tid, cid))


def emit(signal: BusSignal, **fields_: Any) -> None:
    """Send a point event on ``signal`` if anyone listens.  ``task_id`` defaults to the
    caller's task; ids and timestamp are filled in."""
    if not signal.receivers:
        return
    pid, tid, parent_cid = _ctx.get()
    if "task_id" not in fields_:
        fields_["task_id"] = tid or None
    fields_["correlation_id"] = _ID_PREFIX + "%08x" % (next(_id_counter) & 0xFFFFFFFF)
    fields_["parent_id"] = parent_cid
    fields_["project_id"] = pid
    fields_["timestamp_ns"] = time_ns()
    signal._deliver(signal.payload_type(**fields_))
