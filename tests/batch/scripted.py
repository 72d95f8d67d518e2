"""A picklable project factory for batch tests: the engine on a scripted, priced provider
(the kill-and-resume tests' ``PricedScript``), so projects cost money and the batch
ledger can be checked.  It also runs in Ray workers (the tests put the repository on
their ``PYTHONPATH``).

``calls_dir``: each provider call that answered appends one JSON line to
``<calls_dir>/<pid>.jsonl`` (project, task, kind, cost), so a test can see which calls
were made, by which process, and that a task kept from a checkpoint was never paid twice.
``slow``: a latency multiplier (kills land mid-project).  ``stall_on_cancel``: seconds a
cancelled call holds its process's event loop (KeyboardInterrupt included), as a worker
that does not answer: nothing of its project, its last checkpoint included, is saved then.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from orchestrator import events
from orchestrator.batch.jobs import ProjectJob
from orchestrator.domain.budget import Budget
from orchestrator.engine.checkpoints import CheckpointStore
from orchestrator.engine.orchestrator import Orchestrator
from orchestrator.llm.client import UnifiedClient
from orchestrator.llm.providers.base import ProviderRequest, ProviderResponse
from tests.state.scripted_cli import CATALOG_FILE, MODEL, PricedScript

_catalog_ready = False


def ensure_catalog() -> None:
    """The priced scripted model in this process's catalog (once per process)."""
    global _catalog_ready
    from orchestrator.llm.catalog import CATALOG, use_catalog_files

    if not _catalog_ready or MODEL not in CATALOG:
        use_catalog_files([CATALOG_FILE])
        _catalog_ready = True


class LoggedScript(PricedScript):
    def __init__(
        self, calls_dir: str | None, slow: float, fixed_latency: float | None = None, stall_on_cancel: float = 0.0
    ) -> None:
        super().__init__()
        self.calls_dir = calls_dir
        self.slow = slow
        self.fixed_latency = fixed_latency
        self.stall_on_cancel = stall_on_cancel

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        try:
            return await self._complete(request)
        except asyncio.CancelledError:
            _stall(self.stall_on_cancel)
            raise

    async def _complete(self, request: ProviderRequest) -> ProviderResponse:
        if self.fixed_latency is not None:
            await asyncio.sleep(self.fixed_latency)
        os.environ["SCRIPTED_SLOW"] = str(self.slow)
        response = await super().complete(request)
        if self.calls_dir:
            ids = events.current_ids()
            props = (request.json_schema or {}).get("properties", {})
            kind = "decompose" if "tasks" in props else "evaluate" if "score" in props else "other"
            line = json.dumps(
                {
                    "project": ids.project_id,
                    "task": ids.task_id,
                    "kind": kind,
                    "pid": os.getpid(),
                    "tokens": [response.input_tokens, response.output_tokens],
                }
            )
            with open(Path(self.calls_dir) / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        return response


def _stall(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            time.sleep(max(0.0, end - time.monotonic()))
        except KeyboardInterrupt:  # ray.cancel: not answered
            pass


class ScriptedFactory:
    """Builds each project's engine on the scripted provider (``scripted-pro`` only)."""

    def __init__(
        self,
        calls_dir: str | None = None,
        slow: float = 1.0,
        concurrency: int = 2,
        fixed_latency: float | None = None,
        cache_dir: str | None = None,
        worker_tracing: dict[str, Any] | None = None,
        stall_on_cancel: float = 0.0,
    ) -> None:
        self.stall_on_cancel = stall_on_cancel
        self.worker_tracing = worker_tracing
        """Set tracing up in the process that runs the project (a Ray worker), as the CLI does."""
        self.calls_dir = calls_dir
        self.slow = slow
        self.concurrency = concurrency
        self.fixed_latency = fixed_latency
        self.cache_dir = cache_dir

    def build(self, job: ProjectJob, budget: Budget, store: CheckpointStore) -> Orchestrator:
        ensure_catalog()
        if self.worker_tracing is not None:
            from orchestrator.cli.batch_runner import prepare_worker_tracing

            prepare_worker_tracing(self.worker_tracing)
        provider = LoggedScript(self.calls_dir, self.slow, self.fixed_latency, self.stall_on_cancel)
        cache = None
        if self.cache_dir:
            from orchestrator.llm.cache import ResponseCache

            cache = ResponseCache(self.cache_dir)
        client = UnifiedClient({"server": provider, "local": provider}, cache=cache, concurrency=4)
        return Orchestrator(
            budget=budget,
            client=client,
            concurrency=self.concurrency,
            only_model=MODEL,
            max_tasks=int(job.settings.get("max_tasks", 5)),
            store=store,
        )

    async def finish(self, orchestrator: Orchestrator) -> None:
        await orchestrator.client.aclose()
        if self.worker_tracing is not None:
            from orchestrator.cli.batch_runner import flush_worker_tracing

            await flush_worker_tracing()


def calls(calls_dir: str | Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(Path(calls_dir).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut by a kill
                pass
    return out


def jobs(
    batch_id: str,
    count: int,
    *,
    budget_usd: float = 1.0,
    time_seconds: float = 600.0,
    settings: dict[str, Any] | None = None,
) -> list[ProjectJob]:
    from orchestrator.engine.orchestrator import new_project_id

    return [
        ProjectJob(
            batch_id,
            i + 1,
            f"p{i + 1:02d}",
            new_project_id(),
            f"Scripted project {i + 1}",
            "ok",
            budget_usd,
            time_seconds,
            dict(settings or {}),
        )
        for i in range(count)
    ]
