"""MetricsObserver: OpenTelemetry metrics of every run.

Instruments (GenAI semantic conventions for the first two):

* ``gen_ai.client.token.usage`` - histogram, unit ``{token}``, one record per direction
  (``gen_ai.token.type`` = ``input`` / ``output``) of each provider call;
* ``gen_ai.client.operation.duration`` - histogram, unit ``s``, every provider call
  (failed ones with ``error.type``), from the moment the request left: time queued for
  the client's concurrency limit or the local model's lock is not the operation;
* ``orchestrator.llm.cost`` - counter, unit ``USD``, spend per model;
* ``orchestrator.tasks`` - counter, tasks finished by ``task.status`` and ``task.type``;
* ``orchestrator.projects`` - counter, runs finished by ``project.status``.

Answers served from the response cache are not provider calls: they are counted in
``orchestrator.llm.cache_hits`` instead of the two GenAI histograms.

Attributes of the GenAI instruments: ``gen_ai.operation.name`` (``chat``),
``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.response.model`` and, on
failure, ``error.type``; plus ``orchestrator.call_type`` (generate, critique...).
"""

from __future__ import annotations

from typing import Any

from opentelemetry import metrics

from .. import attributes as attr
from .. import events
from ..attributes import (
    GEN_AI_CLIENT_OPERATION_DURATION,
    GEN_AI_CLIENT_TOKEN_USAGE,
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_TOKEN_TYPE,
)
from .base import Observer, number, whole
from .tracing import _instrumentation_version

__all__ = ["MetricsObserver", "TOKEN_USAGE_BUCKETS", "DURATION_BUCKETS"]

#: bucket boundaries advised by the GenAI semantic conventions
TOKEN_USAGE_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)


class MetricsObserver(Observer):
    """Records metrics through ``meter_provider`` (default: the global one)."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        super().__init__()
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter(
            "orchestrator", _instrumentation_version(), schema_url="https://opentelemetry.io/schemas/1.37.0"
        )
        self.token_usage = meter.create_histogram(
            GEN_AI_CLIENT_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=list(TOKEN_USAGE_BUCKETS),
        )
        self.operation_duration = meter.create_histogram(
            GEN_AI_CLIENT_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self.cost = meter.create_counter("orchestrator.llm.cost", unit="USD", description="Spend on LLM calls.")
        self.cache_hits = meter.create_counter(
            "orchestrator.llm.cache_hits", unit="{call}", description="LLM calls answered from the cache."
        )
        self.tasks = meter.create_counter("orchestrator.tasks", unit="{task}", description="Tasks finished, by status.")
        self.projects = meter.create_counter(
            "orchestrator.projects", unit="{project}", description="Project runs finished, by status."
        )

    def on_llm_call_finished(self, p: events.LlmCallFinished) -> None:
        a = p.attributes
        attrs: dict[str, Any] = {
            GEN_AI_OPERATION_NAME: "chat",
            GEN_AI_REQUEST_MODEL: p.model,
            attr.ORCHESTRATOR_CALL_TYPE: p.call_type,
        }
        if p.provider:
            attrs[GEN_AI_PROVIDER_NAME] = attr.gen_ai_provider_name(p.provider)
        if a.get(attr.LLM_CACHED):
            self.cache_hits.add(1, attrs)
            return
        if a.get(attr.LLM_RESPONSE_MODEL):
            attrs[GEN_AI_RESPONSE_MODEL] = a[attr.LLM_RESPONSE_MODEL]
        if p.status != "ok":
            attrs[attr.ERROR_TYPE] = a.get(attr.ERROR_TYPE) or p.error_type or p.status
        # the call itself: the wait for the concurrency limit or the local model is queueing
        queue_s = (number(a.get(attr.ORCHESTRATOR_QUEUE_MS)) or 0.0) / 1000
        self.operation_duration.record(max(0.0, p.duration_ns / 1e9 - queue_s), attrs)
        tin, tout = whole(a.get(attr.LLM_TOKENS_IN)), whole(a.get(attr.LLM_TOKENS_OUT))
        if tin is not None:
            self.token_usage.record(tin, {**attrs, GEN_AI_TOKEN_TYPE: "input"})
        if tout is not None:
            self.token_usage.record(tout, {**attrs, GEN_AI_TOKEN_TYPE: "output"})
        cost = number(a.get(attr.LLM_COST_USD))
        if cost:
            self.cost.add(
                cost, {GEN_AI_REQUEST_MODEL: p.model, GEN_AI_PROVIDER_NAME: attrs.get(GEN_AI_PROVIDER_NAME, "")}
            )

    def on_task_finished(self, p: events.TaskFinished) -> None:
        status = p.attributes.get(attr.TASK_STATUS) or ("cancelled" if p.status == "cancelled" else p.status)
        self.tasks.add(1, {attr.TASK_STATUS: str(status), attr.TASK_TYPE: p.task_type})

    def on_task_skipped(self, p: events.TaskSkipped) -> None:
        self.tasks.add(1, {attr.TASK_STATUS: "skipped"})

    def on_project_finished(self, p: events.ProjectFinished) -> None:
        status = p.attributes.get(attr.PROJECT_STATUS) or p.status
        self.projects.add(1, {attr.PROJECT_STATUS: str(status)})
