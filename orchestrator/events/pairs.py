"""The pair helpers: ``traced_*`` context managers that send a start/finish pair.

The ``traced_*`` helpers send the pair from the same asyncio task, and the finish exactly
once, also on error or cancellation, so an observer can keep per-pair state keyed by
``correlation_id`` and trust it will be released.  With no receiver connected anywhere on
the bus, every helper returns one shared do-nothing handle: no payload is built, no
context variable touched.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from types import MappingProxyType, TracebackType
from typing import Any, Protocol

import msgspec
from msgspec.structs import force_setattr

from .. import attributes as attr

# read through their modules, never imported by name: the bus's "anyone listening" flag and
# the id prefix and counter (reseeded in a forked child) are rebound there, and a name
# imported here would keep the value it had at import
from . import bus as _bus
from . import context as _ids
from .bus import _NOT_CONTAINED, BusSignal, PairReceiver, _report_failure
from .context import _batch, _ctx, _Ids, new_correlation_id
from .payloads import (
    AttributeValue,
    BatchFinished,
    BatchStarted,
    LlmCallFinished,
    LlmCallStarted,
    PairFinish,
    PairStart,
    PolicyChecked,
    PolicyCheckStarted,
    ProjectFinished,
    ProjectStarted,
    RemediationFinished,
    RemediationStarted,
    TaskFinished,
    TaskStarted,
)
from .signals import (
    batch_finished,
    batch_started,
    llm_call_finished,
    llm_call_started,
    policy_check_started,
    policy_checked,
    project_finished,
    project_started,
    remediation_finished,
    remediation_started,
    task_finished,
    task_started,
)

__all__ = [
    "PairContext",
    "PairHandle",
    "traced_project",
    "traced_batch",
    "traced_task",
    "traced_llm_call",
    "traced_policy_check",
    "traced_remediation",
]


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

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class _NoopHandle:
    """The one shared handle used when nobody listens: every method does nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoopHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
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


FinishFactory = Callable[
    [Any, int, Mapping[str, AttributeValue], "dict[str, str] | None", "BaseException | None"], "PairFinish"
]
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


_UNKNOWN = object()


