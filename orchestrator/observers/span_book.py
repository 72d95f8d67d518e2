"""Live-span bookkeeping for the :class:`~.tracing.TracingObserver`: which span belongs
to which pair, its parent, the context it made current, and the usage rolled up to it.

Why explicit parents: a span's parent is the live span of the payload's ``parent_id``,
never "whatever is current", so concurrent asyncio tasks cannot mix parents up.
Enclosing spans (project, task, remediation) are also made the *current* context in the
asyncio task that started them, so third-party instrumentation inside a task nests under
it; the finish restores the previous context (attach/detach are LIFO per task because the
bus sends a pair's start and finish from the same task and pairs nest like ``with``).
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from contextvars import ContextVar, Token
from typing import Any

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode, Tracer, set_span_in_context

from .. import attributes as attr
from .. import events
from ..redaction import redact
from .base import copy_attributes

__all__ = ["SpanBook", "Rollup", "LiveSpan"]

ORPHAN = "finish event never received"
ROLLUP_PREFIX = {"project": "project", "task": "task", "remediation": "remediation"}


def _rollup_keys(kind: str) -> tuple[str, str, str, str]:
    prefix = ROLLUP_PREFIX.get(kind, kind)
    return (
        attr.rollup_key(prefix, attr.ROLLUP_TOKENS_IN),
        attr.rollup_key(prefix, attr.ROLLUP_TOKENS_OUT),
        attr.rollup_key(prefix, attr.ROLLUP_COST_USD),
        attr.rollup_key(prefix, attr.ROLLUP_LLM_CALLS),
    )


_ROLLUP_KEYS = {kind: _rollup_keys(kind) for kind in ROLLUP_PREFIX}

# Set next to every attach: resetting its token tells whether a finish runs in the
# context its start ran in (a token of another context raises ValueError) before
# OpenTelemetry's detach is called, which would log "Failed to detach context" instead.
_ATTACHED: ContextVar[object] = ContextVar("orchestrator_attached_span", default=None)


class Rollup(msgspec.Struct):
    """The LLM usage below an enclosing span (project, task, remediation): its own calls'
    and, once they ended, its enclosed spans' totals (each hands its totals up when it
    ends, so a call adds to one rollup, not to every ancestor's)."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    calls: int = 0

    def add(self, tokens_in: int, tokens_out: int, cost_usd: float, calls: int = 1) -> None:
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        self.cost_usd += cost_usd
        self.calls += calls


class LiveSpan(msgspec.Struct):
    """One open span and what the finish needs: ``roll`` only on enclosing spans, ``up``
    the rollup of the nearest enclosing span above (where this span's usage goes), ``ctx``
    (the context holding this span) made when a child or a carrier needs it, ``base`` the
    parent's context it started in, ``given`` the start's attributes (the span has them).
    A struct: made in C, at half the cost of an ``__init__``, once per span."""

    span: Span
    ctx: Context | None
    base: Context | None
    cid: str
    parent_cid: str | None
    project_id: str | None
    kind: str
    roll: Rollup | None
    up: Rollup | None
    given: Mapping[str, Any] | None = None
    token: Token[Context] | None = None  # OpenTelemetry's, when made current
    mark: Token[object] | None = None  # ours, set with it (see _ATTACHED)


