"""Each attempt's event log in the run store: kept with the checkpoints (in their
transaction), written between them, apart per attempt, removed with the run, migrated
into an older store, and holding no model text unless content capture was on."""

from __future__ import annotations

import json
import sqlite3

import pytest

from orchestrator.domain.checkpoint import StoreError
from orchestrator.state import DB_NAME, SCHEMA_VERSION, RunStore
from orchestrator.state import event_log as event_log_module
from orchestrator.state.event_log import EventLog, PeriodicFlush
from tests.state import scripted_cli
from tests.state.test_store import _checkpoint


def _lines(n: int, start: int = 0) -> list[str]:
    return [json.dumps({"signal": "cache_hit", "n": i}) for i in range(start, start + n)]


def test_lines_are_kept_with_each_checkpoint_and_between_them(tmp_path):
    store = RunStore(tmp_path)
    log = EventLog("proj-1", 1)
    store.attach_event_log(log)
    for line in _lines(3):
        log.add(line)
    assert store.flush_events() == 0 and log.pending == 3  # no run row yet: nothing written, nothing lost
    store.save(_checkpoint())
    assert log.pending == 0 and store.event_logs("proj-1") == {1: _lines(3)}
    for line in _lines(2, 3):
        log.add(line)
    assert store.flush_events() == 2
    later = EventLog("proj-1", 2)  # a resume: its own attempt
    store.attach_event_log(later)
    later.add(_lines(1, 9)[0])
    store.save(_checkpoint(attempt=2))
    assert RunStore(tmp_path).event_logs("proj-1") == {1: _lines(5), 2: _lines(1, 9)}
    assert store.event_logs("proj-unknown") == {}


def test_a_failed_checkpoint_keeps_its_lines_for_the_next(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    store.save(_checkpoint())
    log = EventLog("proj-1", 1)
    store.attach_event_log(log)
    for line in _lines(4):
        log.add(line)
    from orchestrator.state import event_log as event_log_module

    def broken(lines):
        raise OSError("disk full")

    monkeypatch.setattr(event_log_module, "pack", broken)
    with pytest.raises(OSError):
        store.save(_checkpoint(status="success"))
    assert store.load("proj-1").status == "running"  # the whole transaction was rolled back
    assert log.pending == 4 and store.event_logs("proj-1") == {}
    monkeypatch.undo()
    store.save(_checkpoint(status="success"))
    assert store.event_logs("proj-1") == {1: _lines(4)}


def test_a_log_is_compressed_removed_with_its_run_and_a_damaged_one_is_one_line(tmp_path):
    store = RunStore(tmp_path)
    log = EventLog("proj-1", 1)
    store.attach_event_log(log)
    for line in _lines(500):
        log.add(line)
    store.save(_checkpoint())
    raw = sum(len(line) + 1 for line in _lines(500))
    stored = store._conn.execute("SELECT SUM(LENGTH(events)) FROM run_events").fetchone()[0]
    assert stored < raw / 5
    store._conn.execute("UPDATE run_events SET events = x'00ff'")
    with pytest.raises(StoreError) as exc:
        store.event_logs("proj-1")
    assert "event log of proj-1 is damaged" in str(exc.value) and "\n" not in str(exc.value)
    assert store.delete("proj-1")
    assert store._conn.execute("SELECT COUNT(*) FROM run_events").fetchone()[0] == 0


def test_a_version_1_store_gets_the_event_log_table(tmp_path):
    store = RunStore(tmp_path)
    store.save(_checkpoint())
    store.close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("DROP TABLE run_events")
    conn.execute("DROP TABLE batch_projects")  # version 3's (batches): a version 1 store had neither
    conn.execute("DROP TABLE batches")
    conn.execute("UPDATE schema_version SET version = 1")
    conn.commit()
    conn.close()
    store = RunStore(tmp_path)
    assert store._conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert store.load("proj-1") is not None and store.event_logs("proj-1") == {}
    assert store.batches.ids() == []  # migrated through version 2 to 3


def test_the_periodic_flush_writes_and_wakes_on_demand():
    calls: list[int] = []
    flush = PeriodicFlush(lambda: calls.append(1), seconds=3600).start()
    try:
        flush.wake()
        for _ in range(200):
            if calls:
                break
            import time

            time.sleep(0.01)
        assert calls  # woken, long before the hour
    finally:
        flush.stop()
    assert not flush._thread.is_alive()
    assert event_log_module.unpack(event_log_module.pack(["a", "b"])) == ["a", "b"]


@pytest.mark.parametrize("capture", [False, True])
def test_the_stored_log_holds_model_text_only_with_capture(tmp_path, capture):
    """The scripted model answers "answer <digest>": that text is in the stored log only
    when the run captured content, as in the --events-jsonl file."""
    args = [*scripted_cli.ARGS, "--state-dir", str(tmp_path), "--max-tasks", "2"] + (
        ["--capture-content"] if capture else []
    )
    assert scripted_cli.main(args) in (0, 1)
    store = RunStore(tmp_path)
    (run,) = store.runs()
    (lines,) = store.event_logs(run.project_id).values()
    text = "\n".join(lines)
    assert any('"signal": "project_finished"' in line for line in lines)
    assert ('"completion": "answer ' in text) is capture
    assert ('"prompt": "' in text) is capture  # the prompts sent (task.description is the seed's exception)
