"""Everything the CLI's observer flags do, in one call.

::

    try:
        session = setup_observers(args, console=console)   # argparse namespace or ObserverOptions
    except ValueError as exc:                              # bad URL, rate, observer spec, missing extra
        print(f"orchestrator: error: {exc}", file=sys.stderr); return 2
    try:
        state = asyncio.run(run(...))
    finally:
        ...print the summary...
        session.finish(state)    # unsubscribe, bounded flush, close the JSONL, dev-mode tree

Nothing of OpenTelemetry is imported unless tracing is on.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

    from ..domain.results import ProjectState
    from ..observers.base import Subscribable
    from ..observers.recorder import EventRecorder
    from ..otel.metrics import MetricsExport
    from ..tracing import TracingConfig

__all__ = ["ObserverOptions", "ObserverSession", "load_observers", "setup_observers", "validate_observer_options"]

logger = logging.getLogger("orchestrator.observers")

ObserverT = TypeVar("ObserverT", bound="Subscribable")


@dataclass
class ObserverOptions:
    """The CLI's observer flags (same names as the argparse destinations).

    ``observers`` may also be given as ``observer`` (argparse ``dest`` of a repeatable
    ``--observer``).  ``otlp_endpoint`` and ``metrics`` imply ``tracing``; ``metrics``
    exports the MetricsObserver's metrics to the same OTLP endpoint.  ``progress`` turns the live
    display on (it still stays off when the console is not a terminal or ``quiet``).
    """

    tracing: bool = False
    otlp_endpoint: str | None = None
    otlp_protocol: str | None = None
    otlp_timeout: float | None = None
    service_name: str | None = None
    sample_rate: float | None = None
    capture_content: bool = False
    metrics: bool = False
    observers: Sequence[str] = ()
    events_jsonl: str | None = None
    quiet: bool = False
    verbose: bool = False
    progress: bool = True

    @classmethod
    def from_namespace(cls, ns: OptionSource) -> ObserverOptions:
        """The options from parsed flags (an argparse namespace, or any object with these
        attributes) or a mapping of them; absent ones keep their defaults."""
        if isinstance(ns, cls):
            return ns
        # argparse's values are untyped by nature: what is read here is checked by
        # validate_observer_options before anything uses it
        values: Mapping[str, Any] = ns if isinstance(ns, Mapping) else vars(ns)
        get = values.get
        observers = get("observers")
        if observers is None:
            observers = get("observer")
        return cls(
            tracing=bool(get("tracing", False)),
            otlp_endpoint=get("otlp_endpoint"),
            otlp_protocol=get("otlp_protocol"),
            otlp_timeout=get("otlp_timeout"),
            service_name=get("service_name"),
            sample_rate=get("sample_rate"),
            capture_content=bool(get("capture_content", False)),
            metrics=bool(get("metrics", False)),
            observers=tuple(observers or ()),
            events_jsonl=get("events_jsonl"),
            quiet=bool(get("quiet", False)),
            verbose=bool(get("verbose", False)),
            progress=bool(get("progress", True)),
        )


OptionSource = ObserverOptions | Mapping[str, Any] | argparse.Namespace
"""Where observer options come from: parsed flags, a mapping of them (tests, embedding
programs), or options already made."""


class FinishReport(TypedDict, total=False):
    """What :meth:`ObserverSession.finish` did (for tests and logs)."""

    flushed: bool | None
    spans: int
    events_jsonl: str | None
    exported: int | None
    metrics_flushed: bool
    metrics_exported: int


def validate_observer_options(options: OptionSource) -> ObserverOptions:
    """Check the flags (and the ``OTEL_*`` variables they would combine with) before any
    work starts.  Returns normalised options; raises ValueError with a one-line message
    (the CLI exits 2): bad endpoint URL, protocol or sample rate, ``--tracing`` without
    the ``tracing`` extra, an ``--events-jsonl`` path that is a directory or cannot be
    written."""
    from ..otel.config import metrics_preferences, validate_timeout
    from ..tracing import (
        EXTRA_HINT,
        TracingConfig,
        resolve_config,
        tracing_available,
        validate_endpoint,
        validate_protocol,
        validate_sample_rate,
    )

    opts = ObserverOptions.from_namespace(options)
    if opts.sample_rate is not None:
        opts.sample_rate = validate_sample_rate(opts.sample_rate)
    if opts.otlp_endpoint is not None:
        opts.otlp_endpoint = validate_endpoint(opts.otlp_endpoint)
        opts.tracing = True
    if opts.otlp_protocol is not None:
        opts.otlp_protocol = validate_protocol(opts.otlp_protocol)
    if opts.otlp_timeout is not None:
        opts.otlp_timeout = validate_timeout(opts.otlp_timeout, "--otlp-timeout")
        opts.tracing = True
    if not opts.tracing and _endpoint_in_environment(os.environ):
        opts.tracing = True  # as under opentelemetry-instrument: an OTLP endpoint variable turns export on
    if opts.service_name is not None and not str(opts.service_name).strip():
        raise ValueError("--service-name must not be empty")
    if opts.events_jsonl is not None:  # found now, not after the output directory was made; never a FIFO
        from .paths import checked_path

        checked_path("--events-jsonl", opts.events_jsonl, "new file")
    if opts.metrics:
        opts.tracing = True
    if opts.tracing:
        if not tracing_available():
            raise ValueError(f"--tracing needs the OpenTelemetry packages (the 'tracing' extra): {EXTRA_HINT}")
        resolved = resolve_config(_tracing_config(opts, TracingConfig))  # validates the OTEL_* variables too
        if opts.metrics and resolved.enabled and not resolved.endpoint:
            raise ValueError("--metrics needs an OTLP endpoint (--otlp-endpoint or OTEL_EXPORTER_OTLP_ENDPOINT)")
        if opts.metrics:
            metrics_preferences()  # the temporality and histogram variables, before any work
    return opts


def _endpoint_in_environment(env: Mapping[str, str]) -> bool:
    """An OTLP traces endpoint is configured by variables (and not switched off)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(
        env.get(var, "").strip() for var in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def _tracing_config(opts: ObserverOptions, config_type: type[TracingConfig]) -> TracingConfig:
    config = config_type(
        enabled=True,
        otlp_endpoint=opts.otlp_endpoint,
        otlp_protocol=opts.otlp_protocol,
        dev_print=False,
        export_timeout_s=opts.otlp_timeout,
        capture_content=True if opts.capture_content else None,
    )
    if opts.service_name:  # (left unset, the config knows it was not given)
        config.service_name = opts.service_name
    if opts.sample_rate is not None:
        config.sample_rate = float(opts.sample_rate)
    return config


@dataclass
class ObserverSession:
    """What :func:`setup_observers` subscribed; :meth:`finish` undoes it (once)."""

    options: ObserverOptions
    console: Console | None = None
    observers: list[Subscribable] = field(default_factory=list)
    recorder: EventRecorder | None = None
    tracing_enabled: bool = False
    dev_mode: bool = False
    endpoint: str | None = None
    metrics_export: MetricsExport | None = None  # with --metrics
    finished: bool = False
    flushed: bool | None = None

    def finish(
        self, state: ProjectState | None = None, *, console: Console | None = None, timeout_s: float | None = None
    ) -> FinishReport:
        """Unsubscribe every observer (ending spans left open), flush spans within
        ``timeout_s`` (default: the export deadline plus a second, at most 30 s), close the
        events JSONL, and in dev mode print the span tree.  Never raises; returns what
        happened (for tests and logs)."""
        report: FinishReport = {"flushed": self.flushed, "spans": 0, "events_jsonl": None}
        if self.finished:
            return report
        self.finished = True
        for obs in reversed(self.observers):
            try:
                obs.unsubscribe()
            except Exception:  # noqa: BLE001 - one observer's close must not stop the others
                logger.warning("observer %s failed to unsubscribe", type(obs).__name__, exc_info=True)
        if self.recorder is not None:
            report["events_jsonl"] = str(self.recorder.jsonl_path)
        metrics_done: threading.Thread | None = None
        export = self.metrics_export
        if export is not None:  # flushed alongside the spans: one shared time bound
            metrics_done = threading.Thread(
                target=lambda: report.__setitem__("metrics_flushed", export.shutdown(timeout_s)),
                name="orchestrator-metrics-shutdown",
                daemon=True,
            )
            metrics_done.start()
        if self.tracing_enabled:
            from .. import tracing

            spans = tracing.dev_spans() if self.dev_mode else []
            exporter = tracing.tracing_state()["exporter"]
            self.flushed = tracing.shutdown_tracing(timeout_s)
            report["flushed"] = self.flushed
            report["exported"] = getattr(exporter, "exported", None)  # counted by the OTLP guard
            report["spans"] = len(spans)
            if self.dev_mode and not self.options.quiet:
                try:
                    from ..otel.devtree import print_span_tree

                    out = console or self.console
                    if out is None:
                        from rich.console import Console

                        out = Console()
                    title = None
                    if (
                        state is not None
                        and getattr(state, "project_id", None)
                        and len([s for s in spans if s.parent is None]) > 1
                    ):
                        title = f"Spans of {state.project_id}"
                    print_span_tree(spans, out, title)
                except Exception:  # noqa: BLE001 - a display problem must not change the exit code
                    logger.warning("could not print the span tree", exc_info=True)
        if metrics_done is not None and export is not None:
            metrics_done.join((timeout_s if timeout_s is not None else export.shutdown_timeout_s) + 0.5)
            report.setdefault("metrics_flushed", False)
            report["metrics_exported"] = export.exporter.exported
        return report

    def __enter__(self) -> ObserverSession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish()


def load_observers(options: OptionSource) -> list[Subscribable]:
    """The ``--observer`` specs loaded (ValueError, one line, for one that cannot be),
    so a bad spec is found before anything is written."""
    from ..observers.loading import load_observer

    return [load_observer(spec) for spec in ObserverOptions.from_namespace(options).observers]


def setup_observers(
    options: OptionSource, *, console: Console | None = None, loaded: list[Subscribable] | None = None
) -> ObserverSession:
    """Subscribe what the options ask for and return the session.

    Order of subscription (= order receivers are called): events JSONL recorder,
    tracing, metrics (``metrics``), logging (``verbose``), progress, then ``--observer`` ones in the given order.
    Raises ValueError (one line) for bad options or an observer that cannot be loaded;
    nothing stays subscribed then.  ``loaded``: the ``--observer`` ones, already loaded
    (:func:`load_observers`).
    """
    opts = validate_observer_options(options)
    session = ObserverSession(options=opts, console=console)

    def add(obs: ObserverT) -> ObserverT:
        obs.subscribe()
        session.observers.append(obs)
        return obs

    try:
        # load user observers first: a bad spec must fail before anything is connected
        from ..observers.loading import load_observer

        extra = loaded if loaded is not None else [load_observer(spec) for spec in opts.observers]
        if opts.events_jsonl:
            from ..observers.recorder import EventRecorder

            try:
                session.recorder = add(EventRecorder(jsonl_path=opts.events_jsonl, mode="w", keep=False))
            except OSError as exc:
                raise ValueError(f"--events-jsonl {opts.events_jsonl}: {exc.strerror or exc}") from None
        resolved = None
        if opts.tracing:
            from .. import tracing

            provider = tracing.configure_tracing(_tracing_config(opts, tracing.TracingConfig), console=console)
            resolved = tracing.tracing_state()["resolved"]
            if provider is not None and resolved is not None:
                session.tracing_enabled = True
                session.endpoint = resolved.endpoint
                session.dev_mode = resolved.endpoint is None
            else:
                logger.warning("tracing is off: OTEL_SDK_DISABLED=true")
        if opts.metrics and session.tracing_enabled and resolved is not None:
            from .. import tracing
            from ..observers.metrics import MetricsObserver
            from ..otel.metrics import configure_metrics

            session.metrics_export = configure_metrics(_tracing_config(opts, tracing.TracingConfig), resolved)
            add(MetricsObserver(session.metrics_export.provider))
        if opts.verbose:
            from ..observers.logging import LoggingObserver

            add(LoggingObserver())
        if opts.progress and not opts.quiet:
            from ..observers.progress import ProgressObserver

            progress = ProgressObserver(console, quiet=opts.quiet)
            if progress.enabled:
                add(progress)
        for obs in extra:
            add(obs)
    except BaseException:
        session.finish(timeout_s=1.0)
        raise
    return session
