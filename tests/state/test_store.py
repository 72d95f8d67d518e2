"""The run store on its own: round trips, WAL and transactions, schema versions, a
corrupt file, and the per-project lock (also across a kill -9)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.domain.checkpoint import Checkpoint, ProjectBusyError, StoreError
from orchestrator.domain.results import TaskResult, TaskStatus, Usage
from orchestrator.domain.tasks import Task, TaskType
from orchestrator.state import DB_NAME, SCHEMA_VERSION, RunStore, schema

ROOT = Path(__file__).resolve().parents[2]


def _checkpoint(pid: str = "proj-1", **kw) -> Checkpoint:
    tasks = [Task("a", TaskType.SUMMARIZATION, "A"), Task("b", TaskType.CODE_GENERATION, "B", ["a"], 0.7, 2)]
    results = {
        "a": TaskResult(
            "a",
            output="out a",
            score=0.9,
            status=TaskStatus.COMPLETED,
            model_used="m",
            iterations=1,
            cost_usd=0.25,
            input_tokens=10,
            output_tokens=5,
        ),
        "b": TaskResult("b", status=TaskStatus.FAILED, error="interrupted", cost_usd=0.5),
    }
    values = dict(
        project_id=pid,
        description="desc",
        criteria="crit",
        status="running",
        attempt=1,
        started_at=time.time(),
        updated_at=time.time(),
        tasks=tasks,
        execution_order=["a", "b"],
        plan_notes=["n1"],
        results=results,
        result_attempts={"a": 1, "b": 1},
        max_usd=2.0,
        max_time_seconds=600,
        spent_usd=0.8,
        planning=Usage(llm_calls=1, input_tokens=30, output_tokens=40, cost_usd=0.05),
        phase_spend={"decomposition": 0.05, "generation": 0.75},
        elapsed_seconds=12.5,
        settings={"cli": {"output_dir": "/tmp/x"}},
        versions={"package": "0.1.0"},
        roots=[{"attempt": 1, "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}],
        notes=["x"],
    )
    values.update(kw)
    return Checkpoint(**values)


def test_round_trip_and_wal(tmp_path):
    store = RunStore(tmp_path)
    cp = _checkpoint()
    store.save(cp)
    loaded = RunStore(tmp_path).load("proj-1")  # another connection sees the committed checkpoint
    assert loaded == cp
    assert loaded.kept == {"a": cp.results["a"]} and loaded.tasks_done == 1 and loaded.tasks_total == 2
    assert loaded.rerun_usd == pytest.approx(0.8 - 0.25 - 0.05)
    assert store.load("nope") is None
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION


def test_a_checkpoint_replaces_the_previous_one_whole(tmp_path):
    store = RunStore(tmp_path)
    store.save(_checkpoint())
    later = _checkpoint(
        status="success", attempt=2, results={"a": _checkpoint().results["a"]}, result_attempts={"a": 1}
    )
    store.save(later)
    assert store.load("proj-1") == later
    (row,) = store.runs()
    assert (row.status, row.attempt, row.tasks_done, row.tasks_total, row.resumable) == ("success", 2, 1, 2, False)


def test_a_failed_write_leaves_the_last_checkpoint(tmp_path):
    """One transaction per checkpoint: a write that fails half-way (here: on the results)
    leaves the previous checkpoint, row and results, as it was."""
    store = RunStore(tmp_path)
    first = _checkpoint()
    store.save(first)
    broken = _checkpoint(status="success", spent_usd=9.0)
    broken.results["zzz"] = broken.results["a"]
    conn = store._conn
    conn.execute(
        "CREATE TRIGGER no_zzz BEFORE INSERT ON task_results WHEN NEW.task_id = 'zzz' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    with pytest.raises(StoreError, match="write failed"):
        store.save(broken)
    assert store.load("proj-1") == first


def test_runs_are_listed_newest_first_and_removed(tmp_path):
    store = RunStore(tmp_path)
    for i, started in enumerate((100.0, 300.0, 200.0)):
        store.save(_checkpoint(f"proj-{i}", started_at=started, updated_at=started))
    assert [r.project_id for r in store.runs()] == ["proj-1", "proj-2", "proj-0"]
    assert store.older_than(time.time() - 250.0) == ["proj-0", "proj-2"]
    assert store.delete("proj-2") is True and store.delete("proj-2") is False
    assert store.load("proj-2") is None and [r.project_id for r in store.runs()] == ["proj-1", "proj-0"]
    # the results went with the run (foreign key cascade)
    assert store._conn.execute("SELECT count(*) FROM task_results WHERE project_id = 'proj-2'").fetchone()[0] == 0


def test_a_run_stopped_before_it_saved_its_end_is_marked_interrupted_its_checkpoint_kept(tmp_path):
    """What a batch driver does for a project whose worker could not save its end (Ray
    cancelled it, or it did not answer): ``running`` becomes ``interrupted``, nothing else
    changes; a finished run, an unknown id and a run some process holds are left alone."""
    store = RunStore(tmp_path)
    running = _checkpoint("proj-1", updated_at=100.0)
    store.save(running)
    store.save(_checkpoint("proj-2", status="success"))
    assert store.mark_interrupted("proj-1") is True
    marked = store.load("proj-1")
    assert marked.status == "interrupted" and marked.updated_at > 100.0
    assert marked == _with(running, status="interrupted", updated_at=marked.updated_at)  # results, plan, roots kept
    (row,) = [r for r in store.runs() if r.project_id == "proj-1"]
    assert (row.status, row.resumable, row.shown_status) == ("interrupted", True, "interrupted")
    assert store.mark_interrupted("proj-1") is False  # already
    assert store.mark_interrupted("proj-2") is False and store.load("proj-2").status == "success"
    assert store.mark_interrupted("nope") is False and store.load("nope") is None
    store.save(_checkpoint("proj-3"))
    with RunStore(tmp_path).claim("proj-3"):  # live elsewhere: it saves its own end
        with pytest.raises(ProjectBusyError):
            store.mark_interrupted("proj-3")
    assert store.load("proj-3").status == "running"


def _with(cp: Checkpoint, **changes) -> Checkpoint:
    from dataclasses import replace

    return replace(cp, **changes)


def test_the_claim_excludes_a_second_claim_in_the_same_process(tmp_path):
    store = RunStore(tmp_path)
    with store.claim("proj-1"):
        assert store.is_running("proj-1")
        with pytest.raises(ProjectBusyError, match="being run by another process"):
            with RunStore(tmp_path).claim("proj-1"):
                pass
        with pytest.raises(ProjectBusyError):
            store.delete("proj-1")
    assert not store.is_running("proj-1")
    with store.claim("proj-1"):  # released: free again
        pass


def test_a_killed_holder_releases_its_claim(tmp_path):
    """The lock is the kernel's: a kill -9 of the holder frees it at once, no stale claim."""
    code = (
        "import sys, time; from orchestrator.state import RunStore\n"
        "with RunStore(sys.argv[1]).claim('proj-k'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "held"
        store = RunStore(tmp_path)
        assert store.is_running("proj-k")
        with pytest.raises(ProjectBusyError, match=f"pid {proc.pid}"):
            with store.claim("proj-k"):
                pass
        proc.kill()
        proc.wait(10)
        assert not store.is_running("proj-k")
        with store.claim("proj-k"):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()


def test_odd_project_ids_get_safe_lock_files(tmp_path):
    store = RunStore(tmp_path)
    with store.claim("../../etc/passwd"), store.claim("a b/c"):
        pass
    assert all(p.parent == tmp_path / "locks" for p in (tmp_path / "locks").iterdir())


# -- schema versions, corrupt files --------------------------------------------------------


def _store_with_version(path: Path, version: int) -> None:
    RunStore(path).close()
    conn = sqlite3.connect(path / DB_NAME)
    conn.execute("UPDATE schema_version SET version = ?", (version,))
    conn.commit()
    conn.close()


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_a_newer_schema_is_refused_in_one_line(tmp_path):
    _store_with_version(tmp_path, SCHEMA_VERSION + 1)
    with pytest.raises(StoreError) as exc:
        RunStore(tmp_path)
    assert "newer than this orchestrator understands" in _one_line(exc)


def test_an_older_schema_without_a_migration_is_refused_in_one_line(tmp_path):
    _store_with_version(tmp_path, 0)
    with pytest.raises(StoreError) as exc:
        RunStore(tmp_path)
    assert "schema version 0 is too old to migrate" in _one_line(exc)


def test_an_older_schema_is_migrated_in_one_transaction(tmp_path, monkeypatch):
    """The migration path, with a version 2 that adds a column: data kept, version bumped;
    a migration that fails half-way leaves the store at its old version."""
    store = RunStore(tmp_path)
    store.save(_checkpoint())
    store.close()
    monkeypatch.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setattr(
        schema,
        "MIGRATIONS",
        {
            SCHEMA_VERSION: [
                "ALTER TABLE runs ADD COLUMN label TEXT",
                "UPDATE runs SET label = 'migrated'",
                "SELECT no_such_fn()",
            ]
        },
    )
    with pytest.raises(StoreError):
        RunStore(tmp_path)
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    assert "label" not in [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
    conn.close()
    monkeypatch.setattr(
        schema,
        "MIGRATIONS",
        {SCHEMA_VERSION: ["ALTER TABLE runs ADD COLUMN label TEXT", "UPDATE runs SET label = 'migrated'"]},
    )
    store = RunStore(tmp_path)
    assert store.load("proj-1") == _checkpoint(
        started_at=store.load("proj-1").started_at, updated_at=store.load("proj-1").updated_at
    )
    assert store._conn.execute("SELECT label, (SELECT version FROM schema_version) FROM runs").fetchone() == (
        "migrated",
        SCHEMA_VERSION + 1,
    )


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b""])
def test_a_corrupt_or_foreign_file_is_one_line(tmp_path, content):
    (tmp_path / DB_NAME).write_bytes(content)
    with pytest.raises(StoreError) as exc:  # an empty file is a store that lost its history, never a new one
        RunStore(tmp_path)
    assert ("empty (0 bytes)" if not content else "not a readable run store") in _one_line(exc)
    assert (tmp_path / DB_NAME).read_bytes() == content  # left as it was


