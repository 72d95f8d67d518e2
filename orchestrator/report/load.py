"""Where a report's events come from: JSON-lines files (``--events-jsonl``) or the run
store's event log, as plain dicts, split into attempts.

Why dicts and not payload objects: the lines may come from another version of the
program (a field added or gone), and a report must still read them; a line without the
few fields every event has is bad input (one line, exit 2), a signal this version does
not know is skipped.  (Not the recorder's ``read_jsonl``: a file of a killed run may end
in half a line, which is no reason to refuse the rest.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..domain.errors import OrchestratorError

__all__ = ["ReportInputError", "events_from_files", "events_from_lines", "split_attempts"]

LoadedJson = dict[str, Any]
"""A JSON object read from an event log: its values are checked where they are used (a
report never trusts a file's shape), so this is one of the few true ``Any`` boundaries."""
Event = LoadedJson


class ReportInputError(OrchestratorError, ValueError):
    """Input a report cannot be made from (one line; the CLI exits 2)."""


def _checked(data: object, where: str) -> Event:
    if not isinstance(data, dict):
        raise ReportInputError(f"{where}: not an event (a JSON object was expected)")
    if not isinstance(data.get("signal"), str):
        raise ReportInputError(f"{where}: not an event (no 'signal' name)")
    ts = data.get("timestamp_ns")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise ReportInputError(f"{where}: {data['signal']} has no whole 'timestamp_ns'")
    if not isinstance(data.get("correlation_id"), str):
        raise ReportInputError(f"{where}: {data['signal']} has no 'correlation_id'")
    return data


def events_from_files(paths: Sequence[str | Path]) -> list[Event]:
    """Every event of the files, in file order (each file in the order written).  A last
    line cut short (the process was killed while writing it) is left out; any other line
    that is not an event is bad input."""
    out: list[Event] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            raise ReportInputError(f"{path}: is a directory, not an events file")
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ReportInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise ReportInputError(f"{path}: not a text file of JSON lines") from None
        lines = text.split("\n")
        last = max((n for n, line in enumerate(lines) if line.strip()), default=-1)
        for n, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as exc:
                if n == last and not text.endswith("\n"):
                    break  # cut by a kill mid-write
                raise ReportInputError(f"{path}:{n + 1}: not a JSON line ({exc})") from None
            out.append(_checked(data, f"{path}:{n + 1}"))
    if not out:
        raise ReportInputError(f"{', '.join(str(p) for p in paths)}: no events")
    return out


def events_from_lines(logs: Mapping[int, Iterable[str]], where: str) -> list[Event]:
    """The run store's event logs (attempt -> JSON lines) as events, attempts in order."""
    out: list[Event] = []
    for attempt in sorted(logs):
        for n, line in enumerate(logs[attempt], 1):
            try:
                data = json.loads(line)
            except ValueError:
                raise ReportInputError(f"{where}: attempt {attempt}, event {n}: not a JSON line") from None
            out.append(_checked(data, f"{where}: attempt {attempt}, event {n}"))
    return out


def split_attempts(events: Sequence[Event]) -> tuple[str, list[list[Event]]]:
    """(project id, the events of each attempt in time order): an attempt starts at its
    ``project_started``; events before the first one belong to none and are dropped.
    Events of several projects are bad input."""
    projects = sorted({e["project_id"] for e in events if e["signal"] == "project_started" and e.get("project_id")})
    if not projects:
        raise ReportInputError("no run in these events (no project_started event)")
    if len(projects) > 1:
        shown = ", ".join(projects[:4]) + (" ..." if len(projects) > 4 else "")
        raise ReportInputError(f"these events hold {len(projects)} runs ({shown}); give the events of one")
    project = projects[0]
    attempts: list[list[Event]] = []
    for event in events:
        if event.get("project_id") not in (project, None):
            continue
        if event["signal"] == "project_started":
            attempts.append([])
        if attempts:
            attempts[-1].append(event)
    attempts.sort(key=lambda a: a[0]["timestamp_ns"])
    return project, attempts
