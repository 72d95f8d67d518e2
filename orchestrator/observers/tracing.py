"""TracingObserver: turns the bus's start/finish pairs into OpenTelemetry spans.

Span tree (the seed's names)::

    run_project                      project_started / project_finished
    └── task:<task_id>               task_started / task_finished
        ├── llm_call:<call_type>     llm_call_started / llm_call_finished
        ├── policy_check             policy_check_started / policy_checked
        └── remediation              remediation_started / remediation_finished
            └── llm_call:<call_type>

Design notes:

* Live spans are kept by the pair's correlation id; a span's parent is the live span of
  the payload's ``parent_id`` (explicit, so concurrency cannot mix parents up), else the
  caller's current OpenTelemetry context (so ``run_project`` nests under a span of the
  user's own, if any).
* Enclosing spans (project, task, remediation) are also made the *current* context in
  the asyncio task that started them, so third-party instrumentation running inside a
  task (an instrumented HTTP client, say) nests under it; the finish restores the
  previous context.  The bus sends a pair's start and finish from the same task and pairs
  nest as ``with`` blocks do, so attach/detach are LIFO per task.  Leaf spans
  (llm_call, policy_check) never touch the current context.
* Attributes: the seed's (``llm.model``, ``task.status``...), the OpenTelemetry GenAI
  semantic conventions on LLM spans (``gen_ai.*``), and the OpenInference ones
  (``openinference.span.kind``, ``llm.model_name``, ``llm.token_count.*``) so Arize
  Phoenix classifies the spans.  Task/project/remediation spans carry rolled-up tokens
  and cost under their own names (``task.tokens_in``...), never ``gen_ai.usage.*``, so a
  backend that sums usage over a tree does not count twice.
* Prompt and completion text is recorded only when ``capture_content`` is on, truncated.
* A span whose finish never arrives is ended with status ERROR when its project finishes
  or when the observer unsubscribes.
"""

from __future__ import annotations

import json
import os
import traceback
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OPERATION_NAME,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MAX_TOKENS,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_REQUEST_TEMPERATURE,
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_SYSTEM_INSTRUCTIONS,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
)
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from .. import attributes as attr
from .. import events
from .base import Observer, redact, register_span_source, unregister_span_source

__all__ = ["TracingObserver", "capture_content_from_env"]

try:  # the raw detach raises instead of logging "Failed to detach context"
    from opentelemetry.context import _RUNTIME_CONTEXT as _RUNTIME

    _raw_detach = _RUNTIME.detach
except (ImportError, AttributeError):  # pragma: no cover - very old or future API
    _raw_detach = None

SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"


_TRUTHY = {"1", "true", "yes", "on", "span_only", "span_and_event"}

_PREFIX = {"project": "project", "task": "task", "remediation": "remediation"}
_BASE_FIELDS = {"correlation_id", "parent_id", "project_id", "timestamp_ns"}
_ORPHAN = "finish event never received"


def capture_content_from_env() -> bool:
    """``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` says to record content."""
    value = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "")
    return value.strip().lower() in _TRUTHY


def _instrumentation_version() -> str:
    try:
        from importlib.metadata import version

        return version("multi-llm-orchestrator")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "0"


class _Live:
    """One open span and what the finish needs.  ``roll`` (enclosing spans only) sums
    the LLM usage below: [tokens_in, tokens_out, cost_usd, calls]."""

    __slots__ = ("span", "ctx", "token", "parent_cid", "project_id", "kind", "roll")

    def __init__(self, span, ctx, token, parent_cid, project_id, kind, roll) -> None:
        self.span = span
        self.ctx = ctx
        self.token = token
        self.parent_cid = parent_cid
        self.project_id = project_id
        self.kind = kind
        self.roll = roll


