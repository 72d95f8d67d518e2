"""Fault injection: runs killed with SIGKILL at random instants, then resumed, end with the
same results, outputs, cost and tokens as an uninterrupted run; tasks kept from a
checkpoint never start again.

The processes are real (a kill -9 is a kill -9), started from a forkserver that has the
CLI and a scripted, priced provider preloaded, so each one starts in milliseconds.
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

from orchestrator.state import RunStore
from tests.state import scripted_cli

TRIALS = 20
ARGS = [*scripted_cli.ARGS, "--concurrency", "2"]


@pytest.fixture(scope="module")
def spawn():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["orchestrator.cli.run_cmd", "orchestrator.cli.resume_cmd", "orchestrator.state",
                                "tests.state.scripted_cli"])

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


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # the last line of a killed process may be cut
            pass
    return out


def _normal(summary: dict[str, Any]) -> dict[str, Any]:
    """What must equal an uninterrupted run's: everything but ids, clocks and resume notes."""
    budget = summary["budget"]
    return {
        "status": summary["status"], "tasks": summary["tasks"], "execution_order": summary["execution_order"],
        "results": summary["results"], "max_usd": budget["max_usd"],
        "planning": summary["planning"], "usage": summary["usage"],  # every kept call, counted once
        "notes": [n for n in summary["notes"] if not n.startswith(("resumed", "interrupted"))],
    }


def _outputs(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(out.iterdir()) if p.name != "summary.json"}


def test_random_kills_resume_to_the_same_results(tmp_path, spawn):
    ref_dir = tmp_path / "ref"
    proc = spawn([*ARGS, "-o", str(ref_dir / "out"), "--state-dir", str(ref_dir / "state"),
                  "--events-jsonl", str(ref_dir / "events.jsonl")], ref_dir / "log.txt")
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
    return {e["task_id"] for e in _events(jsonl) if e["signal"] == "task_restored"}


def _check_kept_tasks_did_not_start(jsonl: Path, log: Path) -> None:
    events = _events(jsonl)
    started = {e["task_id"] for e in events if e["signal"] == "task_started"}
    assert not started & _kept(jsonl), log.read_text()
    assert [e["signal"] for e in events].count("project_started") == 1


@pytest.mark.parametrize("nth", [1, 2, 3, 4])
def test_a_task_seen_finished_is_never_run_again(tmp_path, spawn, nth):
    """Killed the instant the n-th ``task_finished`` is seen: that task's result was in the
    store before the event was sent, so the resume keeps it (no ``task_started``)."""
    state, jsonl = tmp_path / "state", tmp_path / "run.jsonl"
    proc = spawn([*ARGS, "--state-dir", str(state), "--events-jsonl", str(jsonl)], tmp_path / "log.txt")
    deadline = time.monotonic() + 60
    finished: list[str] = []
    while len(finished) < nth:
        assert proc.is_alive() and time.monotonic() < deadline, (tmp_path / "log.txt").read_text()
        finished = [e["task_id"] for e in _events(jsonl) if e["signal"] == "task_finished"]
        time.sleep(0.001)
    proc.kill()
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    (row,) = RunStore(state).runs()
    resumed = tmp_path / "resumed.jsonl"
    proc = spawn(["resume", row.project_id, "--state-dir", str(state), "--events-jsonl", str(resumed), "-q"],
                 tmp_path / "log2.txt")
    proc.join(60)
    assert proc.exitcode in (0, 1), (tmp_path / "log2.txt").read_text()
    kept = _kept(resumed)
    assert set(finished) <= kept  # every task seen finished (others may have finished too)
    _check_kept_tasks_did_not_start(resumed, tmp_path / "log2.txt")
