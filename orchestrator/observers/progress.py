"""ProgressObserver: the CLI's live progress display (rich).

Shows, while a project runs: tasks done/total (and running, failed, skipped), spend
against the budget, elapsed time, and the LLM calls in flight (task, call type, model,
seconds so far).  The display starts on ``project_started`` and is cleared on
``project_finished`` so the summary prints on a clean screen.

It is off (connects nothing) when the console is not a terminal or with ``quiet=True``.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from .. import attributes as attr
from .. import events
from .base import Handler, Observer, number

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

__all__ = ["ProgressObserver"]

_MAX_CALL_ROWS = 8


class ProgressObserver(Observer):
    def __init__(self, console: Console | None = None, *, quiet: bool = False, refresh_per_second: float = 4.0) -> None:
        super().__init__()
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        self.console = console
        self.enabled = bool(console.is_terminal) and not quiet
        self.refresh_per_second = refresh_per_second
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._reset()

    def _reset(self) -> None:
        self.project_id: str | None = None
        self.budget_usd = 0.0
        self.spent_usd = 0.0
        self.total: int | None = None
        self.started = 0
        self.done = 0
        self.failed = 0
        self.skipped = 0
        self.running: dict[str, str] = {}
        self.calls: dict[str, tuple[str, str, str, float]] = {}
        self._t0 = time.monotonic()

    def handlers(self) -> list[Handler]:
        return super().handlers() if self.enabled else []

    # -- display ---------------------------------------------------------------------
    def render(self) -> RenderableType:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            total = str(self.total) if self.total is not None else "?"
            head = Text.assemble(
                ("▶ ", "bold cyan"),
                (f"{self.project_id or 'project'}  ", "bold"),
                f"tasks {self.done}/{total} done",
                (f"  {len(self.running)} running" if self.running else ""),
                ((f"  {self.failed} failed", "red") if self.failed else ""),
                ((f"  {self.skipped} skipped", "yellow") if self.skipped else ""),
                f"   spend ${self.spent_usd:.4f}" + (f" / ${self.budget_usd:.2f}" if self.budget_usd else ""),
                f"   {time.monotonic() - self._t0:.0f}s",
            )
            calls = sorted(self.calls.values(), key=lambda c: c[3])[:_MAX_CALL_ROWS]
            extra = len(self.calls) - len(calls)
        if not calls:
            return head
        table = Table.grid(padding=(0, 2))
        now = time.monotonic()
        for task_id, call_type, model, started in calls:
            table.add_row(f"  {task_id or '-'}", call_type, model, f"{now - started:.1f}s")
        parts: list[RenderableType] = [head, table]
        if extra > 0:
            parts.append(Text(f"  ... {extra} more calls", style="dim"))
        return Group(*parts)

    def _start_live(self) -> None:
        from rich.live import Live

        if self._live is None:
            self._live = Live(
                get_renderable=self.render,
                console=self.console,
                transient=True,
                refresh_per_second=self.refresh_per_second,
                redirect_stderr=False,
            )
            self._live.start()

    def _stop_live(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def close(self) -> None:
        self._stop_live()

    # -- events ----------------------------------------------------------------------
    def on_project_started(self, p: events.ProjectStarted) -> None:
        with self._lock:
            self._reset()
            self.project_id = p.project_id
            self.budget_usd = p.budget_usd
        self._start_live()

    def on_project_finished(self, p: events.ProjectFinished) -> None:
        self._stop_live()

    def on_tasks_planned(self, p: events.TasksPlanned) -> None:
        with self._lock:
            self.total = p.task_count

    def on_task_started(self, p: events.TaskStarted) -> None:
        with self._lock:
            self.started += 1
            self.running[p.correlation_id] = p.task_id

    def on_task_finished(self, p: events.TaskFinished) -> None:
        with self._lock:
            self.running.pop(p.correlation_id, None)
            self.done += 1
            if p.status != "ok" or p.attributes.get(attr.TASK_STATUS) == "failed":
                self.failed += 1

    def on_task_restored(self, p: events.TaskRestored) -> None:
        with self._lock:  # kept from the checkpoint of a resumed run: done and paid already
            self.done += 1
            self.spent_usd += p.cost_usd

    def on_task_skipped(self, p: events.TaskSkipped) -> None:
        with self._lock:
            self.done += 1
            self.skipped += 1

    def on_llm_call_started(self, p: events.LlmCallStarted) -> None:
        with self._lock:
            self.calls[p.correlation_id] = (p.task_id or "", p.call_type, p.model, time.monotonic())

    def on_llm_call_finished(self, p: events.LlmCallFinished) -> None:
        with self._lock:
            self.calls.pop(p.correlation_id, None)
            self.spent_usd += number(p.attributes.get(attr.LLM_COST_USD)) or 0.0

    def on_budget_warning(self, p: events.BudgetWarning) -> None:
        with self._lock:
            self.spent_usd = max(self.spent_usd, p.spent_usd)
