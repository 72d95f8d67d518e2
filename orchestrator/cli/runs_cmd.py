"""``orchestrator runs``: the history of runs kept in the run store.

``runs`` lists them newest first (id, started, description, status, cost, tasks done of
total, resumable or why not); ``runs show ID`` prints a run's summary table and what its
checkpoint holds; ``runs rm ID...`` or ``runs rm --older-than AGE`` removes runs.  Bad ids
and a store that cannot be read are one line and exit 2.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..domain.checkpoint import FINISHED_STATUSES, ProjectBusyError, StoreError, UnknownProjectError
from .errors import EXIT_OK, EXIT_USAGE, OneLineParser, UsageError, one_line
from .parser import add_state_dir
from .store_wiring import open_store

if TYPE_CHECKING:
    from rich.console import Console

    from ..state import RunStore
    from ..state.store import RunRow

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def build_runs_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="orchestrator runs", description="Runs kept in the run store, newest first.")
    add_state_dir(p)
    p.add_argument("--batch", metavar="BATCH_ID", help="only the projects of this batch, in the batch file's order")
    p.add_argument("--batches", action="store_true", help="list the batches instead of the runs")
    sub = p.add_subparsers(dest="action", parser_class=OneLineParser)
    show = sub.add_parser("show", help="print a run's summary table")
    show.add_argument("project_id", metavar="ID")
    add_state_dir(show)
    rm = sub.add_parser("rm", help="remove runs by id, or those last updated more than AGE ago")
    rm.add_argument("project_ids", metavar="ID", nargs="*")
    rm.add_argument("--older-than", metavar="AGE", help="e.g. 30m, 12h, 7d, 2w (a bare number is days)")
    add_state_dir(rm)
    return p


def parse_age(text: str) -> float:
    """``7d`` -> seconds.  A bare number is days."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not match:
        raise UsageError(f"--older-than: expected an age like 30m, 12h, 7d or 2w, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or "d"]


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def _resumable(row: RunRow) -> str:
    if row.live:
        return "no: running now"
    if row.status in FINISHED_STATUSES:
        return "no: finished"
    return "yes"


def list_runs(store: RunStore, console: Console) -> None:
    from rich.table import Table

    rows = store.runs()
    if not rows:
        console.print(f"no runs in {store.path}")
        return
    table = Table(title=f"Runs in {store.path}")
    for col in ("id", "started", "description", "status", "cost $", "tasks", "attempts", "resumable"):
        table.add_column(
            col,
            justify="right" if col in ("cost $", "tasks", "attempts") else "left",
            overflow="fold",
            no_wrap=col == "id",
        )
    for r in rows:
        description = r.description if len(r.description) <= 50 else r.description[:47] + "..."
        table.add_row(
            r.project_id,
            _when(r.started_at),
            description,
            r.shown_status,
            f"{r.spent_usd:.6f}",
            f"{r.tasks_done}/{r.tasks_total}",
            str(r.attempt),
            _resumable(r),
        )
    console.print(table)


def list_batch(store: RunStore, batch_id: str, console: Console) -> None:
    """A batch's projects, in order: name, project id, status, cost, tasks, attempts."""
    from rich.markup import escape
    from rich.table import Table

    record = store.batches.load(batch_id)
    if record is None:
        raise UsageError(f"unknown batch id {batch_id!r} (see 'orchestrator runs --batches')")
    spent = 0.0
    table = Table(title=f"Batch {batch_id}: {record.status}, started {_when(record.started_at)}")
    for col in ("#", "name", "project", "status", "cost $", "tasks", "attempts"):
        table.add_column(
            col,
            justify="right" if col in ("#", "cost $", "tasks", "attempts") else "left",
            overflow="fold",
            no_wrap=col == "project",
        )
    for project, row in store.batches.runs(batch_id):
        if row is None:
            table.add_row(str(project.position), escape(project.name), project.project_id, "not started", "-", "-", "0")
            continue
        spent += row.spent_usd
        table.add_row(
            str(project.position),
            escape(project.name),
            row.project_id,
            row.shown_status,
            f"{row.spent_usd:.6f}",
            f"{row.tasks_done}/{row.tasks_total}",
            str(row.attempt),
        )
    console.print(table)
    console.print(
        f"{len(record.projects)} projects, ${spent:.6f} spent of the batch's ${record.budget_usd:g}", highlight=False
    )


def list_batches(store: RunStore, console: Console) -> None:
    from rich.table import Table

    rows = store.batches.ids()
    if not rows:
        console.print(f"no batches in {store.path}")
        return
    table = Table(title=f"Batches in {store.path}")
    for col in ("id", "started", "status", "projects"):
        table.add_column(col, justify="right" if col == "projects" else "left", no_wrap=col == "id")
    for batch_id, status, started, count in rows:
        table.add_row(batch_id, _when(started), status, str(count))
    console.print(table)


def show_run(store: RunStore, project_id: str, console: Console) -> None:
    from ..engine.checkpoints import restored_state, resumed_budget
    from .output import print_summary

    cp = store.load(project_id)
    if cp is None:
        raise UnknownProjectError(project_id)
    state = restored_state(cp, resumed_budget(cp), next_attempt=False)
    live = store.is_running(project_id)
    status = cp.status if not (cp.status == "running" and not live) else "stopped"
    print_summary(
        state,
        console,
        title=f"Project {cp.project_id}: {status}" + (f" (attempt {cp.attempt})" if cp.attempt > 1 else ""),
    )
    console.print(
        f"started {_when(cp.started_at)}, last checkpoint {_when(cp.updated_at)}; "
        f"resumable: {'no: running now' if live else 'no: finished' if cp.finished else 'yes'}",
        highlight=False,
    )
    for root in cp.roots:
        parts = str(root.get("traceparent", "")).split("-")
        carrier = root.get("carrier")
        if len(parts) == 4:
            console.print(f"attempt {root.get('attempt')}: trace {parts[1]} root span {parts[2]}", highlight=False)
        elif isinstance(carrier, dict) and carrier:  # another propagator than W3C (OTEL_PROPAGATORS)
            shown = ", ".join(f"{k}: {v}" for k, v in sorted(carrier.items()))
            console.print(f"attempt {root.get('attempt')}: root span {shown}", highlight=False)
    versions = ", ".join(f"{k} {v}" for k, v in sorted(cp.versions.items()))
    if versions:
        console.print(f"saved by: {versions}", highlight=False)
    out = (cp.settings.get("cli") or {}).get("output_dir")
    if out:
        console.print(f"output dir: {out}", highlight=False)


def remove_runs(store: RunStore, ids: Sequence[str], older_than: str | None) -> list[str]:
    lines = []
    if older_than is not None:
        ids = [*ids, *store.older_than(parse_age(older_than))]
    for pid in dict.fromkeys(ids):
        try:
            gone = store.delete(pid)
        except ProjectBusyError:
            if older_than is not None and pid not in lines:
                lines.append(f"kept {pid}: running now")
                continue
            raise
        if not gone:
            raise UnknownProjectError(pid)
        lines.append(f"removed {pid}")
    return lines or ["nothing to remove"]


def runs_main(argv: list[str]) -> int:
    """``orchestrator runs [show ID | rm ID... | rm --older-than AGE | --batch ID | --batches] [--state-dir DIR]``."""
    try:
        args = build_runs_parser().parse_args(argv)
        if args.action == "rm" and not args.project_ids and args.older_than is None:
            raise UsageError("runs rm: give run ids or --older-than AGE")
        store = open_store(args.state_dir, create=False)
        from rich.console import Console

        console = Console()
        if not console.is_terminal:  # piped: no folding of ids and descriptions
            console = Console(width=200)
        if args.action == "show":
            show_run(store, args.project_id, console)
        elif args.action == "rm":
            for line in remove_runs(store, args.project_ids, args.older_than):
                print(line)
        elif args.batch is not None:
            list_batch(store, args.batch, console)
        elif args.batches:
            list_batches(store, console)
        else:
            list_runs(store, console)
    except (UsageError, StoreError) as exc:
        print(f"orchestrator: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
