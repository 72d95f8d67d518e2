"""``orchestrator report PROJECT_ID|EVENTS.jsonl... [-o report.html] [--state-dir DIR]``:
one self-contained HTML file of a run (timeline, cost, scores, budget, tables), and the
``--report FILE`` of ``run`` and ``resume``.

A project id is read from the run store (its attempts' event logs, its notes and
status); files are ``--events-jsonl`` files (several: the attempts of a resumed run).
Bad input - no such file or id, not an events file, events of several runs, an output
path that cannot be written - is one line and exit 2, before anything is written.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..domain.checkpoint import StoreError
from .errors import EXIT_OK, EXIT_USAGE, OneLineParser, UsageError, one_line
from .parser import add_state_dir

if TYPE_CHECKING:
    from rich.console import Console

    from ..report import Report
    from ..report.load import Event

__all__ = [
    "report_main",
    "check_report_path",
    "write_run_report",
    "load_events",
    "events_from_store",
    "write_batch_report",
]


def build_report_parser() -> OneLineParser:
    p = OneLineParser(
        prog="orchestrator report",
        description="Write one self-contained HTML file of a run: timeline, cost and tokens, scores, budget, "
        "checks, policy decisions, remediations, errors. It needs no network: open it from disk.",
        epilog="Exit codes: 0 written; 2 bad input (no such run or file, not an events file, an output path "
        "that cannot be written).",
    )
    p.add_argument(
        "sources",
        nargs="+",
        metavar="PROJECT_ID|BATCH_ID|EVENTS.jsonl",
        help="a project id (read from the run store), --events-jsonl files of one run, or a batch id "
        "(one row per project)",
    )
    p.add_argument("--output", "-o", metavar="FILE", help="where to write (default: report-<project id>.html)")
    add_state_dir(p)
    return p


def check_report_path(path: str, flag: str = "--report") -> Path:
    """The path a report will be written to: not a directory, in a directory that exists
    and can be written (UsageError, one line)."""
    target = Path(path).expanduser()
    if target.is_symlink():
        raise UsageError(f"{flag} {path}: is a symbolic link; not followed")
    if target.is_dir():
        raise UsageError(f"{flag} {path}: is a directory")
    parent = target.parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: no such directory: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"{flag} {path}: not writable")
    return target


Loaded = tuple[list["Event"], list[str], str | None]
"""Events, the run's notes and its stored status (the last two from the run store)."""


def load_events(sources: list[str], state_dir: str | None) -> Loaded:
    """The events of the sources: existing files are events files, anything else a
    project id of the run store (UsageError/ReportInputError, one line)."""
    from ..report import events_from_files

    files = [s for s in sources if Path(s).exists()]
    ids = [s for s in sources if s not in files]
    if ids and files:
        raise UsageError(f"give a project id or events files, not both ({ids[0]} is no file here)")
    if len(ids) > 1:
        raise UsageError(f"one project id at a time (got {', '.join(ids)}); no such files either")
    if files:
        return events_from_files(files), [], None
    return events_from_store(ids[0], state_dir)


def events_from_store(project_id: str, state_dir: str | None) -> Loaded:
    """A run's events from the run store: every attempt's event log."""
    from ..report import events_from_lines
    from .store_wiring import open_store

    store = open_store(state_dir, create=False)  # a read-only command: no store is made
    try:
        cp = store.load(project_id)
        if cp is None:
            raise UsageError(f"{project_id}: no such file, and no run with this id in {store.path}")
        logs = store.event_logs(project_id)
        live = store.is_running(project_id)
    finally:
        store.close()
    if not logs:
        raise UsageError(
            f"{project_id}: the run store has no event log of this run (made by an older version, "
            "or its store could not be written); give its --events-jsonl file instead"
        )
    status = "running" if live and cp.status == "running" else ("stopped" if cp.status == "running" else cp.status)
    return events_from_lines(logs, f"{store.path}: {project_id}"), list(cp.notes), status


def _write(html: str, target: Path) -> None:
    """Written whole or not at all, private (0600) like every file a run leaves, through
    its directory's descriptor: a symbolic link where it goes is refused, never followed."""
    from ..files import OutputDir

    with OutputDir(target.parent) as out:
        out.write(target.name, html)


def make_report(loaded: Loaded, output: str | None) -> tuple[Path, Report]:
    from ..report import build_report, render_html

    events, notes, status = loaded
    report = build_report(events, notes=notes, status=status)
    target = check_report_path(output, "--output") if output else Path(f"report-{report.project_id}.html")
    html = render_html(report)
    _write(html, target)
    return target, report


def _batch_summary(batch_id: str, state_dir: str | None) -> dict[str, Any]:
    """``batch-summary.json`` as stored: JSON read back from the store (a boundary, hence Any)."""
    from .store_wiring import open_store

    record = open_store(state_dir, create=False).batches.load(batch_id)
    if record is None:
        raise UsageError(f"unknown batch id {batch_id!r} (see 'orchestrator runs --batches')")
    if not record.summary:
        raise UsageError(
            f"batch {batch_id} has no summary yet (it is running, or was killed: "
            f"'orchestrator batch resume {batch_id}')"
        )
    return dict(record.summary)


def write_batch_report(summary: dict[str, Any], path: str) -> Path:
    """A batch's report (one row per project) at ``path``; OSError when it cannot be written."""
    from ..report.batch import render_batch_html

    target = Path(path).expanduser()
    _write(render_batch_html(summary), target)
    return target


def report_main(argv: list[str]) -> int:
    from ..report import ReportInputError

    try:
        args = build_report_parser().parse_args(argv)
        if args.output:
            check_report_path(args.output, "--output")
        if len(args.sources) == 1 and args.sources[0].startswith("batch-") and not Path(args.sources[0]).exists():
            summary = _batch_summary(args.sources[0], args.state_dir)
            target = write_batch_report(summary, args.output or f"report-{args.sources[0]}.html")
            print(
                f"Report of {args.sources[0]} ({len(summary.get('results') or [])} projects, {summary.get('status')})"
                f" written to {target}; open {target.resolve().as_uri()}"
            )
            return EXIT_OK
        target, report = make_report(load_events(args.sources, args.state_dir), args.output)
    except (UsageError, ReportInputError, StoreError) as exc:
        print(f"orchestrator: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"orchestrator: error: cannot write the report: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    size = target.stat().st_size
    print(
        f"Report of {report.project_id} ({len(report.attempts)} attempt(s), {report.status}) written to {target} "
        f"({size / 1024:.0f} KB); open {target.resolve().as_uri()}"
    )
    return EXIT_OK


def write_run_report(project_id: str, state_dir: str | None, path: str, console: Console) -> bool:
    """``--report FILE`` at the end of a run or resume (also after Ctrl-C or a failure):
    the report of the whole run, from the store.  Never raises: one line on failure."""
    try:
        target, _ = make_report(events_from_store(project_id, state_dir), path)
    except Exception as exc:  # noqa: BLE001 - the run's own outcome stands; say why there is no report
        from ..redaction import redact

        print(
            f"orchestrator: error: no report written to {path}: {one_line(redact(str(exc)) or type(exc).__name__)}",
            file=sys.stderr,
        )
        return False
    console.print(f"Report written to {target}", highlight=False, soft_wrap=True)
    return True