class PairHandle(msgspec.Struct, eq=False):
    """Context manager that sends a start/finish pair; ``set_attribute`` values travel
    with the finish signal.

    Pair receivers (:class:`PairReceiver`) are called directly with the start payload and,
    at the finish, with their state and what was set here; a finish payload is built only
    for the other receivers (or a pair receiver connected after the start).  A struct
    rather than a class with ``__init__``: made in C, at half the cost, for every pair."""

    _start_signal: BusSignal
    _finish_signal: BusSignal
    _start: PairStart
    _finish: FinishFactory
    _ctx_update: _Ids
    _attrs: dict[str, AttributeValue] = msgspec.field(default_factory=dict)
    """Set on the handle; the start payload keeps its own."""
    _token: contextvars.Token[_Ids] | None = None
    _content: dict[str, str] | None = None  # completion, sent_system (LLM pairs)
    _states: tuple[tuple[PairReceiver, object], ...] = ()  # each pair receiver's own state (several)
    _only: PairReceiver | None = None  # the one pair receiver when nobody else listened at the start
    _only_state: object = None  # its state

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
        signal = self._start_signal
        if signal._snapshot is None:
            signal._lanes()
        only = signal._only
        if only is not None and not signal.is_muted:  # the common case: one pair receiver, nobody else
            try:
                self._only_state = only.started(self._start)
                self._only = only
            except _NOT_CONTAINED:
                raise
            except (Exception, asyncio.CancelledError) as exc:  # a broken observer must never break the run
                _report_failure(signal.name, only, exc)
            return self
        if not signal.is_muted:
            self._start_all(signal)
        return self

    def _start_all(self, signal: BusSignal) -> None:
        start = self._start
        if signal._fast:
            states = []
            for receiver in signal._fast:
                try:
                    states.append((receiver, receiver.started(start)))
                except _NOT_CONTAINED:
                    raise
                except (Exception, asyncio.CancelledError) as exc:  # a broken observer must never break the run
                    _report_failure(signal.name, receiver, exc)
            self._states = tuple(states)
        if signal._plain:
            signal._deliver_to(signal._plain, start)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        token = self._token
        if token is not None:
            self._token = None
            try:
                _ctx.reset(token)
            except ValueError:  # exited in another context: fall back to the parent ids
                start = self._start
                _ctx.set((start.project_id, self._ctx_update[1], start.parent_id))
        signal = self._finish_signal
        if signal._snapshot is None:
            signal._lanes()
        only = self._only
        if only is not None and only is signal._only and not signal.is_muted:  # still the only one
            try:
                only.finished(
                    self._only_state,
                    time_ns(),
                    self._attrs,
                    self._content,
                    None if exc is None else (*_failure(exc), exc),
                )
            except _NOT_CONTAINED:
                raise
            except (Exception, asyncio.CancelledError) as exc_:  # a broken observer must never break the run
                _report_failure(signal.name, only, exc_)
            return None
        if not signal.is_muted:
            self._finish_all(signal, exc)
        return None

    def _finish_all(self, signal: BusSignal, exc: BaseException | None) -> None:
        end_ns = time_ns()
        start = self._start
        fast, states = signal._fast, self._states
        if self._only is not None:  # started with one pair receiver, finished with others
            states = ((self._only, self._only_state),)
        payload: PairFinish | None = None
        if signal._plain or len(fast) > len(states):
            attrs = start.attributes.copy() if type(start.attributes) is MappingProxyType else dict(start.attributes)
            attrs.update(self._attrs)
            payload = self._finish(start, end_ns, MappingProxyType(attrs), self._content, exc)
            signal._deliver_to(signal._plain, payload)
        if fast:
            failure = None if exc is None else (*_failure(exc), exc)
            for receiver in fast:
                state: object = _UNKNOWN
                for known, value in states:
                    if known is receiver:
                        state = value
                        break
                if state is _UNKNOWN:  # connected after the start: a finish payload, like any receiver
                    if payload is not None:
                        signal._deliver_to((receiver,), payload)
                    continue
                try:
                    receiver.finished(state, end_ns, self._attrs, self._content, failure)
                except _NOT_CONTAINED:
                    raise
                except (Exception, asyncio.CancelledError) as exc_:  # a broken observer must never break the run
                    _report_failure(signal.name, receiver, exc_)


def _finish_project(
    s: ProjectStarted,
    ts: int,
    attrs: Mapping[str, AttributeValue],
    content: dict[str, str] | None,
    exc: BaseException | None,
) -> ProjectFinished:
    status, error_type, message = _failure(exc)
    return ProjectFinished(
        correlation_id=s.correlation_id,
        parent_id=s.parent_id,
        project_id=s.project_id,
        timestamp_ns=ts,
        start_timestamp_ns=s.timestamp_ns,
        status=status,
        error_type=error_type,
        error_message=message,
        exception=exc,
        attributes=attrs,
        description=s.description,
        criteria=s.criteria,
        budget_usd=s.budget_usd,
        time_limit_seconds=s.time_limit_seconds,
    )


def _finish_task(
    s: TaskStarted,
    ts: int,
    attrs: Mapping[str, AttributeValue],
    content: dict[str, str] | None,
    exc: BaseException | None,
) -> TaskFinished:
    status, error_type, message = _failure(exc)
    return TaskFinished(
        correlation_id=s.correlation_id,
        parent_id=s.parent_id,
        project_id=s.project_id,
        timestamp_ns=ts,
        start_timestamp_ns=s.timestamp_ns,
        status=status,
        error_type=error_type,
        error_message=message,
        exception=exc,
        attributes=attrs,
        task_id=s.task_id,
        task_type=s.task_type,
    )


