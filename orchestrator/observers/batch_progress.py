"""BatchProgressObserver: the live view of ``orchestrator batch``.

One line, refreshed: projects done / running / failed of the total, the batch ledger's
spend against the batch's cap, an estimate of the time left, and the time so far.  It
reads only the batch's own events (``batch_started``, ``batch_progress`` - sent by the
driver whatever the backend, with the ledger's figures -, ``batch_finished``), so it
works the same when the projects run in other processes or on other machines.

Off (connects nothing) when the console is not a terminal or with ``quiet=True``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .. import events
from .base import Handler, Observer

__all__ = ["BatchProgressObserver"]


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 90:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class BatchProgressObserver(Observer):
    def __init__(self, console: Any = None, *, quiet: bool = False, refresh_per_second: float = 2.0) -> None:
        super().__init__()
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        self.console = console
        self.enabled = bool(console.is_terminal) and not quiet
        self.refresh_per_second = refresh_per_second
        self._lock = threading.Lock()
        self._live: Any = None
        self.batch_id = ""
        self.total = 0
        self.done = 0
        self.running = 0
        self.failed = 0
        self.spent_usd = 0.0
        self.max_usd = 0.0
        self.eta: float | None = None
        self._t0 = time.monotonic()

    def handlers(self) -> list[Handler]:
        return super().handlers() if self.enabled else []

    def render(self) -> Any:
        from rich.text import Text

        with self._lock:
            return Text.assemble(
                ("▶ ", "bold cyan"),
                (f"{self.batch_id}  ", "bold"),
                f"projects {self.done}/{self.total} done",
                f"  {self.running} running",
                ((f"  {self.failed} failed", "red") if self.failed else ""),
                f"   spend ${self.spent_usd:.4f} / ${self.max_usd:.2f}",
                (f"   ETA {_clock(self.eta)}" if self.eta is not None else ""),
                f"   {_clock(time.monotonic() - self._t0)}",
            )

    def close(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def on_batch_started(self, p: events.BatchStarted) -> None:
        from rich.live import Live

        with self._lock:
            self.batch_id, self.total, self.max_usd = p.batch_id, p.project_count, p.budget_usd
            self._t0 = time.monotonic()
        if self._live is None:
            self._live = Live(
                get_renderable=self.render,
                console=self.console,
                transient=True,
                refresh_per_second=self.refresh_per_second,
                redirect_stderr=False,
            )
            self._live.start()

    def on_batch_progress(self, p: events.BatchProgress) -> None:
        with self._lock:
            self.total, self.done, self.running, self.failed = p.total, p.done, p.running, p.failed
            self.spent_usd, self.max_usd, self.eta = p.spent_usd, p.max_usd, p.eta_seconds

    def on_batch_finished(self, p: events.BatchFinished) -> None:
        self.close()
