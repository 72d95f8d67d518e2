"""OpenTelemetry export plumbing that keeps a bad collector from hurting a run.

* :class:`ExportGuard` holds the fault rules shared by span and metric export: never
  raise, report the first failure as one warning line naming the endpoint (no
  traceback), count what was exported and what was lost.
* :class:`GuardedSpanExporter` wraps an OTLP span exporter with a guard and can be
  abandoned at shutdown so no export outlives the bounded flush (the metric wrapper is in
  :mod:`.metrics`).
* :class:`QuietExporterLogs` swallows the OTLP exporters' and batch processor's own log
  records (retries, "Failed to export", "Queue full", tracebacks) while our exporter is
  installed; their last message is kept as the detail of our one warning.
* :func:`run_bounded` runs a blocking call (flush, shutdown) in a daemon thread and
  waits at most a given time for it.

Imported only when tracing is on.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

logger = logging.getLogger("orchestrator.tracing")

_NOISY_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk.trace.export",
)


class QuietExporterLogs(logging.Filter):
    """Drops every record of the OTLP exporter/batch-processor loggers while installed."""

    def __init__(self, extra_loggers: Sequence[str] = ()) -> None:
        super().__init__("orchestrator-quiet-otlp")
        self.loggers = (*_NOISY_LOGGERS, *extra_loggers)
        self.messages: list[str] = []  # the first few swallowed warnings, for the detail
        self.dropped = 0
        self.refused_seen = threading.Event()  # nothing listens at the endpoint

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.dropped += 1
            if "Connection refused" in str(record.msg) or "Connection refused" in str(record.args):
                self.refused_seen.set()
            if len(self.messages) < 20:
                try:
                    self.messages.append(record.getMessage())
                except Exception:  # noqa: BLE001 - a malformed record must not escape a filter
                    self.messages.append(str(record.msg))
        return False

    def install(self) -> None:
        for name in self.loggers:
            logging.getLogger(name).addFilter(self)

    def uninstall(self) -> None:
        for name in self.loggers:
            logging.getLogger(name).removeFilter(self)

    def detail(self) -> str:
        """A short reason from the swallowed messages: refused, a gRPC status, an HTTP
        status, a timeout; else the last message's first line."""
        text = "\n".join(self.messages)
        if not text:
            return ""
        if "Connection refused" in text:
            return "connection refused"
        for pattern, template in _DETAILS:
            match = re.search(pattern, text)
            if match:
                return template.format(*match.groups())
        if re.search(r"(?i)timed? ?out", text):
            return "timed out"
        return self.messages[-1].splitlines()[0][:160]


_DETAILS = (
    (r"(?:error code: |Transient error )StatusCode\.(\w+)", "gRPC {}"),
    (r"batch code: (\d{3})", "HTTP {}"),
    (r"Transient error ([A-Z][A-Za-z ]+?) encountered", "HTTP {}"),
)


class ExportGuard:
    """The fault rules every exporter of ours follows, whatever it exports: never raise,
    count what went out and what was lost, and say the first problem in one warning
    line naming the endpoint (later ones say nothing new)."""

    def __init__(self, what: str, endpoint: str, quiet: QuietExporterLogs | None = None) -> None:
        self.what = what  # "span" or "metric"
        self.endpoint = endpoint
        self.quiet = quiet
        self.exported = 0
        self.failed = 0
        self.abandoned = False
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

    def export(self, call: Callable[[], object], success: object, count: int, consequence: str) -> bool:
        """Run one export; True when it succeeded.  ``count`` items are booked as
        exported or failed; a failure (or an exception) gives the one warning."""
        if self.abandoned:
            self.failed += count
            return False
        detail = ""
        try:
            ok = call() == success
        except Exception as exc:  # noqa: BLE001 - a broken exporter must not reach the SDK's traceback log
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        if ok:
            self.exported += count
            return True
        self.failed += count
        if not detail and self.quiet is not None:
            detail = self.quiet.detail()
        self.warn_once(f"{self.what} export to {self.endpoint} failed{f' ({detail})' if detail else ''}; "
                       f"{consequence.format(count=count)}")
        return False

    def timed_out(self, timeout_s: float, dropped: str) -> None:
        """The bounded flush gave up: one warning with what the collector answered, if anything."""
        detail = self.quiet.detail() if self.quiet is not None else ""
        if detail == "connection refused":  # given up at once: nothing listens there
            self.warn_once(f"{self.what} export to {self.endpoint} failed ({detail}); {dropped}")
            return
        self.warn_once(f"{self.what} export to {self.endpoint} did not finish within {timeout_s:g} s "
                       f"({detail or 'collector down or hanging'}); {dropped}")


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


class GuardedSpanExporter(Guarded, SpanExporter):
    """Wraps the real span exporter with an :class:`ExportGuard`; can be abandoned at
    shutdown so no export outlives the bounded flush."""

    def __init__(self, inner: SpanExporter, endpoint: str, quiet: QuietExporterLogs | None = None) -> None:
        self.inner = inner
        self.guard = ExportGuard("span", endpoint, quiet)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self.guard.export(lambda: self.inner.export(spans), SpanExportResult.SUCCESS, len(spans),
                               "{count} spans were not exported; the run goes on")
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        except Exception:  # noqa: BLE001
            pass

    def abandon(self) -> None:
        """Stop exporting now: later batches fail at once, retries and channels end."""
        self.guard.abandoned = True
        self.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            return self.inner.force_flush(timeout_millis)
        except Exception:  # noqa: BLE001
            return False


class SpanCounter(SpanProcessor):
    """Counts ended spans, so a final warning can say how many were not exported
    (and say nothing when all were, however slowly)."""

    def __init__(self) -> None:
        self.ended = 0
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self.ended += 1


def run_bounded(fn: Callable[[], object], timeout_s: float, name: str = "orchestrator-otel-flush",
                give_up: Callable[[], bool] | None = None) -> bool:
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
