"""OpenTelemetry export plumbing that keeps a bad collector from hurting a run.

* :class:`QuietSpanExporter` wraps the OTLP span exporter (as logfire's exporter of the
  same name does): it delegates every call, never raises, counts what was exported and
  what failed, and reports the first failure as one warning line naming the endpoint and
  why.  It can be abandoned at shutdown so no export outlives the bounded flush.  The
  metric wrapper (:mod:`.metrics`) shares its rules through :class:`ExportGuard`.
* Why an export failed is asked of the endpoint itself (:class:`EndpointProbe`: a TCP
  connection, then an empty export request over the same protocol), not read from the
  exporter's log text, whose wording changes between releases.
* The OTLP exporters log every retry; while one of our exports runs, the records of
  their package (the public ``opentelemetry.exporter.otlp`` logger and its children) are
  held back (:func:`quiet_otlp_logs`), since our one warning already says it.
* :class:`ExportGate` sits before the batch processor: it counts ended spans and drops
  (and counts) the ones its queue could not take, so the batch processor never logs
  "Queue full" and the final warning can say how many spans were lost.
* :func:`run_bounded` runs a blocking call (flush, shutdown) in a daemon thread and
  waits at most a given time for it.

Imported only when tracing is on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.util.re import parse_env_headers

from .config import HTTP_PROTOBUF

logger = logging.getLogger("orchestrator.tracing")

OTLP_LOGGER = "opentelemetry.exporter.otlp"
"""The OTLP exporters' package logger: every exporter module logs below it."""
TRACE_SERVICE = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
METRICS_SERVICE = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
PROBE_TIMEOUT_S = 1.0
DEFAULT_QUEUE_SIZE = 2048  # the specification's defaults for OTEL_BSP_MAX_QUEUE_SIZE
DEFAULT_BATCH_SIZE = 512  # and OTEL_BSP_MAX_EXPORT_BATCH_SIZE


# ---------------------------------------------------------------------------------------
# The exporters' own log records
# ---------------------------------------------------------------------------------------

_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved = logging.NOTSET


@contextmanager
def quiet_otlp_logs() -> Iterator[None]:
    """Hold the OTLP exporter package's log records back while the block runs (nested and
    concurrent blocks share one hold; the level is restored when the last one ends)."""
    global _quiet_depth, _quiet_saved
    with _quiet_lock:
        if _quiet_depth == 0:
            otlp = logging.getLogger(OTLP_LOGGER)
            _quiet_saved = otlp.level
            otlp.setLevel(logging.CRITICAL + 1)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                logging.getLogger(OTLP_LOGGER).setLevel(_quiet_saved)


# ---------------------------------------------------------------------------------------
# Why exports fail: asked of the endpoint
# ---------------------------------------------------------------------------------------


