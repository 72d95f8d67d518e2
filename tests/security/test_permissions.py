"""Private by default: what a run leaves behind (the run store and its lock files, the
response cache, the output directory, the events file) is readable by its owner only,
whatever the umask: directories we make are 0700, files 0600.

Each case runs the real command line (scripted provider) in a subprocess under the umask
given, and holds the run store open across the run so SQLite's ``-wal`` and ``-shm``
files (made by SQLite under that umask) can be looked at too.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.state import RunStore
from tests.state.scripted_cli import CATALOG_FILE, MODEL

ROOT = Path(__file__).resolve().parents[2]
RUN = ["-p", "Scripted project", "-c", "ok", "--model", MODEL, "--catalog", CATALOG_FILE, "--max-tasks", "5", "-q"]

_WRAPPER = """
import json, os, sys
os.umask(int(sys.argv[1], 8))
from orchestrator.state import RunStore
from tests.state import scripted_cli
state_dir, report = sys.argv[2], sys.argv[3]
held = RunStore(None if state_dir == "-" else state_dir)  # made under this umask; kept open so -wal/-shm stay
code = scripted_cli.main(sys.argv[4:])
modes = {}
for top in json.loads(os.environ["SCAN"]):
    if os.path.isfile(top):
        modes[top] = oct(os.lstat(top).st_mode & 0o777)
    for base, dirs, files in os.walk(top):
        for name in [base, *(os.path.join(base, f) for f in files)]:
            modes[name] = oct(os.lstat(name).st_mode & 0o777)
held.close()
with open(report, "w") as fh:
    json.dump({"code": code, "modes": modes}, fh)
"""


def _run(
    tmp_path: Path,
    umask: int,
    state_dir: str,
    args: list[str],
    scan: list[Path],
    env_extra: dict[str, str] | None = None,
) -> tuple[int, dict[str, str]]:
    report = tmp_path / f"report-{len(list(tmp_path.glob('report-*')))}.json"
    env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATOR_STATE_DIR"}
    env.update(PYTHONPATH=str(ROOT), SCAN=json.dumps([str(p) for p in scan]), **(env_extra or {}))
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, oct(umask), state_dir, str(report), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0 and report.exists(), proc.stderr[-3000:]
    data = json.loads(report.read_text())
    return data["code"], data["modes"]


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_a_fresh_run_leaves_only_private_directories_and_files(tmp_path, umask):
    state = tmp_path / "deep" / "state"  # parents made by us are private too
    cache, out, events = tmp_path / "cache", tmp_path / "made" / "out", tmp_path / "events.jsonl"
    code, modes = _run(
        tmp_path,
        umask,
        str(state),
        [*RUN, "--state-dir", str(state), "--cache-dir", str(cache), "-o", str(out), "--events-jsonl", str(events)],
        [tmp_path / "deep", cache, tmp_path / "made", events],
    )
    assert code in (0, 1)
    names = {Path(p).relative_to(tmp_path).as_posix(): m for p, m in modes.items()}
    # every kind of file is there: the store with its WAL and shared memory, a lock, the cache, outputs
    for expected in (
        "deep/state/runs.sqlite3",
        "deep/state/runs.sqlite3-wal",
        "deep/state/runs.sqlite3-shm",
        "cache/responses.sqlite3",
        "made/out/summary.json",
        "made/out/alpha.md",
        "events.jsonl",
    ):
        assert expected in names, sorted(names)
    assert any(n.startswith("deep/state/locks/") and n.endswith(".lock") for n in names)
    for name, mode in names.items():
        is_dir = (tmp_path / name).is_dir()
        assert mode == ("0o700" if is_dir else "0o600"), f"{name} is {mode} under umask {umask:03o}"
    assert not [n for n in names if n.endswith(".tmp")]  # no temporary file left behind


def test_our_own_loose_directories_are_tightened_and_a_given_one_is_left_alone(tmp_path):
    """The default state and cache directories are ours by name: made 0755 by an older
    version (or a loose umask), they are set to 0700, and our files in them to 0600.  A
    directory the user names (``--state-dir .``) may be shared: it keeps its mode, and the
    files we put in it are 0600 all the same."""
    data_home, cache_home = tmp_path / "data", tmp_path / "cachehome"
    ours_state = data_home / "multi-llm-orchestrator"
    ours_cache = cache_home / "multi-llm-orchestrator"
    for directory in (ours_state, ours_cache):
        directory.mkdir(parents=True)
        directory.chmod(0o755)
    RunStore(ours_state).close()  # a store made earlier, then loosened
    for path in (ours_state / "runs.sqlite3",):
        path.chmod(0o644)
    env = {"XDG_DATA_HOME": str(data_home), "XDG_CACHE_HOME": str(cache_home)}
    code, modes = _run(tmp_path, 0o022, "-", RUN, [data_home, cache_home], env)
    assert code in (0, 1)
    assert modes[str(ours_state)] == "0o700" and modes[str(ours_cache)] == "0o700"
    assert modes[str(ours_state / "runs.sqlite3")] == "0o600"
    assert modes[str(ours_cache / "responses.sqlite3")] == "0o600"

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    code, modes = _run(tmp_path, 0o022, str(shared), [*RUN, "--state-dir", str(shared)], [shared])
    assert code in (0, 1)
    assert modes[str(shared)] == "0o755"  # the user's directory: not ours to change
    assert modes[str(shared / "runs.sqlite3")] == "0o600" and modes[str(shared / "locks")] == "0o700"


def test_the_config_directory_is_only_read_never_made(tmp_path):
    config = tmp_path / "config"
    code, _ = _run(
        tmp_path,
        0o022,
        str(tmp_path / "state"),
        [*RUN, "--state-dir", str(tmp_path / "state")],
        [tmp_path / "state"],
        {"XDG_CONFIG_HOME": str(config)},
    )
    assert code in (0, 1)
    assert not config.exists()


def test_a_lock_file_and_a_cache_file_made_loose_are_tightened_on_use(tmp_path):
    from orchestrator.llm.cache import ResponseCache
    from orchestrator.state.lock import ProjectLock

    lock = tmp_path / "locks" / "p.lock"
    lock.parent.mkdir(mode=0o755)
    lock.write_text("")
    lock.chmod(0o644)
    with ProjectLock(lock, "p"):
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert stat.S_IMODE(lock.parent.stat().st_mode) == 0o700  # locks/ is ours by name
    cache_file = tmp_path / "cache" / "responses.sqlite3"
    cache_file.parent.mkdir()
    cache_file.write_bytes(b"")
    cache_file.chmod(0o666)
    ResponseCache(tmp_path / "cache").close()
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o600


def test_a_symbolic_link_where_a_lock_file_goes_is_refused(tmp_path):
    from orchestrator.files import UnsafePathError
    from orchestrator.state.lock import ProjectLock

    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "p.lock").symlink_to(victim)
    with pytest.raises(UnsafePathError):
        ProjectLock(tmp_path / "locks" / "p.lock", "p").acquire()
    assert victim.read_text() == "keep me"
