"""Run reports: one self-contained HTML file per run (timeline, cost, scores, budget,
tables), made from the run's events - the run store's event log or ``--events-jsonl``
files.

    from orchestrator.report import build_report, events_from_files, render_html
    html = render_html(build_report(events_from_files(["run.jsonl"])))

Reading the store and writing files is the command line's job (``orchestrator report``,
``--report FILE``); this package turns events into a page.
"""

from __future__ import annotations

from .load import ReportInputError, events_from_files, events_from_lines, split_attempts
from .model import Report, build_report
from .render import render_html

__all__ = [
    "Report",
    "ReportInputError",
    "build_report",
    "events_from_files",
    "events_from_lines",
    "render_html",
    "split_attempts",
]
