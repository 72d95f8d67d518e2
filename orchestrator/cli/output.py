"""What a run leaves behind: the summary table on the console, and with ``--output-dir``
one file per task plus ``summary.json``."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from ..domain.results import Usage
from ..domain.tasks import TaskType
from ..governance.validators import extract_code


def _safe_filename(task_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", task_id)[:80] or "task"


def write_outputs(state: Any, output_dir: str) -> Path:
    """One file per task (``<task_id>.md`` or ``.py`` for code) plus ``summary.json``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for tid, result in state.results.items():
        task = state.tasks.get(tid)
        if not result.output:
            continue
        suffix = ".py" if task is not None and task.type == TaskType.CODE_GENERATION else ".md"
        text = result.output
        if suffix == ".py":
            text = extract_code(result.output)
        (out / f"{_safe_filename(tid)}{suffix}").write_text(text, encoding="utf-8")
    summary = state.to_dict()
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return out


def print_summary(state: Any, console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"Project {state.project_id}: {state.status.value if state.status else '?'}")
    for col in ("task", "type", "model", "score", "iter", "calls", "tokens in/out", "cost $", "status"):
        table.add_column(col, justify="right" if col in ("score", "iter", "calls", "cost $") else "left",
                         overflow="fold")
    planning = state.planning
    if planning.llm_calls:  # the decomposition belongs to no task, but it is part of the totals
        table.add_row("(planning)", "-", "-", "-", "-", _calls(planning), f"{planning.input_tokens}/"
                      f"{planning.output_tokens}", f"{planning.cost_usd:.6f}", "-")
    for tid in state.execution_order:
        task, r = state.tasks[tid], state.results.get(tid)
        if r is None:
            continue
        table.add_row(tid, task.type.value, r.model_used or "-", f"{r.score:.2f}", str(r.iterations),
                      _calls(r.usage), f"{r.input_tokens}/{r.output_tokens}", f"{r.cost_usd:.6f}", r.status.value)
    console.print(table)
    b, total = state.budget, state.usage
    console.print(f"Total: {len(state.tasks)} tasks, {_calls(total)} LLM calls, {total.input_tokens}/"
                  f"{total.output_tokens} tokens, ${total.cost_usd:.6f} of ${b.max_usd:.2f}, "
                  f"{b.elapsed_seconds:.1f}s; status {state.status.value}")
    for note in state.notes:
        console.print(f"note: {note}", style="dim")


def write_results(state: Any, output_dir: str, console: Any, *, announce: bool = True) -> bool:
    try:
        where = write_outputs(state, output_dir)
    except OSError as exc:
        print(f"orchestrator: error: cannot write results to {output_dir}: {exc.strerror}", file=sys.stderr)
        return False
    if announce:
        console.print(f"Results written to {where}")
    return True


def _calls(usage: Usage) -> str:
    return f"{usage.llm_calls}" + (f" ({usage.cached_calls} cached)" if usage.cached_calls else "")
