"""TracingObserver: turns the bus's start/finish pairs into OpenTelemetry spans.

Span tree (the seed's names)::

    run_project                      project_started / project_finished
    └── task:<task_id>               task_started / task_finished
        ├── llm_call:<call_type>     llm_call_started / llm_call_finished
        ├── policy_check             policy_check_started / policy_checked
        └── remediation              remediation_started / remediation_finished
            └── llm_call:<call_type>

Design notes:

* Span bookkeeping (explicit parents by correlation id, current context for enclosing
  spans, roll-ups) is in :mod:`.span_book`; LLM span attributes (GenAI and OpenInference
  conventions, opt-in content) in :mod:`.genai`.
* Task/project/remediation spans carry rolled-up tokens and cost under their own names
  (``task.tokens_in``...), never ``gen_ai.usage.*``, so a backend that sums usage over a
  tree does not count twice.
* Prompt and completion text is recorded only when ``capture_content`` is on, truncated.
* Trace context crosses process boundaries only through the configured propagator
  (``opentelemetry.propagate``, so ``OTEL_PROPAGATORS`` decides the format): the root's
  context goes into ``project_started``'s carrier (kept in the checkpoint), a remote LLM
  call's into ``llm_call_started``'s carrier (sent with the request), and a resumed run's
  links are read back from the carriers of earlier roots.
* A span whose finish never arrives is ended with status ERROR when its project finishes
  or when the observer unsubscribes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from typing import Any, Self

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, set_span_in_context

from .. import attributes as attr
from .. import events
from ..redaction import redact
from .base import (
    Handler,
    Observer,
    apply_content_rule,
    copy_attributes,
    has_model_text,
    register_span_source,
    unregister_span_source,
    visible,
)
from .genai import ContentCapture, LlmSpanAttributes, capture_content_from_env
from .span_book import LiveSpan, SpanBook

__all__ = ["TracingObserver", "capture_content_from_env"]

SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"
_BASE_FIELDS = {"correlation_id", "parent_id", "project_id", "timestamp_ns"}
_MODEL_TEXT = events.ModelText
_CLIENT, _INTERNAL = SpanKind.CLIENT, SpanKind.INTERNAL
_llm_finish = LlmSpanAttributes.finish


def _instrumentation_version() -> str:
    try:
        from importlib.metadata import version

        return version("multi-llm-orchestrator")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "0"


def resume_links(
    carriers: Sequence[Mapping[str, str] | str], propagator: TextMapPropagator | None = None, why: str = "resumed_from"
) -> list[trace.Link]:
    """Span links to earlier attempts' roots (oldest first) - or, ``why="batch"``, to a
    batch's span - read from their carriers with ``propagator`` (default: the configured
    one); a plain string is a W3C ``traceparent`` (event logs of earlier versions).
    Carriers the propagator finds no span in are skipped."""
    extract = (propagator or propagate.get_global_textmap()).extract
    links = []
    for item in carriers:
        carrier = {"traceparent": item} if isinstance(item, str) else item
        if not isinstance(carrier, Mapping):
            continue
        # an empty base context: a carrier without a span must not link to the current span
        sc = trace.get_current_span(extract(carrier, context=Context())).get_span_context()
        if sc.is_valid:
            links.append(trace.Link(sc, {attr.ORCHESTRATOR_LINK: why}))
    return links


class TracingObserver(Observer):
    """Subscribe to make spans of every run.

    ``tracer_provider``: where spans go (default: the global provider, so an
    application that already set up OpenTelemetry just subscribes this observer).
    ``capture_content``: record prompts and completions (truncated to
    ``content_max_chars``); default off, or on when
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is true.
    ``attach_context``: make enclosing spans current in their asyncio task (turn off
    only to replay a recorded event log, whose pairs do not nest per task).
    ``propagator``: writes the carriers and reads the links (default: the global one,
    which ``OTEL_PROPAGATORS`` configures; W3C trace context and baggage unless told).
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        capture_content: bool | None = None,
        *,
        content_max_chars: int = 4000,
        attach_context: bool = True,
        recent_spans: int = 4096,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        super().__init__()
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.tracer_provider = provider
        tracer = provider.get_tracer("orchestrator", _instrumentation_version(), schema_url=SCHEMA_URL)
        self.content = ContentCapture(
            capture_content_from_env() if capture_content is None else capture_content, content_max_chars
        )
        self.book = SpanBook(tracer, attach_context=attach_context, recent_spans=recent_spans)
        self._llm_start = LlmSpanAttributes().start
        self._point_fields: dict[type, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {}
        self._redacted: dict[str, str] = {}
        self._redacted_env = -1
        self.propagator = propagator
        # writes a context into a carrier: the given propagator's, or the global one's at each call
        self._inject: Callable[..., None] = propagator.inject if propagator is not None else propagate.inject
        register_span_source(self)

    @property
    def capture_content(self) -> bool:
        return self.content.enabled

    # -- introspection -----------------------------------------------------------------
    @property
    def open_span_count(self) -> int:
        return len(self.book.live)

    def span_ids(self, correlation_id: str) -> tuple[str, str] | None:
        """(trace id, span id) in hex of a live or recently finished pair's span."""
        return self.book.span_ids(correlation_id)

    def subscribe(self) -> Self:
        register_span_source(self)  # again, after an unsubscribe
        return super().subscribe()

    def close(self) -> None:
        """End every span still open (status ERROR) and stop answering span-id lookups."""
        self.book.end_orphans(None, None, all_=True)
        unregister_span_source(self)

    # -- spans -------------------------------------------------------------------------
    # The handlers below run for every span of every run; they avoid work the bare SDK
    # would not do (see bench/tracing_overhead.py): LLM start attributes are built once
    # per (model, call type, parameters) and shared read-only, the content rule looks only
    # at values an emitter gave, and each string of point events is redacted once.

    def _start_attrs(self, p: events.PairStart, kind_value: str) -> dict[str, Any]:
        attrs = copy_attributes(p.attributes)
        if has_model_text(attrs):
            apply_content_rule(attrs, self.content.enabled)
        attrs[attr.OPENINFERENCE_SPAN_KIND] = kind_value
        return attrs

    # A pair's end comes two ways: from the bus, as the state its start returned and what
    # the finish adds (``_ended``: no finish payload, no lookup), or as a finish payload,
    # sent or replayed (``on_*_finished``: the span by correlation id, the payload's
    # attributes less the start's).  Both end the span alike.

    def _ended(
        self,
        live: LiveSpan,
        end_ns: int,
        attrs: Mapping[str, Any],
        content: Mapping[str, str] | None,
        failure: events.PairFailure | None,
    ) -> None:
        mine = attrs.copy() if type(attrs) is dict else dict(attrs)
        if _MODEL_TEXT in map(type, mine.values()):  # has_model_text, inlined
            apply_content_rule(mine, self.content.enabled)
        self.book.end(live, end_ns, mine, failure)

    def _finish(self, p: events.PairFinish) -> None:
        found = self.book.changed(p)
        if found is not None:
            live, attrs = found
            self._ended(live, p.timestamp_ns, attrs, None, _failure(p))

    # -- project -----------------------------------------------------------------------
    def on_project_started(self, p: events.ProjectStarted) -> LiveSpan:
        attrs = self._start_attrs(p, "AGENT")
        attrs[attr.PROJECT_BUDGET_USD] = p.budget_usd
        if self.content.enabled:
            attrs[attr.OI_INPUT_VALUE] = self.content.clip(f"{p.description}\n\nSuccess criteria: {p.criteria}")
        links = resume_links(p.links, self.propagator) if p.links else None
        if links:  # a resumed run: the original root's trace, for backends that show no links
            attrs[attr.ORCHESTRATOR_ORIGINAL_TRACE_ID] = f"{links[0].context.trace_id:032x}"
        if p.batch_carrier:  # a project of a batch: a trace of its own, linked to the batch's span
            batch = resume_links([p.batch_carrier], self.propagator, "batch")
            if batch:
                attrs[attr.ORCHESTRATOR_BATCH_TRACE_ID] = f"{batch[0].context.trace_id:032x}"
                links = [*(links or []), *batch]
        live = self.book.open(
            p, "run_project", SpanKind.INTERNAL, attrs, "project", True, links, new_trace=p.batch_id is not None
        )
        if live.ctx is not None:  # the engine keeps it in the checkpoint, for a resume to link to
            self._inject(p.carrier, context=live.ctx)
        return live

    def _project_ended(
        self,
        live: LiveSpan,
        end_ns: int,
        attrs: Mapping[str, Any],
        content: Mapping[str, str] | None,
        failure: events.PairFailure | None,
    ) -> None:
        self.book.end_orphans(live.project_id, end_ns, keep=live.cid)
        self._ended(live, end_ns, attrs, content, failure)

    def on_project_finished(self, p: events.ProjectFinished) -> None:
        found = self.book.changed(p)
        if found is None:
            self.book.end_orphans(p.project_id, p.timestamp_ns, keep=p.correlation_id)
        else:
            self._project_ended(found[0], p.timestamp_ns, found[1], None, _failure(p))

    # -- batch -------------------------------------------------------------------------
    def on_batch_started(self, p: events.BatchStarted) -> LiveSpan:
        """The batch's own span: a root, not made current (its projects are traces of
        their own that link to it); its totals come with the finish."""
        live = self.book.open(
            p, "run_batch", SpanKind.INTERNAL, self._start_attrs(p, "AGENT"), "batch", False, new_trace=True
        )
        # handed to every project of the batch, for its root to link to
        self._inject(p.carrier, context=set_span_in_context(live.span, Context()))
        return live

    def on_batch_finished(self, p: events.BatchFinished) -> None:
        self._finish(p)

    # -- task --------------------------------------------------------------------------
    def on_task_started(self, p: events.TaskStarted) -> LiveSpan:
        attrs = self._start_attrs(p, "CHAIN")
        if self.content.enabled and attr.TASK_DESCRIPTION in attrs:
            attrs[attr.OI_INPUT_VALUE] = attrs[attr.TASK_DESCRIPTION]
        return self.book.open(p, "task:" + p.task_id, SpanKind.INTERNAL, attrs, "task", True)

    def on_task_finished(self, p: events.TaskFinished) -> None:
        self._finish(p)

    # -- llm call ----------------------------------------------------------------------
    def on_llm_call_started(self, p: events.LlmCallStarted) -> LiveSpan:
        capture = self.content.enabled
        name, kind, attrs, _ = self._llm_start(p, capture)  # attrs may be shared: changed only when built for us
        if capture:
            self.content.add_input(p, attrs)
        live = self.book.open(p, name, kind, attrs, "llm", False)
        if kind is _CLIENT:  # the call's context for the outgoing request (the client sends the carrier)
            self._inject(p.carrier, context=set_span_in_context(live.span, live.base))
        return live

    def _llm_ended(
        self,
        live: LiveSpan,
        end_ns: int,
        attrs: Mapping[str, Any],
        content: Mapping[str, str] | None,
        failure: events.PairFailure | None,
        provider: str = "",
    ) -> None:
        mine = attrs.copy() if type(attrs) is dict else dict(attrs)
        capture = self.content.enabled
        tokens_in, tokens_out, cost = _llm_finish(mine, capture)
        if capture:
            self.content.add_output(live.cid, content, mine, provider)
        if self.book.end(live, end_ns, mine, failure):
            up = live.up  # the nearest enclosing span's usage (it hands it up when it ends)
            if up is not None:
                up.tokens_in += tokens_in
                up.tokens_out += tokens_out
                up.cost_usd += cost
                up.calls += 1

    def on_llm_call_finished(self, p: events.LlmCallFinished) -> None:
        found = self.book.changed(p)
        if found is None:
            self.content.add_output(p.correlation_id, None, {})  # forget its input
            return
        content = {}
        if p.completion is not None:
            content["completion"] = p.completion
        if p.sent_system is not None:
            content["sent_system"] = p.sent_system
        self._llm_ended(found[0], p.timestamp_ns, found[1], content, _failure(p), p.provider)

    # -- policy check ------------------------------------------------------------------
    def on_policy_check_started(self, p: events.PolicyCheckStarted) -> LiveSpan:
        return self.book.open(p, "policy_check", _INTERNAL, self._start_attrs(p, "GUARDRAIL"), "policy", False)

    def on_policy_checked(self, p: events.PolicyChecked) -> None:
        self._finish(p)

    # -- remediation -------------------------------------------------------------------
    def on_remediation_started(self, p: events.RemediationStarted) -> LiveSpan:
        # enclosing: a remediation may make LLM calls of its own (retry, fallback model)
        return self.book.open(p, "remediation", SpanKind.INTERNAL, self._start_attrs(p, "CHAIN"), "remediation", True)

    def on_remediation_finished(self, p: events.RemediationFinished) -> None:
        self._finish(p)

    # -- point events ------------------------------------------------------------------
    def _on_point(self, p: events.PointEvent) -> None:
        live = self.book.live.get(p.parent_id) if p.parent_id else None
        if live is not None:
            span = live.span
        else:
            span = trace.get_current_span()
            if not span.is_recording():
                return
        fields = self._point_fields.get(type(p))
        if fields is None:
            names = tuple(name for name in p.__struct_fields__ if name not in _BASE_FIELDS)
            fields = self._point_fields[type(p)] = (names, _values_of(names))
        names, values = fields
        capture = self.content.enabled
        if len(os.environ) != self._redacted_env:  # what _redact remembers is stale
            self._redacted.clear()
            self._redacted_env = len(os.environ)
        redacted = self._redacted
        attrs: dict[str, Any] = {}
        for name, value in zip(names, values(p)):  # noqa: B905 - the getter gives one value per name
            if value is None:
                continue
            kind = type(value)
            if kind is str:
                value = redacted.get(value) or self._redact(value)
            elif kind is int or kind is float or kind is bool:
                pass
            elif kind is _MODEL_TEXT:
                value = self._redact(visible(value, capture))
            else:
                value = str(value) if not isinstance(value, str | bool | int | float) else value
                if isinstance(value, str):
                    value = self._redact(value)
            attrs[name] = value
        span.add_event(p.signal_name, attrs, timestamp=p.timestamp_ns)

    def _redact(self, value: str) -> str:
        """:func:`redact`, remembered: runs repeat the same model names, task ids and reasons,
        and redaction reads the whole environment each time (tens of microseconds).  What
        is remembered is forgotten when the environment gains or loses a variable."""
        env_size = len(os.environ)
        if env_size != self._redacted_env:
            self._redacted.clear()
            self._redacted_env = env_size
        done = self._redacted.get(value)
        if done is None:
            if len(self._redacted) >= 4096:
                self._redacted.clear()
            done = self._redacted[value] = redact(value)
        return done

    def handlers(self) -> list[Handler]:
        """Each pair's two signals get one :class:`~orchestrator.events.PairReceiver` (the
        bus hands a span back to the finish without a payload), point events ``_on_point``."""
        ended = {events.project_finished: self._project_ended, events.llm_call_finished: self._llm_ended}
        out: list[Handler] = []
        for start_sig, finish_sig in events.PAIRS:
            receiver = events.PairReceiver(
                getattr(self, f"on_{start_sig.name}"),
                ended.get(finish_sig, self._ended),
                getattr(self, f"on_{finish_sig.name}"),
            )
            out.append((start_sig, receiver))
            out.append((finish_sig, receiver))
        out.extend((sig, self._on_point) for sig in events.POINT_SIGNALS if sig is not events.batch_progress)
        return out


def _values_of(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """A getter of a payload's ``names`` fields as a tuple (one C call)."""
    get = attrgetter(*names)
    if len(names) > 1:
        return get

    def one(payload: Any) -> tuple[Any, ...]:
        return (get(payload),)

    return one


def _failure(p: events.PairFinish) -> events.PairFailure | None:
    """How a finish payload's pair ended, when not ok."""
    if p.status == "ok":
        return None
    return p.status, p.error_type, p.error_message, p.exception
