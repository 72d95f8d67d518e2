"""Ctrl-C in a second, on a real SmolLM2 run through the real command line: SIGINT while
the local model is generating ends the process within 2 s with exit 130, the summary
printed and ``summary.json`` written; a second SIGINT exits at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = (
    "project: A long module\ncriteria: it works\ntasks:\n  - id: big\n    type: code_generation\n"
    "    prompt: Write a long Python module with ten functions, each with a docstring and tests.\n"
)


def _start(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    (tmp_path / "p.yaml").write_text(PROJECT)
    jsonl = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "-f",
            str(tmp_path / "p.yaml"),
            "--no-cache",
            "-o",
            str(tmp_path / "out"),
            "--events-jsonl",
            str(jsonl),
            "-q",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, jsonl


def _wait_until_generating(proc: subprocess.Popen, jsonl: Path) -> None:
    """Until the local model holds its lock and generates (its call was dispatched)."""
    deadline = time.monotonic() + 240
    while not (jsonl.exists() and '"llm_call_dispatched"' in jsonl.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, "the generation never started"
        time.sleep(0.05)
    time.sleep(0.5)  # well inside the generation (SmolLM2 writes for many seconds here)


def _interrupt_while_generating(tmp_path: Path, times: int) -> tuple[subprocess.Popen, Path, str, str, float]:
    """Start a run, send it ``times`` SIGINTs while the local model generates; the process,
    its events file, its output and error text, and how long it took to exit after them."""
    proc, jsonl = _start(tmp_path)
    try:
        _wait_until_generating(proc, jsonl)
        assert proc.poll() is None
        sent = time.monotonic()
        for _ in range(times):
            os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc, jsonl, out, err, took


def test_sigint_during_a_local_generation_exits_130_within_two_seconds(tmp_path):
    proc, jsonl, out, err, took = _interrupt_while_generating(tmp_path, 1)
    assert proc.returncode == 130, err
    assert took < 2.0, f"exited {took:.2f}s after SIGINT"
    assert err.strip().splitlines()[-1] == "orchestrator: interrupted" and "Traceback" not in err
    assert "Total:" in out and "big" in out  # the summary was printed
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["results"]["big"]["status"] == "failed" and summary["results"]["big"]["error"] == "interrupted"
    recorded = [json.loads(line) for line in jsonl.read_text().splitlines()]
    starts = sorted(r["correlation_id"] for r in recorded if r["signal"].endswith("_started"))
    finishes = sorted(
        r["correlation_id"] for r in recorded if r["signal"].endswith("_finished") or r["signal"] == "policy_checked"
    )
    assert starts == finishes  # every pair closed, the interrupted call included


def test_a_second_sigint_exits_at_once(tmp_path):
    proc, _, out, err, took = _interrupt_while_generating(tmp_path, 2)
    assert proc.returncode == 130, err
    assert took < 2.0
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] in ("orchestrator: interrupted again: exiting now", "orchestrator: interrupted")


WINDING_DOWN = """
import atexit, sys, time
from orchestrator.cli.interrupt import exit_when_stuck, ignore_sigint_at_the_end

ignore_sigint_at_the_end()  # as the entry point does, before anything else
PHASE = sys.argv[1]
if PHASE == "exit-hook":
    atexit.register(time.sleep, 30)  # an exit hook that takes its time (Ray's, OpenTelemetry's)
else:  # the interpreter's teardown, after every exit hook: Python's handlers are gone by then

    class Slow:
        def __del__(self):
            time.sleep(3)

    keep = Slow()
print("summary written", flush=True)
exit_when_stuck(130)
sys.exit(130)
"""


@pytest.mark.parametrize(
    "phase, lines",
    [("exit-hook", ["orchestrator: interrupted again: exiting now"]), ("teardown", [])],
)
def test_a_second_sigint_while_the_command_winds_down_still_exits_130(tmp_path, phase, lines):
    """After the interrupted command wrote its summary, the interpreter's exit hooks still
    run, then its teardown.  A Ctrl-C in an exit hook ends it at once, 130 and one line; in
    the teardown (nothing left to stop) it is ignored.  Never killed by the signal (-2),
    never a KeyboardInterrupt traceback from an exit hook."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WINDING_DOWN, phase],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "summary written\n"
        time.sleep(0.5)  # in the exit hook, or the teardown, by now
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        seconds = time.monotonic() - started
    finally:
        proc.kill()
    assert proc.returncode == 130 and seconds < 5.0, (proc.returncode, seconds, err)
    assert err.strip().splitlines() == lines, err


def test_a_ctrl_c_no_run_catches_is_one_line_and_130(monkeypatch, capsys):
    """A KeyboardInterrupt that reaches the entry point (before a run installs its own
    handler, or as the command returns) is the usual line and 130, not a traceback."""
    import importlib

    entry = importlib.import_module("orchestrator.cli.main")  # the module (the package exports main itself)

    def interrupted() -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(entry, "main", interrupted)
    # in-process: no handler, no exit hook
    monkeypatch.setattr("orchestrator.cli.interrupt.exit_when_stuck", lambda code: None)
    monkeypatch.setattr("orchestrator.cli.interrupt.ignore_sigint_at_the_end", lambda: None)
    with pytest.raises(SystemExit) as exit_:
        entry.console_main()
    assert exit_.value.code == 130
    assert capsys.readouterr().err == "orchestrator: interrupted\n"
