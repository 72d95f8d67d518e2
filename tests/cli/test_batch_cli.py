"""``orchestrator batch`` through the real command line: bad input refused up front
(exit 2, one line, nothing written); a batch of scripted, priced projects with its
outputs, summary and store record; a batch killed with SIGKILL and resumed without
paying twice; Ctrl-C within 5 s with everything checkpointed; the embedded model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.state import RunStore
from tests.reliability.test_bad_input import _snapshot
from tests.state.scripted_cli import CATALOG_FILE, MODEL

ROOT = Path(__file__).resolve().parents[2]
SCRIPTED = ["--model", MODEL, "--catalog", CATALOG_FILE, "--no-cache", "-q"]


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("OTEL_")}
    env.update(
        HOME=str(tmp / "home"),
        XDG_CACHE_HOME=str(tmp / "xdg-cache"),
        XDG_CONFIG_HOME=str(tmp / "xdg-config"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def _cli(tmp: Path, *argv: str, scripted: bool = False, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tests.state.scripted_cli"] if scripted else [sys.executable, "-m", "orchestrator"]
    return subprocess.run([*cmd, *argv], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=_env(tmp))


ONE = "projects:\n  - project: x\n"
BAD = [  # (name, batch file (path -> text), extra argv, fragment of the one error line)
    ("missing-file", {}, [], "no such batch file"),
    ("top-key-typo", {"b.yaml": "projets:\n  - project: x\n"}, [], "did you mean 'projects'"),
    (
        "entry-key-typo",
        {"b.yaml": "projects:\n  - project: x\n    budjet_usd: 1\n"},
        [],
        "projects[0].budjet_usd: unknown key",
    ),
    ("entry-budget-nan", {"b.yaml": "projects:\n  - project: x\n    budget_usd: .nan\n"}, [], "projects[0].budget_usd"),
    ("no-projects", {"b.yaml": "projects: []\n"}, [], "projects"),
    ("entry-without-project", {"b.yaml": "projects:\n  - criteria: ok\n"}, [], "projects[0].project"),
    (
        "yaml-alias",
        {"b.yaml": "defaults: &d {criteria: ok}\nprojects:\n  - project: x\n    budget_usd: *d\n"},
        [],
        "aliases are not allowed",
    ),
    ("duplicate-key", {"b.yaml": "budget_usd: 0.01\nbudget_usd: 500\n" + ONE}, [], "duplicate key 'budget_usd'"),
    (
        "duplicate-names",
        {"b.yaml": "projects:\n  - {name: a, project: x}\n  - {name: A, project: y}\n"},
        [],
        "projects[1].name: the name 'A' is already the name of project 1",
    ),
    ("name-with-slash", {"b.yaml": "projects:\n  - {name: ../up, project: x}\n"}, [], "projects[0].name"),
    ("defaults-output-dir", {"b.yaml": "defaults: {output_dir: o}\n" + ONE}, [], "defaults.output_dir"),
    (
        "same-output-dir",
        {"b.yaml": "projects:\n  - {project: x, output_dir: o}\n  - {project: y, output_dir: o}\n"},
        [],
        "two projects write to the same output directory",
    ),
    (
        "task-cycle",
        {
            "b.yaml": "projects:\n  - project: x\n    tasks:\n      - {id: a, prompt: p, depends_on: [b]}\n"
            "      - {id: b, prompt: q, depends_on: [a]}\n"
        },
        [],
        "dependency cycle",
    ),
    ("jsonl-bad-line", {"b.jsonl": '{"project": "x"}\n{"project": \n'}, [], "b.jsonl:2"),
    (
        "jsonl-unknown-key",
        {"b.jsonl": '{"project": "x"}\n{"project": "y", "budjet_usd": 1}\n'},
        [],
        "b.jsonl:2: budjet_usd: unknown key",
    ),
    (
        "prompt-too-long",
        {"b.yaml": "projects:\n  - project: " + "lorem ipsum " * 8000 + "\n"},
        [],
        "the prompt is too long",
    ),
    ("max-parallel-zero", {"b.yaml": ONE}, ["--max-parallel", "0"], "--max-parallel must be a whole number >= 1"),
    ("budget-nan", {"b.yaml": ONE}, ["-b", "nan"], "--budget must be a number >= 0"),
    ("time-zero", {"b.yaml": ONE}, ["-t", "0"], "--time must be a number > 0"),
    ("ray-address-without-ray", {"b.yaml": ONE}, ["--ray-address", "auto"], "need --backend ray"),
    (
        "ray-cpus-under-one-on-the-embedded-model",
        {"b.yaml": ONE},
        ["--backend", "ray", "--ray-num-cpus", "0.5"],
        "needs at least 1 CPU",
    ),
    ("backend-unknown", {"b.yaml": ONE}, ["--backend", "spark"], "invalid choice: 'spark'"),
]


@pytest.mark.parametrize("name,files,extra,fragment", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_and_nothing_is_written(tmp_path, name, files, extra, fragment):
    for file, text in files.items():
        (tmp_path / file).write_text(text)
    batch = next(iter(files), "b.yaml")
    before = _snapshot(tmp_path)
    proc = _cli(
        tmp_path,
        "batch",
        str(tmp_path / batch),
        "--state-dir",
        str(tmp_path / "state"),
        "-o",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
        *extra,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("orchestrator: error: ") and fragment in lines[0], lines[0]
    assert proc.stdout == "" and _snapshot(tmp_path) == before


def test_resume_of_an_unknown_batch_is_one_line(tmp_path):
    proc = _cli(tmp_path, "batch", "resume", "batch-nope", "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "orchestrator: error: unknown batch id 'batch-nope' (see 'orchestrator runs --batches')"
    ]
    assert not (tmp_path / "state").exists()


BATCH = """budget_usd: {budget}
max_parallel: 2
defaults:
  criteria: ok
  budget_usd: 0.5
