"""Fault injection: runs killed with SIGKILL at random instants, then resumed, end with the
same results, outputs, cost and tokens as an uninterrupted run; tasks kept from a
checkpoint never start again.

The processes are real (a kill -9 is a kill -9), started from a forkserver that has the
CLI and a scripted, priced provider preloaded, so each one starts in milliseconds.  That a
task's checkpoint is saved before its ``task_finished`` is checked on the order itself,
in-process, not by racing a kill against the event.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator import cli, events
from orchestrator.cli import wiring
from orchestrator.domain.checkpoint import Checkpoint
from orchestrator.state import RunStore
from tests.helpers import read_events
from tests.state import scripted_cli

TRIALS = 20
ARGS = [*scripted_cli.ARGS, "--concurrency", "2"]


@pytest.fixture(scope="module")
def spawn():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(
        ["orchestrator.cli.run_cmd", "orchestrator.cli.resume_cmd", "orchestrator.state", "tests.state.scripted_cli"]
    )

    def start(argv: list[str], log: Path) -> Any:
        proc = ctx.Process(target=scripted_cli.child, args=(argv, str(log)))
        proc.start()
        return proc

    return start


def _wait_for(path: Path, proc: Any, timeout: float = 30.0) -> bool:
    """Until the events file has a line (the run started); False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return True
        if not proc.is_alive():
            return False
        time.sleep(0.002)
    raise AssertionError(f"no events in {path} after {timeout}s")


def _normal(summary: dict[str, Any]) -> dict[str, Any]:
    """What must equal an uninterrupted run's: everything but ids, clocks and resume notes."""
    budget = summary["budget"]
    return {
        "status": summary["status"],
        "tasks": summary["tasks"],
        "execution_order": summary["execution_order"],
        "results": summary["results"],
        "max_usd": budget["max_usd"],
        "planning": summary["planning"],
        "usage": summary["usage"],  # every kept call, counted once
        "notes": [n for n in summary["notes"] if not n.startswith(("resumed", "interrupted"))],
    }


def _outputs(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(out.iterdir()) if p.name != "summary.json"}


def test_random_kills_resume_to_the_same_results(tmp_path, spawn):
    ref_dir = tmp_path / "ref"
    proc = spawn(
        [
            *ARGS,
            "-o",
            str(ref_dir / "out"),
            "--state-dir",
            str(ref_dir / "state"),
            "--events-jsonl",
            str(ref_dir / "events.jsonl"),
        ],
        ref_dir / "log.txt",
    )
    assert _wait_for(ref_dir / "events.jsonl", proc)
    started = time.monotonic()
    proc.join(60)
    duration = time.monotonic() - started  # from the first event to the end of the process
    assert proc.exitcode in (0, 1), (ref_dir / "log.txt").read_text()
    ref_summary = json.loads((ref_dir / "out" / "summary.json").read_text())
    reference, ref_spent = _normal(ref_summary), ref_summary["budget"]["spent_usd"]
    ref_outputs = _outputs(ref_dir / "out")
    assert ref_spent > 0 and len(reference["results"]) == 5

    rng = random.Random(int(os.environ.get("KILL_SEED", "1414")))
    kept_somewhere = 0
    kills = 0
    for trial in range(TRIALS):
        d = tmp_path / f"t{trial}"
        state, out = d / "state", d / "out"
        common = ["--state-dir", str(state)]
        attempt = 0
        project_id = None
        finished_code = None
        rerun_usd = 0.0
        kills_left = rng.choice((1, 1, 2, 3))
        while finished_code is None:
            attempt += 1
            jsonl = d / f"events{attempt}.jsonl"
            if project_id is None:
                argv = [*ARGS, "-o", str(out), *common, "--events-jsonl", str(jsonl)]
            else:
                argv = ["resume", project_id, *common, "--events-jsonl", str(jsonl), "-q"]
            proc = spawn(argv, d / f"log{attempt}.txt")
            if kills_left and _wait_for(jsonl, proc):
                time.sleep(rng.uniform(0, duration * (0.9 if attempt == 1 else 0.6)))
                proc.kill()  # SIGKILL; nothing if it ended already
                kills_left -= 1
            proc.join(60)
            log = (d / f"log{attempt}.txt").read_text()
            if proc.exitcode == -signal.SIGKILL:
                kills += 1
                with RunStore(state) as store:
                    runs = store.runs()
                    assert len(runs) <= 1
                    project_id = runs[0].project_id if runs else None  # killed before its first checkpoint
                    cp = store.load(project_id) if project_id else None
                rerun_usd = cp.rerun_usd if cp is not None else 0.0
                continue
            assert proc.exitcode in (0, 1), f"trial {trial} attempt {attempt}: {log}"
            finished_code = proc.exitcode
            if project_id is not None and "already finished" not in log:
                _check_kept_tasks_did_not_start(jsonl, d / f"log{attempt}.txt")
                kept_somewhere += bool(_kept(jsonl))
        summary = json.loads((out / "summary.json").read_text())
        assert _normal(summary) == reference, f"trial {trial} (after {attempt} attempts)"
        # money: every kept result paid once; what the last checkpoint says went to work that
        # was running when killed (and ran again, --no-cache) is the only difference
        spent = summary["budget"]["spent_usd"]
        assert spent == pytest.approx(ref_spent + rerun_usd, abs=1e-7), (trial, spent, ref_spent, rerun_usd)
        assert sum(summary["budget"]["phase_spend"].values()) == pytest.approx(spent, abs=1e-7)
        assert _outputs(out) == ref_outputs, f"trial {trial}"
        # exit code as for a normal run; a resume of a run killed after its last checkpoint says
        # "already finished" and exits 0
        assert finished_code == (0 if reference["status"] == "success" or "already finished" in log else 1)
    # the kills landed where they matter: mid-run, with results kept from a checkpoint
    print(f"{kills} kills, {kept_somewhere} resumes kept results from a checkpoint")
    assert kills >= TRIALS and kept_somewhere >= TRIALS // 4, (kills, kept_somewhere)


