"""The event bus: every signal the orchestrator emits, their payloads, and the emit helpers.

Emitters (engine, client, policy engine, remediation engine) import only this module.
Observers subscribe to the signals here; nothing in this module knows about them or
about OpenTelemetry.

Design notes (why, not what):

* Signals come in start/finish pairs. The ``traced_*`` helpers send the pair from the
  same asyncio task, and the finish exactly once, also on error or cancellation, so an
  observer can keep per-pair state keyed by ``correlation_id`` and trust it will be
  released.
* Payloads are frozen dataclasses carrying the correlation id of the pair, the id of the
  enclosing pair (``parent_id``), the project id and a wall-clock timestamp in ns.  A
  recorded event log therefore holds everything needed to rebuild the span tree later.
* With no receiver connected anywhere on the bus, every helper returns one shared
  do-nothing handle: no payload is built, no context variable touched.
* Receivers are connected strongly by default (blinker's weak default silently drops
  bound methods of observers nobody else holds) and a receiver that raises is logged
  once and skipped, so a broken observer never breaks a run or starves other observers.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from types import MappingProxyType
from typing import Any, ClassVar

from blinker import ANY, Signal

__all__ = [
    "BusSignal", "Event", "PairStart", "PairFinish", "PointEvent",
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
    "ALL_SIGNALS", "PAIRS", "POINT_SIGNALS",
    "traced_project", "traced_task", "traced_llm_call", "traced_policy_check",
    "traced_remediation", "emit", "is_active", "current_ids", "new_correlation_id",
]

logger = logging.getLogger("orchestrator.events")

AttributeValue = str | bool | int | float | list | tuple | None

_ACTIVE = False  # True while at least one receiver is connected to any bus signal
_FAILED_RECEIVERS: set[int] = set()


class BusSignal(Signal):
    """A blinker signal that connects strongly, calls receivers in connection order and
    isolates receivers from each other's exceptions."""

    def connect(self, receiver, sender: Any = ANY, weak: bool = False):  # noqa: D102
        result = super().connect(receiver, sender, weak=weak)
        self._snapshot = None
        _refresh_active()
        return result

    def disconnect(self, receiver, sender: Any = ANY) -> None:  # noqa: D102
        super().disconnect(self._stored(receiver), sender)
        self._snapshot = None
        _refresh_active()

    def _stored(self, receiver: Any) -> Any:
        """The connected object equal to ``receiver``: blinker keys a builtin bound method
        (``events_list.append``) by the id of the method object, which is new at every
        attribute access, so ``disconnect(lst.append)`` would silently leave it connected."""
        for stored in self.receivers.values():
            if isinstance(stored, weakref.ref):
                stored = stored()
            if stored is receiver:
                return receiver
        for stored in self.receivers.values():
            if isinstance(stored, weakref.ref):
                stored = stored()
            if stored is not None and stored == receiver:
                return stored
        return receiver

    def send(self, sender: Any = None, /, **kwargs: Any) -> list[tuple[Callable, Any]]:
        """Deliver ``sender`` (the payload) to every receiver; a raising receiver is
        logged once and does not stop the others."""
        if self.is_muted or not self.receivers:
            return []
        results = []
        receivers = self._snapshot
        if receivers is None:  # rebuilt after each connect/disconnect, not on every send
            receivers = self._snapshot = tuple(self.receivers.values())
        for receiver in receivers:
            if isinstance(receiver, weakref.ref):
                receiver = receiver()  # a live weakref, or None when collected
                if receiver is None:
                    continue
            try:
                results.append((receiver, receiver(sender, **kwargs)))
            except Exception as exc:  # a broken observer must never break the run
                key = id(receiver)
                if key not in _FAILED_RECEIVERS:
                    _FAILED_RECEIVERS.add(key)
                    logger.warning(
                        "event receiver %r failed on %s and is skipped for this event: %s: %s",
                        getattr(receiver, "__qualname__", receiver), self.name,
                        type(exc).__name__, exc,
                    )
        return results

    def __init__(self, name: str, doc: str) -> None:
        super().__init__(doc)
        self.name = name
        self._snapshot: tuple[Any, ...] | None = None

    def __repr__(self) -> str:
        return f"<BusSignal {self.name}>"


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
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFF:08x}"


