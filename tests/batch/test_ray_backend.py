"""The Ray backend on a real local Ray cluster (one for the module, dashboard off, 2
CPUs): projects as Ray tasks under one ledger actor; a worker killed by a signal in the
middle of a project is retried by Ray and resumes from its checkpoint without paying
twice for a kept task; Ctrl-C checkpoints the running projects; a ledger that is gone
starts no call; the workers' events reach the driver, whose spans make one trace per
project linked to the batch span.

Marked ``ray`` (select with ``-m ray``); never skipped: the ``ray`` extra is in ``dev``.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator import attributes as attr
from orchestrator import events
from orchestrator.batch.driver import BatchDriver, BatchResult
from orchestrator.batch.jobs import INTERRUPTED
from orchestrator.batch.ray_backend import RayBackend, RayOptions
from orchestrator.llm.catalog import preserved
from orchestrator.state import RunStore
from tests.batch.scripted import ScriptedFactory, calls, jobs
from tests.phoenix_server import _get

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=128 * 1024 * 1024,
        log_to_driver=False,
        configure_logging=True,
        logging_level="ERROR",
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )  # the tests' own modules (the factory)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(autouse=True)
def _catalog():
    with preserved():
        yield


def _backend(tmp_path: Path, factory: ScriptedFactory, **options) -> RayBackend:
    backend = RayBackend(factory, str(tmp_path / "state"), RayOptions(**options))
    info = backend.connect()  # joins the module's cluster, checks the workers' version
    assert info["workers"]["package"] and not info["started"]
    return backend


def test_a_batch_on_ray_shares_one_budget_and_relays_its_events(cluster, tmp_path, span_exporter, recorded):
    (tmp_path / "calls").mkdir()
    batch = jobs("batch-r1", 4, budget_usd=0.03)
    backend = _backend(tmp_path, ScriptedFactory(str(tmp_path / "calls")))
    result = asyncio.run(BatchDriver("batch-r1", batch, backend, max_usd=0.06, max_parallel=2).run())
    assert result.ledger.spent_usd <= 0.06 and result.ledger.held_usd == 0.0
    assert math.isclose(result.ledger.spent_usd, math.fsum(o.spent_usd for o in result.outcomes), abs_tol=1e-12)
    assert all(o.spent_usd <= 0.03 for o in result.outcomes)
    made = calls(tmp_path / "calls")
    assert made and {c["pid"] for c in made}.isdisjoint({os.getpid()})  # the calls ran in Ray's workers
    assert len(made) == result.usage.llm_calls
    store = RunStore(tmp_path / "state")  # checkpointed through the store actor, on this machine
    assert all(store.load(j.project_id) is not None for j in batch)
    # the workers' events came back: every pair closed, one trace per project, linked to the batch
    starts = [p for p in recorded if isinstance(p, events.ProjectStarted)]
    assert len(starts) == 4 and {p.batch_id for p in starts} == {"batch-r1"}
    batch_span = span_exporter.by_name("run_batch")
    roots = span_exporter.spans("run_project")
    assert len(roots) == 4 and len({r.context.trace_id for r in roots}) == 4
    for root in roots:
        assert [lk.context.span_id for lk in root.links] == [batch_span.context.span_id]
        assert root.attributes[attr.ORCHESTRATOR_BATCH_ID] == "batch-r1"
    assert batch_span.attributes[attr.BATCH_LLM_CALLS] == sum(r.attributes[attr.PROJECT_LLM_CALLS] for r in roots)
    llm = span_exporter.spans("llm_call:")
    assert len(llm) == result.usage.llm_calls and all(span_exporter.parent_of(s) is not None for s in llm)


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_worker_killed_mid_project_is_retried_and_pays_nothing_twice(cluster, tmp_path):
    (tmp_path / "calls").mkdir()
    batch = jobs("batch-r2", 1)
    project = batch[0].project_id
    backend = _backend(tmp_path, ScriptedFactory(str(tmp_path / "calls"), slow=12.0, concurrency=1), max_retries=2)
    killed: dict[str, object] = {}

    def killer() -> None:  # SIGKILL the worker once its checkpoint keeps a task
        store = RunStore(tmp_path / "state")
        _wait(lambda: (cp := store.load(project)) is not None and len(cp.kept) >= 1, 120, "a kept task")
        cp = store.load(project)
        killed["kept"] = set(cp.kept)
        killed["calls"] = len(calls(tmp_path / "calls"))
        (pid,) = {c["pid"] for c in calls(tmp_path / "calls")}
        killed["pid"] = pid
        os.kill(pid, signal.SIGKILL)

    async def main():
        driver = asyncio.ensure_future(BatchDriver("batch-r2", batch, backend, max_usd=5.0, max_parallel=1).run())
        await asyncio.to_thread(killer)
        return await driver

    result = asyncio.run(main())
    (outcome,) = result.outcomes
    assert outcome.status == "partial_success" and outcome.attempt == 2, outcome.row()
    made = calls(tmp_path / "calls")
    after = [c for c in made if c["pid"] != killed["pid"]]  # the dead worker made none after its death
    assert after and len(made) - len(after) >= killed["calls"]  # a new worker went on
    assert not [c for c in after if c["task"] in killed["kept"] or c["kind"] == "decompose"]  # nothing paid twice
    cp = RunStore(tmp_path / "state").load(project)
    assert cp.attempt == 2 and set(cp.kept) >= killed["kept"]
    assert result.ledger.spent_usd <= 5.0 and result.ledger.held_usd == 0.0
    # the ledger booked every bill: the kept tasks' calls once, whatever the dead worker held at worst case
    assert result.ledger.spent_usd >= outcome.spent_usd - 1e-12


def _cancelled_when(driver: BatchDriver, ready: Callable[[], bool]) -> tuple[BatchResult, float]:
    """Run the batch, cancel it (Ctrl-C) once ``ready()``: its result, and the seconds the
    cancel took to return it."""

    async def main():
        task = asyncio.ensure_future(driver.run())
        while not ready():
            await asyncio.sleep(0.05)
        started = time.monotonic()
        task.cancel()
        result = await task
        return result, time.monotonic() - started

    return asyncio.run(main())


def test_ctrl_c_checkpoints_the_running_projects_within_seconds(cluster, tmp_path, recorded):
    (tmp_path / "calls").mkdir()
    batch = jobs("batch-r3", 2)
    # 4 s a call: each project runs for 20 s or more after its first call, longer than a
    # loaded machine takes to start the second Ray worker (8 s seen with the CPUs busy)
    backend = _backend(tmp_path, ScriptedFactory(str(tmp_path / "calls"), fixed_latency=4.0))

    # both projects running (each has finished a call): on a loaded machine the second
    # Ray task can start after the first has made several calls
    result, seconds = _cancelled_when(
        BatchDriver("batch-r3", batch, backend, max_usd=5.0, max_parallel=2),
        lambda: len({c["project"] for c in calls(tmp_path / "calls")}) == 2,
    )
    assert result.interrupted and seconds < 5.0, seconds
    assert [o.status for o in result.outcomes] == [INTERRUPTED, INTERRUPTED], [o.error for o in result.outcomes]
    store = RunStore(tmp_path / "state")
    assert [store.load(j.project_id).status for j in batch] == ["interrupted", "interrupted"]


def test_a_project_that_cannot_save_its_end_is_still_recorded_interrupted(cluster, tmp_path, recorded):
    """Ctrl-C where a worker does not answer (its event loop held past Ray's cancel, as on
    a machine loaded enough that its saves come too late): the driver stops waiting after
    its few seconds, and the store's owner records the project as interrupted, its last
    checkpoint kept (the plan and every task settled before), not as still running."""
    (tmp_path / "calls").mkdir()
    batch = jobs("batch-r5", 1)
    backend = _backend(tmp_path, ScriptedFactory(str(tmp_path / "calls"), slow=20.0, stall_on_cancel=6.0))

    result, seconds = _cancelled_when(  # the plan, then a task's call: checkpointed as running
        BatchDriver("batch-r5", batch, backend, max_usd=5.0, max_parallel=1),
        lambda: len(calls(tmp_path / "calls")) >= 2,
    )
    (outcome,) = result.outcomes
    assert result.interrupted and seconds < 6.0, seconds  # it did not wait for the stalled worker
    assert (outcome.status, outcome.error) == (INTERRUPTED, "stopped before it could report")
    assert 0.0 < outcome.seconds < 120.0  # from its launch, not from the epoch
    cp = RunStore(tmp_path / "state").load(batch[0].project_id)
    assert cp.status == "interrupted" and cp.tasks and cp.execution_order  # the plan kept


def test_no_call_starts_once_the_ledger_is_gone(cluster, tmp_path):
    import ray

    (tmp_path / "calls").mkdir()
    batch = jobs("batch-r4", 1)
    backend = _backend(tmp_path, ScriptedFactory(str(tmp_path / "calls"), slow=10.0, concurrency=1))

    async def main():
        task = asyncio.ensure_future(BatchDriver("batch-r4", batch, backend, max_usd=5.0, max_parallel=1).run())
        while len(calls(tmp_path / "calls")) < 2:
            await asyncio.sleep(0.05)
        ray.kill(backend._ledger)  # noqa: SLF001 - the ledger's process dies
        seen = len(calls(tmp_path / "calls"))
        result = await task
        return result, seen

    result, seen = asyncio.run(main())
    (outcome,) = result.outcomes
    assert outcome.status == "budget_exhausted", outcome.row()
    assert len(calls(tmp_path / "calls")) <= seen + 1  # at most the call already sent when it died
    assert any("batch budget cannot be asked" in n for n in outcome.state.notes) or outcome.state.results


def _phoenix_batch(base: str, batch_id: str, projects: int, llm_calls: int) -> tuple[dict, list[list[dict]]]:
    """The batch span and each project's trace, once Phoenix has every span."""
    import json

    deadline = time.monotonic() + 90
    while True:
        status, body = _get(f"{base}/v1/projects/default/spans?limit=1000")
        spans = json.loads(body)["data"] if status == 200 else []
        batch = [s for s in spans if s["name"] == "run_batch" and s["attributes"].get("batch.id") == batch_id]
        roots = [
            s
            for s in spans
            if s["name"] == "run_project"
            and s["parent_id"] is None
            and s["attributes"].get("orchestrator.batch_id") == batch_id
        ]
        traces = [[s for s in spans if s["context"]["trace_id"] == r["context"]["trace_id"]] for r in roots]
        calls = sum(1 for t in traces for s in t if s["name"].startswith("llm_call:"))
        if len(batch) == 1 and len(roots) == projects and calls >= llm_calls:
            return batch[0], traces
        if time.monotonic() > deadline:
            raise AssertionError(f"phoenix has {len(batch)} batch spans, {len(roots)} project roots, {calls} calls")
        time.sleep(0.5)


