"""Report size and render time for runs of 10, 100 and 1,000 tasks.

Each run is a real engine run on a scripted provider that answers at once and charges
remote-style prices (every task one round: generate, critique, revise, evaluate), its
events recorded as ``--events-jsonl`` would; the report is built from them and opened in
headless Chromium from ``file://`` with the network blocked (``--dump-dom``, which
returns after the page loaded and its script ran).

Printed per size: events, report size, bytes per task, time to build the HTML, time for
Chromium to load and render it (including the browser's own start, measured alone
first); then the size and render-time ratios between sizes (linear growth: ~10x per
10x tasks); last line the 1,000-task figure.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = (10, 100, 1000)
MODEL = "bench-priced"


def record_run(tasks: int, path: Path, concurrency: int = 50) -> None:
    """A run of ``tasks`` independent tasks with priced calls, its events written to ``path``."""
    from orchestrator.domain.budget import Budget
    from orchestrator.domain.tasks import Task, TaskType
    from orchestrator.engine import Orchestrator
    from orchestrator.llm.catalog import preserved, register_model
    from orchestrator.llm.client import UnifiedClient
    from orchestrator.llm.model_info import ModelInfo
    from orchestrator.llm.providers.base import ProviderRequest, ProviderResponse
    from orchestrator.observers.recorder import EventRecorder

    class Instant:
        name = "server"

        def availability(self, model: str) -> tuple[bool, str]:
            return True, ""

        async def complete(self, request: ProviderRequest) -> ProviderResponse:
            props = (request.json_schema or {}).get("properties", {})
            text = '{"reasons": "ok", "score": 0.99}' if "score" in props else "done"
            return ProviderResponse(text, 120, 40, "stop", request.model)

    with preserved():
        register_model(ModelInfo(MODEL, "server", 1.5, 4.0, 32768, 1024, "us", ()))
        work = [Task(f"t{i}", TaskType.SUMMARIZATION, f"summarize part {i}", max_iterations=1) for i in range(tasks)]
        client = UnifiedClient({"server": Instant()}, concurrency=concurrency)
        orch = Orchestrator(
            budget=Budget(1000.0, 3600), client=client, concurrency=concurrency, project_tasks=work, only_model=MODEL
        )
        with EventRecorder(jsonl_path=path, mode="w", keep=False):
            asyncio.run(orch.run_project(f"Bench of {tasks} tasks", "every task done"))


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    raise SystemExit("bench/report.py needs Chromium (apt-get install -y chromium)")


def render_seconds(html: Path) -> float:
    with tempfile.TemporaryDirectory() as profile:
        started = time.perf_counter()
        subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--dump-dom",
                html.resolve().as_uri(),
            ],
            capture_output=True,
            check=True,
            timeout=120,
        )
        return time.perf_counter() - started


def main() -> None:
    from orchestrator.report import build_report, events_from_files, render_html

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        empty = Path(tmp) / "empty.html"
        empty.write_text("<!DOCTYPE html><title>empty</title>")
        render_seconds(empty)  # warm the disk cache
        browser_alone = min(render_seconds(empty) for _ in range(3))
        print(f"Chromium alone (an empty page): {browser_alone:.2f} s")
        for n in SIZES:
            events = Path(tmp) / f"events{n}.jsonl"
            record_run(n, events)
            started = time.perf_counter()
            html = render_html(build_report(events_from_files([events])))
            build = time.perf_counter() - started
            page = Path(tmp) / f"report{n}.html"
            page.write_text(html, encoding="utf-8")
            size = page.stat().st_size
            render = min(render_seconds(page) for _ in range(3))
            lines = sum(1 for _ in events.open())
            results[n] = (size, render)
            print(
                f"{n:5d} tasks: {lines:6d} events, report {size / 1024:8.1f} KB ({size / n / 1024:.2f} KB/task), "
                f"built in {build:.2f} s, rendered in {render:.2f} s ({render - browser_alone:.2f} s over an "
                "empty page)"
            )
    for small, big in zip(SIZES, SIZES[1:], strict=False):
        print(
            f"{small} -> {big} tasks: size x{results[big][0] / results[small][0]:.1f}, "
            f"render time x{results[big][1] / results[small][1]:.1f}"
        )
    size, render = results[SIZES[-1]]
    print(f"{SIZES[-1]}-task report: {size / 1e6:.2f} MB, rendered in headless Chromium in {render:.2f} s")


if __name__ == "__main__":
    main()
