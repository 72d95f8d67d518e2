"""A native crash of the embedded model during a real run, through the real command line:
the worker process kills itself with a real signal in the middle of a generation
(``ORCHESTRATOR_LOCAL_WORKER_FAULT``), and the run still ends with its summary written,
every event pair closed, its checkpoint in the store and exit 0 or 1, never death by a
signal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.llm.providers.local_worker_main import FAULT_ENV

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "Write a Python function add(a, b) that returns a + b"


def _run(tmp_path: Path, fault: str) -> tuple[subprocess.CompletedProcess, list[dict], dict]:
    jsonl, out = tmp_path / "events.jsonl", tmp_path / "out"
    env = {**os.environ, FAULT_ENV: fault}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "-p",
            PROJECT,
            "-c",
            "add(1, 1) == 2",
            "--no-cache",
            "-o",
            str(out),
            "--events-jsonl",
            str(jsonl),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    recorded = [json.loads(line) for line in jsonl.read_text().splitlines()]
    return proc, recorded, json.loads((out / "summary.json").read_text())


def _pairs_closed(recorded: list[dict]) -> None:
    starts = sorted(r["correlation_id"] for r in recorded if r["signal"].endswith("_started"))
    finishes = sorted(
        r["correlation_id"] for r in recorded if r["signal"].endswith("_finished") or r["signal"] == "policy_checked"
    )
    assert starts and starts == finishes


@pytest.mark.parametrize("signal_name", ["SIGSEGV", "SIGABRT", "SIGKILL"])
def test_a_worker_crash_mid_generation_costs_one_attempt(tmp_path, signal_name):
    proc, recorded, summary = _run(tmp_path, f"{signal_name}:2")
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    _pairs_closed(recorded)
    calls = [r for r in recorded if r["signal"] == "llm_call_finished"]
    crashed = [c for c in calls if c["attributes"].get("error.type") == "WorkerCrashed"]
    assert len(crashed) == 1 and f"died with {signal_name}" in crashed[0]["error_message"]
    assert [r["error_type"] for r in recorded if r["signal"] == "llm_retry"] == ["WorkerCrashed"]
    # the retry on the restarted worker did the work
    assert summary["status"] == "success" and summary["results"]["add"]["status"] == "completed"
    assert summary["results"]["add"]["llm_calls"] == 2
    show = subprocess.run(
        [sys.executable, "-m", "orchestrator", "runs", "show", summary["project_id"]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert show.returncode == 0 and "success" in show.stdout  # the checkpoint was written


def test_a_worker_that_crashes_every_time_fails_the_task_not_the_run(tmp_path):
    """Every worker dies: the call is retried once, then remediation goes on as for any
    provider error; the run ends (exit 1) with its summary, never by a signal."""
    proc, recorded, summary = _run(tmp_path, "SIGSEGV:1:every")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    _pairs_closed(recorded)
    crashed = [
        r
        for r in recorded
        if r["signal"] == "llm_call_finished" and r["attributes"].get("error.type") == "WorkerCrashed"
    ]
    assert len(crashed) >= 2
    assert summary["status"] == "failed" and summary["results"]["add"]["status"] == "failed"
    assert any(r["signal"] == "remediation_finished" for r in recorded)