def test_workers_export_one_trace_per_project_to_phoenix_linked_to_the_batch(cluster, phoenix, tmp_path):
    """Ray workers export their projects' spans to the endpoint themselves (and flush
    before reporting); the driver exports the batch span.  Phoenix shows 5 traces, each
    root naming the batch and its trace (Phoenix keeps no span links)."""
    from orchestrator.cli.observers import setup_observers

    tracing = {"tracing": True, "otlp_endpoint": phoenix["grpc"], "service_name": "batch-test"}
    session = setup_observers({**tracing, "quiet": True})
    try:
        backend = _backend(tmp_path, ScriptedFactory(worker_tracing=tracing), relay_events=False)
        result = asyncio.run(BatchDriver("batch-ph", jobs("batch-ph", 5), backend, max_usd=5.0, max_parallel=2).run())
    finally:
        report = session.finish(None)
    assert report["flushed"] and report["exported"] == 1  # the driver's only span: the batch
    batch, traces = _phoenix_batch(phoenix["base"], "batch-ph", 5, result.usage.llm_calls)
    assert batch["parent_id"] is None and batch["attributes"]["batch.status"] == result.status
    assert len({t[0]["context"]["trace_id"] for t in traces} | {batch["context"]["trace_id"]}) == 6
    by_project = {o.project_id: o for o in result.outcomes}
    for trace in traces:
        (root,) = [s for s in trace if s["parent_id"] is None]
        assert root["attributes"]["orchestrator.batch_trace_id"] == batch["context"]["trace_id"]
        outcome = by_project[root["attributes"]["project.id"]]
        assert sum(1 for s in trace if s["name"].startswith("llm_call:")) == outcome.usage.llm_calls
        assert root["attributes"]["project.cost_usd"] == round(outcome.usage.cost_usd, 8)
    roots = [next(s for s in t if s["parent_id"] is None) for t in traces]
    assert batch["attributes"]["batch.cost_usd"] == round(
        math.fsum(r["attributes"]["project.cost_usd"] for r in roots), 8
    )


