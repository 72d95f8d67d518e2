"""``orchestrator report`` and ``--report`` at the command line: bad input is one line and
exit 2 before anything is written; the report is written at the end of a run however it
ended - interrupted (Ctrl-C), failed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from tests.assertions import assert_one_line_error
from tests.report.pages import parse
from tests.state import scripted_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "notjson.jsonl").write_text("hello\nworld\n")
    (tmp_path / "nostart.jsonl").write_text(
        json.dumps({"signal": "cache_hit", "correlation_id": "c", "timestamp_ns": 1, "project_id": "p"}) + "\n"
    )
    (tmp_path / "noclock.jsonl").write_text(json.dumps({"signal": "project_started", "correlation_id": "c"}) + "\n")
    two = [
        {
            "signal": "project_started",
            "correlation_id": f"c{i}",
            "timestamp_ns": i,
            "project_id": f"proj-{i}",
            "attempt": 1,
        }
        for i in (1, 2)
    ]
    (tmp_path / "two.jsonl").write_text("".join(json.dumps(e) + "\n" for e in two))
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link.html").symlink_to(tmp_path / "elsewhere.html")
    return tmp_path


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["report"], "the following arguments are required"),
        (["report", "proj-nosuch"], "no such file, and no run with this id"),
        (["report", "{d}/notjson.jsonl"], "notjson.jsonl:1: not a JSON line"),
        (["report", "{d}/nostart.jsonl"], "no run in these events (no project_started event)"),
        (["report", "{d}/noclock.jsonl"], "has no whole 'timestamp_ns'"),
        (["report", "{d}/two.jsonl"], "these events hold 2 runs (proj-1, proj-2)"),
        (["report", "{d}/empty.jsonl"], "no events"),
        (["report", "{d}/dir"], "is a directory, not an events file"),
        (["report", "{d}/two.jsonl", "-o", "{d}/no/such/dir/r.html"], "no such directory"),
        (["report", "{d}/two.jsonl", "-o", "{d}/dir"], "is a directory"),
        (["report", "a", "b"], "one project id at a time"),
        (["-p", "x", "--report", "{d}/dir"], "--report {d}/dir: is a directory"),
        (["-p", "x", "--report", "{d}/no/such/r.html"], "no such directory"),
        (["report", "{d}/two.jsonl", "-o", "{d}/link.html"], "is a symbolic link; not followed"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(files, argv, fragment, capsys):
    before = sorted(p.name for p in files.iterdir())
    argv = [a.format(d=files) for a in argv]
    assert main(argv) == 2
    assert fragment.format(d=files) in assert_one_line_error(capsys.readouterr().err)
    assert sorted(p.name for p in files.iterdir()) == before  # nothing written


def test_a_store_without_an_event_log_says_what_to_do(tmp_path, capsys):
    from orchestrator.state import RunStore
    from tests.state.test_store import _checkpoint

    RunStore(tmp_path).save(_checkpoint("proj-old"))  # as a run of an older version left it
    assert main(["report", "proj-old", "--state-dir", str(tmp_path)]) == 2
    assert "has no event log of this run" in assert_one_line_error(capsys.readouterr().err)


def test_the_report_is_written_after_ctrl_c(tmp_path):
    events = tmp_path / "events.jsonl"
    env = {**os.environ, "SCRIPTED_SLOW": "8"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.state.scripted_cli",
            *scripted_cli.ARGS,
            "--state-dir",
            str(tmp_path / "state"),
            "--events-jsonl",
            str(events),
            "--report",
            str(tmp_path / "r.html"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while '"task_finished"' not in (events.read_text() if events.exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Report written to" in out and "interrupted" in err
    page = parse((tmp_path / "r.html").read_text())
    assert page.texts["t-exit"].startswith("interrupted (Ctrl-C)")
    assert page.bars["task"] >= 1 and page.data["attempts"][0]["finished"] is True


def test_the_report_is_written_after_a_failure(tmp_path, monkeypatch, capsys):
    from orchestrator.engine import orchestrator as engine

    def broken(tasks):
        raise RuntimeError("the scheduler broke")

    monkeypatch.setattr(engine, "topological_order", broken)
    code = scripted_cli.main(
        [*scripted_cli.ARGS, "--state-dir", str(tmp_path / "state"), "--report", str(tmp_path / "r.html")]
    )
    assert code == 1
    captured = capsys.readouterr()
    assert "the scheduler broke" in captured.err and "Report written to" in captured.out
    page = parse((tmp_path / "r.html").read_text())
    assert page.texts["t-exit"] == "failed: RuntimeError"
    assert any(r[2] == "RuntimeError" for r in page.table_rows["errors-table"][1:])
