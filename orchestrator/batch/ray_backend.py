"""The Ray backend: each project one Ray task, one ledger actor, one store actor.

Why this shape:

* **One task per project.** A project is a DAG with critique, budgets and checkpoints;
  Ray only places it.  ``asyncio.run`` inside the task runs the existing engine
  (Ray refuses ``async def`` remote functions).  ``num_cpus`` is configurable (at least
  1 where the embedded model runs: each worker process starts its own llama.cpp worker).
  Ray retries a task whose worker died (``max_retries``); the retry resumes from the
  project's checkpoint, so work kept there is never paid twice.
* **The ledger is an actor** (:class:`LedgerOwner`): calls run one at a time, so its
  exact sums need no lock across machines.  It is never restarted (a fresh one would
  have forgotten what was spent): if it is gone, reservations fail and no call starts.
* **The run store stays one writer on the driver's machine** (SQLite's WAL is
  single-host): :class:`StoreOwner` is pinned to the driver's node; workers load, claim
  and checkpoint through it (:class:`ActorStore`, the engine's ``CheckpointStore``).  It
  also carries the relayed events (:mod:`.relay`) for the driver to drain.
* **Trace context travels in the job**, explicitly (the batch span's carrier), not
  through Ray's own tracing hook, which its docs call unmaintained.
* **Our code on the workers** is the installed package: the workers import
  ``orchestrator`` from their Python environment, which must hold the same version as
  the driver's (checked when the batch starts).  ``runtime_env`` is passed to
  ``ray.init`` as given (e.g. ``py_modules`` or ``pip`` to ship it instead).

Without an address a local cluster starts (dashboard off) and is shut down at the end;
with one, the batch joins that cluster and leaves it running.  Nothing outside this
module imports ``ray``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..domain.checkpoint import Checkpoint, StoreError
from ..engine.checkpoints import package_version
from .backend import BatchServices
from .jobs import ERROR, INTERRUPTED, ProjectFactory, ProjectJob, ProjectOutcome
from .ledger import BatchLedger, LedgerSnapshot
from .pool import PoolUnavailable
from .relay import Forwarder, deliver
from .worker import run_job, worker_name

__all__ = ["RayBackend", "RayOptions", "ray_problem", "EXTRA_HINT"]

logger = logging.getLogger("orchestrator.batch")

EXTRA_HINT = "pip install 'multi-llm-orchestrator[ray]'"
LEDGER_TIMEOUT = 10.0
"""Longest wait for the ledger's answer to a reservation; after it, the call does not start."""
STORE_TIMEOUT = 60.0
"""Longest wait for the store actor to load or save a checkpoint."""
DRAIN_EVERY = 0.25
CANCEL_AFTER = 2.0
"""After Ctrl-C, how long running projects get to stop on their own before Ray cancels them."""
OBJECT_STORE_BYTES = 256 * 1024 * 1024
"""The object store of a local cluster: jobs and outcomes are small."""
OTEL_PASSED = ("OTEL_",)
"""Environment variables given to the workers (the OpenTelemetry settings), except the
export headers, which may hold keys: set those on the workers' machines."""


def ray_problem() -> str | None:
    """Why the Ray backend cannot be used here (None when it can)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return f"--backend ray needs Ray (the 'ray' extra): {EXTRA_HINT}"
    return None


def passed_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``OTEL_*`` variables the workers get (headers left out: they hold keys)."""
    env = os.environ if env is None else env
    return {k: v for k, v in env.items() if k.startswith(OTEL_PASSED) and "HEADERS" not in k}


