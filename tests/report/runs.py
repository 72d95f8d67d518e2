"""Runs the report tests share: a scripted, priced run through the real command line,
killed with SIGKILL (a real process) once its first task finished, then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.state import scripted_cli

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Resumed:
    project_id: str
    state_dir: Path
    events: list[Path]
    """The --events-jsonl file of each attempt."""
    summary: dict
    report: Path
    """Written by the resume's --report."""


def _finished_tasks(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if '"signal": "task_finished"' in line)


def killed_and_resumed(d: Path) -> Resumed:
    """Attempt 1 killed right after its first ``task_finished``; attempt 2 (in-process,
    ``orchestrator resume``) finishes the run and writes the report."""
    state, first = d / "state", d / "events1.jsonl"
    env = {**os.environ, "SCRIPTED_SLOW": "8", "ORCHESTRATOR_STATE_DIR": str(state)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.state.scripted_cli",
            *scripted_cli.ARGS,
            "--concurrency",
            "2",
            "--state-dir",
            str(state),
            "-o",
            str(d / "out"),
            "--events-jsonl",
            str(first),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while _finished_tasks(first) < 1:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "no task finished in time"
            time.sleep(0.01)
        time.sleep(0.3)  # into the next tasks' calls
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
    project_id = next(
        json.loads(line)["project_id"] for line in first.read_text().splitlines() if '"project_started"' in line
    )
    second = d / "events2.jsonl"
    code = scripted_cli.main(
        [
            "resume",
            project_id,
            "--state-dir",
            str(state),
            "--events-jsonl",
            str(second),
            "--report",
            str(d / "report.html"),
            "-q",
        ]
    )
    assert code in (0, 1)
    summary = json.loads((d / "out" / "summary.json").read_text())
    assert summary["attempt"] == 2 and summary["restored"]
    return Resumed(project_id, state, [first, second], summary, d / "report.html")
