"""``orchestrator resume`` and ``orchestrator runs`` through the real command line (a
scripted provider, so the runs are quick and deterministic): the project id printed at
the start, history listing, show, rm, and the one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator import cli
from orchestrator.state import DB_NAME, RunStore
from tests.assertions import assert_one_line_error
from tests.helpers import as_if_killed
from tests.state import scripted_cli

ROOT = Path(__file__).resolve().parents[2]
ARGS = scripted_cli.ARGS


def test_a_run_prints_its_id_and_is_listed(tmp_path, scripted, capsys):
    state = tmp_path / "state"
    code = cli.main([*ARGS, "--state-dir", str(state), "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    pid = json.loads((tmp_path / "out" / "summary.json").read_text())["project_id"]
    first = out.splitlines()[0]
    assert first.startswith(f"Project {pid}") and f"orchestrator resume {pid} --state-dir {state}" in out
    assert code == cli.EXIT_RUN_FAILED  # partial success (gamma degrades)
    assert cli.main(["runs", "--state-dir", str(state)]) == cli.EXIT_OK
    listing = capsys.readouterr().out
    assert pid in listing and "partial_success" in listing and "5/5" in listing and "no: finished" in listing
    assert cli.main(["runs", "show", pid, "--state-dir", str(state)]) == cli.EXIT_OK
    shown = capsys.readouterr().out
    for tid in ("alpha", "beta", "gamma", "delta", "epsilon"):
        assert tid in shown
    assert "resumable: no: finished" in shown and "output dir:" in shown


def test_resume_of_a_stopped_run_through_the_cli(tmp_path, scripted, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # a table wide enough not to fold its cells
    state, out = tmp_path / "state", tmp_path / "out"
    cli.main([*ARGS, "--state-dir", str(state), "-o", str(out)])
    reference = json.loads((out / "summary.json").read_text())
    pid = reference["project_id"]
    as_if_killed(state, pid, ("delta", "epsilon"))  # as the checkpoint after the third task had it
    (out / "summary.json").unlink()
    capsys.readouterr()
    assert cli.main(["runs", "--state-dir", str(state)]) == cli.EXIT_OK
    listing = capsys.readouterr().out
    assert "stopped" in listing and "yes" in listing
    code = cli.main(["resume", pid, "--state-dir", str(state), "--events-jsonl", str(tmp_path / "e.jsonl"), "-q"])
    printed = capsys.readouterr().out
    assert code == cli.EXIT_RUN_FAILED  # as the run itself: partial success
    assert f"Resuming project {pid} (attempt 2): keeping 3 of 5" in printed
    assert "checkpoint (attempt 1)" in printed and "attempt 2" in printed  # the summary's 'from' column
    summary = json.loads((out / "summary.json").read_text())  # written to the original output dir
    assert summary["results"] == reference["results"] and summary["attempt"] == 2
    assert set(summary["restored"]) == {"alpha", "beta", "gamma"}
    events = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert sorted(e["task_id"] for e in events if e["signal"] == "task_started") == ["delta", "epsilon"]
    assert {e["project_id"] for e in events} == {pid}
    # once finished, a resume says so and exits 0
    assert cli.main(["resume", pid, "--state-dir", str(state)]) == cli.EXIT_OK
    assert "already finished" in capsys.readouterr().out


def test_resume_cannot_lower_the_caps(tmp_path, scripted, capsys):
    state = tmp_path / "state"
    cli.main([*ARGS, "--state-dir", str(state), "-b", "2.0", "-t", "600"])
    pid = RunStore(state).runs()[0].project_id
    as_if_killed(state, pid, ("delta", "epsilon"))  # as the checkpoint after the third task had it
    capsys.readouterr()
    assert cli.main(["resume", pid, "--state-dir", str(state), "-b", "1.0"]) == cli.EXIT_USAGE
    assert_one_line_error(capsys.readouterr().err, "--budget can only raise the original cap $2")
    assert cli.main(["resume", pid, "--state-dir", str(state), "-t", "60"]) == cli.EXIT_USAGE
    assert_one_line_error(capsys.readouterr().err, "--time can only raise the original cap 600s")
    assert cli.main(["resume", pid, "--state-dir", str(state), "-b", "3", "-t", "900", "-q"]) == cli.EXIT_RUN_FAILED
    assert RunStore(state).load(pid).max_usd == 3.0


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["resume", "proj-nope"], "unknown project id 'proj-nope' (see 'orchestrator runs')"),
        (["resume"], "the following arguments are required: PROJECT_ID"),
        (["runs", "show", "proj-nope"], "unknown project id 'proj-nope'"),
        (["runs", "rm", "proj-nope"], "unknown project id 'proj-nope'"),
        (["runs", "rm"], "give run ids or --older-than AGE"),
        (["runs", "rm", "--older-than", "soon"], "--older-than: expected an age like 30m"),
        (["runs", "bogus"], "invalid choice"),
    ],
)
def test_bad_ids_and_usage_are_one_line(tmp_path, argv, fragment, capsys):
    assert cli.main([*argv, "--state-dir", str(tmp_path)]) == cli.EXIT_USAGE
    assert_one_line_error(capsys.readouterr().err, fragment)


@pytest.mark.parametrize("argv", [["runs"], ["runs", "show", "x"], ["resume", "x"], ["-p", "x"]])
def test_a_corrupt_store_is_one_line(tmp_path, argv, capsys):
    (tmp_path / DB_NAME).write_bytes(b"garbage " * 1000)
    assert cli.main([*argv, "--state-dir", str(tmp_path)]) == cli.EXIT_USAGE
    assert_one_line_error(capsys.readouterr().err, "not a readable run store")


def test_an_older_store_schema_is_refused_in_one_line(tmp_path, capsys):
    RunStore(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("UPDATE schema_version SET version = 0")
    conn.commit()
    conn.close()
    assert cli.main(["runs", "--state-dir", str(tmp_path)]) == cli.EXIT_USAGE
    assert_one_line_error(capsys.readouterr().err, "schema version 0 is too old to migrate")


def test_runs_rm_and_older_than(tmp_path, scripted, capsys):
    state = tmp_path / "state"
    for _ in range(3):
        cli.main([*ARGS, "--state-dir", str(state)])
    ids = [r.project_id for r in RunStore(state).runs()]
    conn = sqlite3.connect(state / DB_NAME)
    conn.execute("UPDATE runs SET updated_at = updated_at - 10 * 86400 WHERE project_id = ?", (ids[2],))
    conn.commit()
    conn.close()
    capsys.readouterr()
    assert cli.main(["runs", "rm", "--older-than", "7d", "--state-dir", str(state)]) == cli.EXIT_OK
    assert capsys.readouterr().out.strip() == f"removed {ids[2]}"
    assert cli.main(["runs", "rm", ids[0], "--state-dir", str(state)]) == cli.EXIT_OK
    assert [r.project_id for r in RunStore(state).runs()] == [ids[1]]
    with RunStore(state).claim(ids[1]):  # a run in progress is not removed
        assert cli.main(["runs", "rm", ids[1], "--state-dir", str(state)]) == cli.EXIT_USAGE
        assert_one_line_error(capsys.readouterr().err, "is being run by another process")
        assert cli.main(["runs", "--state-dir", str(state)]) == cli.EXIT_OK
        assert "running now" in capsys.readouterr().out


def test_two_resumes_of_one_project_one_is_refused(tmp_path):
    """Two real processes: while one resume runs, a second is refused with one line."""
    state = tmp_path / "state"
    env = {**os.environ, "SCRIPTED_SLOW": "40"}

    def start(*argv: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.state.scripted_cli", *argv, "--state-dir", str(state)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    first = start(*ARGS)
    try:
        _wait(lambda: RunStore(state).runs() and RunStore(state).is_running(RunStore(state).runs()[0].project_id))
        pid = RunStore(state).runs()[0].project_id
        first.kill()
        first.wait(30)
        one = start("resume", pid, "-q")
        _wait(lambda: RunStore(state).is_running(pid))
        two = start("resume", pid, "-q")
        out, err = two.communicate(timeout=60)
        assert two.returncode == cli.EXIT_USAGE, err
        assert err.strip().startswith(f"orchestrator: error: project {pid} is being run by another process (pid ")
        assert len(err.strip().splitlines()) == 1
        assert one.poll() is None  # the first one goes on
        one.kill()
        one.wait(30)
    finally:
        for proc in (first,):
            if proc.poll() is None:
                proc.kill()


def _wait(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