def _raylets() -> set[int]:
    import psutil

    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "raylet"}


def test_five_embedded_projects_through_the_cli_join_the_cluster(cluster, tmp_path):
    """``orchestrator batch --backend ray --ray-address ADDR``: the command joins this
    module's cluster (and leaves it running), each project a task in a worker process
    with its own embedded-model worker, one budget."""
    import subprocess
    import sys

    from tests.cli.test_batch_cli import FIVE, _env, check_event_log, check_five

    (tmp_path / "five.yaml").write_text(FIVE)
    address = cluster.get_runtime_context().gcs_address
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "batch",
            str(tmp_path / "five.yaml"),
            "--backend",
            "ray",
            "--ray-address",
            address,
            "--state-dir",
            str(tmp_path / "state"),
            "-o",
            str(tmp_path / "out"),
            "--no-cache",
            "-q",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**_env(tmp_path), "HOME": os.environ.get("HOME", "")},
    )  # Ray's token for the cluster
    out, err = driver.communicate(timeout=600)
    proc = subprocess.CompletedProcess(driver.args, driver.returncode, out, err)
    summary = check_five(tmp_path, proc, "ray")
    workers = {row["worker"].rsplit(":", 1)[1] for row in summary["results"]}
    assert workers and str(driver.pid) not in workers  # Ray's worker processes ran them, not the driver
    assert "ray backend" in proc.stdout
    assert cluster.is_initialized() and cluster.cluster_resources().get("CPU") == 2.0  # left running
    store = RunStore(tmp_path / "state")  # each worker kept its projects' event logs through the store actor
    for row in summary["results"]:
        check_event_log(store, row, tmp_path)