projects:
  - name: one
    project: Scripted project one
  - name: two
    project: Scripted project two
  - name: three
    project: Scripted project three
"""


def test_a_scripted_batch_writes_outputs_summary_and_record(tmp_path):
    (tmp_path / "b.yaml").write_text(BATCH.format(budget=0.06))
    proc = _cli(
        tmp_path,
        "batch",
        str(tmp_path / "b.yaml"),
        "--state-dir",
        str(tmp_path / "state"),
        "-o",
        str(tmp_path / "out"),
        "--max-tasks",
        "3",
        *SCRIPTED,
        scripted=True,
    )
    assert proc.returncode in (0, 1), proc.stderr
    summary = json.loads((tmp_path / "out" / "batch-summary.json").read_text())
    assert summary["budget"]["spent_usd"] <= 0.06 and summary["budget"]["held_usd"] == 0
    assert [r["name"] for r in summary["results"]] == ["one", "two", "three"]
    assert summary["usage"]["llm_calls"] == sum(r["llm_calls"] for r in summary["results"])
    store = RunStore(tmp_path / "state")
    record = store.batches.load(summary["batch_id"])
    assert record.status == summary["status"] and [p.name for p in record.projects] == ["one", "two", "three"]
    for row in summary["results"]:
        if row["tasks_total"]:
            project_summary = json.loads((tmp_path / "out" / row["name"] / "summary.json").read_text())
            assert project_summary["project_id"] == row["project_id"]
        cp = store.load(row["project_id"])
        assert cp.settings["batch"] == {"id": summary["batch_id"], "name": row["name"]}
    assert f"Batch {summary['batch_id']}" in proc.stdout and "batch resume" in proc.stdout
    listed = _cli(tmp_path, "runs", "--batch", summary["batch_id"], "--state-dir", str(tmp_path / "state"))
    assert listed.returncode == 0 and all(r["project_id"] in listed.stdout for r in summary["results"])
    for row in summary["results"]:  # each project's own event log, kept in the store like a run's
        if row["status"] == "not_started":
            continue
        check_event_log(store, row, tmp_path)


def check_event_log(store: RunStore, row: dict, tmp_path: Path) -> None:
    """A batch project's log in the store holds its own events (two ran at once in one
    process: none of the other's), from its start to its finish, with no model text
    (no --capture-content); ``orchestrator report ID`` makes its report from it."""
    logs = store.event_logs(row["project_id"])
    assert set(logs) == {row["attempt"]}, logs.keys()
    lines = [json.loads(line) for line in logs[row["attempt"]]]
    assert {e["project_id"] for e in lines} == {row["project_id"]}
    signals = [e["signal"] for e in lines]
    assert signals[0] == "project_started" and signals[-1] == "project_finished", signals
    assert signals.count("llm_call_finished") == row["llm_calls"]
    assert not any(e.get("completion") or e.get("prompt") for e in lines)
    out = tmp_path / f"report-{row['name']}.html"
    report = _cli(tmp_path, "report", row["project_id"], "--state-dir", str(store.dir), "-o", str(out))
    assert report.returncode == 0, report.stderr
    assert row["project_id"] in out.read_text()


def _wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _kept(state: Path) -> dict[str, set[str]]:
    if not (state / "runs.sqlite3").exists():
        return {}
    store = RunStore(state)
    try:
        return {r.project_id: set(store.load(r.project_id).kept) for r in store.runs()}
    finally:
        store.close()


def test_a_killed_batch_resumes_without_paying_twice(tmp_path):
    (tmp_path / "b.yaml").write_text(BATCH.format(budget=5.0))
    state = tmp_path / "state"
    env = {**_env(tmp_path), "SCRIPTED_SLOW": "6"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.state.scripted_cli",
            "batch",
            str(tmp_path / "b.yaml"),
            "--state-dir",
            str(state),
            "-o",
            str(tmp_path / "out"),
            "--max-tasks",
            "5",
            *SCRIPTED,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(lambda: sum(map(len, _kept(state).values())) >= 2 or proc.poll() is not None, 120)
    finally:
        proc.kill()  # SIGKILL: no checkpoint on the way out, no summary
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    kept = _kept(state)
    store = RunStore(state)
    ((batch_id, status, _, _),) = store.batches.ids()
    assert status == "running"  # killed while it ran
    spent_before = sum(store.load(pid).spent_usd for pid in kept)
    store.close()
    resumed = _cli(
        tmp_path,
        "batch",
        "resume",
        batch_id,
        "--state-dir",
        str(state),
        "--events-jsonl",
        str(tmp_path / "e.jsonl"),
        "-q",
        scripted=True,
    )
    assert resumed.returncode in (0, 1), resumed.stderr
    events = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    started = [(e["project_id"], e["task_id"]) for e in events if e["signal"] == "task_started"]
    assert started and not [(p, t) for p, t in started if t in kept.get(p, ())]  # kept tasks never ran again
    restored = {(e["project_id"], e["task_id"]) for e in events if e["signal"] == "task_restored"}
    assert restored == {(p, t) for p, ts in kept.items() for t in ts}
    summary = json.loads((tmp_path / "out" / "batch-summary.json").read_text())
    assert summary["status"] in ("success", "partial_success") and summary["budget"]["spent_usd"] >= spent_before
    assert all(r["status"] in ("success", "partial_success") for r in summary["results"])
    assert RunStore(state).batches.load(batch_id).attempt == 2
    for row in summary["results"]:  # the second attempt's events kept under attempt 2
        logs = RunStore(state).event_logs(row["project_id"])
        assert row["attempt"] in logs and json.loads(logs[row["attempt"]][0])["signal"] == "project_started"


def test_ctrl_c_stops_a_batch_within_5_seconds_with_everything_checkpointed(tmp_path):
    (tmp_path / "b.yaml").write_text(BATCH.format(budget=5.0))
    state = tmp_path / "state"
    env = {**_env(tmp_path), "SCRIPTED_SLOW": "20"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.state.scripted_cli",
            "batch",
            str(tmp_path / "b.yaml"),
            "--state-dir",
            str(state),
            "-o",
            str(tmp_path / "out"),
            "--max-tasks",
            "5",
            *SCRIPTED,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: sum(map(len, _kept(state).values())) >= 1, 120)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        seconds = time.monotonic() - started
    finally:
        proc.kill()
    assert proc.returncode == 130 and seconds < 5.0, (seconds, err)
    assert err.strip().splitlines()[-1] == "orchestrator: interrupted"
    store = RunStore(state)
    ((batch_id, status, _, _),) = store.batches.ids()
    assert status == "interrupted"
    statuses = {r.project_id: r.status for r in store.runs()}
    assert set(statuses.values()) <= {"interrupted"} and len(statuses) == 2  # the third never started
    summary = json.loads((tmp_path / "out" / "batch-summary.json").read_text())
    assert summary["status"] == "interrupted" and [r["status"] for r in summary["results"]] == [
        "interrupted",
        "interrupted",
        "not_started",
    ]
    assert f"orchestrator batch resume {batch_id}" in out


FIVE = """budget_usd: 1.0
max_parallel: 3
defaults:
  time_seconds: 300
