"""The process's tracing setup: tracer provider, exporter, the subscribed
:class:`~orchestrator.observers.tracing.TracingObserver`, and the bounded shutdown.

Faults: the exporter never raises into the run; an unreachable, refusing or hanging
collector gives one warning naming the endpoint; flush and shutdown are bounded
(``shutdown_timeout_s``, default 3 s) so the process exits promptly.  Units: the OTLP
exporters' ``timeout`` is in seconds, the batch processor's ``export_timeout_millis`` in
milliseconds.

OpenTelemetry is imported only when tracing is actually configured.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any
from urllib.parse import urlsplit

from .config import HTTP_PROTOBUF, ResolvedTracing, TracingConfig, require_otel, resolve_config

logger = logging.getLogger("orchestrator.tracing")


# ---------------------------------------------------------------------------------------
# Global state
# ---------------------------------------------------------------------------------------

_lock = threading.RLock()
_tracer: Any = None
_provider: Any = None
_observer: Any = None
_exporter: Any = None  # GuardedSpanExporter (OTLP) or DevTreeExporter (dev mode)
_quiet: Any = None
_resolved: ResolvedTracing | None = None
_config: TracingConfig | None = None
_atexit_registered = False


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("multi-llm-orchestrator")
    except Exception:  # noqa: BLE001
        return "0"


def _build_sampler(resolved: ResolvedTracing):
    from opentelemetry.sdk.trace import sampling

    if resolved.sampler_from_env:
        return sampling._get_from_env_or_default()  # noqa: SLF001 - the SDK's own env parsing
    return sampling.ParentBased(sampling.TraceIdRatioBased(resolved.sample_rate or 0.0))


def build_resource(cfg: TracingConfig, resolved: ResolvedTracing):
    """The resource of every signal we export (spans and, with --metrics, metrics)."""
    from opentelemetry.sdk.resources import Resource

    attrs: dict[str, Any] = {"service.version": _version()}
    attrs.update(cfg.resource_attributes or {})
    if resolved.service_name_source != "environment":
        attrs["service.name"] = resolved.service_name
    return Resource.create(attrs)  # merges OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME


def _build_otlp_exporter(cfg: TracingConfig, resolved: ResolvedTracing):
    headers = dict(cfg.headers) if cfg.headers else None
    if resolved.protocol == HTTP_PROTOBUF:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter(endpoint=resolved.endpoint, headers=headers, timeout=cfg.export_timeout_s)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    insecure = urlsplit(resolved.endpoint or "").scheme == "http"
    return GrpcExporter(endpoint=resolved.endpoint, insecure=insecure, headers=headers,
                        timeout=cfg.export_timeout_s)


def configure_tracing(cfg: TracingConfig | None = None, *, console: Any = None):
    """Set up tracing as ``cfg`` says and subscribe the tracing observer; returns the
    SDK tracer provider, or None when tracing ends up off.  Safe to call more than once:
    the previous setup is shut down first (bounded).  Raises :class:`TracingUnavailable`
    (naming the extra) when enabled without the OpenTelemetry packages, ValueError for a
    bad endpoint, protocol or rate."""
    global _tracer, _provider, _observer, _exporter, _quiet, _resolved, _config, _atexit_registered
    cfg = cfg or TracingConfig()
    with _lock:
        shutdown_tracing()
        _config = cfg
        resolved = resolve_config(cfg)
        _resolved = resolved
        if not resolved.enabled:
            if cfg.enabled:
                logger.info("tracing is off: %s", resolved.disabled_reason)
            return None
        require_otel()
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        from ..observers.tracing import TracingObserver

        provider = TracerProvider(resource=build_resource(cfg, resolved), sampler=_build_sampler(resolved),
                                  shutdown_on_exit=False)  # our own bounded shutdown runs at exit
        if resolved.endpoint:
            from .export import GuardedSpanExporter, QuietExporterLogs

            quiet = QuietExporterLogs()
            quiet.install()
            exporter = GuardedSpanExporter(_build_otlp_exporter(cfg, resolved), resolved.endpoint, quiet)
            provider.add_span_processor(BatchSpanProcessor(
                exporter, export_timeout_millis=cfg.export_timeout_s * 1000))
            _quiet = quiet
        else:
            from .devtree import DevTreeExporter

            exporter = DevTreeExporter(print_on_root_end=cfg.dev_print, console=console)
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        _provider, _exporter = provider, exporter
        _tracer = provider.get_tracer("orchestrator", _version())
        _observer = TracingObserver(provider, capture_content=cfg.capture_content).subscribe()
        if not _atexit_registered:
            atexit.register(_shutdown_at_exit)
            _atexit_registered = True
        logger.debug("tracing on: %s", resolved)
        return provider


def get_tracer():
    """The orchestrator's tracer: the configured one, else the global OpenTelemetry
    tracer (a no-op until someone configures OpenTelemetry), else a do-nothing tracer
    when OpenTelemetry is not installed."""
    if _tracer is not None:
        return _tracer
    if _provider is not None:
        return _provider.get_tracer("orchestrator", _version())
    try:
        from opentelemetry import trace
    except ImportError:
        return _NoopTracer()
    return trace.get_tracer("orchestrator", _version())


def tracing_state() -> dict[str, Any]:
    """Introspection for tests and the CLI: resolved settings, exporter counters."""
    exporter = _exporter
    return {
        "configured": _provider is not None,
        "resolved": _resolved,
        "exported": getattr(exporter, "exported", None),
        "failed": getattr(exporter, "failed", None),
        "observer": _observer,
        "provider": _provider,
        "exporter": exporter,
    }


def dev_spans() -> list:
    """Finished spans kept in dev mode (no endpoint); empty otherwise."""
    spans = getattr(_exporter, "spans", None)
    return list(spans) if spans is not None else []


def force_flush(timeout_s: float | None = None) -> bool:
    """Export what is buffered, waiting at most ``timeout_s`` (default: the config's
    ``shutdown_timeout_s``).  True when done in time."""
    provider = _provider
    if provider is None:
        return True
    from .export import run_bounded

    timeout = timeout_s if timeout_s is not None else (_config.shutdown_timeout_s if _config else 3.0)
    return run_bounded(provider.force_flush, timeout)


def shutdown_tracing(timeout_s: float | None = None) -> bool:
    """Unsubscribe the observer (ending any span left open), flush and shut the provider
    down, waiting at most ``timeout_s`` seconds; past that, export is abandoned with one
    warning naming the endpoint.  True when everything was flushed in time."""
    global _tracer, _provider, _observer, _exporter, _quiet
    with _lock:
        observer, provider, exporter, quiet = _observer, _provider, _exporter, _quiet
        _tracer = _provider = _observer = _exporter = _quiet = None
    if observer is not None:
        observer.unsubscribe()
    if provider is None:
        return True
    from .export import GuardedSpanExporter, run_bounded

    timeout = timeout_s if timeout_s is not None else (_config.shutdown_timeout_s if _config else 3.0)
    ok = run_bounded(provider.shutdown, timeout)
    if isinstance(exporter, GuardedSpanExporter):
        if not ok:
            exporter.abandon()
            exporter.guard.timed_out(timeout, "the remaining spans are dropped")  # names e.g. the 503 it retried
        elif quiet is not None:
            quiet.uninstall()
        # when abandoned, the filter stays: the export thread may still log on its way out
    return ok


def _shutdown_at_exit() -> None:
    try:
        shutdown_tracing()
    except Exception:  # noqa: BLE001 - never a traceback at exit
        pass


# ---------------------------------------------------------------------------------------
# Fallback tracer when OpenTelemetry is not installed
# ---------------------------------------------------------------------------------------

class _NoopSpan:
    def set_attribute(self, key, value) -> None:
        pass

    def set_attributes(self, attributes) -> None:
        pass

    def add_event(self, name, attributes=None, timestamp=None) -> None:
        pass

    def record_exception(self, exc, attributes=None, timestamp=None, escaped=False) -> None:
        pass

    def set_status(self, status, description=None) -> None:
        pass

    def is_recording(self) -> bool:
        return False

    def end(self, end_time=None) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return None


class _NoopTracer:
    def start_as_current_span(self, name, *args, **kwargs):
        return _NoopSpan()

    def start_span(self, name, *args, **kwargs):
        return _NoopSpan()