TWO_LONG = """budget_usd: 1.0
max_parallel: 2
defaults:
  time_seconds: 300
projects:
  - name: maths
    project: "Write Python functions add(a, b), sub(a, b), mul(a, b) and neg(x), one task each"
    criteria: "add(1, 1) == 2"
  - name: words
    project: "Write Python functions upper(s), lower(s), title(s) and strip(s), one task each"
    criteria: "upper('a') == 'A'"
"""


@pytest.mark.parametrize("times", [1, 2])
def test_ctrl_c_at_the_command_line_stops_a_ray_batch_within_5_seconds(cluster, tmp_path, times):
    """The real thing: ``orchestrator batch --backend ray`` (joining this cluster, the
    embedded model in Ray's workers) gets SIGINT while its projects run: it exits 130
    within 5 s, the batch and every started project are recorded as interrupted (their
    checkpoints kept), and the cluster it joined is left running.  A second SIGINT exits
    at once."""
    import subprocess
    import sys

    from tests.cli.test_batch_cli import _env, _wait_for

    (tmp_path / "two.yaml").write_text(TWO_LONG)
    state = tmp_path / "state"
    address = cluster.get_runtime_context().gcs_address
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "batch",
            str(tmp_path / "two.yaml"),
            "--backend",
            "ray",
            "--ray-address",
            address,
            "--state-dir",
            str(state),
            "-o",
            str(tmp_path / "out"),
            "--no-cache",
            "--max-tasks",
            "4",
            "-q",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**_env(tmp_path), "HOME": os.environ.get("HOME", "")},
    )

    def running() -> bool:
        if not (state / "runs.sqlite3").exists():
            return False
        store = RunStore(state)
        try:
            return len(store.runs()) == 2 and all(r.status == "running" for r in store.runs())
        finally:
            store.close()

    try:
        _wait_for(lambda: running() or driver.poll() is not None, 300)
        assert driver.poll() is None, driver.communicate()
        started = time.monotonic()
        driver.send_signal(signal.SIGINT)
        if times == 2:
            time.sleep(0.3)  # the first is handled (two signals at once would be one)
            if driver.poll() is None:  # still stopping, or winding down after its summary
                started = time.monotonic()
                driver.send_signal(signal.SIGINT)
            else:  # already done (an idle machine): the second Ctrl-C has nothing to end
                times = 1
        out, err = driver.communicate(timeout=60)
        seconds = time.monotonic() - started
    finally:
        driver.kill()
    if times == 2 and "Results written to" in out and err.strip().splitlines()[-1] == "orchestrator: interrupted":
        # the first Ctrl-C had done everything (its summary flushed, exit hooks run): the
        # second landed in the interpreter's last moments, where it is ignored
        times = 1
    assert driver.returncode == 130 and seconds < (5.0 if times == 1 else 1.5), (seconds, err[-2000:])
    last = "orchestrator: interrupted" if times == 1 else "orchestrator: interrupted again: exiting now"
    assert err.strip().splitlines()[-1] == last, err[-2000:]
    assert cluster.is_initialized() and cluster.cluster_resources().get("CPU") == 2.0  # left running
    if times == 2:
        return  # exited at once (130, never killed by the signal): what was checkpointed before stays
    store = RunStore(state)
    ((batch_id, status, _, _),) = store.batches.ids()
    assert status == "interrupted" and f"orchestrator batch resume {batch_id}" in out
    assert {r.status for r in store.runs()} == {"interrupted"}
    assert cluster.is_initialized() and cluster.cluster_resources().get("CPU") == 2.0  # left running


def test_without_an_address_a_local_cluster_starts_and_stops(cluster, tmp_path):
    import subprocess
    import sys

    from tests.cli.test_batch_cli import _env

    (tmp_path / "two.yaml").write_text(
        "projects:\n  - project: Scripted project one\n  - project: Scripted project two\n"
    )
    before = _raylets()
    env = {**_env(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.state.scripted_cli",
            "batch",
            str(tmp_path / "two.yaml"),
            "--backend",
            "ray",
            "--state-dir",
            str(tmp_path / "state"),
            "--max-tasks",
            "2",
            "--model",
            "scripted-pro",
            "--catalog",
            str(ROOT / "tests/state/scripted_catalog.toml"),
            "--no-cache",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert "ray backend" in proc.stdout and "Total: 2 projects" in proc.stdout
    _wait(lambda: _raylets() == before, 30, "the batch's own cluster to stop")
