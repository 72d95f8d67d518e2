"""``orchestrator replay PROJECT_ID|EVENTS.jsonl... [--otlp-endpoint URL] [tracing flags]``:
send a recorded run to any OTLP backend (or print its span tree without an endpoint).

The recorded events go through the same :class:`TracingObserver` a live run uses, fed
directly (not through the bus), so the spans have the names, parentage, attributes and
span events of a live run, and the recorded start and end times.  Trace and span ids are
new: the events do not record them (a live run's ids exist only if it was traced), and
new ids keep a replay from colliding with a trace a live run already sent.  A resumed
run's attempts are one trace each, as live; each later root links to the replayed roots
of the earlier ones.  A pair whose finish was never recorded (a killed attempt) ends at
that attempt's last event, as an error.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..domain.checkpoint import StoreError
from .errors import EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, OneLineParser, UsageError, one_line
from .parser import add_state_dir

if TYPE_CHECKING:
    from .. import events
    from ..observers.tracing import TracingObserver
    from ..report.load import Event

__all__ = ["replay_main", "replay_attempts"]

MODEL_TEXT_FIELDS = {"validation_failed": ("message",), "decomposition_fallback": ("reason",)}
"""Point-event fields that hold model text (marked again, so the content rule applies)."""
OMITTED = re.compile(r"\[content omitted: \d+ chars\]")


def build_replay_parser() -> OneLineParser:
    p = OneLineParser(
        prog="orchestrator replay",
        description="Send a recorded run (its events) to an OTLP backend as spans with their recorded times; "
        "without --otlp-endpoint, print the span tree.",
        epilog="Exit codes: 0 sent (or printed); 1 the backend did not take every span; 2 bad input.",
    )
    p.add_argument(
        "sources",
        nargs="+",
        metavar="PROJECT_ID|EVENTS.jsonl",
        help="a project id (read from the run store) or --events-jsonl files of one run",
    )
    add_state_dir(p)
    obs = p.add_argument_group("tracing")
    obs.add_argument("--otlp-endpoint", metavar="URL", help="OTLP collector, e.g. http://127.0.0.1:4317")
    obs.add_argument("--otlp-protocol", choices=("grpc", "http/protobuf"), help="OTLP protocol (default: from the URL)")
    obs.add_argument("--otlp-timeout", metavar="SECONDS", help="deadline of one export, in seconds")
    obs.add_argument("--service-name", help="service.name resource attribute")
    obs.add_argument("--sample-rate", type=float, help="trace sampling ratio 0..1 (default 1.0)")
    obs.add_argument(
        "--capture-content",
        action="store_true",
        help="put recorded prompt and completion text on the spans (when the run recorded them)",
    )
    obs.add_argument("--quiet", "-q", action="store_true", help="do not print the span tree")
    return p


def _model_text(value: object) -> object:
    """A recorded model-text value, marked again (one the recorder already reduced to its
    length stays as it is)."""
    from .. import events

    if isinstance(value, str) and not OMITTED.match(value):
        return events.ModelText(value)
    return value


def _payloads(items: Iterable[Event]) -> tuple[list[events.Event], int]:
    """Payload objects of the recorded events; events this version cannot rebuild (an
    unknown signal, a field missing) are skipped and counted."""
    from .. import events
    from ..observers.recorder import payload_from_dict

    out, skipped = [], 0
    for item in items:
        signal = events.SIGNALS_BY_NAME.get(str(item.get("signal")))
        if signal is None:
            skipped += 1
            continue
        known = set(signal.payload_type.__struct_fields__)
        # JSON made the payloads' tuples (task_ids, links) lists: back to what was sent
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in item.items() if k in known or k == "signal"}
        if data.get("validator") != "acceptance":  # the checks' summary names only the user's checks
            for field in MODEL_TEXT_FIELDS.get(signal.name, ()):
                data[field] = _model_text(data.get(field))
        attrs = data.get("attributes")
        if isinstance(attrs, dict) and "remediation.detail" in attrs:
            data["attributes"] = {**attrs, "remediation.detail": _model_text(attrs["remediation.detail"])}
        try:
            out.append(payload_from_dict(data))
        except (TypeError, ValueError):
            skipped += 1
    return out, skipped


def replay_attempts(attempts: list[list[Event]], observer: TracingObserver) -> tuple[int, int]:
    """Feed each attempt's events to ``observer`` (a TracingObserver made with
    ``attach_context=False``); returns (events replayed, events skipped).  A later
    attempt's root links to the replayed roots of the earlier ones."""
    from .. import events
    from ..observers.recorder import replay

    roots: list[dict[str, str]] = []  # each replayed root's whole carrier, in the configured format
    done = skipped = 0
    for events_ in attempts:
        first = dict(events_[0])
        first["links"] = list(roots)  # the recorded links point at the live trace, if there was one
        payloads, lost = _payloads([first, *events_[1:]])
        skipped += lost
        done += replay(payloads, observer)
        root = payloads[0] if payloads and isinstance(payloads[0], events.ProjectStarted) else None
        if root is not None and root.carrier:
            roots.append(dict(root.carrier))
        # pairs that never finished (a killed attempt) end where its record ends
        last = max(int(e["timestamp_ns"]) for e in events_)
        observer.book.end_orphans(root.project_id if root is not None else None, last)
    return done, skipped


def replay_main(argv: list[str]) -> int:
    from ..report import split_attempts
    from .observers import ObserverOptions, _tracing_config, validate_observer_options
    from .report_cmd import load_events

    try:
        args = build_replay_parser().parse_args(argv)
        opts = validate_observer_options(
            ObserverOptions(
                tracing=True,
                otlp_endpoint=args.otlp_endpoint,
                otlp_protocol=args.otlp_protocol,
                otlp_timeout=args.otlp_timeout,
                service_name=args.service_name,
                sample_rate=args.sample_rate,
                capture_content=args.capture_content,
                quiet=args.quiet,
            )
        )
        events_, _, _ = load_events(args.sources, args.state_dir)
        project_id, attempts = split_attempts(events_)
    except (UsageError, ValueError, StoreError) as exc:  # ReportInputError is a ValueError
        print(f"orchestrator: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    from rich.console import Console

    from .. import tracing
    from ..observers.tracing import TracingObserver

    console = Console(stderr=False)
    provider = tracing.configure_tracing(_tracing_config(opts, tracing.TracingConfig), console=console)
    if provider is None:
        print("orchestrator: error: tracing is off (OTEL_SDK_DISABLED=true): nothing to replay to", file=sys.stderr)
        return EXIT_USAGE
    resolved = tracing.tracing_state()["resolved"]
    endpoint = resolved.endpoint if resolved is not None else None
    observer = TracingObserver(provider, capture_content=opts.capture_content or None, attach_context=False)
    done, skipped = replay_attempts(attempts, observer)
    observer.close()
    spans = tracing.dev_spans()
    flushed = tracing.shutdown_tracing()
    if endpoint is None and not opts.quiet:
        from ..otel.devtree import print_span_tree

        print_span_tree(spans, console, f"Spans of {project_id} (replayed)")
    where = f"to {endpoint}" if endpoint else "(span tree above)"
    console.print(
        f"Replayed {done} events of {project_id} ({len(attempts)} attempt(s)) {where}"
        + (f"; {skipped} events this version cannot rebuild were skipped" if skipped else ""),
        highlight=False,
        soft_wrap=True,
    )
    return EXIT_OK if flushed else EXIT_RUN_FAILED
