"""The issue's end-to-end case on the real local model (SmolLM2): a CLI run killed with
SIGKILL right after its first ``task_finished`` event, resumed with ``orchestrator
resume``; then the same project run once without a break, on the same response cache,
as the reference.  The completed task is not started again, the totals count every call
behind a kept result once (as one uninterrupted run's accounting does), the results,
outputs and exit code equal the uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.state import RunStore
from tests.helpers import read_events

ROOT = Path(__file__).resolve().parents[2]
PROJECT = """\
project: Two short notes
criteria: each note is one sentence
tasks:
  - id: first
    type: summarization
    prompt: Say hello to a new colleague in one sentence.
    max_iterations: 1
  - id: second
    type: summarization
    prompt: Say goodbye to the same colleague in one sentence.
    depends_on: [first]
    max_iterations: 1
"""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", *args]


def test_killed_local_run_resumes_without_running_the_finished_task_again(tmp_path):
    project = tmp_path / "project.yaml"
    project.write_text(PROJECT)
    cache, state, out = tmp_path / "cache", tmp_path / "state", tmp_path / "out"
    killed_jsonl = tmp_path / "killed.jsonl"
    run = subprocess.Popen(
        _cli(
            "-f",
            str(project),
            "--cache-dir",
            str(cache),
            "--state-dir",
            str(state),
            "-o",
            str(out),
            "--events-jsonl",
            str(killed_jsonl),
            "--tracing",
            "-q",
        ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (killed_jsonl.exists() and '"task_finished"' in killed_jsonl.read_text()):
            assert run.poll() is None and time.monotonic() < deadline, "no task finished"
            time.sleep(0.02)
        run.send_signal(signal.SIGKILL)
        run.wait(30)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == -signal.SIGKILL
    killed = read_events(killed_jsonl)
    (finished,) = [e for e in killed if e["signal"] == "task_finished"]
    assert finished["task_id"] == "first"
    pid = finished["project_id"]
    assert not (out / "summary.json").exists()  # the kill left nothing but the checkpoint

    resumed_jsonl = tmp_path / "resumed.jsonl"
    resumed = subprocess.run(
        _cli("resume", pid, "--state-dir", str(state), "--events-jsonl", str(resumed_jsonl), "--tracing"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "220"},
    )  # wide enough not to fold the tree
    assert resumed.returncode in (0, 1), resumed.stderr
    assert "Traceback" not in resumed.stderr
    events = read_events(resumed_jsonl)
    assert [e["task_id"] for e in events if e["signal"] == "task_started"] == ["second"]  # not 'first' again
    assert [e["task_id"] for e in events if e["signal"] == "task_restored"] == ["first"]
    assert {e["project_id"] for e in events} == {pid}
    (start,) = [e for e in events if e["signal"] == "project_started"]
    assert start["attempt"] == 2 and len(start["links"]) == 1  # linked to the killed run's root
    assert "from checkpoint (attempt 1)" in resumed.stdout and "resumed: attempt 2" in resumed.stdout

    summary = json.loads((out / "summary.json").read_text())  # the original --output-dir
    first = summary["results"]["first"]
    attrs = finished["attributes"]
    assert (first["status"], first["input_tokens"], first["output_tokens"], first["cost_usd"]) == (
        attrs["task.status"],
        attrs["task.tokens_in"],
        attrs["task.tokens_out"],
        attrs["task.cost_usd"],
    )
    assert summary["restored"] == {"first": 1} and summary["attempt"] == 2

    # the accounting of one uninterrupted run: every call behind a kept result counted once -
    # the first task's calls from the killed attempt, every call of the resumed one - and
    # nothing of the second task's calls the kill cut short (their answers come back from
    # the cache, as calls without tokens or cost)
    def calls(events: list[dict[str, Any]], task: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in events
            if e["signal"] == "llm_call_finished" and e["status"] == "ok" and (task is None or e["task_id"] == task)
        ]

    counted = calls(killed, "first") + calls(events)
    fresh = [c for c in counted if not c["attributes"]["llm.cached"]]
    usage = summary["usage"]
    assert usage["llm_calls"] == len(counted) and usage["cached_calls"] == len(counted) - len(fresh)
    assert usage["input_tokens"] == sum(c["attributes"]["llm.tokens_in"] for c in fresh)
    assert usage["output_tokens"] == sum(c["attributes"]["llm.tokens_out"] for c in fresh)
    assert usage["cost_usd"] == summary["budget"]["spent_usd"] == 0.0  # the local model is free
    (end,) = [e for e in events if e["signal"] == "project_finished"]
    assert (
        end["attributes"]["project.tokens_in"],
        end["attributes"]["project.tokens_out"],
        end["attributes"]["project.llm_calls"],
    ) == (usage["input_tokens"], usage["output_tokens"], usage["llm_calls"])

    # the same project without a break, on the same cache (so the same answers): the same
    # results, outputs, calls and exit code
    reference = subprocess.run(
        _cli(
            "-f",
            str(project),
            "--cache-dir",
            str(cache),
            "--state-dir",
            str(tmp_path / "state2"),
            "-o",
            str(tmp_path / "ref"),
            "-q",
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    ref = json.loads((tmp_path / "ref" / "summary.json").read_text())
    same = ("output", "score", "status", "iterations", "model_used", "llm_calls", "error")
    for tid in ("first", "second"):
        assert {k: summary["results"][tid][k] for k in same} == {k: ref["results"][tid][k] for k in same}, tid
    assert summary["status"] == ref["status"] and summary["usage"]["llm_calls"] == ref["usage"]["llm_calls"]
    assert resumed.returncode == reference.returncode == (0 if ref["status"] == "success" else 1)
    for name in ("first.md", "second.md"):
        assert (out / name).read_text() == (tmp_path / "ref" / name).read_text()

    # the history lists the project, with both attempts
    (row,) = RunStore(state).runs()
    assert (row.project_id, row.attempt, row.status, row.tasks_total) == (pid, 2, ref["status"], 2)
    listing = subprocess.run(
        _cli("runs", "--state-dir", str(state)), cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert pid in listing.stdout and listing.returncode == 0