class SpanBook:
    """The spans of the pairs in flight, keyed by correlation id."""

    def __init__(self, tracer: Tracer, *, attach_context: bool = True, recent_spans: int = 4096) -> None:
        self.tracer = tracer
        self.attach_context = attach_context
        self.live: dict[str, LiveSpan] = {}
        # the span contexts of ended pairs, in two generations: when the newer one is full it
        # becomes the older one (the one before is dropped), so between recent_spans and
        # twice as many are kept, at the cost of one dict store per span
        self._recent: dict[str, SpanContext] = {}
        self._older: dict[str, SpanContext] = {}
        self._recent_limit = max(0, recent_spans)

    def span_ids(self, correlation_id: str) -> tuple[str, str] | None:
        """(trace id, span id) in hex of a live or recently finished pair's span."""
        live = self.live.get(correlation_id)
        if live is not None:
            sc: SpanContext | None = live.span.get_span_context()
        else:
            sc = self._recent.get(correlation_id) or self._older.get(correlation_id)
        if sc is None or not sc.is_valid:
            return None
        return f"{sc.trace_id:032x}", f"{sc.span_id:016x}"

    def parent_ctx(self, parent_cid: str | None) -> Context | None:
        if parent_cid is None:
            return None
        parent = self.live.get(parent_cid)
        if parent is None:
            return None
        if parent.ctx is None:
            parent.ctx = set_span_in_context(parent.span)
        return parent.ctx

    def open(
        self,
        p: events.PairStart,
        name: str,
        kind: SpanKind,
        attrs: Mapping[str, Any],
        span_kind: str,
        enclosing: bool,
        links: Sequence[trace.Link] | None = None,
        *,
        new_trace: bool = False,
    ) -> LiveSpan:
        """``new_trace``: a root whatever the current context (a batch, a batch's project)."""
        cid = p.correlation_id
        parent_cid = p.parent_id
        base: Context | None = None
        up: Rollup | None = None
        if new_trace:
            base = Context()
        elif parent_cid is not None:
            parent = self.live.get(parent_cid)
            if parent is not None:
                base = parent.ctx
                if base is None:
                    base = parent.ctx = set_span_in_context(parent.span)
                up = parent.roll or parent.up
        span = self.tracer.start_span(name, base, kind, attrs, links, p.timestamp_ns)
        if enclosing:
            ctx = set_span_in_context(span, base)
            live = LiveSpan(span, ctx, base, cid, parent_cid, p.project_id, span_kind, Rollup(), up, p.attributes)
            if self.attach_context:
                live.mark = _ATTACHED.set(live)
                live.token = otel_context.attach(ctx)
        else:
            live = LiveSpan(span, None, base, cid, parent_cid, p.project_id, span_kind, None, up, p.attributes)
        self.live[cid] = live
        return live

    def _detach(self, live: LiveSpan) -> None:
        token, mark = live.token, live.mark
        live.token = live.mark = None
        if token is None or mark is None:
            return
        try:
            _ATTACHED.reset(mark)
        except (ValueError, RuntimeError):
            # finished in another context than it started in (an emitter broke the
            # same-task rule): if our span is current here, restore its parent
            if trace.get_current_span() is live.span:
                parent = self.parent_ctx(live.parent_cid)
                otel_context.attach(parent if parent is not None else Context())
            return
        otel_context.detach(token)

    def changed(self, p: events.PairFinish) -> tuple[LiveSpan, dict[str, Any]] | None:
        """The live span of a finish payload's pair and the payload's attributes that are
        not the start's (the span has those already), or None when the pair is unknown
        (started before this observer subscribed, or ended as an orphan)."""
        live = self.live.get(p.correlation_id)
        if live is None:
            return None
        attrs = copy_attributes(p.attributes)
        given = live.given
        if given:  # a finish repeats the start's attributes: set again only what changed
            for key, value in given.items():
                if attrs.get(key) is value:
                    del attrs[key]
        return live, attrs

    def end(self, live: LiveSpan, end_ns: int, attrs: dict[str, Any], failure: events.PairFailure | None) -> bool:
        """End ``live``'s span with ``attrs`` (a dict of the caller's: roll-ups are added to
        it) and its status; False when it was ended already (an orphan)."""
        cid = live.cid
        if self.live.pop(cid, None) is None:
            return False
        span = live.span
        if live.token is not None:
            self._detach(live)
        roll = live.roll
        if roll is not None and roll.calls:
            keys = _ROLLUP_KEYS.get(live.kind) or _rollup_keys(live.kind)
            setdefault = attrs.setdefault
            setdefault(keys[0], roll.tokens_in)
            setdefault(keys[1], roll.tokens_out)
            setdefault(keys[2], round(roll.cost_usd, 8))
            setdefault(keys[3], roll.calls)
            if live.up is not None:  # its totals go up now; a straggler's after this stays here
                live.up.add(roll.tokens_in, roll.tokens_out, roll.cost_usd, roll.calls)
        if failure is not None:
            _fail(span, attrs, failure, end_ns)
        span.set_attributes(attrs)
        span.end(end_ns)
        recent = self._recent
        if len(recent) < self._recent_limit:
            recent[cid] = span.get_span_context()
        elif self._recent_limit:
            self._older, self._recent = recent, {cid: span.get_span_context()}
        return True

    def end_orphans(
        self, project_id: str | None, end_time: int | None, *, all_: bool = False, keep: str | None = None
    ) -> int:
        """End (status ERROR) the open spans of ``project_id`` (or all), except ``keep``;
        innermost first, each handing its usage up as a finish would."""
        count = 0
        for cid, live in reversed(list(self.live.items())):
            if cid == keep or (not all_ and live.project_id != project_id):
                continue
            if self.live.pop(cid, None) is None:
                continue
            live.token = live.mark = None  # its context belongs to a task that is gone
            roll = live.roll
            if roll is not None and roll.calls and live.up is not None:
                live.up.add(roll.tokens_in, roll.tokens_out, roll.cost_usd, roll.calls)
            live.span.set_attribute(attr.ERROR_TYPE, "orphan")
            live.span.set_status(Status(StatusCode.ERROR, ORPHAN))
            live.span.end(end_time=end_time)
            count += 1
        return count


def _fail(span: Span, attrs: dict[str, Any], failure: events.PairFailure, end_ns: int) -> None:
    """Status ERROR, ``error.type`` and the exception event of a pair that did not end ok."""
    status, error_type, message, exc = failure
    error_type = error_type or status
    attrs.setdefault(attr.ERROR_TYPE, error_type)
    message = redact(message or "")[:300]
    span.set_status(Status(StatusCode.ERROR, f"{error_type}: {message}" if message else error_type))
    if isinstance(exc, BaseException):
        extra = None
        stack = "".join(traceback.format_exception(exc))
        clean = redact(stack)
        if clean != stack:  # a secret in the message or the source lines shown
            extra = {attr.EXCEPTION_MESSAGE: redact(str(exc)), attr.EXCEPTION_STACKTRACE: clean}
        span.record_exception(exc, attributes=extra, timestamp=end_ns, escaped=True)