@dataclass
class RayOptions:
    """``address``: join this cluster (``auto`` for the one ``ray start`` made here);
    None starts a local one.  ``num_cpus``: CPUs each project's task asks for.
    ``max_retries``: how often Ray runs a project again after its worker died.
    ``relay_events``: stream workers' events to the driver (without an OTLP endpoint).
    ``runtime_env``: given to ``ray.init`` as is.  ``local_cpus``: CPUs of a local cluster
    (default: all)."""

    address: str | None = None
    num_cpus: float = 1.0
    max_retries: int = 3
    relay_events: bool = True
    include_content: bool = False
    runtime_env: dict[str, Any] = field(default_factory=dict)
    local_cpus: int | None = None
    log_to_driver: bool = False


# -- the actors (wrapped with ray.remote when the backend connects) -------------------------


class LedgerOwner:
    """The batch ledger as a Ray actor: one call at a time."""

    def __init__(self, max_usd: float, spent_before: Mapping[str, float]) -> None:
        self.ledger = BatchLedger(max_usd, spent_before)

    def begin(self, project_id: str, holder: str) -> float:
        return self.ledger.begin(project_id, holder)

    def reserve(self, holder: str, project_id: str, rid: str, amount: float) -> bool:
        return self.ledger.reserve(holder, project_id, rid, amount)

    def settle(self, rid: str, actual: float) -> None:
        self.ledger.settle(rid, actual)

    def snapshot(self) -> LedgerSnapshot:
        return self.ledger.snapshot()

    def close(self) -> LedgerSnapshot:
        self.ledger.close()
        return self.ledger.snapshot()


class StoreOwner:
    """The run store as a Ray actor on the driver's node: the one writer.  A project's
    claim is held here for the batch; a retried attempt of the same project gets it
    again (Ray retries only after the earlier worker died)."""

    def __init__(self, state_dir: str | None) -> None:
        from ..state import RunStore

        self.store = RunStore(state_dir)
        self.claims: dict[str, contextlib.AbstractContextManager[object]] = {}
        self.events: list[dict[str, Any]] = []

    def claim(self, project_id: str) -> None:
        if project_id in self.claims:
            return
        held = self.store.claim(project_id)
        held.__enter__()
        self.claims[project_id] = held

    def release(self, project_id: str) -> None:
        held = self.claims.pop(project_id, None)
        if held is not None:
            held.__exit__(None, None, None)

    def load(self, project_id: str) -> Checkpoint | None:
        return self.store.load(project_id)

    def save(self, checkpoint: Checkpoint) -> None:
        self.store.save(checkpoint)

    def save_events(self, project_id: str, attempt: int, lines: list[str]) -> None:
        self.store.save_events(project_id, attempt, lines)

    def push_events(self, batch: list[dict[str, Any]]) -> None:
        self.events.extend(batch)

    def drain_events(self) -> list[dict[str, Any]]:
        out, self.events = self.events, []
        return out

    def close(self, stopped: Sequence[str] = ()) -> None:
        """Release the claims; then each ``stopped`` project still stored as running (its
        worker was cancelled, or did not answer, before it saved its end) is stored as
        interrupted.  One call at a time: no worker's save comes between."""
        for project_id in list(self.claims):
            self.release(project_id)
        for project_id in stopped:
            try:
                self.store.mark_interrupted(project_id)
            except StoreError as exc:  # e.g. held by another process: that one saves its own end
                logger.warning("project %s not marked interrupted: %s", project_id, exc)
        self.store.close()


