"""What ``orchestrator batch`` shows and writes: a line per project as it ends, the
per-project summary table, the totals, and ``batch-summary.json``."""

from __future__ import annotations

import json
import sys
from typing import Any

from ..redaction import redact, redact_data

__all__ = ["project_line", "print_batch_summary", "write_batch_summary", "SUMMARY_NAME"]

SUMMARY_NAME = "batch-summary.json"
_MARK = {
    "success": "[green]✓[/green]",
    "partial_success": "[yellow]~[/yellow]",
    "interrupted": "[yellow]‖[/yellow]",
    "not_started": "[dim]-[/dim]",
}


def project_line(outcome: Any) -> str:
    """``✓ p01 proj-... success 3/3 tasks $0.001200 4.1s`` (rich markup)."""
    from rich.markup import escape

    row = outcome.row()
    mark = _MARK.get(outcome.status, "[red]✗[/red]")
    tasks = f"{row['tasks_done']}/{row['tasks_total']} tasks" if row["tasks_total"] else ""
    extra = f"  {escape(redact(outcome.error))}" if outcome.error else ""
    return (
        f"{mark} {escape(outcome.name)}  {outcome.project_id}  {escape(outcome.status)}  {tasks}  "
        f"${row['cost_usd']:.6f}  {row['seconds']:.1f}s{extra}"
    )


def print_batch_summary(result: Any, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Batch {result.batch_id}: {result.status}")
    for col in ("#", "name", "project", "status", "tasks", "calls", "tokens", "cost $", "attempt", "s"):
        table.add_column(
            col, justify="right" if col in ("#", "calls", "cost $", "attempt", "s") else "left", overflow="fold"
        )
    for o in result.outcomes:
        r = o.row()
        table.add_row(
            str(o.position),
            escape(o.name),
            o.project_id,
            escape(o.status) + (" (kept)" if o.kept else ""),
            f"{r['tasks_done']}/{r['tasks_total']}",
            str(r["llm_calls"]),
            f"{r['tokens_in']}/{r['tokens_out']}",
            f"{r['cost_usd']:.6f}",
            str(r["attempt"] or "-"),
            f"{r['seconds']:.1f}",
        )
    console.print(table)
    usage, counts = result.usage, result.counts()
    shown = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    spent = result.ledger.spent_usd
    console.print(
        f"Total: {len(result.outcomes)} projects ({shown}), {usage.llm_calls} LLM calls, "
        f"{usage.input_tokens}/{usage.output_tokens} tokens, ${usage.cost_usd:.6f}; batch budget "
        f"${spent:.6f} spent of ${result.max_usd:g}; {result.ended_at - result.started_at:.1f}s; "
        f"status {result.status}; backend {result.backend}",
        highlight=False,
        soft_wrap=True,
    )


def write_batch_summary(result: Any, output_dir: str, extra: dict[str, Any] | None = None) -> bool:
    """``batch-summary.json`` in ``output_dir`` (written through the directory's
    descriptor, redacted); False (after one line on stderr) when it cannot be."""
    from ..files import OutputDir

    data = {**result.to_dict(), **(extra or {})}
    try:
        with OutputDir(output_dir) as out:
            out.write(SUMMARY_NAME, json.dumps(redact_data(data), indent=2, default=lambda v: redact(str(v))))
    except OSError as exc:
        print(
            f"orchestrator: error: cannot write {SUMMARY_NAME} to {output_dir}: {exc.strerror or exc}", file=sys.stderr
        )
        return False
    return True