def _finish_llm(
    s: LlmCallStarted,
    ts: int,
    attrs: Mapping[str, AttributeValue],
    content: dict[str, str] | None,
    exc: BaseException | None,
) -> LlmCallFinished:
    if exc is None and content is None:  # the common case, in at most 15 keyword arguments
        return LlmCallFinished(
            correlation_id=s.correlation_id,
            parent_id=s.parent_id,
            project_id=s.project_id,
            timestamp_ns=ts,
            start_timestamp_ns=s.timestamp_ns,
            attributes=attrs,
            model=s.model,
            call_type=s.call_type,
            provider=s.provider,
            task_id=s.task_id,
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            attempt=s.attempt,
        )
    status, error_type, message = _failure(exc)
    completion = content.get("completion") if content else None
    sent_system = content.get("sent_system") if content else None
    return LlmCallFinished(
        correlation_id=s.correlation_id,
        parent_id=s.parent_id,
        project_id=s.project_id,
        timestamp_ns=ts,
        start_timestamp_ns=s.timestamp_ns,
        status=status,
        error_type=error_type,
        error_message=message,
        exception=exc,
        attributes=attrs,
        model=s.model,
        call_type=s.call_type,
        provider=s.provider,
        task_id=s.task_id,
        max_tokens=s.max_tokens,
        temperature=s.temperature,
        attempt=s.attempt,
        completion=completion,
        sent_system=sent_system,
    )


def _finish_policy(
    s: PolicyCheckStarted,
    ts: int,
    attrs: Mapping[str, AttributeValue],
    content: dict[str, str] | None,
    exc: BaseException | None,
) -> PolicyChecked:
    status, error_type, message = _failure(exc)
    return PolicyChecked(
        correlation_id=s.correlation_id,
        parent_id=s.parent_id,
        project_id=s.project_id,
        timestamp_ns=ts,
        start_timestamp_ns=s.timestamp_ns,
        status=status,
        error_type=error_type,
        error_message=message,
        exception=exc,
        attributes=attrs,
        policy_count=s.policy_count,
        model=s.model,
        task_id=s.task_id,
    )


def _finish_remediation(
    s: RemediationStarted,
    ts: int,
    attrs: Mapping[str, AttributeValue],
    content: dict[str, str] | None,
    exc: BaseException | None,
) -> RemediationFinished:
    status, error_type, message = _failure(exc)
    return RemediationFinished(
        correlation_id=s.correlation_id,
        parent_id=s.parent_id,
        project_id=s.project_id,
        timestamp_ns=ts,
        start_timestamp_ns=s.timestamp_ns,
        status=status,
        error_type=error_type,
        error_message=message,
        exception=exc,
        attributes=attrs,
        strategy=s.strategy,
        trigger=s.trigger,
        task_id=s.task_id,
    )


def traced_project(
    project_id: str,
    description: str,
    criteria: str = "",
    budget_usd: float = 0.0,
    time_limit_seconds: float = 0.0,
    *,
    attempt: int = 1,
    links: Sequence[Mapping[str, str] | str] = (),
) -> PairContext:
    """The root pair of a run: ``project_started``/``project_finished``.  A resumed run
    passes its ``attempt`` number and the carriers of earlier attempts' roots (what a
    tracing observer wrote into their ``carrier``)."""
    if not _bus._ACTIVE:
        return _NOOP
    parent_cid = _ctx.get()[2]
    cid = next(_ids._id_pool, None) or _ids._next_id_block()  # new_correlation_id(), inlined
    attrs: dict[str, AttributeValue] = {
        attr.PROJECT_ID: project_id,
        attr.PROJECT_DESCRIPTION: description[:200],
        attr.ORCHESTRATOR_ATTEMPT: attempt,
    }
    if attempt > 1:
        attrs[attr.ORCHESTRATOR_RESUMED_FROM] = project_id
    scope = _batch.get()
    if scope is None:
        start = ProjectStarted(
            correlation_id=cid,
            parent_id=parent_cid,
            project_id=project_id,
            timestamp_ns=time_ns(),
            attributes=MappingProxyType(attrs),
            description=description,
            criteria=criteria,
            budget_usd=budget_usd,
            time_limit_seconds=time_limit_seconds,
            attempt=attempt,
            links=tuple(links),
        )
    else:  # a project of a batch: its id on the root, the batch span's context for the link
        attrs[attr.ORCHESTRATOR_BATCH_ID] = scope.batch_id
        start = ProjectStarted(
            correlation_id=cid,
            parent_id=parent_cid,
            project_id=project_id,
            timestamp_ns=time_ns(),
            attributes=MappingProxyType(attrs),
            description=description,
            criteria=criteria,
            budget_usd=budget_usd,
            time_limit_seconds=time_limit_seconds,
            attempt=attempt,
            links=tuple(links),
            batch_id=scope.batch_id,
            batch_carrier=dict(scope.carrier),
        )
    return PairHandle(project_started, project_finished, start, _finish_project, (project_id, "", cid))


