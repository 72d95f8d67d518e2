"""The process's tracing setup: tracer provider, exporter, the subscribed
:class:`~orchestrator.observers.tracing.TracingObserver`, and the bounded shutdown.

Faults: the exporter never raises into the run; an unreachable, refusing or hanging
collector gives one warning naming the endpoint, why (asked of the endpoint) and how
many spans were not exported;
a slow export that succeeds is not a fault.  The final flush waits for one export
deadline (``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT``, default 10 s) plus a second, at most
30 s, so the process exits promptly whatever the collector does.  Units: the OTLP
exporters' ``timeout`` is in seconds, the batch processor's ``export_timeout_millis`` in
milliseconds.

OpenTelemetry is imported only when tracing is actually configured.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, cast
from urllib.parse import urlsplit

from .config import HTTP_PROTOBUF, ResolvedTracing, TracingConfig, require_otel, resolve_config

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace import Tracer
    from rich.console import Console

    from ..observers.tracing import TracingObserver
    from .devtree import DevTreeExporter
    from .export import ExportGate, QuietSpanExporter

logger = logging.getLogger("orchestrator.tracing")

INSTRUMENTATION_NAME = "orchestrator"


@dataclass
class _Setup:
    """What :func:`configure_tracing` built; :func:`shutdown_tracing` takes it apart."""

    provider: TracerProvider
    tracer: Tracer
    observer: TracingObserver
    exporter: QuietSpanExporter | DevTreeExporter
    gate: ExportGate | None
    shutdown_timeout_s: float


_lock = threading.RLock()
_setup: _Setup | None = None
_resolved: ResolvedTracing | None = None
_config: TracingConfig | None = None
_atexit_registered = False


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("multi-llm-orchestrator")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "0"


def _build_sampler(resolved: ResolvedTracing) -> Sampler | None:
    """The sampler for ``--sample-rate`` (or ``OTEL_TRACES_SAMPLER_ARG`` alone); None when
    ``OTEL_TRACES_SAMPLER`` decides: the SDK's ``TracerProvider`` then builds it from the
    variables itself (named samplers and ``opentelemetry_traces_sampler`` entry points)."""
    from opentelemetry.sdk.trace import sampling

    if resolved.sampler_from_env:
        return None
    return sampling.ParentBased(sampling.TraceIdRatioBased(resolved.sample_rate or 0.0))


def build_resource(cfg: TracingConfig, resolved: ResolvedTracing) -> Resource:
    """The resource of every signal we export (spans and, with --metrics, metrics)."""
    from opentelemetry.sdk.resources import Resource

    attrs: dict[str, Any] = {"service.version": _version()}
    attrs.update(cfg.resource_attributes or {})
    if resolved.service_name_source != "environment":
        attrs["service.name"] = resolved.service_name
    return Resource.create(attrs)  # merges OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME


def _build_otlp_exporter(cfg: TracingConfig, resolved: ResolvedTracing) -> SpanExporter:
    headers = dict(cfg.headers) if cfg.headers else None
    if resolved.protocol == HTTP_PROTOBUF:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter(endpoint=resolved.endpoint, headers=headers, timeout=resolved.export_timeout_s)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    insecure = urlsplit(resolved.endpoint or "").scheme == "http"
    return GrpcExporter(
        endpoint=resolved.endpoint, insecure=insecure, headers=headers, timeout=resolved.export_timeout_s
    )


def configure_tracing(cfg: TracingConfig | None = None, *, console: Console | None = None) -> TracerProvider | None:
    """Set up tracing as ``cfg`` says and subscribe the tracing observer; returns the
    SDK tracer provider, or None when tracing ends up off.  Safe to call more than once:
    the previous setup is shut down first (bounded).  Raises :class:`TracingUnavailable`
    (naming the extra) when enabled without the OpenTelemetry packages, ValueError for a
    bad endpoint, protocol or rate."""
    global _setup, _resolved, _config, _atexit_registered
    cfg = cfg or TracingConfig()
    with _lock:
        shutdown_tracing()
        _config = cfg
        resolved = _resolved = resolve_config(cfg)
        if not resolved.enabled:
            if cfg.enabled:
                logger.info("tracing is off: %s", resolved.disabled_reason)
            return None
        require_otel()
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        from ..observers.tracing import TracingObserver
        from .devtree import DevTreeExporter
        from .export import EndpointProbe, ExportGate, QuietSpanExporter, batch_sizes, export_headers

        provider = TracerProvider(
            resource=build_resource(cfg, resolved), sampler=_build_sampler(resolved), shutdown_on_exit=False
        )  # our own bounded shutdown runs at exit
        exporter: QuietSpanExporter | DevTreeExporter
        gate: ExportGate | None = None
        if resolved.endpoint:
            probe = EndpointProbe(resolved.endpoint, resolved.protocol, export_headers(cfg.headers, "traces"))
            exporter = QuietSpanExporter(_build_otlp_exporter(cfg, resolved), resolved.endpoint, probe)
            queue, batch = batch_sizes()
            gate = ExportGate(
                BatchSpanProcessor(
                    exporter,
                    max_queue_size=queue,
                    max_export_batch_size=batch,
                    export_timeout_millis=resolved.export_timeout_s * 1000,
                ),
                exporter,
                queue,
            )
            provider.add_span_processor(gate)
        else:
            exporter = DevTreeExporter(print_on_root_end=cfg.dev_print, console=console)
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer(INSTRUMENTATION_NAME, _version())
        observer = TracingObserver(provider, capture_content=cfg.capture_content).subscribe()
        _setup = _Setup(provider, tracer, observer, exporter, gate, resolved.shutdown_timeout_s)
        if not _atexit_registered:
            atexit.register(_shutdown_at_exit)
            _atexit_registered = True
        logger.debug("tracing on: %s", resolved)
        return provider


def get_tracer() -> Tracer:
    """The orchestrator's tracer: the configured one, else the global OpenTelemetry
    tracer (a no-op until someone configures OpenTelemetry), else - without the
    OpenTelemetry API installed - a tracer whose spans do nothing."""
    setup = _setup
    if setup is not None:
        return setup.tracer
    try:
        from opentelemetry import trace
    except ImportError:
        return cast("Tracer", _NoopTracer())
    return trace.get_tracer(INSTRUMENTATION_NAME, _version())


class TracingState(TypedDict):
    """What :func:`tracing_state` tells."""

    configured: bool
    resolved: ResolvedTracing | None
    exported: int | None
    failed: int | None
    observer: TracingObserver | None
    provider: TracerProvider | None
    exporter: QuietSpanExporter | DevTreeExporter | None
    gate: ExportGate | None


def tracing_state() -> TracingState:
    """Introspection for tests and the CLI: resolved settings, exporter counters."""
    setup = _setup
    exporter = setup.exporter if setup is not None else None
    return {
        "configured": setup is not None,
        "resolved": _resolved,
        "exported": getattr(exporter, "exported", None),
        "failed": getattr(exporter, "failed", None),
        "observer": setup.observer if setup is not None else None,
        "provider": setup.provider if setup is not None else None,
        "exporter": exporter,
        "gate": setup.gate if setup is not None else None,
    }


def dev_spans() -> list[ReadableSpan]:
    """Finished spans kept in dev mode (no endpoint); empty otherwise."""
    setup = _setup
    spans: list[ReadableSpan] | None = getattr(setup.exporter, "spans", None) if setup is not None else None
    return list(spans) if spans is not None else []


def _timeout(timeout_s: float | None, setup: _Setup) -> float:
    return timeout_s if timeout_s is not None else setup.shutdown_timeout_s


def force_flush(timeout_s: float | None = None) -> bool:
    """Export what is buffered, waiting at most ``timeout_s`` (default: the config's
    ``shutdown_timeout_s``).  True when done in time."""
    setup = _setup
    if setup is None:
        return True
    from .export import run_bounded

    return run_bounded(setup.provider.force_flush, _timeout(timeout_s, setup))


def shutdown_tracing(timeout_s: float | None = None) -> bool:
    """Unsubscribe the observer (ending any span left open), flush and shut the provider
    down, waiting at most ``timeout_s`` seconds (default: the export deadline plus a
    second, at most 30 s); past that, export is abandoned.  A warning names the endpoint
    and the spans that were not exported, only when some were not.  True when everything
    was flushed in time."""
    global _setup
    with _lock:
        setup, _setup = _setup, None
    if setup is None:
        return True
    setup.observer.unsubscribe()
    from .export import QuietSpanExporter, run_bounded

    timeout = _timeout(timeout_s, setup)
    exporter = setup.exporter
    probe = exporter.guard.probe if isinstance(exporter, QuietSpanExporter) else None
    # a refused connection is final: waiting for the export deadline would only delay the exit
    ok = run_bounded(setup.provider.shutdown, timeout, give_up=probe.refused if probe is not None else None)
    gate = setup.gate
    if isinstance(exporter, QuietSpanExporter) and gate is not None and not ok:
        exporter.abandon()
        lost = max(0, gate.ended - exporter.exported)
        if lost:  # names e.g. the 503 the exporter kept retrying, or the refusal
            exporter.guard.timed_out(timeout, f"{lost} of {gate.ended} spans were not exported")
    return ok


def _shutdown_at_exit() -> None:
    try:
        shutdown_tracing()
    except Exception:  # noqa: BLE001 - never a traceback at exit
        pass


class _NoopSpan:
    """Accepts every span call and records nothing (OpenTelemetry not installed)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None

    def is_recording(self) -> bool:
        return False

    def __enter__(self) -> _NoopSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _NoopTracer:
    def start_as_current_span(self, name: str, *args: object, **kwargs: object) -> _NoopSpan:
        return _NoopSpan()

    def start_span(self, name: str, *args: object, **kwargs: object) -> _NoopSpan:
        return _NoopSpan()