projects:
  - {name: add, project: "Write a Python function add(a, b) that returns a + b", criteria: "add(1, 1) == 2"}
  - {name: double, project: "Write a Python function double(x) that returns 2 * x", criteria: "double(2) == 4"}
  - {name: square, project: "Write a Python function square(x) that returns x * x", criteria: "square(3) == 9"}
  - {name: inc, project: "Write a Python function inc(x) that returns x + 1", criteria: "inc(1) == 2"}
  - {name: half, project: "Write a Python function half(x) that returns x / 2", criteria: "half(4) == 2"}
"""
"""Five small projects for the embedded model (README's quick start, five times)."""


def check_five(tmp_path: Path, proc: subprocess.CompletedProcess, backend: str) -> dict:
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    summary = json.loads((tmp_path / "out" / "batch-summary.json").read_text())
    assert summary["backend"] == backend and len(summary["results"]) == 5
    assert summary["budget"]["max_usd"] == 1.0 and summary["budget"]["spent_usd"] == 0.0  # the local model is free
    assert summary["budget"]["reservations"] >= summary["usage"]["llm_calls"] >= 5
    for row in summary["results"]:  # each ran to an end (a 135M model may still fail a check)
        assert row["status"] in ("success", "partial_success", "failed") and row["tasks_total"] >= 1, row
        assert (tmp_path / "out" / row["name"] / "summary.json").exists()
    assert sum(row["status"] == "success" for row in summary["results"]) >= 3, summary["results"]
    return summary


def test_five_small_projects_on_the_embedded_model_locally(tmp_path):
    (tmp_path / "five.yaml").write_text(FIVE)
    proc = _cli(
        tmp_path,
        "batch",
        str(tmp_path / "five.yaml"),
        "--state-dir",
        str(tmp_path / "state"),
        "-o",
        str(tmp_path / "out"),
        "--no-cache",
    )
    summary = check_five(tmp_path, proc, "local")
    assert {row["worker"].rsplit(":", 1)[1] for row in summary["results"]} != {""}
    assert len({row["worker"] for row in summary["results"]}) == 1  # one process ran them all


def test_the_batch_report_has_a_row_per_project_and_no_script(tmp_path):
    """``--report FILE`` at the end, and ``orchestrator report BATCH_ID`` later: one
    self-contained file, every project a row, hostile names escaped, nothing that runs."""
    (tmp_path / "b.yaml").write_text(BATCH.format(budget=5.0).replace("name: two", "name: two_script"))
    report = tmp_path / "batch.html"
    proc = _cli(
        tmp_path,
        "batch",
        str(tmp_path / "b.yaml"),
        "--state-dir",
        str(tmp_path / "state"),
        "--max-tasks",
        "2",
        "--report",
        str(report),
        *SCRIPTED,
        scripted=True,
    )
    assert proc.returncode in (0, 1), proc.stderr
    html = report.read_text()
    ((batch_id, _, _, _),) = RunStore(tmp_path / "state").batches.ids()
    rows = RunStore(tmp_path / "state").batches.load(batch_id).summary["results"]
    assert html.count('<tr class="s-') == 3 and all(r["project_id"] in html for r in rows)
    import html as markup

    assert "<script>" not in html and "script-src" not in html and "default-src 'none'" in markup.unescape(html)
    again = _cli(tmp_path, "report", batch_id, "--state-dir", str(tmp_path / "state"), "-o", str(tmp_path / "r2.html"))
    assert again.returncode == 0, again.stderr
    page = (tmp_path / "r2.html").read_text()  # the same summary from the store: the same page (its JSON in key order)
    assert page.split('<script type="application/json"')[0] == html.split('<script type="application/json"')[0]
    unknown = _cli(tmp_path, "report", "batch-nope", "--state-dir", str(tmp_path / "state"))
    assert unknown.returncode == 2 and "unknown batch id" in unknown.stderr
