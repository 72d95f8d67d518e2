"""Batch: 500 scripted projects with remote-style latency, the local backend against Ray
on this machine.

Each backend runs in its own child process (its peak RSS is its own): a batch of
``--projects`` projects, each one task on a scripted, priced provider that answers
after ``--latency`` seconds (a remote API's pace; every call costs money, so the batch
ledger works for real), at most ``--parallel`` projects at once.  Ray: a local cluster
(dashboard off, started before the clock), each project a task asking
``--ray-cpus`` CPUs.

Printed per backend: projects/s; the driver's CPU time per project (the local driver
runs the engine too; on Ray it only schedules, and the ledger and store actors' CPU is
shown apart); the driver's peak RSS and, on Ray, the peak RSS of every process of the
cluster together (sampled); the cluster's start-up.  Last line: Ray's projects/s over
the local backend's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


class Sampler(threading.Thread):
    """The peak RSS of this process and all its children, every 0.25 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, _tree_rss(os.getpid()))
            self.stop.wait(0.25)


def child(opts: argparse.Namespace) -> dict[str, object]:
    from orchestrator.batch.backend import LocalBackend
    from orchestrator.batch.driver import BatchDriver
    from orchestrator.llm.catalog import preserved
    from orchestrator.state import RunStore
    from tests.batch.scripted import ScriptedFactory, ensure_catalog, jobs

    os.environ["SCRIPTED_SLOW"] = "0"  # the fixed latency only
    ensure_catalog()
    work = tempfile.mkdtemp(prefix="bench-batch-")
    factory = ScriptedFactory(slow=0.0, fixed_latency=opts.latency, concurrency=1)
    batch = jobs("bench", opts.projects, budget_usd=1.0, settings={"max_tasks": 1})
    sampler = Sampler()
    sampler.start()
    startup = 0.0
    actors_cpu = None
    with preserved():
        if opts.child == "ray":
            from orchestrator.batch.ray_backend import RayBackend, RayOptions

            t0 = time.perf_counter()
            backend = RayBackend(
                factory,
                f"{work}/state",
                RayOptions(
                    num_cpus=opts.ray_cpus,
                    relay_events=False,
                    runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "SCRIPTED_SLOW": "0"}},
                ),
            )
            backend.connect()
            startup = time.perf_counter() - t0
        else:
            backend = LocalBackend(factory, RunStore(f"{work}/state"))
        driver = BatchDriver("bench", batch, backend, max_usd=1e6, max_parallel=opts.parallel)
        cpu0 = os.times()
        t0 = time.perf_counter()
        if opts.child == "ray":
            import psutil

            def actors() -> float:
                total = 0.0
                for p in psutil.Process().children(recursive=True):
                    try:
                        if p.name().startswith(("ray::LedgerOwner", "ray::StoreOwner")) or any(
                            n in " ".join(p.cmdline()) for n in ("LedgerOwner", "StoreOwner")
                        ):
                            t = p.cpu_times()
                            total += t.user + t.system
                    except psutil.Error:
                        pass
                return total

            async def run_and_measure():  # the actors' CPU, read before they are stopped
                task = asyncio.ensure_future(driver.run())
                while not driver.running and not task.done():
                    await asyncio.sleep(0.01)
                last = 0.0
                while not task.done():
                    last = max(last, actors())
                    await asyncio.wait({task}, timeout=0.5)
                return await task, last

            result, actors_cpu = asyncio.run(run_and_measure())
        else:
            result = asyncio.run(driver.run())
        wall = time.perf_counter() - t0
        cpu1 = os.times()
    sampler.stop.set()
    sampler.join()
    done = sum(1 for o in result.outcomes if o.finished)
    driver_cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {
        "mode": opts.child,
        "projects": opts.projects,
        "finished": done,
        "wall_s": wall,
        "projects_per_s": opts.projects / wall,
        "driver_cpu_ms_per_project": driver_cpu / opts.projects * 1000,
        "actors_cpu_ms_per_project": (actors_cpu / opts.projects * 1000) if actors_cpu is not None else None,
        "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tree_peak_rss_mb": sampler.peak / 1024 / 1024,
        "startup_s": startup,
        "llm_calls": result.usage.llm_calls,
        "spent_usd": result.ledger.spent_usd,
    }


def run_child(mode: str, opts: argparse.Namespace) -> dict[str, object]:
    args = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--projects",
        str(opts.projects),
        "--latency",
        str(opts.latency),
        "--parallel",
        str(opts.parallel),
        "--ray-cpus",
        str(opts.ray_cpus),
    ]
    out = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--projects", type=int, default=500)
    p.add_argument("--latency", type=float, default=0.05, help="seconds per provider call (default 0.05)")
    p.add_argument("--parallel", type=int, default=50, help="projects at once (default 50)")
    p.add_argument("--ray-cpus", type=float, default=0.25, help="CPUs per project's Ray task (default 0.25)")
    p.add_argument("--only", choices=("local", "ray"))
    p.add_argument("--child", choices=("local", "ray"), help=argparse.SUPPRESS)
    opts = p.parse_args()
    if opts.child:
        print(json.dumps(child(opts)))
        return
    results = {m: run_child(m, opts) for m in ("local", "ray") if opts.only in (None, m)}
    for mode, r in results.items():
        extra = (
            f", actors {r['actors_cpu_ms_per_project']:.1f} ms CPU/project, cluster start {r['startup_s']:.1f} s"
            if mode == "ray"
            else ""
        )
        print(
            f"{mode:5s} {r['projects']} projects ({r['finished']} finished, {r['llm_calls']} calls, "
            f"${r['spent_usd']:.4f}): {r['wall_s']:.1f} s, {r['projects_per_s']:.1f} projects/s; driver "
            f"{r['driver_cpu_ms_per_project']:.1f} ms CPU/project{extra}; peak RSS driver "
            f"{r['driver_peak_rss_mb']:.0f} MB, all processes {r['tree_peak_rss_mb']:.0f} MB"
        )
    if len(results) == 2:
        print(
            f"projects/s ratio (ray/local): {results['ray']['projects_per_s'] / results['local']['projects_per_s']:.2f}"
        )


if __name__ == "__main__":
    main()