def test_a_foreign_sqlite_file_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("CREATE TABLE something (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as exc:
        RunStore(tmp_path)
    assert "not a run store of this program" in _one_line(exc)


def test_a_damaged_record_is_one_line_naming_the_fix(tmp_path):
    store = RunStore(tmp_path)
    store.save(_checkpoint())
    store._conn.execute('UPDATE runs SET checkpoint = \'{"tasks": [{"type": "poetry"}]}\'')
    with pytest.raises(StoreError) as exc:
        store.load("proj-1")
    assert "orchestrator runs rm proj-1" in _one_line(exc)


def test_an_unwritable_directory_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError) as exc:
        RunStore(tmp_path / "file" / "below")
    assert "cannot open the run store" in _one_line(exc)


# -- property: whatever a checkpoint holds comes back equal ---------------------------------

_text = st.text(max_size=40)
_money = st.floats(min_value=0, max_value=1e6, allow_nan=False)
_results = st.builds(
    TaskResult,
    task_id=st.just("x"),
    output=st.text(max_size=200),
    score=st.none() | st.floats(0, 1),
    status=st.sampled_from(list(TaskStatus)),
    model_used=st.none() | _text,
    reviewer_model=st.none() | _text,
    iterations=st.integers(0, 50),
    cost_usd=_money,
    input_tokens=st.integers(0, 10**9),
    output_tokens=st.integers(0, 10**9),
    deterministic_check_passed=st.none() | st.booleans(),
    fallback_count=st.integers(0, 9),
    error=st.none() | _text,
    llm_calls=st.integers(0, 999),
    cached_calls=st.integers(0, 999),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    results=st.dictionaries(st.text(min_size=1, max_size=12), _results, max_size=5),
    description=st.text(max_size=300),
    spent=_money,
    notes=st.lists(_text, max_size=3),
    settings_=st.dictionaries(_text, st.none() | st.booleans() | st.integers() | _text, max_size=4),
    attempt=st.integers(1, 99),
)
def test_any_checkpoint_round_trips(tmp_path_factory, results, description, spent, notes, settings_, attempt):
    store = RunStore(tmp_path_factory.mktemp("rt"))
    results = {tid: TaskResult(**{**r.__dict__, "task_id": tid}) for tid, r in results.items()}
    cp = _checkpoint(
        description=description,
        spent_usd=spent,
        notes=notes,
        settings=settings_,
        attempt=attempt,
        results=results,
        result_attempts={tid: attempt for tid in results},
    )
    store.save(cp)
    assert store.load("proj-1") == cp
    store.close()