def _finish_batch(
    s: BatchStarted,
    ts: int,
    attrs: Mapping[str, AttributeValue],
    content: dict[str, str] | None,
    exc: BaseException | None,
) -> BatchFinished:
    status, error_type, message = _failure(exc)
    return BatchFinished(
        correlation_id=s.correlation_id,
        parent_id=s.parent_id,
        project_id=s.project_id,
        timestamp_ns=ts,
        start_timestamp_ns=s.timestamp_ns,
        status=status,
        error_type=error_type,
        error_message=message,
        exception=exc,
        attributes=attrs,
        batch_id=s.batch_id,
        project_count=s.project_count,
        budget_usd=s.budget_usd,
        time_limit_seconds=s.time_limit_seconds,
        max_parallel=s.max_parallel,
        backend=s.backend,
    )


def traced_batch(
    batch_id: str, project_count: int, budget_usd: float, time_limit_seconds: float, max_parallel: int, backend: str
) -> PairContext:
    """The pair of a whole batch: ``batch_started``/``batch_finished`` (sent by the batch's
    driver; its projects' runs are pairs of their own, see :func:`batch_scope`)."""
    if not _bus._ACTIVE:
        return _NOOP
    parent = _ctx.get()
    cid = new_correlation_id()
    attrs: dict[str, AttributeValue] = {
        attr.BATCH_ID: batch_id,
        attr.BATCH_PROJECT_COUNT: project_count,
        attr.BATCH_BUDGET_USD: budget_usd,
        attr.BATCH_MAX_PARALLEL: max_parallel,
        attr.BATCH_BACKEND: backend,
    }
    start = BatchStarted(
        correlation_id=cid,
        parent_id=parent[2],
        project_id=parent[0],
        timestamp_ns=time_ns(),
        attributes=MappingProxyType(attrs),
        batch_id=batch_id,
        project_count=project_count,
        budget_usd=budget_usd,
        time_limit_seconds=time_limit_seconds,
        max_parallel=max_parallel,
        backend=backend,
    )
    return PairHandle(batch_started, batch_finished, start, _finish_batch, (parent[0], "", cid))


def traced_task(task_id: str, task_type: str, description: str = "") -> PairContext:
    """``task_started``/``task_finished`` around one task's whole loop."""
    if not _bus._ACTIVE:
        return _NOOP
    pid, tid, parent_cid = _ctx.get()
    cid = next(_ids._id_pool, None) or _ids._next_id_block()  # new_correlation_id(), inlined
    attrs: dict[str, AttributeValue] = {attr.TASK_ID: task_id, attr.TASK_TYPE: task_type}
    if description:
        attrs[attr.TASK_DESCRIPTION] = description[:200]
    start = TaskStarted(
        correlation_id=cid,
        parent_id=parent_cid,
        project_id=pid,
        timestamp_ns=time_ns(),
        attributes=MappingProxyType(attrs),
        task_id=task_id,
        task_type=task_type,
    )
    return PairHandle(task_started, task_finished, start, _finish_task, (pid, task_id, cid))


_LLM_START_ATTRS: dict[tuple[str, str], Mapping[str, AttributeValue]] = {}