def _fast_init(cls: type) -> type:
    """Replace a frozen slotted dataclass's generated ``__init__`` with an equivalent one
    that writes the slots through their descriptors: the generated one goes through
    ``object.__setattr__`` per field, which made payload creation the largest cost of an
    emit point with a receiver.  Same signature, defaults and default factories;
    instances stay frozen (``__setattr__`` still raises)."""
    ns: dict[str, Any] = {"_NO_VALUE": object()}
    params: list[str] = []
    body: list[str] = []
    kw_only_started = False
    for f in fields(cls):
        descriptor = next(k.__dict__[f.name] for k in cls.__mro__ if f.name in k.__dict__)
        ns[f"_set_{f.name}"] = descriptor.__set__
        if f.kw_only and not kw_only_started:
            params.append("*")
            kw_only_started = True
        if f.default is not MISSING:
            ns[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
            body.append(f"_set_{f.name}(self, {f.name})")
        elif f.default_factory is not MISSING:
            ns[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_NO_VALUE")
            body.append(f"_set_{f.name}(self, _factory_{f.name}() if {f.name} is _NO_VALUE else {f.name})")
        else:
            params.append(f.name)
            body.append(f"_set_{f.name}(self, {f.name})")
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}):\n    " + "\n    ".join(body or ["pass"])
    exec(source, ns)  # noqa: S102 - generated from the class's own field list
    init = ns["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init
    return cls


# ---------------------------------------------------------------------------------------
# Context: project id, task id and the enclosing pair, carried by one context variable so
# that concurrent asyncio tasks each see their own.
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Ctx:
    project_id: str | None = None
    task_id: str | None = None
    parent_id: str | None = None


_fast_init(_Ctx)
_ROOT_CTX = _Ctx()
_ctx: contextvars.ContextVar[_Ctx] = contextvars.ContextVar("orchestrator_event_ctx", default=_ROOT_CTX)


def current_ids() -> _Ctx:
    """The project id, task id and enclosing pair's correlation id of the caller."""
    return _ctx.get()


# ---------------------------------------------------------------------------------------
# Payloads
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
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
        """JSON-ready dict (exceptions become their type and message)."""
        out: dict[str, Any] = {"signal": self.signal_name}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, BaseException) or f.name == "carrier":
                continue
            if isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class PairStart(Event):
    """Base of start payloads; ``attributes`` holds the initial attributes of the pair."""

    attributes: Mapping[str, AttributeValue] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True, kw_only=True)
class PairFinish(Event):
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
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    attributes: Mapping[str, AttributeValue] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def duration_ns(self) -> int:
        return self.timestamp_ns - self.start_timestamp_ns


@dataclass(frozen=True, slots=True, kw_only=True)
class PointEvent(Event):
    """Base of point events (become span events on the current span)."""

    task_id: str | None = None


# --- project ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectStarted(PairStart):
    description: str
    criteria: str
    budget_usd: float
    time_limit_seconds: float
    signal_name: ClassVar[str] = "project_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectFinished(PairFinish):
    """Attributes include ``project.status``, ``project.cost_usd``,
    ``project.tokens_in``, ``project.tokens_out``, ``project.task_count``."""

    description: str
    criteria: str
    budget_usd: float
    time_limit_seconds: float
    signal_name: ClassVar[str] = "project_finished"


# --- task ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStarted(PairStart):
    task_id: str
    task_type: str
    signal_name: ClassVar[str] = "task_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFinished(PairFinish):
    """Attributes include ``task.status``, ``task.score``, ``task.iterations``,
    ``task.model``, ``task.cost_usd``, ``task.tokens_in``, ``task.tokens_out``."""

    task_id: str
    task_type: str
    signal_name: ClassVar[str] = "task_finished"


# --- llm call --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class LlmCallStarted(PairStart):
    """``prompt``/``system`` are carried for observers that opt in to content capture;
    observers must not record them by default."""

    model: str
    call_type: str
    provider: str = ""
    task_id: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    attempt: int = 1
    prompt: str | None = field(default=None, repr=False)
    system: str | None = field(default=None, repr=False)
    carrier: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    """Propagation headers for the outgoing request.  The one mutable field: a tracing
    observer may put the call's W3C ``traceparent`` here on start; the client sends
    whatever it holds with the provider request (emitters stay free of OpenTelemetry)."""
    signal_name: ClassVar[str] = "llm_call_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class LlmCallFinished(PairFinish):
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
    completion: str | None = field(default=None, repr=False)
    signal_name: ClassVar[str] = "llm_call_finished"


