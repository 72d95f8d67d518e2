"""OTLP export of the :class:`~orchestrator.observers.metrics.MetricsObserver`'s metrics.

Metrics go to the collector the spans go to (same endpoint, protocol, headers and
resource), so one ``--otlp-endpoint`` gives a backend both the trees and the token,
duration and cost series.  They are opt-in (``--metrics``) because some trace-only
backends (Arize Phoenix, Jaeger) reject the metrics service and would only produce a
warning.

The same fault rules as for spans hold: a collector that is down or hangs never fails
or slows the run; the final export is bounded by :func:`shutdown_metrics`, and the first
failure is one warning line naming the endpoint.

Imported only when metrics are asked for.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)

from . import config as tracing_config
from .export import ExportGuard, Guarded, QuietExporterLogs, run_bounded
from .setup import build_resource

__all__ = ["GuardedMetricExporter", "MetricsExport", "configure_metrics", "metrics_endpoint"]

logger = logging.getLogger("orchestrator.tracing")

#: how often a long run pushes its cumulative metrics (the last push is at the end)
EXPORT_INTERVAL_S = 30.0


def metrics_endpoint(resolved: tracing_config.ResolvedTracing, environ: Mapping[str, str] | None = None) -> str:
    """Where metrics go: ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` when set, else the span
    endpoint (gRPC serves both services on one address; over HTTP the path becomes
    ``/v1/metrics``)."""
    env = os.environ if environ is None else environ
    explicit = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "").strip()
    if explicit:
        return tracing_config.validate_endpoint(explicit, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    endpoint = resolved.endpoint or ""
    if resolved.protocol == tracing_config.HTTP_PROTOBUF:
        base = endpoint.rstrip("/")
        if base.endswith("/v1/traces"):
            base = base[: -len("/v1/traces")]
        return base + "/v1/metrics"
    return endpoint


class GuardedMetricExporter(Guarded, MetricExporter):
    """Wraps the OTLP metric exporter with an :class:`~.export.ExportGuard`."""

    def __init__(self, inner: MetricExporter, endpoint: str, quiet: QuietExporterLogs | None = None) -> None:
        super().__init__(preferred_temporality=inner._preferred_temporality,  # noqa: SLF001 - pass through
                         preferred_aggregation=inner._preferred_aggregation)  # noqa: SLF001
        self.inner = inner
        self.guard = ExportGuard("metric", endpoint, quiet)

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        ok = self.guard.export(lambda: self.inner.export(metrics_data, timeout_millis=timeout_millis),
                               MetricExportResult.SUCCESS, 1, "the run goes on")
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        try:
            return self.inner.force_flush(timeout_millis)
        except Exception:  # noqa: BLE001
            return False

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        try:
            self.inner.shutdown(timeout_millis=timeout_millis)
        except Exception:  # noqa: BLE001
            pass


@dataclass
class MetricsExport:
    """A configured meter provider and its exporter; :meth:`shutdown` does the last push."""

    provider: MeterProvider
    exporter: GuardedMetricExporter
    quiet: QuietExporterLogs
    shutdown_timeout_s: float = 11.0

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Export what was recorded and stop, waiting at most ``timeout_s`` (default: the
        export deadline plus a second); True when the last export finished in time (it may
        still have failed: see ``exporter``)."""
        timeout = self.shutdown_timeout_s if timeout_s is None else timeout_s
        ok = run_bounded(self.provider.shutdown, timeout, name="orchestrator-otel-metrics")
        if not ok:
            self.exporter.guard.timed_out(timeout, "the run's metrics are dropped")
        self.quiet.uninstall()  # no filter outlives the flush that installed it
        return ok


def _otlp_metric_exporter(protocol: str | None, endpoint: str, headers: Mapping[str, str] | None,
                          timeout_s: float) -> MetricExporter:
    hdrs = dict(headers) if headers else None
    if protocol == tracing_config.HTTP_PROTOBUF:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=endpoint, headers=hdrs, timeout=timeout_s)
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
        OTLPMetricExporter as GrpcMetricExporter,
    )

    return GrpcMetricExporter(endpoint=endpoint, insecure=urlsplit(endpoint).scheme == "http", headers=hdrs,
                              timeout=timeout_s)


def configure_metrics(cfg: tracing_config.TracingConfig, resolved: tracing_config.ResolvedTracing) -> MetricsExport:
    """A meter provider exporting over OTLP next to the spans of ``resolved`` (which must
    have an endpoint); same resource as the tracer provider."""
    if not resolved.endpoint:
        raise ValueError("--metrics needs an OTLP endpoint (--otlp-endpoint or OTEL_EXPORTER_OTLP_ENDPOINT)")
    endpoint = metrics_endpoint(resolved)
    quiet = QuietExporterLogs(extra_loggers=(
        "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
        "opentelemetry.exporter.otlp.proto.http.metric_exporter",
        "opentelemetry.sdk.metrics._internal.export"))
    quiet.install()
    exporter = GuardedMetricExporter(
        _otlp_metric_exporter(resolved.protocol, endpoint, cfg.headers, resolved.export_timeout_s), endpoint, quiet)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=EXPORT_INTERVAL_S * 1000,
                                           export_timeout_millis=resolved.export_timeout_s * 1000)
    provider = MeterProvider(metric_readers=[reader], resource=build_resource(cfg, resolved),
                             shutdown_on_exit=False)  # the bounded shutdown above runs instead
    return MetricsExport(provider, exporter, quiet, resolved.shutdown_timeout_s)
