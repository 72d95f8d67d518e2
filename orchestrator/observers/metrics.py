"""MetricsObserver: OpenTelemetry metrics of every run.

Instruments (GenAI semantic conventions for the first two):

* ``gen_ai.client.token.usage`` - histogram, unit ``{token}``, one record per direction
  (``gen_ai.token.type`` = ``input`` / ``output``) of each provider call;
* ``gen_ai.client.operation.duration`` - histogram, unit ``s``, every provider call
  (failed ones with ``error.type``);
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

from .. import events
from .base import Observer
from .tracing import GEN_AI_PROVIDER_NAMES, _instrumentation_version

__all__ = ["MetricsObserver", "TOKEN_USAGE_BUCKETS", "DURATION_BUCKETS"]

#: bucket boundaries advised by the GenAI semantic conventions
TOKEN_USAGE_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                       16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)


class MetricsObserver(Observer):
    """Records metrics through ``meter_provider`` (default: the global one)."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        super().__init__()
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter("orchestrator", _instrumentation_version(),
                                   schema_url="https://opentelemetry.io/schemas/1.37.0")
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=list(TOKEN_USAGE_BUCKETS))
        self.operation_duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS))
        self.cost = meter.create_counter(
            "orchestrator.llm.cost", unit="USD", description="Spend on LLM calls.")
        self.cache_hits = meter.create_counter(
            "orchestrator.llm.cache_hits", unit="{call}", description="LLM calls answered from the cache.")
        self.tasks = meter.create_counter(
            "orchestrator.tasks", unit="{task}", description="Tasks finished, by status.")
        self.projects = meter.create_counter(
            "orchestrator.projects", unit="{project}", description="Project runs finished, by status.")

    def on_llm_call_finished(self, p: events.LlmCallFinished) -> None:
        a = p.attributes
        attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": p.model,
                                 "orchestrator.call_type": p.call_type}
        if p.provider:
            attrs["gen_ai.provider.name"] = GEN_AI_PROVIDER_NAMES.get(p.provider, p.provider)
        if a.get("llm.cached"):
            self.cache_hits.add(1, attrs)
            return
        if a.get("llm.response_model"):
            attrs["gen_ai.response.model"] = a["llm.response_model"]
        if p.status != "ok":
            attrs["error.type"] = a.get("error.type") or p.error_type or p.status
        self.operation_duration.record(max(0, p.duration_ns) / 1e9, attrs)
        tin, tout = a.get("llm.tokens_in"), a.get("llm.tokens_out")
        if tin is not None:
            self.token_usage.record(tin, {**attrs, "gen_ai.token.type": "input"})
        if tout is not None:
            self.token_usage.record(tout, {**attrs, "gen_ai.token.type": "output"})
        cost = a.get("llm.cost_usd")
        if cost:
            self.cost.add(cost, {"gen_ai.request.model": p.model,
                                 "gen_ai.provider.name": attrs.get("gen_ai.provider.name", "")})

    def on_task_finished(self, p: events.TaskFinished) -> None:
        status = p.attributes.get("task.status") or ("cancelled" if p.status == "cancelled" else p.status)
        self.tasks.add(1, {"task.status": str(status), "task.type": p.task_type})

    def on_task_skipped(self, p: events.TaskSkipped) -> None:
        self.tasks.add(1, {"task.status": "skipped"})

    def on_project_finished(self, p: events.ProjectFinished) -> None:
        status = p.attributes.get("project.status") or p.status
        self.projects.add(1, {"project.status": str(status)})