# --- policy ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyCheckStarted(PairStart):
    policy_count: int
    model: str | None = None
    task_id: str | None = None
    signal_name: ClassVar[str] = "policy_check_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyChecked(PairFinish):
    """Attributes include ``policy.passed`` and ``policy.violations``."""

    policy_count: int
    model: str | None = None
    task_id: str | None = None
    signal_name: ClassVar[str] = "policy_checked"


# --- remediation -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class RemediationStarted(PairStart):
    strategy: str
    trigger: str
    task_id: str | None = None
    signal_name: ClassVar[str] = "remediation_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class RemediationFinished(PairFinish):
    """Attributes include ``remediation.success``."""

    strategy: str
    trigger: str
    task_id: str | None = None
    signal_name: ClassVar[str] = "remediation_finished"


# --- point events ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetWarning(PointEvent):
    """Spend crossed a warning fraction of the budget, or a call was refused."""

    spent_usd: float
    max_usd: float
    fraction: float
    reason: str = ""
    signal_name: ClassVar[str] = "budget_warning"


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheHit(PointEvent):
    model: str
    call_type: str
    cache_key: str
    signal_name: ClassVar[str] = "cache_hit"


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationFailed(PointEvent):
    validator: str
    message: str
    iteration: int = 0
    signal_name: ClassVar[str] = "validation_failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class DecompositionFallback(PointEvent):
    """The decomposition answer was unusable twice; the project runs as one task."""

    reason: str
    signal_name: ClassVar[str] = "decomposition_fallback"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelUnhealthy(PointEvent):
    model: str
    reason: str
    signal_name: ClassVar[str] = "model_unhealthy"


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSkipped(PointEvent):
    """A task did not run (a dependency failed or was skipped, or no budget/time)."""

    reason: str
    signal_name: ClassVar[str] = "task_skipped"


@dataclass(frozen=True, slots=True, kw_only=True)
class IterationScored(PointEvent):
    iteration: int
    score: float
    best_score: float
    signal_name: ClassVar[str] = "iteration_scored"


@dataclass(frozen=True, slots=True, kw_only=True)
class LlmRetry(PointEvent):
    """A transient provider error; the call is retried after ``delay_seconds``."""

    model: str
    attempt: int
    error_type: str
    delay_seconds: float
    signal_name: ClassVar[str] = "llm_retry"


@dataclass(frozen=True, slots=True, kw_only=True)
class TasksPlanned(PointEvent):
    """The task DAG is known (decomposed or given); progress displays take the total here."""

    task_count: int
    task_ids: tuple[str, ...] = ()
    signal_name: ClassVar[str] = "tasks_planned"


# ---------------------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------------------

def _signal(name: str, payload: type[Event], when: str) -> BusSignal:
    sig = BusSignal(name, f"{when} Payload: :class:`{payload.__name__}`.")
    sig.payload_type = payload  # type: ignore[attr-defined]
    return sig


project_started = _signal("project_started", ProjectStarted, "Sent when run_project begins.")
project_finished = _signal("project_finished", ProjectFinished, "Sent when run_project ends, however it ends.")
task_started = _signal("task_started", TaskStarted, "Sent when a task starts running.")
task_finished = _signal("task_finished", TaskFinished, "Sent when a task's loop ends.")
llm_call_started = _signal("llm_call_started", LlmCallStarted, "Sent before each LLM call attempt (cached ones too).")
llm_call_finished = _signal("llm_call_finished", LlmCallFinished, "Sent after each LLM call attempt.")
policy_check_started = _signal("policy_check_started", PolicyCheckStarted, "Sent before a model is checked against policies.")
policy_checked = _signal("policy_checked", PolicyChecked, "Sent with the result of a policy check.")
remediation_started = _signal("remediation_started", RemediationStarted, "Sent when a remediation strategy is attempted.")
remediation_finished = _signal("remediation_finished", RemediationFinished, "Sent with the outcome of a remediation attempt.")

