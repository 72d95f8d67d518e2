"""OpenTelemetry configuration: ``TracingConfig``, ``configure_tracing()``, ``get_tracer()``.

Usage::

    from orchestrator.tracing import TracingConfig, configure_tracing
    configure_tracing(TracingConfig(enabled=True, otlp_endpoint="http://localhost:4317"))
    state = asyncio.run(Orchestrator(...).run_project(...))
    shutdown_tracing()          # bounded flush; also done at exit

``configure_tracing`` builds a tracer provider (resource, sampler, exporter) and
subscribes a :class:`~orchestrator.observers.tracing.TracingObserver` to the event bus;
the emitters (engine, client...) only send signals.  The seed's helper names are
re-exported from :mod:`orchestrator.events` so
``from orchestrator.tracing import traced_task, traced_llm_call, ...`` keeps working.

Resolution order, for every setting: an explicit value (``TracingConfig`` field / CLI
flag) beats the standard ``OTEL_*`` variable, which beats the default.

* endpoint: ``otlp_endpoint``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as is),
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` (a base URL; ``/v1/traces`` is appended for HTTP);
  none means the dev mode: spans kept in memory and printed as a tree.
* protocol: ``otlp_protocol``, ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``,
  ``OTEL_EXPORTER_OTLP_PROTOCOL``, else the URL: a path ending in ``/v1/traces`` or
  port 4318 means ``http/protobuf``, anything else ``grpc``.
* sampler: ``sample_rate`` (parent-based trace-id ratio), ``OTEL_TRACES_SAMPLER`` /
  ``OTEL_TRACES_SAMPLER_ARG``, else parent-based always-on.
* ``service.name``: ``service_name`` when given, else ``OTEL_SERVICE_NAME`` or the one in
  ``OTEL_RESOURCE_ATTRIBUTES``, else ``multi-llm-orchestrator``.
* ``OTEL_SDK_DISABLED=true`` turns tracing off; ``OTEL_EXPORTER_OTLP_HEADERS`` /
  ``..._TRACES_HEADERS`` are read by the exporters.

Faults: the exporter never raises into the run; an unreachable, refusing or hanging
collector gives one warning naming the endpoint; flush and shutdown are bounded
(``shutdown_timeout_s``, default 3 s) so the process exits promptly.  Units: the OTLP
exporters' ``timeout`` is in seconds, the batch processor's ``export_timeout_millis`` in
milliseconds.

This module imports OpenTelemetry only when tracing is actually configured.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .events import (  # noqa: F401 - the seed's import line: helpers live in events
    traced_llm_call,
    traced_policy_check,
    traced_project,
    traced_remediation,
    traced_task,
)

__all__ = [
    "TracingConfig", "configure_tracing", "get_tracer", "shutdown_tracing", "force_flush",
    "dev_spans", "tracing_available", "TracingUnavailable", "resolve_config", "ResolvedTracing",
    "validate_endpoint", "validate_sample_rate", "protocol_for_url", "EXTRA_HINT",
    "GRPC", "HTTP_PROTOBUF", "DEFAULT_SERVICE_NAME",
    "traced_project", "traced_task", "traced_llm_call", "traced_policy_check", "traced_remediation",
]

logger = logging.getLogger("orchestrator.tracing")

GRPC = "grpc"
HTTP_PROTOBUF = "http/protobuf"
PROTOCOLS = (GRPC, HTTP_PROTOBUF)
DEFAULT_SERVICE_NAME = "multi-llm-orchestrator"
EXTRA_HINT = "pip install 'multi-llm-orchestrator[tracing]'"
_REQUIRED_MODULES = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.grpc",
                     "opentelemetry.exporter.otlp.proto.http")


class TracingUnavailable(ImportError):
    """The OpenTelemetry packages (the ``tracing`` extra) are not installed."""


class _Default(str):
    """Marks a field left at its default (equal to the default value, but recognisable)."""

    __slots__ = ()


class _DefaultRate(float):
    __slots__ = ()


_DEFAULT_SERVICE = _Default(DEFAULT_SERVICE_NAME)
_DEFAULT_RATE = _DefaultRate(1.0)


@dataclass
class TracingConfig:
    """How to trace.  The first four fields are the seed's.

    ``otlp_protocol``: ``"grpc"`` or ``"http/protobuf"`` (None: from the environment or
    the URL).  ``headers``: extra export headers (None: ``OTEL_EXPORTER_OTLP_HEADERS``).
    ``capture_content``: record prompts/completions on LLM spans (None: from
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``; default off).
    ``export_timeout_s``: per-export deadline of the OTLP exporter, in seconds.
    ``shutdown_timeout_s``: the most :func:`shutdown_tracing` waits for the last flush.
    ``dev_print``: in dev mode, print each finished run's span tree on stderr (the CLI
    turns it off and prints the tree after its summary instead).
    """

    enabled: bool = False
    service_name: str = _DEFAULT_SERVICE
    otlp_endpoint: str | None = None
    sample_rate: float = _DEFAULT_RATE
    otlp_protocol: str | None = None
    headers: Mapping[str, str] | None = None
    capture_content: bool | None = None
    export_timeout_s: float = 3.0
    shutdown_timeout_s: float = 3.0
    dev_print: bool = True
    resource_attributes: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# Validation and resolution (pure: no OpenTelemetry import)
# ---------------------------------------------------------------------------------------

def validate_endpoint(url: str, what: str = "--otlp-endpoint") -> str:
    """The URL stripped, or ValueError with a one-line reason."""
    text = (url or "").strip()
    example = "e.g. http://localhost:4317 (gRPC) or http://localhost:4318/v1/traces (HTTP)"
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"{what} must be an http:// or https:// URL, {example}; got {url!r}")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{what} must start with http:// or https://, {example}; got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{what} has an invalid port: {url!r}") from None
    if not parts.hostname:
        raise ValueError(f"{what} has no host: {url!r}")
    if port == 0:
        raise ValueError(f"{what} has an invalid port: {url!r}")
    return text


def validate_sample_rate(value: Any, what: str = "--sample-rate") -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number between 0 and 1, got {value!r}") from None
    if math.isnan(rate) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"{what} must be between 0 and 1, got {value!r}")
    return rate


def validate_protocol(value: str, what: str = "--otlp-protocol") -> str:
    proto = value.strip().lower()
    if proto not in PROTOCOLS:
        raise ValueError(f"{what} must be one of {', '.join(PROTOCOLS)}, got {value!r}")
    return proto


def protocol_for_url(url: str) -> str:
    """``http/protobuf`` for a path ending in ``/v1/traces`` or port 4318, else ``grpc``."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.path.rstrip("/").endswith("/v1/traces") or port == 4318:
        return HTTP_PROTOBUF
    return GRPC