def _llm_start_attrs(model: str, call_type: str) -> Mapping[str, AttributeValue]:
    """The start attributes of an LLM pair, one read-only view per model and call type
    (a run uses a handful): shared by every call's start payload."""
    if len(_LLM_START_ATTRS) >= 256:
        _LLM_START_ATTRS.clear()
    view = _LLM_START_ATTRS[(model, call_type)] = MappingProxyType(
        {attr.LLM_MODEL: model, attr.LLM_CALL_TYPE: call_type}
    )
    return view


def traced_llm_call(
    model: str,
    call_type: str,
    *,
    provider: str = "",
    max_tokens: int | None = None,
    temperature: float | None = None,
    attempt: int = 1,
    prompt: str | None = None,
    system: str | None = None,
    output_type: str = "text",
    server_address: str | None = None,
    server_port: int | None = None,
) -> PairContext:
    """``llm_call_started``/``llm_call_finished`` around one LLM call attempt."""
    if not _bus._ACTIVE:
        return _NOOP
    pid, tid, parent_cid = _ctx.get()
    cid = next(_ids._id_pool, None) or _ids._next_id_block()  # new_correlation_id(), inlined
    attrs = _LLM_START_ATTRS.get((model, call_type)) or _llm_start_attrs(model, call_type)
    start = LlmCallStarted(
        correlation_id=cid,
        parent_id=parent_cid,
        project_id=pid,
        timestamp_ns=time_ns(),
        attributes=attrs,
        model=model,
        call_type=call_type,
        provider=provider,
        task_id=tid or None,
        max_tokens=max_tokens,
        temperature=temperature,
        prompt=prompt,
        system=system,
        server_address=server_address,
        server_port=server_port,
    )
    # the two fields most calls leave at their defaults are set apart, on the new payload
    # nobody has seen yet: a call with more than 15 keyword arguments costs three times as much
    if attempt != 1:
        force_setattr(start, "attempt", attempt)
    if output_type != "text":
        force_setattr(start, "output_type", output_type)
    return PairHandle(llm_call_started, llm_call_finished, start, _finish_llm, (pid, tid, cid))


def traced_policy_check(policy_count: int, *, model: str | None = None) -> PairContext:
    """``policy_check_started``/``policy_checked`` around one policy evaluation."""
    if not _bus._ACTIVE:
        return _NOOP
    pid, tid, parent_cid = _ctx.get()
    cid = next(_ids._id_pool, None) or _ids._next_id_block()  # new_correlation_id(), inlined
    attrs: dict[str, AttributeValue] = {attr.POLICY_COUNT: policy_count}
    if model:
        attrs[attr.POLICY_MODEL] = model
    start = PolicyCheckStarted(
        correlation_id=cid,
        parent_id=parent_cid,
        project_id=pid,
        timestamp_ns=time_ns(),
        attributes=MappingProxyType(attrs),
        policy_count=policy_count,
        model=model,
        task_id=tid or None,
    )
    return PairHandle(policy_check_started, policy_checked, start, _finish_policy, (pid, tid, cid))


def traced_remediation(strategy: str, trigger: str) -> PairContext:
    """``remediation_started``/``remediation_finished`` around one remediation attempt."""
    if not _bus._ACTIVE:
        return _NOOP
    pid, tid, parent_cid = _ctx.get()
    cid = next(_ids._id_pool, None) or _ids._next_id_block()  # new_correlation_id(), inlined
    attrs: dict[str, AttributeValue] = {attr.REMEDIATION_STRATEGY: strategy, attr.REMEDIATION_TRIGGER: trigger}
    start = RemediationStarted(
        correlation_id=cid,
        parent_id=parent_cid,
        project_id=pid,
        timestamp_ns=time_ns(),
        attributes=MappingProxyType(attrs),
        strategy=strategy,
        trigger=trigger,
        task_id=tid or None,
    )
    return PairHandle(remediation_started, remediation_finished, start, _finish_remediation, (pid, tid, cid))