budget_warning = _signal("budget_warning", BudgetWarning, "Point event: budget threshold crossed or call refused.")
cache_hit = _signal("cache_hit", CacheHit, "Point event: an LLM call was answered from the cache.")
validation_failed = _signal("validation_failed", ValidationFailed, "Point event: a deterministic validator rejected an output.")
decomposition_fallback = _signal("decomposition_fallback", DecompositionFallback, "Point event: decomposition unusable, single task.")
model_unhealthy = _signal("model_unhealthy", ModelUnhealthy, "Point event: a model is excluded for the rest of the run.")
task_skipped = _signal("task_skipped", TaskSkipped, "Point event: a task will not run.")
iteration_scored = _signal("iteration_scored", IterationScored, "Point event: a task iteration was evaluated.")
llm_retry = _signal("llm_retry", LlmRetry, "Point event: a transient LLM error will be retried.")
tasks_planned = _signal("tasks_planned", TasksPlanned, "Point event: the task DAG is known, before scheduling.")

PAIRS: tuple[tuple[BusSignal, BusSignal], ...] = (
    (project_started, project_finished),
    (task_started, task_finished),
    (llm_call_started, llm_call_finished),
    (policy_check_started, policy_checked),
    (remediation_started, remediation_finished),
)
POINT_SIGNALS: tuple[BusSignal, ...] = (
    budget_warning, cache_hit, validation_failed, decomposition_fallback,
    model_unhealthy, task_skipped, iteration_scored, llm_retry, tasks_planned,
)
ALL_SIGNALS: tuple[BusSignal, ...] = tuple(s for pair in PAIRS for s in pair) + POINT_SIGNALS
SIGNALS_BY_NAME: dict[str, BusSignal] = {s.name: s for s in ALL_SIGNALS}

for _sig in ALL_SIGNALS:
    _fast_init(_sig.payload_type)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------
# Emit helpers
# ---------------------------------------------------------------------------------------

class _NoopHandle:
    """The one shared handle used when nobody listens: every method does nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoopHandle:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        return None

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        pass

    def set_completion(self, text: str) -> None:
        pass

    @property
    def correlation_id(self) -> None:
        return None

    @property
    def carrier(self) -> dict[str, str]:
        return {}


_NOOP = _NoopHandle()


class PairHandle:
    """Context manager that sends a start/finish pair; ``set_attribute`` values travel
    with the finish signal."""

    __slots__ = ("_start_signal", "_finish_signal", "_finish_type", "_identity", "_attrs",
                 "_token", "_start", "_completion", "_ctx_update")

    def __init__(self, start_signal: BusSignal, finish_signal: BusSignal,
                 start: PairStart, finish_type: type[PairFinish],
                 identity: dict[str, Any], ctx: _Ctx) -> None:
        self._start_signal = start_signal
        self._finish_signal = finish_signal
        self._start = start
        self._finish_type = finish_type
        self._identity = identity
        self._attrs: dict[str, AttributeValue] = dict(start.attributes)
        self._token: contextvars.Token | None = None
        self._completion: str | None = None
        self._ctx_update = ctx

    @property
    def correlation_id(self) -> str:
        return self._start.correlation_id

    @property
    def start_payload(self) -> PairStart:
        return self._start

    @property
    def carrier(self) -> dict[str, str]:
        """Propagation headers observers filled on start (empty for non-LLM pairs)."""
        return getattr(self._start, "carrier", None) or {}

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._attrs[key] = value

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self._attrs.update(attributes)

    def set_completion(self, text: str) -> None:
        """The LLM answer text; observers record it only on content-capture opt-in."""
        self._completion = text

    def __enter__(self) -> PairHandle:
        self._token = _ctx.set(self._ctx_update)
        self._start_signal.send(self._start)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._token is not None:
            try:
                _ctx.reset(self._token)
            except ValueError:  # exited in another context: fall back to the parent ids
                _ctx.set(_Ctx(self._start.project_id, self._identity.get("task_id"),
                              self._start.parent_id))
            self._token = None
        status, error_type, message = "ok", None, None
        if exc is not None:
            error_type = type(exc).__name__
            message = str(exc)[:500]
            status = "cancelled" if error_type == "CancelledError" else "error"
        start = self._start
        extra = {"completion": self._completion} if self._completion is not None else {}
        finish = self._finish_type(
            correlation_id=start.correlation_id, parent_id=start.parent_id,
            project_id=start.project_id, timestamp_ns=time.time_ns(),
            start_timestamp_ns=start.timestamp_ns, status=status, error_type=error_type,
            error_message=message, exception=exc,
            attributes=MappingProxyType(self._attrs), **self._identity, **extra,
        )
        self._finish_signal.send(finish)
        return None


def _open_pair(start_signal: BusSignal, finish_signal: BusSignal,
               start_type: type[PairStart], finish_type: type[PairFinish],
               identity: dict[str, Any], attributes: dict[str, AttributeValue],
               start_extra: dict[str, Any] | None = None,
               project_id: str | None = None, task_id: str | None = None) -> PairHandle:
    parent = _ctx.get()
    cid = new_correlation_id()
    pid = project_id if project_id is not None else parent.project_id
    tid = task_id if task_id is not None else parent.task_id
    start = start_type(
        correlation_id=cid, parent_id=parent.parent_id, project_id=pid,
        timestamp_ns=time.time_ns(), attributes=MappingProxyType(attributes),
        **identity, **(start_extra or {}),
    )
    return PairHandle(start_signal, finish_signal, start, finish_type, identity,
                      _Ctx(pid, tid, cid))


def traced_project(project_id: str, description: str, criteria: str = "",
                   budget_usd: float = 0.0, time_limit_seconds: float = 0.0):
    """The root pair of a run: ``project_started``/``project_finished``."""
    if not _ACTIVE:
        return _NOOP
    identity = {"description": description, "criteria": criteria,
                "budget_usd": budget_usd, "time_limit_seconds": time_limit_seconds}
    attrs = {"project.id": project_id, "project.description": description[:200]}
    return _open_pair(project_started, project_finished, ProjectStarted, ProjectFinished,
                      identity, attrs, project_id=project_id, task_id="")


def traced_task(task_id: str, task_type: str, description: str = ""):
    """``task_started``/``task_finished`` around one task's whole loop."""
    if not _ACTIVE:
        return _NOOP
    attrs: dict[str, AttributeValue] = {"task.id": task_id, "task.type": task_type}
    if description:
        attrs["task.description"] = description[:200]
    return _open_pair(task_started, task_finished, TaskStarted, TaskFinished,
                      {"task_id": task_id, "task_type": task_type}, attrs, task_id=task_id)