def _env_true(name: str, environ: Mapping[str, str]) -> bool:
    return environ.get(name, "").strip().lower() == "true"


def _env_service_name(environ: Mapping[str, str]) -> str | None:
    if environ.get("OTEL_SERVICE_NAME", "").strip():
        return environ["OTEL_SERVICE_NAME"].strip()
    for item in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = item.partition("=")
        if key.strip() == "service.name" and value.strip():
            return value.strip()
    return None


@dataclass(frozen=True)
class ResolvedTracing:
    """What :func:`configure_tracing` will do, resolved from config and environment."""

    enabled: bool
    endpoint: str | None = None
    """Final export URL (for HTTP including ``/v1/traces``); None means dev mode."""
    protocol: str | None = None
    endpoint_source: str | None = None
    service_name: str = DEFAULT_SERVICE_NAME
    service_name_source: str = "default"
    sample_rate: float | None = None
    """Ratio of the parent-based sampler, None when ``OTEL_TRACES_SAMPLER`` decides."""
    sampler_from_env: bool = False
    disabled_reason: str | None = None


def resolve_config(cfg: TracingConfig, environ: Mapping[str, str] | None = None) -> ResolvedTracing:
    """Apply flag > variable > default to ``cfg``; ValueError for a bad URL, protocol or
    rate (the message names the flag or variable)."""
    env = os.environ if environ is None else environ
    if not cfg.enabled:
        return ResolvedTracing(False, disabled_reason="not enabled")
    if _env_true("OTEL_SDK_DISABLED", env):
        return ResolvedTracing(False, disabled_reason="OTEL_SDK_DISABLED=true")
    # endpoint
    endpoint, source = None, None
    if cfg.otlp_endpoint:
        endpoint, source = validate_endpoint(cfg.otlp_endpoint), "otlp_endpoint"
    else:
        for var in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
            if env.get(var, "").strip():
                endpoint, source = validate_endpoint(env[var], var), var
                break
    # protocol
    protocol = None
    if endpoint is not None:
        if cfg.otlp_protocol:
            protocol = validate_protocol(cfg.otlp_protocol)
        else:
            for var in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
                if env.get(var, "").strip():
                    protocol = validate_protocol(env[var], var)
                    break
            else:
                protocol = protocol_for_url(endpoint)
        if protocol == HTTP_PROTOBUF and source != "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":
            parts = urlsplit(endpoint)
            if not parts.path.rstrip("/").endswith("/v1/traces"):
                endpoint = endpoint.rstrip("/") + "/v1/traces"
    # service name
    if not isinstance(cfg.service_name, _Default):
        service, service_source = cfg.service_name, "service_name"
    elif (from_env := _env_service_name(env)) is not None:
        service, service_source = from_env, "environment"
    else:
        service, service_source = DEFAULT_SERVICE_NAME, "default"
    # sampler
    rate: float | None
    sampler_from_env = False
    if not isinstance(cfg.sample_rate, _DefaultRate):
        rate = validate_sample_rate(cfg.sample_rate)
    elif env.get("OTEL_TRACES_SAMPLER", "").strip():
        rate, sampler_from_env = None, True
        if env.get("OTEL_TRACES_SAMPLER_ARG", "").strip() and "ratio" in env["OTEL_TRACES_SAMPLER"]:
            validate_sample_rate(env["OTEL_TRACES_SAMPLER_ARG"], "OTEL_TRACES_SAMPLER_ARG")
    elif env.get("OTEL_TRACES_SAMPLER_ARG", "").strip():
        rate = validate_sample_rate(env["OTEL_TRACES_SAMPLER_ARG"], "OTEL_TRACES_SAMPLER_ARG")
    else:
        rate = 1.0
    return ResolvedTracing(True, endpoint, protocol, source, service, service_source, rate, sampler_from_env)