class StopSignal:
    """Ctrl-C for the workers: each running project waits on :meth:`wait` (one pending
    call each, an async actor holds them all); :meth:`set` ends every wait, and each
    project cancels its run, which checkpoints on the way out."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self) -> bool:
        await self.event.wait()
        return True

    def set(self) -> None:
        self.event.set()


# -- the workers' side ---------------------------------------------------------------------


class RayLedger:
    """The ledger actor, as a worker reaches it (:class:`~.pool.LedgerAccess`)."""

    def __init__(self, handle: Any, timeout: float = LEDGER_TIMEOUT) -> None:
        self.handle = handle
        self.timeout = timeout

    async def _ask(self, ref: Any) -> Any:
        import ray

        try:
            return await asyncio.wait_for(asyncio.wrap_future(ref.future()), self.timeout)
        except TimeoutError:
            raise PoolUnavailable(f"the batch ledger did not answer within {self.timeout:g}s") from None
        except ray.exceptions.RayError as exc:
            raise PoolUnavailable(f"the batch ledger is gone ({type(exc).__name__})") from None

    async def begin(self, project_id: str, holder: str) -> float:
        return float(await self._ask(self.handle.begin.remote(project_id, holder)))

    async def reserve(self, holder: str, project_id: str, rid: str, amount: float) -> bool:
        return bool(await self._ask(self.handle.reserve.remote(holder, project_id, rid, amount)))

    def settle(self, rid: str, actual: float) -> None:
        try:
            self.handle.settle.remote(rid, actual)  # not awaited: calls from one caller run in order
        except Exception:  # noqa: BLE001 - a ledger that is gone keeps the hold as spent
            logger.warning("the batch ledger could not book a call's cost; its reservation stays spent")

    async def snapshot(self) -> LedgerSnapshot:
        result: LedgerSnapshot = await self._ask(self.handle.snapshot.remote())
        return result


class ActorStore:
    """The store actor, as the engine's ``CheckpointStore`` in a worker.  Blocking calls:
    a checkpoint is saved before the engine announces what it holds."""

    def __init__(self, handle: Any, timeout: float = STORE_TIMEOUT) -> None:
        self.handle = handle
        self.timeout = timeout

    @contextlib.contextmanager
    def claim(self, project_id: str) -> Iterator[object]:
        import ray

        ray.get(self.handle.claim.remote(project_id), timeout=self.timeout)
        yield project_id
        # kept until the driver closes the store: a retried attempt finds it held for it

    def load(self, project_id: str) -> Checkpoint | None:
        import ray

        result: Checkpoint | None = ray.get(self.handle.load.remote(project_id), timeout=self.timeout)
        return result

    def save(self, checkpoint: Checkpoint) -> None:
        import ray

        ray.get(self.handle.save.remote(checkpoint), timeout=self.timeout)

    def save_events(self, project_id: str, attempt: int, lines: Sequence[str]) -> None:
        import ray

        ray.get(self.handle.save_events.remote(project_id, attempt, list(lines)), timeout=self.timeout)


def project_task(
    job: ProjectJob,
    factory: ProjectFactory,
    ledger: Any,
    store: Any,
    stop: Any,
    carrier: Mapping[str, str],
    relay: bool,
    include_content: bool,
) -> ProjectOutcome:
    """The Ray task of one project (a plain function: Ray refuses ``async def`` ones)."""
    import ray

    def push(batch: list[dict[str, Any]], wait: bool) -> None:
        ref = store.push_events.remote(batch)
        if wait:
            ray.get(ref, timeout=STORE_TIMEOUT)

    async def stopped() -> None:
        await asyncio.wrap_future(stop.wait.remote().future())

    observe = Forwarder(push, include_content=include_content) if relay else None
    try:
        return asyncio.run(run_job(job, RayLedger(ledger), ActorStore(store), factory, carrier, observe, stopped()))
    except KeyboardInterrupt:  # ray.cancel: the run was cancelled and checkpointed on the way out
        return ProjectOutcome(job.position, job.name, job.project_id, INTERRUPTED, worker=worker_name())


def probe() -> dict[str, str]:
    """What a worker runs: our version and Python's (must match the driver's)."""
    return {"package": package_version(), "python": ".".join(map(str, sys.version_info[:2])), "worker": worker_name()}


# -- the driver's side ---------------------------------------------------------------------


class RayBackend:
    """Projects as Ray tasks (see the module's notes).  :meth:`connect` (start or join
    the cluster, check the workers' version) comes before the batch is recorded, so a
    cluster that cannot be used stops the command before anything is written."""

    name = "ray"

    def __init__(self, factory: ProjectFactory, state_dir: str | None, options: RayOptions | None = None) -> None:
        self.factory = factory
        self.state_dir = state_dir
        self.options = options or RayOptions()
        self.started_cluster = False
        self.connected = False
        self._owns_connection = False
        self._ledger: Any = None
        self._store: Any = None
        self._stop: Any = None
        self._task: Any = None
        self._carrier: dict[str, str] = {}
        self._refs: dict[asyncio.Future[ProjectOutcome], Any] = {}
        self._drain: asyncio.Task[None] | None = None
        self.delivered = 0

    # -- the cluster ---------------------------------------------------------------------
    def connect(self) -> dict[str, Any]:
        """Start a local cluster (no address) or join one; check that the workers run our
        version.  Returns what the cluster is (CPUs, nodes, the workers' version).  Raises
        RuntimeError (one line) when it cannot be used."""
        import ray

        opts = self.options
        runtime_env = dict(opts.runtime_env)
        env_vars = {**passed_environment(), **runtime_env.get("env_vars", {})}
        if env_vars:
            runtime_env["env_vars"] = env_vars
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": opts.log_to_driver,
            "logging_level": logging.ERROR,
            "configure_logging": True,
            "runtime_env": runtime_env or None,
        }
        try:
            if ray.is_initialized():  # the caller's own connection: used, and left as it was
                self.connected = True
            elif opts.address:
                ray.init(address=opts.address, **kwargs)
                self.connected = self._owns_connection = True
            else:
                ray.init(num_cpus=opts.local_cpus, object_store_memory=OBJECT_STORE_BYTES, **kwargs)
                self.connected = self._owns_connection = self.started_cluster = True
            remote_probe = ray.remote(num_cpus=0)(probe)
            seen = ray.get(remote_probe.remote(), timeout=300)
        except Exception as exc:  # noqa: BLE001 - one line for the command line
            self._shutdown()
            where = f"the Ray cluster at {opts.address}" if opts.address else "a local Ray cluster"
            raise RuntimeError(
                f"cannot use {where}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            ) from None
        mine = probe()
        if (seen["package"], seen["python"]) != (mine["package"], mine["python"]):
            self._shutdown()
            raise RuntimeError(
                f"the Ray workers run multi-llm-orchestrator {seen['package']} on Python {seen['python']}, "
                f"the driver {mine['package']} on Python {mine['python']}: install the same on every node"
            )
        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        nodes = len(ray.nodes())  # type: ignore[no-untyped-call]
        return {"cpus": resources.get("CPU", 0.0), "nodes": nodes, "started": self.started_cluster, "workers": seen}

    def cpus(self) -> float:
        import ray

        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        return float(resources.get("CPU", 0.0))

    async def open(self, services: BatchServices) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if not self.connected:
            self.connect()
        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        ledger_cls = ray.remote(num_cpus=0, max_restarts=0)(LedgerOwner)
        store_cls = ray.remote(num_cpus=0, max_restarts=0)(StoreOwner)
        self._ledger = ledger_cls.options(scheduling_strategy=here).remote(
            services.max_usd, dict(services.spent_before)
        )
        self._store = store_cls.options(scheduling_strategy=here).remote(self.state_dir)
        self._stop = (
            ray.remote(num_cpus=0, max_restarts=0)(StopSignal)
            .options(scheduling_strategy=here, max_concurrency=100_000)
            .remote()
        )
        await asyncio.wrap_future(self._store.drain_events.remote().future())  # the store opened
        self._task = ray.remote(project_task).options(
            num_cpus=self.options.num_cpus, max_retries=self.options.max_retries, retry_exceptions=False
        )
        self._carrier = dict(services.carrier)
        if self.options.relay_events:
            self._drain = asyncio.get_running_loop().create_task(self._drain_loop(), name="batch event relay")

    def launch(self, job: ProjectJob) -> asyncio.Future[ProjectOutcome]:
        ref = self._task.remote(
            job,
            self.factory,
            self._ledger,
            self._store,
            self._stop,
            self._carrier,
            self.options.relay_events,
            self.options.include_content,
        )
        future: asyncio.Future[ProjectOutcome] = asyncio.ensure_future(self._outcome(job, ref))
        self._refs[future] = ref
        future.add_done_callback(lambda f: self._refs.pop(f, None))
        return future

    @staticmethod
    async def _outcome(job: ProjectJob, ref: Any) -> ProjectOutcome:
        """The task's outcome; Ray's own endings in our words."""
        import ray

        try:
            result: ProjectOutcome = await asyncio.wrap_future(ref.future())
            return result
        except ray.exceptions.TaskCancelledError:
            return ProjectOutcome(
                job.position, job.name, job.project_id, INTERRUPTED, error="stopped by Ray before it could report"
            )
        except ray.exceptions.WorkerCrashedError:
            return ProjectOutcome(
                job.position,
                job.name,
                job.project_id,
                ERROR,
                error="its worker died on every attempt Ray made (see 'orchestrator batch resume')",
            )

    async def snapshot(self) -> LedgerSnapshot:
        result: LedgerSnapshot = await asyncio.wrap_future(self._ledger.snapshot.remote().future())
        return result

    def stop(self) -> None:
        """Every running project cancels itself (and checkpoints on the way out); what is
        still not done :data:`CANCEL_AFTER` seconds later (a task still waiting for a
        worker, a worker that does not answer) is cancelled by Ray."""
        with contextlib.suppress(Exception):
            self._stop.set.remote()
        asyncio.get_running_loop().call_later(CANCEL_AFTER, self._cancel_rest)

    def _cancel_rest(self) -> None:
        import ray

        for ref in list(self._refs.values()):
            with contextlib.suppress(Exception):
                ray.cancel(ref)

    async def close(self, stopped: Collection[str] = ()) -> LedgerSnapshot:
        import ray

        try:
            if self._drain is not None:
                self._drain.cancel()
                with contextlib.suppress(BaseException):
                    await self._drain
            if self._store is not None and self.options.relay_events:
                self._deliver(await asyncio.wrap_future(self._store.drain_events.remote().future()))
            snapshot: LedgerSnapshot = await asyncio.wrap_future(self._ledger.close.remote().future())
            if self._store is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wrap_future(self._store.close.remote(list(stopped)).future())
            for actor in (self._ledger, self._store, self._stop):
                with contextlib.suppress(Exception):
                    ray.kill(actor)
            return snapshot
        finally:
            self._shutdown()

    def kill_now(self) -> None:
        """A second Ctrl-C: a local cluster this batch started must not outlive it; its
        processes (children of this one) are killed without waiting."""
        if not self.started_cluster:
            return
        try:
            import psutil  # a dependency of Ray's

            for child in psutil.Process().children(recursive=True):
                with contextlib.suppress(Exception):
                    child.send_signal(signal.SIGKILL)
        except Exception:  # noqa: BLE001 - we are exiting anyway
            pass

    # -- inside ----------------------------------------------------------------------------
    async def _drain_loop(self) -> None:
        while True:
            await asyncio.sleep(DRAIN_EVERY)
            try:
                batch = await asyncio.wrap_future(self._store.drain_events.remote().future())
            except Exception:  # noqa: BLE001 - the next round may work
                logger.debug("draining relayed events failed", exc_info=True)
                continue
            self._deliver(batch)

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        if batch:
            self.delivered += deliver(batch)

    def _shutdown(self) -> None:
        """Leave the cluster (a local one this batch started stops with it)."""
        if self._owns_connection:
            import ray

            with contextlib.suppress(Exception):
                ray.shutdown()
        self._owns_connection = self.started_cluster = self.connected = False