def traced_llm_call(model: str, call_type: str, *, provider: str = "",
                    max_tokens: int | None = None, temperature: float | None = None,
                    attempt: int = 1, prompt: str | None = None, system: str | None = None):
    """``llm_call_started``/``llm_call_finished`` around one LLM call attempt."""
    if not _ACTIVE:
        return _NOOP
    parent = _ctx.get()
    identity = {"model": model, "call_type": call_type, "provider": provider,
                "task_id": parent.task_id or None, "max_tokens": max_tokens,
                "temperature": temperature, "attempt": attempt}
    attrs: dict[str, AttributeValue] = {"llm.model": model, "llm.call_type": call_type}
    return _open_pair(llm_call_started, llm_call_finished, LlmCallStarted, LlmCallFinished,
                      identity, attrs, start_extra={"prompt": prompt, "system": system})


def traced_policy_check(policy_count: int, *, model: str | None = None):
    """``policy_check_started``/``policy_checked`` around one policy evaluation."""
    if not _ACTIVE:
        return _NOOP
    identity = {"policy_count": policy_count, "model": model,
                "task_id": _ctx.get().task_id or None}
    attrs: dict[str, AttributeValue] = {"policy.count": policy_count}
    if model:
        attrs["policy.model"] = model
    return _open_pair(policy_check_started, policy_checked, PolicyCheckStarted, PolicyChecked,
                      identity, attrs)


def traced_remediation(strategy: str, trigger: str):
    """``remediation_started``/``remediation_finished`` around one remediation attempt."""
    if not _ACTIVE:
        return _NOOP
    identity = {"strategy": strategy, "trigger": trigger, "task_id": _ctx.get().task_id or None}
    attrs: dict[str, AttributeValue] = {"remediation.strategy": strategy,
                                        "remediation.trigger": trigger}
    return _open_pair(remediation_started, remediation_finished, RemediationStarted,
                      RemediationFinished, identity, attrs)


def emit(signal: BusSignal, **fields_: Any) -> None:
    """Send a point event on ``signal`` if anyone listens.  ``task_id`` defaults to the
    caller's task; ids and timestamp are filled in."""
    if not signal.receivers:
        return
    ctx = _ctx.get()
    fields_.setdefault("task_id", ctx.task_id or None)
    payload = signal.payload_type(  # type: ignore[attr-defined]
        correlation_id=new_correlation_id(), parent_id=ctx.parent_id,
        project_id=ctx.project_id, timestamp_ns=time.time_ns(), **fields_,
    )
    signal.send(payload)