def tracing_available() -> bool:
    """True when the ``tracing`` extra is installed (checked without importing it)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in _REQUIRED_MODULES)
    except (ImportError, ValueError):
        return False


def _require_otel() -> None:
    if not tracing_available():
        raise TracingUnavailable(f"tracing needs the OpenTelemetry packages: {EXTRA_HINT}")


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
        _require_otel()
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        from .observers.tracing import TracingObserver

        provider = TracerProvider(resource=build_resource(cfg, resolved), sampler=_build_sampler(resolved),
                                  shutdown_on_exit=False)  # our own bounded shutdown runs at exit
        if resolved.endpoint:
            from ._export import GuardedSpanExporter, QuietExporterLogs

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
    from ._export import run_bounded

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
    from ._export import GuardedSpanExporter, run_bounded

    timeout = timeout_s if timeout_s is not None else (_config.shutdown_timeout_s if _config else 3.0)
    ok = run_bounded(provider.shutdown, timeout)
    if isinstance(exporter, GuardedSpanExporter):
        if not ok:
            exporter.abandon()
            detail = quiet.detail() if quiet is not None else ""  # e.g. the 503 it kept retrying
            exporter.warn_once(f"span export to {exporter.endpoint} did not finish within {timeout:g} s "
                               f"({detail or 'collector down or hanging'}); the remaining spans are dropped")
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
