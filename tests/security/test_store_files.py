"""The run store never loses history silently, and reading it never makes one.

* a zero-byte ``runs.sqlite3`` (its history is gone) or a file that is not SQLite is an
  error naming the file, one line and exit 2, for every command, and the file is left as
  it was;
* a new store is built whole in a temporary file and linked into place, so a store is
  never seen empty: processes opening a new store at once all get the same good one, and
  a failure mid-way leaves nothing behind;
* the read-only commands (``runs``, ``runs show``, ``runs rm``, ``resume``) create no
  store and no directory where there is none.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.domain.checkpoint import StoreError
from orchestrator.state import DB_NAME, SCHEMA_VERSION, RunStore
from tests.helpers import run_scripted_cli
from tests.state.scripted_cli import ARGS

ROOT = Path(__file__).resolve().parents[2]

COMMANDS = {
    "runs": ["runs"],
    "runs show": ["runs", "show", "proj-000000000000"],
    "runs rm": ["runs", "rm", "proj-000000000000"],
    "runs rm --older-than": ["runs", "rm", "--older-than", "1d"],
    "resume": ["resume", "proj-000000000000"],
}


@pytest.mark.parametrize("content", [b"", b"not a database, just some text\n" * 40], ids=["empty", "text"])
@pytest.mark.parametrize("command", [*COMMANDS, "run"])
def test_an_empty_or_foreign_store_file_is_one_line_naming_it(tmp_path, content, command):
    state = tmp_path / "state"
    state.mkdir()
    (state / DB_NAME).write_bytes(content)
    argv = ARGS if command == "run" else COMMANDS[command]
    proc = run_scripted_cli(tmp_path, *argv, "--state-dir", str(state))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert str(state / DB_NAME) in lines[0]
    assert ("empty (0 bytes)" if not content else "not a readable run store") in lines[0]
    assert (state / DB_NAME).read_bytes() == content  # left as it was: nothing of the history is lost by us
    assert sorted(p.name for p in state.iterdir()) == [DB_NAME]
    assert "Project proj-" not in proc.stdout


@pytest.mark.parametrize("command", list(COMMANDS))
def test_read_only_commands_never_create_a_store(tmp_path, command):
    missing = tmp_path / "nowhere" / "state"
    empty = tmp_path / "empty"
    empty.mkdir()
    for where in (missing, empty):
        proc = run_scripted_cli(tmp_path, *COMMANDS[command], "--state-dir", str(where))
        if command in ("runs", "runs rm --older-than"):
            assert proc.returncode == 0, proc.stderr
            assert "no runs" in proc.stdout or "nothing to remove" in proc.stdout
        else:
            assert proc.returncode == 2 and "unknown project id" in proc.stderr, proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "nowhere").exists()
    assert list(empty.iterdir()) == []


def test_read_only_commands_on_the_default_location_make_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATOR_STATE_DIR"}
    env.update(PYTHONPATH=str(ROOT), XDG_DATA_HOME=str(tmp_path / "data"))
    for argv in COMMANDS.values():
        subprocess.run(
            [sys.executable, "-m", "tests.state.scripted_cli", *argv],
            capture_output=True,
            timeout=180,
            env=env,
            cwd=tmp_path,
        )
    assert not (tmp_path / "data").exists()


def _open_and_count(path: str) -> int:
    with RunStore(path) as store:
        return len(store.runs())


def test_processes_opening_a_new_store_at_once_all_get_one_good_store(tmp_path):
    """The store appears whole (linked into place), never empty: none of 8 processes
    opening it at the same instant sees a zero-byte file and refuses it."""
    ctx = multiprocessing.get_context("spawn")
    for round_ in range(3):
        where = tmp_path / f"state-{round_}"
        with ctx.Pool(8) as pool:
            assert pool.map(_open_and_count, [str(where)] * 8) == [0] * 8
        conn = sqlite3.connect(where / DB_NAME)
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        conn.close()
        assert sorted(p.name for p in where.iterdir() if not p.name.startswith(f"{DB_NAME}-")) == [DB_NAME]


def test_a_failure_while_making_a_store_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(conn: sqlite3.Connection, where: str) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    from orchestrator.state import store_file

    monkeypatch.setattr(store_file, "prepare", broken)  # where a new store is made
    with pytest.raises(StoreError, match="cannot open the run store"):
        RunStore(tmp_path / "state")
    assert list((tmp_path / "state").iterdir()) == []  # no empty store, no temporary file
    monkeypatch.undo()
    with RunStore(tmp_path / "state") as store:  # and the next open makes a good one
        assert store.runs() == []


def test_a_run_after_a_refused_empty_store_was_moved_away_works(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / DB_NAME).write_bytes(b"")
    assert run_scripted_cli(tmp_path, *ARGS, "--state-dir", str(state)).returncode == 2
    (state / DB_NAME).rename(tmp_path / "lost.sqlite3")  # what the message says to do
    proc = run_scripted_cli(tmp_path, *ARGS, "--state-dir", str(state))
    assert proc.returncode in (0, 1), proc.stderr
    with RunStore(state, create=False) as store:
        assert len(store.runs()) == 1
    listed = run_scripted_cli(tmp_path, "runs", "--state-dir", str(state))
    assert listed.returncode == 0 and "Scripted project" in listed.stdout