def export_headers(
    headers: Mapping[str, str] | None, signal: str, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The headers the OTLP exporter sends: the given ones, else
    ``OTEL_EXPORTER_OTLP_<SIGNAL>_HEADERS`` or ``OTEL_EXPORTER_OTLP_HEADERS``."""
    if headers:
        return dict(headers)
    env = os.environ if environ is None else environ
    for var in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"):
        if env.get(var, "").strip():
            return dict(parse_env_headers(env[var], liberal=True))
    return {}


class EndpointProbe:
    """Asks an OTLP endpoint why exports fail: ``connection refused`` (nothing listens),
    ``no connection within 1 s``, then over the export's own protocol an empty export
    request (no spans, valid for any collector): ``HTTP 503 Service Unavailable``,
    ``gRPC UNAVAILABLE``, ``no answer within 1 s``; an empty reason when it answers well."""

    def __init__(
        self,
        endpoint: str,
        protocol: str | None,
        headers: Mapping[str, str] | None = None,
        service: str = TRACE_SERVICE,
        timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        self.endpoint = endpoint
        self.protocol = protocol
        self.headers = dict(headers or {})
        self.service = service
        self.timeout_s = timeout_s
        parts = urlsplit(endpoint)
        self.secure = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.secure else 80)
        self._refused_at = 0.0
        self._refused = False

    def connect(self) -> str:
        """'' when a TCP connection opens, else why not."""
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout_s):
                return ""
        except ConnectionRefusedError:
            return "connection refused"
        except TimeoutError:
            return f"no connection within {self.timeout_s:g} s"
        except OSError as exc:
            return exc.strerror or type(exc).__name__

    def refused(self) -> bool:
        """Nothing listens at the endpoint (asked at most twice a second)."""
        now = time.monotonic()
        if now - self._refused_at >= 0.5:
            self._refused_at = now
            self._refused = self.connect() == "connection refused"
        return self._refused

    def reason(self) -> str:
        why = self.connect()
        if why:
            return why
        try:
            return self._http() if self.protocol == HTTP_PROTOBUF else self._grpc()
        except Exception as exc:  # noqa: BLE001 - a probe must never raise into the exporter
            return type(exc).__name__

    def _http(self) -> str:
        request = urllib.request.Request(
            self.endpoint, data=b"", method="POST", headers={**self.headers, "Content-Type": "application/x-protobuf"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s):  # noqa: S310 - the configured endpoint
                return ""
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code} {exc.reason}".strip()
        except (urllib.error.URLError, OSError) as exc:
            cause = getattr(exc, "reason", exc)
            if isinstance(cause, ConnectionRefusedError):
                return "connection refused"
            if isinstance(cause, TimeoutError):
                return f"no answer within {self.timeout_s:g} s"
            return str(cause)[:160]

    def _grpc(self) -> str:
        import grpc

        target = f"{self.host}:{self.port}"
        channel = (
            grpc.secure_channel(target, grpc.ssl_channel_credentials())
            if self.secure
            else grpc.insecure_channel(target)
        )
        try:
            export = channel.unary_unary(self.service)  # raw bytes: b"" is an empty export request
            export(b"", timeout=self.timeout_s, metadata=tuple(self.headers.items()) or None)
            return ""
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return f"no answer within {self.timeout_s:g} s"
            return f"gRPC {code.name}" if code is not None else "gRPC error"
        finally:
            channel.close()


# ---------------------------------------------------------------------------------------
# The fault rules
# ---------------------------------------------------------------------------------------


class ExportGuard:
    """The fault rules every exporter of ours follows, whatever it exports: never raise,
    count what went out and what was lost, and say the first problem in one warning
    line naming the endpoint (later ones say nothing new)."""

    def __init__(self, what: str, endpoint: str, probe: EndpointProbe | None = None) -> None:
        self.what = what  # "span" or "metric"
        self.endpoint = endpoint
        self.probe = probe
        self.exported = 0
        self.failed = 0
        self.abandoned = False
        self.reason = ""  # why the first failure happened, once known
        self._warned = False
        self._lock = threading.Lock()

    @property
    def warned(self) -> bool:
        return self._warned

    def warn_once(self, message: str) -> None:
        with self._lock:
            first, self._warned = not self._warned, True
        if first:
            logger.warning("%s", message)

    def _why(self) -> str:
        if not self.reason and self.probe is not None:
            self.reason = self.probe.reason()
        return self.reason

    def export(self, call: Callable[[], object], success: object, count: int, consequence: str) -> bool:
        """Run one export; True when it succeeded.  ``count`` items are booked as
        exported or failed; a failure (or an exception) gives the one warning."""
        if self.abandoned:
            self.failed += count
            return False
        try:
            with quiet_otlp_logs():
                ok = call() == success
        except Exception as exc:  # noqa: BLE001 - a broken exporter must not reach the SDK's traceback log
            ok = False
            self.reason = self.reason or f"{type(exc).__name__}: {exc}"[:200]
        if ok:
            self.exported += count
            return True
        self.failed += count
        if not self._warned:
            why = self._why()
            self.warn_once(
                f"{self.what} export to {self.endpoint} failed{f' ({why})' if why else ''}; "
                f"{consequence.format(count=count)}"
            )
        return False

    def timed_out(self, timeout_s: float, dropped: str) -> None:
        """The bounded flush gave up: one warning with what the endpoint answers, if anything."""
        if self._warned:
            return
        why = self._why()
        if why == "connection refused":  # given up at once: nothing listens there
            self.warn_once(f"{self.what} export to {self.endpoint} failed ({why}); {dropped}")
            return
        self.warn_once(
            f"{self.what} export to {self.endpoint} did not finish within {timeout_s:g} s "
            f"({why or 'collector down or hanging'}); {dropped}"
        )

    def quietly(self, call: Callable[[], object]) -> object:
        """A shutdown or flush step of the wrapped exporter: no exception, no log records."""
        try:
            with quiet_otlp_logs():
                return call()
        except Exception:  # noqa: BLE001
            return None


class Guarded:
    """What a guarded exporter tells about itself (its guard's counters)."""

    guard: ExportGuard

    @property
    def endpoint(self) -> str:
        return self.guard.endpoint

    @property
    def exported(self) -> int:
        """Spans exported (span exporter) or successful export requests (metric exporter)."""
        return self.guard.exported

    @property
    def failed(self) -> int:
        return self.guard.failed


class QuietSpanExporter(Guarded, SpanExporter):
    """Wraps the real span exporter with an :class:`ExportGuard`; can be abandoned at
    shutdown so no export outlives the bounded flush."""

    def __init__(self, inner: SpanExporter, endpoint: str, probe: EndpointProbe | None = None) -> None:
        self.inner = inner
        self.guard = ExportGuard("span", endpoint, probe)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self.guard.export(
            lambda: self.inner.export(spans),
            SpanExportResult.SUCCESS,
            len(spans),
            "{count} spans were not exported; the run goes on",
        )
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.guard.quietly(self.inner.shutdown)

    def abandon(self) -> None:
        """Stop exporting now: later batches fail at once, retries and channels end."""
        self.guard.abandoned = True
        self.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.guard.quietly(lambda: self.inner.force_flush(timeout_millis)) is True


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(env.get(name, "").strip())
    except ValueError:
        return default
    return value if value > 0 else default


def batch_sizes(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(queue size, export batch size) of the batch processor: ``OTEL_BSP_MAX_QUEUE_SIZE``
    (default 2048) and ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` (default 512, at most the queue)."""
    env = os.environ if environ is None else environ
    queue = _positive_int(env, "OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_QUEUE_SIZE)
    return queue, min(queue, _positive_int(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", DEFAULT_BATCH_SIZE))


class ExportGate(SpanProcessor):
    """Counts ended spans and hands them to ``processor`` (the batch processor) unless
    ``queue_size`` spans already wait for export: those are dropped and counted here, so
    the final warning can say how many were not exported (and say nothing when all were,
    however slowly)."""

    def __init__(
        self, processor: SpanProcessor, exporter: QuietSpanExporter | None = None, queue_size: int = DEFAULT_QUEUE_SIZE
    ) -> None:
        self.processor = processor
        self.exporter = exporter
        self.queue_size = queue_size
        self.ended = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.processor.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self.ended += 1
            exporter = self.exporter
            if exporter is not None:
                waiting = self.ended - self.dropped - exporter.guard.exported - exporter.guard.failed
                if waiting > self.queue_size:
                    self.dropped += 1
                    return
        self.processor.on_end(span)

    def shutdown(self) -> None:
        self.processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.processor.force_flush(timeout_millis)


def run_bounded(
    fn: Callable[[], object],
    timeout_s: float,
    name: str = "orchestrator-otel-flush",
    give_up: Callable[[], bool] | None = None,
) -> bool:
    """Run ``fn`` in a daemon thread; True when it finished within ``timeout_s``.  With
    ``give_up``, stop waiting as soon as it says there is no point (checked every 50 ms)."""
    done = threading.Event()

    def target() -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - shutdown errors are not the run's problem
            logger.debug("tracing shutdown step failed", exc_info=True)
        finally:
            done.set()

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    if give_up is None:
        return done.wait(max(0.0, timeout_s))
    deadline = time.monotonic() + max(0.0, timeout_s)
    while not done.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
        if time.monotonic() >= deadline or give_up():
            return done.is_set()
    return True