class TracingObserver(Observer):
    """Subscribe to make spans of every run.

    ``tracer_provider``: where spans go (default: the global provider, so an
    application that already set up OpenTelemetry just subscribes this observer).
    ``capture_content``: record prompts and completions (truncated to
    ``content_max_chars``); default off, or on when
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is true.
    ``attach_context``: make enclosing spans current in their asyncio task (turn off
    only to replay a recorded event log, whose pairs do not nest per task).
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None,
                 capture_content: bool | None = None, *, content_max_chars: int = 4000,
                 attach_context: bool = True, recent_spans: int = 4096) -> None:
        super().__init__()
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.tracer_provider = provider
        self._tracer = provider.get_tracer("orchestrator", _instrumentation_version(), schema_url=SCHEMA_URL)
        self.capture_content = capture_content_from_env() if capture_content is None else capture_content
        self.content_max_chars = content_max_chars
        self.attach_context = attach_context
        self._live: dict[str, _Live] = {}
        self._recent: OrderedDict[str, Any] = OrderedDict()  # popitem(last=False) is O(1)
        self._recent_limit = recent_spans
        self._point_fields: dict[type, tuple[str, ...]] = {}
        self._static: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._tp_trace, self._tp_prefix = 0, ""
        register_span_source(self)

    # -- introspection -----------------------------------------------------------------
    @property
    def open_span_count(self) -> int:
        return len(self._live)

    def span_ids(self, correlation_id: str) -> tuple[str, str] | None:
        """(trace id, span id) in hex of a live or recently finished pair's span."""
        live = self._live.get(correlation_id)
        sc = live.span.get_span_context() if live is not None else self._recent.get(correlation_id)
        if sc is None or not sc.is_valid:
            return None
        return f"{sc.trace_id:032x}", f"{sc.span_id:016x}"

    # -- span bookkeeping --------------------------------------------------------------
    def _parent_ctx(self, parent_cid: str | None):
        if parent_cid is None:
            return None
        parent = self._live.get(parent_cid)
        if parent is None:
            return None
        if parent.ctx is None:
            parent.ctx = set_span_in_context(parent.span)
        return parent.ctx

    def _open(self, p: events.PairStart, name: str, kind: SpanKind, attrs: dict[str, Any],
              span_kind: str, enclosing: bool) -> _Live:
        base = self._parent_ctx(p.parent_id)
        span = self._tracer.start_span(name, context=base, kind=kind, attributes=attrs,
                                       start_time=p.timestamp_ns)
        ctx = token = None
        if enclosing:
            ctx = set_span_in_context(span, base)
            if self.attach_context:
                token = otel_context.attach(ctx)
        live = _Live(span, ctx, token, p.parent_id, p.project_id, span_kind,
                     [0, 0, 0.0, 0] if enclosing else None)
        self._live[p.correlation_id] = live
        return live

    def _detach(self, live: _Live) -> None:
        token, live.token = live.token, None
        if token is None:
            return
        if _raw_detach is not None:
            try:
                _raw_detach(token)
                return
            except (ValueError, RuntimeError):
                # finished in another context than it started in (an emitter broke the
                # same-task rule): if our span is current here, restore its parent
                if trace.get_current_span() is live.span:
                    parent = self._parent_ctx(live.parent_cid)
                    otel_context.attach(parent if parent is not None else otel_context.Context())
                return
        otel_context.detach(token)  # pragma: no cover

    def _close(self, p: events.PairFinish, attrs: dict[str, Any]) -> _Live | None:
        live = self._live.pop(p.correlation_id, None)
        if live is None:  # started before this observer subscribed
            return None
        span = live.span
        if live.token is not None:
            self._detach(live)
        roll = live.roll
        if roll is not None and roll[3]:
            prefix = _PREFIX.get(live.kind, live.kind)
            attrs.setdefault(attr.rollup_key(prefix, attr.ROLLUP_TOKENS_IN), roll[0])
            attrs.setdefault(attr.rollup_key(prefix, attr.ROLLUP_TOKENS_OUT), roll[1])
            attrs.setdefault(attr.rollup_key(prefix, attr.ROLLUP_COST_USD), round(roll[2], 8))
            attrs[attr.rollup_key(prefix, attr.ROLLUP_LLM_CALLS)] = roll[3]
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

    def _end_orphans(self, project_id: str | None, end_time: int | None, *, all_: bool = False,
                     keep: str | None = None) -> int:
        """End (status ERROR) the open spans of ``project_id`` (or all), except ``keep``."""
        count = 0
        for cid, live in list(self._live.items()):
            if cid == keep or (not all_ and live.project_id != project_id):
                continue
            if self._live.pop(cid, None) is None:
                continue
            live.token = None  # its context belongs to a task that is gone
            live.span.set_attribute(attr.ERROR_TYPE, "orphan")
            live.span.set_status(Status(StatusCode.ERROR, _ORPHAN))
            live.span.end(end_time=end_time)
            count += 1
        return count

    def subscribe(self):
        register_span_source(self)  # again, after an unsubscribe
        return super().subscribe()

    def close(self) -> None:
        """End every span still open (status ERROR) and stop answering span-id lookups."""
        self._end_orphans(None, None, all_=True)
        unregister_span_source(self)

    # -- project -----------------------------------------------------------------------
    def on_project_started(self, p: events.ProjectStarted) -> None:
        attrs = dict(p.attributes)
        attrs[attr.OPENINFERENCE_SPAN_KIND] = "AGENT"
        attrs[attr.PROJECT_BUDGET_USD] = p.budget_usd
        if self.capture_content:
            attrs[attr.OI_INPUT_VALUE] = self._clip(f"{p.description}\n\nSuccess criteria: {p.criteria}")
        self._open(p, "run_project", SpanKind.INTERNAL, attrs, "project", True)

    def on_project_finished(self, p: events.ProjectFinished) -> None:
        self._end_orphans(p.project_id, p.timestamp_ns, keep=p.correlation_id)
        self._close(p, dict(p.attributes))

    # -- task --------------------------------------------------------------------------
    def on_task_started(self, p: events.TaskStarted) -> None:
        attrs = dict(p.attributes)
        attrs[attr.OPENINFERENCE_SPAN_KIND] = "CHAIN"
        if self.capture_content and attr.TASK_DESCRIPTION in attrs:
            attrs[attr.OI_INPUT_VALUE] = attrs[attr.TASK_DESCRIPTION]
        self._open(p, "task:" + p.task_id, SpanKind.INTERNAL, attrs, "task", True)

    def on_task_finished(self, p: events.TaskFinished) -> None:
        self._close(p, dict(p.attributes))

    # -- llm call ----------------------------------------------------------------------
    def _llm_static(self, provider: str, model: str, max_tokens: Any, temperature: Any) -> dict[str, Any]:
        """The start attributes that depend only on provider, model and parameters
        (cached: a run uses a handful of combinations)."""
        key = (provider, model, max_tokens, temperature)
        static = self._static.get(key)
        if static is None:
            static = {GEN_AI_OPERATION_NAME: "chat", GEN_AI_REQUEST_MODEL: model,
                      attr.OPENINFERENCE_SPAN_KIND: "LLM", attr.OI_LLM_MODEL_NAME: model}
            if provider:
                static[GEN_AI_PROVIDER_NAME] = attr.gen_ai_provider_name(provider)
                static[attr.OI_LLM_PROVIDER] = provider
            if max_tokens is not None:
                static[GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
            if temperature is not None:
                static[GEN_AI_REQUEST_TEMPERATURE] = temperature
            static[attr.OI_LLM_INVOCATION_PARAMETERS] = json.dumps({"max_tokens": max_tokens,
                                                              "temperature": temperature})
            if len(self._static) >= 512:
                self._static.clear()
            self._static[key] = static
        return static

    def on_llm_call_started(self, p: events.LlmCallStarted) -> None:
        provider = p.provider
        attrs = {**p.attributes, **self._llm_static(provider, p.model, p.max_tokens, p.temperature)}
        if p.attempt != 1:
            attrs[attr.LLM_ATTEMPT] = p.attempt
        if self.capture_content:
            self._content_in(p, attrs)
        remote = bool(provider) and provider != "local"
        live = self._open(p, "llm_call:" + p.call_type, SpanKind.CLIENT if remote else SpanKind.INTERNAL,
                          attrs, "llm", False)
        if remote:  # W3C trace context for the outgoing request (the client sends the carrier)
            sc = live.span.get_span_context()
            if sc.is_valid:
                trace_id = sc.trace_id
                if trace_id != self._tp_trace:  # one trace per run: format its id once
                    self._tp_trace, self._tp_prefix = trace_id, f"00-{trace_id:032x}-"
                p.carrier["traceparent"] = f"{self._tp_prefix}{sc.span_id:016x}-{sc.trace_flags:02x}"
                if sc.trace_state:
                    p.carrier["tracestate"] = sc.trace_state.to_header()

    def on_llm_call_finished(self, p: events.LlmCallFinished) -> None:
        attrs = dict(p.attributes)
        tin = attrs.get(attr.LLM_TOKENS_IN)
        tout = attrs.get(attr.LLM_TOKENS_OUT)
        if tin is not None:
            attrs[GEN_AI_USAGE_INPUT_TOKENS] = tin
            attrs[attr.OI_TOKEN_COUNT_PROMPT] = tin
        if tout is not None:
            attrs[GEN_AI_USAGE_OUTPUT_TOKENS] = tout
            attrs[attr.OI_TOKEN_COUNT_COMPLETION] = tout
        if tin is not None and tout is not None:
            attrs[attr.OI_TOKEN_COUNT_TOTAL] = tin + tout
        response_model = attrs.get(attr.LLM_RESPONSE_MODEL)
        if response_model:
            attrs[GEN_AI_RESPONSE_MODEL] = response_model
        finish_reason = attrs.get(attr.LLM_FINISH_REASON)
        if finish_reason:
            attrs[GEN_AI_RESPONSE_FINISH_REASONS] = (finish_reason,)
        if self.capture_content and p.completion is not None:
            self._content_out(p.completion, finish_reason, attrs)
        live = self._close(p, attrs)
        if live is None:
            return
        # roll usage up to the enclosing task/project/remediation spans
        cost = attrs.get(attr.LLM_COST_USD) or 0.0
        tin = tin or 0
        tout = tout or 0
        cid = live.parent_cid
        lives = self._live
        while cid is not None:
            anc = lives.get(cid)
            if anc is None:
                break
            roll = anc.roll
            if roll is not None:
                roll[0] += tin
                roll[1] += tout
                roll[2] += cost
                roll[3] += 1
            cid = anc.parent_cid

    # -- policy check ------------------------------------------------------------------
    def on_policy_check_started(self, p: events.PolicyCheckStarted) -> None:
        attrs = dict(p.attributes)
        attrs[attr.OPENINFERENCE_SPAN_KIND] = "GUARDRAIL"
        self._open(p, "policy_check", SpanKind.INTERNAL, attrs, "policy", False)

    def on_policy_checked(self, p: events.PolicyChecked) -> None:
        self._close(p, dict(p.attributes))

    # -- remediation -------------------------------------------------------------------
    def on_remediation_started(self, p: events.RemediationStarted) -> None:
        attrs = dict(p.attributes)
        attrs[attr.OPENINFERENCE_SPAN_KIND] = "CHAIN"
        # enclosing: a remediation may make LLM calls of its own (retry, fallback model)
        self._open(p, "remediation", SpanKind.INTERNAL, attrs, "remediation", True)

    def on_remediation_finished(self, p: events.RemediationFinished) -> None:
        self._close(p, dict(p.attributes))

    # -- point events ------------------------------------------------------------------
    def _on_point(self, p: events.PointEvent) -> None:
        live = self._live.get(p.parent_id) if p.parent_id else None
        if live is not None:
            span = live.span
        else:
            span = trace.get_current_span()
            if not span.is_recording():
                return
        names = self._point_fields.get(type(p))
        if names is None:
            names = tuple(name for name in p.__struct_fields__ if name not in _BASE_FIELDS)
            self._point_fields[type(p)] = names
        attrs: dict[str, Any] = {}
        for name in names:
            value = getattr(p, name)
            if value is None:
                continue
            if isinstance(value, str):
                value = redact(value)
            elif not isinstance(value, (bool, int, float)):
                value = str(value)
            attrs[name] = value
        span.add_event(p.signal_name, attrs, timestamp=p.timestamp_ns)

    def handlers(self):
        out = super().handlers()
        out.extend((sig, self._on_point) for sig in events.POINT_SIGNALS)
        return out

    # -- content (opt-in) --------------------------------------------------------------
    def _clip(self, text: str) -> str:
        text = redact(text)
        limit = self.content_max_chars
        if len(text) <= limit:
            return text
        return text[:limit] + f"...[truncated {len(text) - limit} chars]"

    def _content_in(self, p: events.LlmCallStarted, attrs: dict[str, Any]) -> None:
        prompt = self._clip(p.prompt or "")
        index = 0
        if p.system:
            system = self._clip(p.system)
            attrs[GEN_AI_SYSTEM_INSTRUCTIONS] = json.dumps([{"type": "text", "content": system}])
            attrs[attr.oi_input_message(0, "role")] = "system"
            attrs[attr.oi_input_message(0, "content")] = system
            index = 1
        attrs[GEN_AI_INPUT_MESSAGES] = json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": prompt}]}])
        attrs[f"llm.input_messages.{index}.message.role"] = "user"
        attrs[f"llm.input_messages.{index}.message.content"] = prompt
        attrs[attr.OI_INPUT_VALUE] = prompt
        attrs[attr.OI_INPUT_MIME_TYPE] = "text/plain"

    def _content_out(self, completion: str, finish_reason: Any, attrs: dict[str, Any]) -> None:
        text = self._clip(completion)
        message: Mapping[str, Any] = {"role": "assistant", "parts": [{"type": "text", "content": text}],
                                      "finish_reason": finish_reason or "stop"}
        attrs[GEN_AI_OUTPUT_MESSAGES] = json.dumps([message])
        attrs[attr.oi_output_message(0, "role")] = "assistant"
        attrs[attr.oi_output_message(0, "content")] = text
        attrs[attr.OI_OUTPUT_VALUE] = text
        attrs[attr.OI_OUTPUT_MIME_TYPE] = "text/plain"
