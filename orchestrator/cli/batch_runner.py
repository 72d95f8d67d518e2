"""How a project of ``orchestrator batch`` is built where it runs: the command line's
:class:`~orchestrator.batch.jobs.ProjectFactory`.

A batch project is built exactly as ``orchestrator run`` builds a run from the same
flags and project-file keys: the job carries the same ``cli`` settings a run keeps in its
checkpoint (so ``orchestrator resume PROJECT_ID`` works on one project of a batch too).
Once per process - the driver's for the local backend, each Ray worker's otherwise - the
catalog file and an OpenAI-compatible server are set up, and on a Ray worker with an
OTLP endpoint, tracing: the worker exports its projects' spans itself and flushes them
before returning each project.  Wherever it runs, a project keeps its event log in the
run store (:mod:`.batch_events`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from ..domain.checkpoint import Checkpoint
from .batch_events import finish_project, record_project

__all__ = ["CliProjectFactory", "mark_prepared", "prepare_worker_tracing", "flush_worker_tracing"]

logger = logging.getLogger("orchestrator.batch")

_prepared: set[tuple[Any, ...]] = set()
_prepare_lock = threading.Lock()
_worker_tracing: list[bool] = []
FLUSH_SECONDS = 5.0


def _process_key(args: argparse.Namespace) -> tuple[Any, ...]:
    return (args.catalog, args.provider_url, args.model)


def mark_prepared(args: argparse.Namespace) -> None:
    """This process already set up the catalog and server of ``args`` (the command line
    did, before the batch started)."""
    _prepared.add(_process_key(args))


def _prepare_process(args: argparse.Namespace) -> None:
    from .wiring import setup_catalog, setup_server

    key = _process_key(args)
    with _prepare_lock:
        if key in _prepared:
            return
        for warning in setup_catalog(args):
            logger.warning("%s", warning)
        setup_server(args)
        _prepared.add(key)


def prepare_worker_tracing(options: dict[str, Any]) -> None:
    """Tracing in a worker process (Ray, with an OTLP endpoint), once: the driver's
    observer flags; the ``OTEL_*`` variables came with the worker's environment."""
    with _prepare_lock:
        if _worker_tracing:
            return
        from .. import tracing
        from .observers import ObserverOptions, _tracing_config

        opts = ObserverOptions.from_namespace(options)
        tracing.configure_tracing(_tracing_config(opts, tracing.TracingConfig))
        _worker_tracing.append(True)


@dataclass
class CliProjectFactory:
    """``worker_tracing``: the observer flags a worker process sets tracing up with
    (a Ray backend with an OTLP endpoint), else None (the local backend traces in the
    driver; without an endpoint, events are relayed to the driver).
    ``capture_content``: the projects' event logs in the run store keep prompt and model
    text (``--capture-content``)."""

    worker_tracing: dict[str, Any] | None = None
    output_dir: str | None = field(default=None)
    capture_content: bool = False

    def build(self, job: Any, budget: Any, store: Any) -> Any:
        from .store_wiring import rebuild
        from .wiring import build_orchestrator

        shell = Checkpoint(
            job.project_id,
            job.description,
            job.criteria,
            max_usd=job.budget_usd,
            max_time_seconds=job.time_seconds,
            settings=dict(job.settings),
        )
        opts, args = rebuild(shell, argparse.Namespace(output_dir=None, sandbox=None))
        _prepare_process(args)
        if self.worker_tracing is not None:
            prepare_worker_tracing(self.worker_tracing)
        recording = record_project(store, job.project_id, self.capture_content)
        try:
            return build_orchestrator(opts, args, store=recording, run_settings=dict(job.settings), budget=budget)
        except BaseException:
            finish_project()
            raise

    async def finish(self, orchestrator: Any) -> None:
        finish_project()  # the project's last event lines, before anything else can fail
        with contextlib.suppress(Exception):
            await asyncio.wait_for(orchestrator.client.aclose(), 1.0)
        await flush_worker_tracing()


async def flush_worker_tracing() -> None:
    """A worker's spans exported before its project is reported done (bounded)."""
    if _worker_tracing:
        from .. import tracing

        await asyncio.to_thread(tracing.force_flush, FLUSH_SECONDS)