def _kept(jsonl: Path) -> set[str]:
    return {e["task_id"] for e in read_events(jsonl) if e["signal"] == "task_restored"}


def _check_kept_tasks_did_not_start(jsonl: Path, log: Path) -> None:
    events = read_events(jsonl)
    started = {e["task_id"] for e in events if e["signal"] == "task_started"}
    assert not started & _kept(jsonl), log.read_text()
    assert [e["signal"] for e in events].count("project_started") == 1


def test_a_tasks_checkpoint_is_saved_before_its_task_finished(tmp_path, monkeypatch):
    """A kill right after a ``task_finished`` never loses that task, because its result
    is in the store before the event is sent.  Checked on the order itself, not on a kill
    race: every save and every ``task_finished`` of a real run (the command line, the
    SQLite store) go into one log as they happen; then, for every task, a resume from
    exactly what the store held when its ``task_finished`` was sent keeps it and never
    starts it again."""
    log: list[tuple[str, Any]] = []
    real_save = RunStore.save

    def save(store: RunStore, checkpoint: Checkpoint) -> None:
        real_save(store, checkpoint)
        log.append(("saved", checkpoint))  # once written

    def finished(payload: events.TaskFinished) -> None:
        log.append(("finished", payload.task_id))

    provider = scripted_cli.PricedScript()
    monkeypatch.setattr(wiring, "build_providers", lambda args: {"local": provider, "server": provider})
    monkeypatch.setattr(RunStore, "save", save)
    events.task_finished.connect(finished)
    try:
        code = cli.main([*ARGS, "--state-dir", str(tmp_path / "state")])
    finally:
        events.task_finished.disconnect(finished)
    assert code in (0, 1)
    seen = [(i, task_id) for i, (kind, task_id) in enumerate(log) if kind == "finished"]
    assert sorted(t for _, t in seen) == ["alpha", "beta", "delta", "epsilon", "gamma"]
    stored_when_seen = []
    for i, task_id in seen:
        saved = [cp for kind, cp in log[:i] if kind == "saved"]
        assert saved, f"{task_id} was seen finished before any checkpoint"
        assert task_id in saved[-1].kept, f"{task_id} was seen finished before a checkpoint held its result"
        stored_when_seen.append(saved[-1])
    for n, cp in enumerate(stored_when_seen):  # as if killed right after the n-th task_finished
        state, jsonl = tmp_path / f"killed{n}", tmp_path / f"resumed{n}.jsonl"
        with RunStore(state) as store:
            real_save(store, cp)
        assert cli.main(["resume", cp.project_id, "--state-dir", str(state), "--events-jsonl", str(jsonl), "-q"]) in (
            0,
            1,
        )
        kept = _kept(jsonl)
        assert {task_id for _, task_id in seen[: n + 1]} <= kept
        resumed = read_events(jsonl)
        assert not {e["task_id"] for e in resumed if e["signal"] == "task_started"} & kept
        assert [e["signal"] for e in resumed].count("project_started") == 1