def test_batches_round_trip_and_list_their_runs(tmp_path):
    from orchestrator.domain.batch import BatchProject, BatchRecord

    store = RunStore(tmp_path)
    record = BatchRecord(
        "batch-1",
        "running",
        time.time(),
        time.time(),
        2.5,
        {"backend": "local"},
        [
            BatchProject(1, "p1", "proj-1", {"description": "d", "settings": {"cli": {}}}),
            BatchProject(2, "p2", "proj-2", {"description": "e"}),
        ],
    )
    store.batches.create(record)
    store.save(_checkpoint("proj-1"))
    loaded = RunStore(tmp_path).batches.load("batch-1")
    assert loaded == record
    runs = store.batches.runs("batch-1")
    assert [(p.name, r.project_id if r else None) for p, r in runs] == [("p1", "proj-1"), ("p2", None)]
    record.status, record.summary, record.attempt = "success", {"status": "success"}, 2
    store.batches.update(record)
    assert store.batches.load("batch-1").summary == {"status": "success"}
    assert store.batches.ids()[0][:2] == ("batch-1", "success") and store.batches.ids()[0][3] == 2
    assert store.batches.load("nope") is None
    with pytest.raises(StoreError):
        store.batches.update(BatchRecord("nope", "x", 0, 0, 0))
    assert RunStore(tmp_path / "none", create=False).batches.load("batch-1") is None  # no store: none made
    assert not (tmp_path / "none").exists()
