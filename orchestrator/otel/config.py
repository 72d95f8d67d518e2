"""Tracing configuration: ``TracingConfig`` and its resolution against the standard
``OTEL_*`` variables, with one-line errors for bad values.

Pure: nothing here imports OpenTelemetry, so the CLI can validate flags (and say which
extra is missing) before any work starts.

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
* ``OTEL_SDK_DISABLED=true`` turns tracing off.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..domain.errors import OrchestratorError

logger = logging.getLogger("orchestrator.tracing")

GRPC = "grpc"
HTTP_PROTOBUF = "http/protobuf"
PROTOCOLS = (GRPC, HTTP_PROTOBUF)
DEFAULT_SERVICE_NAME = "multi-llm-orchestrator"
EXTRA_HINT = "pip install 'multi-llm-orchestrator[tracing]'"
_REQUIRED_MODULES = (
    "opentelemetry.sdk",
    "opentelemetry.exporter.otlp.proto.grpc",
    "opentelemetry.exporter.otlp.proto.http",
)


class TracingUnavailable(OrchestratorError, ImportError):
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
    ``export_timeout_s``: per-export deadline of the OTLP exporter, in seconds (None:
    ``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` / ``OTEL_EXPORTER_OTLP_TIMEOUT`` in milliseconds,
    else 10 s).  ``shutdown_timeout_s``: the most :func:`shutdown_tracing` waits for the
    last flush (None: the export deadline plus one second, at most 30 s).
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
    export_timeout_s: float | None = None
    shutdown_timeout_s: float | None = None
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


def validate_sample_rate(value: str | float, what: str = "--sample-rate") -> float:
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
    export_timeout_s: float = 10.0
    """Deadline of one export, in seconds (the spec's default: 10 s)."""
    export_timeout_source: str = "default"
    shutdown_timeout_s: float = 11.0
    """How long the final flush may take: the export's own deadline and a second, at most
    :data:`MAX_SHUTDOWN_S`, unless ``shutdown_timeout_s`` says otherwise."""


DEFAULT_EXPORT_TIMEOUT_S = 10.0
MAX_SHUTDOWN_S = 30.0
TIMEOUT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")


def validate_timeout(value: str | float, what: str, *, millis: bool = False) -> float:
    """Seconds from a positive, finite number (in milliseconds when ``millis``, as the
    ``OTEL_EXPORTER_OTLP_*TIMEOUT`` variables are); ValueError naming ``what`` otherwise."""
    unit = "milliseconds" if millis else "seconds"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of {unit}, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{what} must be a positive, finite number of {unit}, got {value!r}")
    return number / 1000 if millis else number


def resolve_timeouts(cfg: TracingConfig, env: Mapping[str, str]) -> tuple[float, str, float]:
    """(export timeout s, where it came from, final-flush bound s): the flag or field, else
    ``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` / ``OTEL_EXPORTER_OTLP_TIMEOUT`` (milliseconds),
    else 10 s; the final flush waits for one export deadline plus a second, at most 30 s."""
    if cfg.export_timeout_s is not None:
        timeout, source = validate_timeout(cfg.export_timeout_s, "--otlp-timeout"), "otlp_timeout"
    else:
        timeout, source = DEFAULT_EXPORT_TIMEOUT_S, "default"
        for var in TIMEOUT_VARIABLES:
            if env.get(var, "").strip():
                timeout, source = validate_timeout(env[var], var, millis=True), var
                break
    if cfg.shutdown_timeout_s is not None:
        shutdown = validate_timeout(cfg.shutdown_timeout_s, "shutdown_timeout_s")
    else:
        shutdown = min(timeout + 1.0, MAX_SHUTDOWN_S)
    return timeout, source, shutdown


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
    timeout, timeout_source, shutdown = resolve_timeouts(cfg, env)
    return ResolvedTracing(
        True,
        endpoint,
        protocol,
        source,
        service,
        service_source,
        rate,
        sampler_from_env,
        export_timeout_s=timeout,
        export_timeout_source=timeout_source,
        shutdown_timeout_s=shutdown,
    )


TEMPORALITY_VARIABLE = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"
TEMPORALITIES = ("cumulative", "delta", "lowmemory")
HISTOGRAM_VARIABLE = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"
HISTOGRAM_AGGREGATIONS = ("explicit_bucket_histogram", "base2_exponential_bucket_histogram")


def metrics_preferences(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(temporality, histogram aggregation) the OTLP metric export prefers, from
    ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` (``cumulative`` by default,
    ``delta``, ``lowmemory``) and ``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION``
    (``explicit_bucket_histogram`` by default); ValueError naming the variable for another
    value (the SDK would only log it and fall back)."""
    env = os.environ if environ is None else environ
    temporality = env.get(TEMPORALITY_VARIABLE, "").strip().lower() or TEMPORALITIES[0]
    if temporality not in TEMPORALITIES:
        raise ValueError(
            f"{TEMPORALITY_VARIABLE} must be one of {', '.join(TEMPORALITIES)}, got {env[TEMPORALITY_VARIABLE]!r}"
        )
    histogram = env.get(HISTOGRAM_VARIABLE, "").strip().lower() or HISTOGRAM_AGGREGATIONS[0]
    if histogram not in HISTOGRAM_AGGREGATIONS:
        raise ValueError(
            f"{HISTOGRAM_VARIABLE} must be one of {', '.join(HISTOGRAM_AGGREGATIONS)}, got {env[HISTOGRAM_VARIABLE]!r}"
        )
    return temporality, histogram


def tracing_available() -> bool:
    """True when the ``tracing`` extra is installed (checked without importing it)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in _REQUIRED_MODULES)
    except (ImportError, ValueError):
        return False


def require_otel() -> None:
    if not tracing_available():
        raise TracingUnavailable(f"tracing needs the OpenTelemetry packages: {EXTRA_HINT}")
