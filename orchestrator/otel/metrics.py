"""OTLP export of the :class:`~orchestrator.observers.metrics.MetricsObserver`'s metrics.

Metrics go to the collector the spans go to (same endpoint, protocol, headers and
resource), so one ``--otlp-endpoint`` gives a backend both the trees and the token,
duration and cost series.  They are opt-in (``--metrics``) because some trace-only
backends (Arize Phoenix, Jaeger) reject the metrics service and would only produce a
warning.

The same fault rules as for spans hold: a collector that is down or hangs never fails
or slows the run; the final export is bounded by :meth:`MetricsExport.shutdown`, and the
first failure is one warning line naming the endpoint.

Temporality and histogram aggregation follow
``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` and
``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION``: the preference is built
here from the specification's table and given to both the OTLP exporter and our wrapper
through their constructors (the metric reader asks the wrapper).

Imported only when metrics are asked for.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import (
    Aggregation,
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
)

from . import config as tracing_config
from .export import METRICS_SERVICE, EndpointProbe, ExportGuard, Guarded, export_headers, run_bounded
from .setup import build_resource

__all__ = [
    "QuietMetricExporter",
    "MetricsExport",
    "configure_metrics",
    "metrics_endpoint",
    "preferred_temporality",
    "preferred_aggregation",
]

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


_DELTA, _CUMULATIVE = AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE
#: the specification's OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE table
_TEMPORALITY: dict[str, dict[type, AggregationTemporality]] = {
    "cumulative": {
        Counter: _CUMULATIVE,
        UpDownCounter: _CUMULATIVE,
        Histogram: _CUMULATIVE,
        ObservableCounter: _CUMULATIVE,
        ObservableUpDownCounter: _CUMULATIVE,
        ObservableGauge: _CUMULATIVE,
    },
    "delta": {
        Counter: _DELTA,
        UpDownCounter: _CUMULATIVE,
        Histogram: _DELTA,
        ObservableCounter: _DELTA,
        ObservableUpDownCounter: _CUMULATIVE,
        ObservableGauge: _CUMULATIVE,
    },
    "lowmemory": {
        Counter: _DELTA,
        UpDownCounter: _CUMULATIVE,
        Histogram: _DELTA,
        ObservableCounter: _CUMULATIVE,
        ObservableUpDownCounter: _CUMULATIVE,
        ObservableGauge: _CUMULATIVE,
    },
}


def preferred_temporality(choice: str) -> dict[type, AggregationTemporality]:
    """Temporality per instrument type for ``cumulative``, ``delta`` or ``lowmemory``."""
    return dict(_TEMPORALITY[choice])


def preferred_aggregation(choice: str) -> dict[type, Aggregation]:
    """Histogram aggregation for ``explicit_bucket_histogram`` or
    ``base2_exponential_bucket_histogram``."""
    if choice == "base2_exponential_bucket_histogram":
        return {Histogram: ExponentialBucketHistogramAggregation()}
    return {Histogram: ExplicitBucketHistogramAggregation()}


class QuietMetricExporter(Guarded, MetricExporter):
    """Wraps the OTLP metric exporter with an :class:`~.export.ExportGuard`; the reader
    asks this wrapper for the temporality and aggregation, so it is given the same ones
    as the exporter it wraps."""

    def __init__(
        self,
        inner: MetricExporter,
        endpoint: str,
        probe: EndpointProbe | None = None,
        *,
        temporality: dict[type, AggregationTemporality] | None = None,
        aggregation: dict[type, Aggregation] | None = None,
    ) -> None:
        super().__init__(preferred_temporality=temporality, preferred_aggregation=aggregation)
        self.inner = inner
        self.guard = ExportGuard("metric", endpoint, probe)

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object) -> MetricExportResult:
        ok = self.guard.export(
            lambda: self.inner.export(metrics_data, timeout_millis=timeout_millis),
            MetricExportResult.SUCCESS,
            1,
            "the run goes on",
        )
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.guard.quietly(lambda: self.inner.force_flush(timeout_millis)) is True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        self.guard.quietly(lambda: self.inner.shutdown(timeout_millis=timeout_millis))


@dataclass
class MetricsExport:
    """A configured meter provider and its exporter; :meth:`shutdown` does the last push."""

    provider: MeterProvider
    exporter: QuietMetricExporter
    shutdown_timeout_s: float = 11.0

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Export what was recorded and stop, waiting at most ``timeout_s`` (default: the
        export deadline plus a second); True when the last export finished in time (it may
        still have failed: see ``exporter``)."""
        timeout = self.shutdown_timeout_s if timeout_s is None else timeout_s
        probe = self.exporter.guard.probe
        ok = run_bounded(
            self.provider.shutdown,
            timeout,
            name="orchestrator-otel-metrics",
            give_up=probe.refused if probe is not None else None,
        )
        if not ok:
            self.exporter.guard.abandoned = True
            self.exporter.guard.timed_out(timeout, "the run's metrics are dropped")
        return ok


def _otlp_metric_exporter(
    protocol: str | None,
    endpoint: str,
    headers: Mapping[str, str] | None,
    timeout_s: float,
    temporality: dict[type, AggregationTemporality],
    aggregation: dict[type, Aggregation],
) -> MetricExporter:
    hdrs = dict(headers) if headers else None
    if protocol == tracing_config.HTTP_PROTOBUF:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(
            endpoint=endpoint,
            headers=hdrs,
            timeout=timeout_s,
            preferred_temporality=temporality,
            preferred_aggregation=aggregation,
        )
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter

    return GrpcMetricExporter(
        endpoint=endpoint,
        insecure=urlsplit(endpoint).scheme == "http",
        headers=hdrs,
        timeout=timeout_s,
        preferred_temporality=temporality,
        preferred_aggregation=aggregation,
    )


def configure_metrics(cfg: tracing_config.TracingConfig, resolved: tracing_config.ResolvedTracing) -> MetricsExport:
    """A meter provider exporting over OTLP next to the spans of ``resolved`` (which must
    have an endpoint); same resource as the tracer provider."""
    if not resolved.endpoint:
        raise ValueError("--metrics needs an OTLP endpoint (--otlp-endpoint or OTEL_EXPORTER_OTLP_ENDPOINT)")
    endpoint = metrics_endpoint(resolved)
    temporality_choice, histogram_choice = tracing_config.metrics_preferences()
    temporality, aggregation = preferred_temporality(temporality_choice), preferred_aggregation(histogram_choice)
    inner = _otlp_metric_exporter(
        resolved.protocol, endpoint, cfg.headers, resolved.export_timeout_s, temporality, aggregation
    )
    probe = EndpointProbe(endpoint, resolved.protocol, export_headers(cfg.headers, "metrics"), METRICS_SERVICE)
    exporter = QuietMetricExporter(inner, endpoint, probe, temporality=temporality, aggregation=aggregation)
    reader = PeriodicExportingMetricReader(
        exporter,
        export_interval_millis=EXPORT_INTERVAL_S * 1000,
        export_timeout_millis=resolved.export_timeout_s * 1000,
    )
    provider = MeterProvider(
        metric_readers=[reader], resource=build_resource(cfg, resolved), shutdown_on_exit=False
    )  # the bounded shutdown above runs instead
    return MetricsExport(provider, exporter, resolved.shutdown_timeout_s)
