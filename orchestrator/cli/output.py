"""What a run leaves behind: the summary table on the console, and with ``--output-dir``
one file per task plus ``summary.json``.

The files are written through :class:`orchestrator.files.OutputDir` (a descriptor of the
directory, no symbolic link followed, each file written whole and 0600), named by
:func:`orchestrator.files.task_file_names` (no two tasks share a file; the mapping is
``files`` in ``summary.json``), and redacted (no key shape in any of them)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..domain.results import CheckRecord, Usage
from ..domain.tasks import TaskType
from ..files import OutputDir, task_file_names
from ..governance.validators import extract_code
from ..redaction import redact, redact_data

if TYPE_CHECKING:
    from rich.console import Console

    from ..domain.results import ProjectState

SUFFIXES = (".py", ".md")


def write_outputs(state: ProjectState, output_dir: str, *, remove_stale: bool = False) -> Path:
    """One file per task (``<name>.md``, or ``.py`` for code) plus ``summary.json``,
    whose ``files`` maps each task id to its file.  ``remove_stale`` (a resumed run): a
    task without output loses the file an earlier, interrupted attempt wrote for it, so
    the directory ends as if the run never stopped.  Raises ``OSError`` (an
    :class:`~orchestrator.files.UnsafePathError` for a symbolic link in the way)."""
    names = task_file_names([*state.tasks, *state.results])
    files: dict[str, str] = {}
    with OutputDir(output_dir) as out:
        for tid, result in state.results.items():
            task = state.tasks.get(tid)
            if not result.output:
                if remove_stale:
                    for suffix in SUFFIXES:
                        out.remove(names[tid] + suffix)
                continue
            suffix = ".py" if task is not None and task.type == TaskType.CODE_GENERATION else ".md"
            text = extract_code(result.output) if suffix == ".py" else result.output
            out.write(names[tid] + suffix, redact(text))
            files[tid] = names[tid] + suffix
        summary = state.to_dict()
        summary["files"] = files
        out.write("summary.json", json.dumps(redact_data(summary), indent=2, default=lambda v: redact(str(v))))
    return Path(output_dir)


def print_summary(state: ProjectState, console: Console, title: str | None = None) -> None:
    """The summary table; for a resumed run a ``from`` column says which results were kept
    from the checkpoint of an earlier attempt and which this attempt produced."""
    from rich.table import Table

    restored = getattr(state, "restored", {}) or {}
    attempt = getattr(state, "attempt", 1)
    status = state.status.value if state.status else "?"
    table = Table(
        title=title or f"Project {state.project_id}: {status}" + (f" (attempt {attempt})" if attempt > 1 else "")
    )
    columns = ["task", "type", "model", "score", "iter", "calls", "tokens in/out", "cost $", "checks", "status"]
    if attempt > 1:
        columns.append("from")
    for col in columns:
        table.add_column(
            col, justify="right" if col in ("score", "iter", "calls", "cost $", "checks") else "left", overflow="fold"
        )
    planning = state.planning
    if planning.llm_calls:  # the decomposition belongs to no task, but it is part of the totals
        table.add_row(
            "(planning)",
            "-",
            "-",
            "-",
            "-",
            _calls(planning),
            f"{planning.input_tokens}/{planning.output_tokens}",
            f"{planning.cost_usd:.6f}",
            "-",
            "-",
            *(["-"] if attempt > 1 else []),
        )
    check_lines: list[tuple[str, str]] = []
    for tid in state.execution_order:
        task, r = state.tasks[tid], state.results.get(tid)
        if r is None:
            continue
        checks = f"{r.checks_passed}/{len(r.checks)}" if r.checks else "-"
        row = [
            tid,
            task.type.value,
            r.model_used or "-",
            "-" if r.score is None else f"{r.score:.2f}",
            str(r.iterations),
            _calls(r.usage),
            f"{r.input_tokens}/{r.output_tokens}",
            f"{r.cost_usd:.6f}",
            checks,
            r.status.value,
        ]
        if attempt > 1:
            row.append(f"checkpoint (attempt {restored[tid]})" if tid in restored else f"attempt {attempt}")
        table.add_row(*row)
        check_lines.extend((tid, check_line(c)) for c in r.checks)
    console.print(table)
    for tid, line in check_lines:
        console.print(redact(f"check [{tid}] {line}"), markup=False, highlight=False)
    b, total = state.budget, state.usage
    profile = f"; profile {state.profile}" if getattr(state, "profile", "") else ""
    level = getattr(state, "sandbox", "")
    sandbox = "" if not level else f"; sandbox {level}" if level != "none" else "; sandbox NONE (unisolated)"
    console.print(
        f"Total: {len(state.tasks)} tasks, {_calls(total)} LLM calls, {total.input_tokens}/"
        f"{total.output_tokens} tokens, ${total.cost_usd:.6f} of ${b.max_usd:.2f}, "
        f"{b.elapsed_seconds:.1f}s; status {status}{profile}{sandbox}"
    )
    for note in state.notes:
        console.print(f"note: {redact(note)}", style="dim", markup=False)


def check_line(check: CheckRecord) -> str:
    """``add(1, 1) == 2: passed`` or ``add(1, 1) == 2: FAILED (AssertionError: ...)``."""
    if check.get("passed"):
        return f"{check.get('check')}: passed"
    detail = check.get("error") or check.get("error_type") or "failed"
    return f"{check.get('check')}: FAILED ({str(detail)[:200]})"


def write_results(
    state: ProjectState, output_dir: str, console: Console, *, announce: bool = True, remove_stale: bool = False
) -> bool:
    try:
        where = write_outputs(state, output_dir, remove_stale=remove_stale)
    except OSError as exc:
        print(f"orchestrator: error: cannot write results to {output_dir}: {exc.strerror or exc}", file=sys.stderr)
        return False
    if announce:
        console.print(f"Results written to {where}")
    return True


def _calls(usage: Usage) -> str:
    return f"{usage.llm_calls}" + (f" ({usage.cached_calls} cached)" if usage.cached_calls else "")
