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
from collections import OrderedDict
from collections.abc import Sequence
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode, Tracer, set_span_in_context

from .. import attributes as attr
from .. import events
from ..redaction import redact

__all__ = ["SpanBook", "Rollup", "LiveSpan"]

ORPHAN = "finish event never received"
ROLLUP_PREFIX = {"project": "project", "task": "task", "remediation": "remediation"}

# Set next to every attach: resetting its token tells whether a finish runs in the
# context its start ran in (a token of another context raises ValueError) before
# OpenTelemetry's detach is called, which would log "Failed to detach context" instead.
_ATTACHED: ContextVar[object] = ContextVar("orchestrator_attached_span", default=None)


class Rollup:
    """The LLM usage below an enclosing span (project, task, remediation)."""

    __slots__ = ("tokens_in", "tokens_out", "cost_usd", "calls")

    def __init__(self) -> None:
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost_usd = 0.0
        self.calls = 0

    def add(self, tokens_in: int, tokens_out: int, cost_usd: float) -> None:
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        self.cost_usd += cost_usd
        self.calls += 1


class LiveSpan:
    """One open span and what the finish needs; ``roll`` only on enclosing spans."""

    __slots__ = ("span", "ctx", "token", "mark", "parent_cid", "project_id", "kind", "roll")

    def __init__(self, span: Span, ctx: Context | None, parent_cid: str | None,
                 project_id: str | None, kind: str, roll: Rollup | None) -> None:
        self.span = span
        self.ctx = ctx
        self.token: Token[Context] | None = None  # OpenTelemetry's, when made current
        self.mark: Token[object] | None = None  # ours, set with it (see _ATTACHED)
        self.parent_cid = parent_cid
        self.project_id = project_id
        self.kind = kind
        self.roll = roll


class SpanBook:
    """The spans of the pairs in flight, keyed by correlation id."""

    def __init__(self, tracer: Tracer, *, attach_context: bool = True, recent_spans: int = 4096) -> None:
        self.tracer = tracer
        self.attach_context = attach_context
        self.live: dict[str, LiveSpan] = {}
        self._recent: OrderedDict[str, SpanContext] = OrderedDict()  # popitem(last=False) is O(1)
        self._recent_limit = recent_spans

    def span_ids(self, correlation_id: str) -> tuple[str, str] | None:
        """(trace id, span id) in hex of a live or recently finished pair's span."""
        live = self.live.get(correlation_id)
        sc = live.span.get_span_context() if live is not None else self._recent.get(correlation_id)
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

    def open(self, p: events.PairStart, name: str, kind: SpanKind, attrs: dict[str, Any],
              span_kind: str, enclosing: bool, links: Sequence[trace.Link] | None = None) -> LiveSpan:
        base = self.parent_ctx(p.parent_id)
        span = self.tracer.start_span(name, context=base, kind=kind, attributes=attrs,
                                       start_time=p.timestamp_ns, links=links)
        if enclosing:
            ctx = set_span_in_context(span, base)
            live = LiveSpan(span, ctx, p.parent_id, p.project_id, span_kind, Rollup())
            if self.attach_context:
                live.mark = _ATTACHED.set(live)
                live.token = otel_context.attach(ctx)
        else:
            live = LiveSpan(span, None, p.parent_id, p.project_id, span_kind, None)
        self.live[p.correlation_id] = live
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

    def close(self, p: events.PairFinish, attrs: dict[str, Any]) -> LiveSpan | None:
        live = self.live.pop(p.correlation_id, None)
        if live is None:  # started before this observer subscribed
            return None
        span = live.span
        if live.token is not None:
            self._detach(live)
        roll = live.roll
        if roll is not None and roll.calls:
            prefix = ROLLUP_PREFIX.get(live.kind, live.kind)
            attrs.setdefault(attr.rollup_key(prefix, attr.ROLLUP_TOKENS_IN), roll.tokens_in)
            attrs.setdefault(attr.rollup_key(prefix, attr.ROLLUP_TOKENS_OUT), roll.tokens_out)
            attrs.setdefault(attr.rollup_key(prefix, attr.ROLLUP_COST_USD), round(roll.cost_usd, 8))
            attrs.setdefault(attr.rollup_key(prefix, attr.ROLLUP_LLM_CALLS), roll.calls)
        if p.status != "ok":
            error_type = p.error_type or p.status
            attrs.setdefault(attr.ERROR_TYPE, error_type)
            message = redact(p.error_message or "")[:300]
            span.set_status(Status(StatusCode.ERROR, f"{error_type}: {message}" if message else error_type))
            exc = p.exception
            if isinstance(exc, BaseException):
                extra = None
                stack = "".join(traceback.format_exception(exc))
                clean = redact(stack)
                if clean != stack:  # a secret in the message or the source lines shown
                    extra = {attr.EXCEPTION_MESSAGE: redact(str(exc)), attr.EXCEPTION_STACKTRACE: clean}
                span.record_exception(exc, attributes=extra, timestamp=p.timestamp_ns, escaped=True)
        span.set_attributes(attrs)
        span.end(end_time=p.timestamp_ns)
        recent = self._recent
        recent[p.correlation_id] = span.get_span_context()
        if len(recent) > self._recent_limit:
            recent.popitem(last=False)
        return live

    def end_orphans(self, project_id: str | None, end_time: int | None, *, all_: bool = False,
                     keep: str | None = None) -> int:
        """End (status ERROR) the open spans of ``project_id`` (or all), except ``keep``."""
        count = 0
        for cid, live in list(self.live.items()):
            if cid == keep or (not all_ and live.project_id != project_id):
                continue
            if self.live.pop(cid, None) is None:
                continue
            live.token = live.mark = None  # its context belongs to a task that is gone
            live.span.set_attribute(attr.ERROR_TYPE, "orphan")
            live.span.set_status(Status(StatusCode.ERROR, ORPHAN))
            live.span.end(end_time=end_time)
            count += 1
        return count

    def roll_up(self, live: LiveSpan, tokens_in: int, tokens_out: int, cost_usd: float) -> None:
        """Add one LLM call's usage to every enclosing span above ``live``."""
        cid = live.parent_cid
        while cid is not None:
            ancestor = self.live.get(cid)
            if ancestor is None:
                break
            if ancestor.roll is not None:
                ancestor.roll.add(tokens_in, tokens_out, cost_usd)
            cid = ancestor.parent_cid
