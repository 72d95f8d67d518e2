"""The seed's tracing API: ``TracingConfig``, ``configure_tracing()``, ``get_tracer()``,
``shutdown_tracing()`` and the ``traced_*`` helpers.

Usage::

    from orchestrator.tracing import TracingConfig, configure_tracing, shutdown_tracing
    configure_tracing(TracingConfig(enabled=True, otlp_endpoint="http://localhost:4317"))
    state = asyncio.run(Orchestrator(...).run_project(...))
    shutdown_tracing()          # bounded flush; also done at exit

A thin face: the configuration lives in :mod:`orchestrator.otel.config`, the provider,
exporter and bounded shutdown in :mod:`orchestrator.otel.setup`, and the helpers in
:mod:`orchestrator.events` (the engine only sends signals; the
:class:`~orchestrator.observers.tracing.TracingObserver` makes the spans).  Importing
this module does not import OpenTelemetry.
"""

from __future__ import annotations

from .events import traced_llm_call, traced_policy_check, traced_project, traced_remediation, traced_task
from .otel.config import (
    DEFAULT_SERVICE_NAME,
    EXTRA_HINT,
    GRPC,
    HTTP_PROTOBUF,
    ResolvedTracing,
    TracingConfig,
    TracingUnavailable,
    protocol_for_url,
    resolve_config,
    tracing_available,
    validate_endpoint,
    validate_protocol,
    validate_sample_rate,
)
from .otel.setup import configure_tracing, dev_spans, force_flush, get_tracer, shutdown_tracing, tracing_state

__all__ = [
    "TracingConfig",
    "configure_tracing",
    "get_tracer",
    "shutdown_tracing",
    "force_flush",
    "dev_spans",
    "tracing_state",
    "tracing_available",
    "TracingUnavailable",
    "resolve_config",
    "ResolvedTracing",
    "validate_endpoint",
    "validate_sample_rate",
    "validate_protocol",
    "protocol_for_url",
    "EXTRA_HINT",
    "GRPC",
    "HTTP_PROTOBUF",
    "DEFAULT_SERVICE_NAME",
    "traced_project",
    "traced_task",
    "traced_llm_call",
    "traced_policy_check",
    "traced_remediation",
]
