"""Small helpers several test modules need (fixtures are in ``conftest.py``; shared
assertions in ``assertions.py``; fake providers in ``fake_providers.py``)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orchestrator.state import RunStore

ROOT = Path(__file__).resolve().parents[1]


async def no_sleep(_seconds: float) -> None:
    """The client's injectable sleep for tests: backoff and breaker delays pass at once
    (still yielding to the loop once, as a real sleep does, so cancellation can land)."""
    await asyncio.sleep(0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events of an ``--events-jsonl`` file, [] when there is none yet; a line cut by a
    killed process is passed over."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def run_scripted_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line with scripted providers (``tests.state.scripted_cli``), as a
    process of its own in ``cwd``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tests.state.scripted_cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=cwd,
    )


def as_if_killed(store_dir: Path, project_id: str, unfinished: Iterable[str]) -> None:
    """Make a finished run look like one killed mid-way: status running, and the tasks
    ``unfinished`` without results (as an earlier checkpoint had it)."""
    store = RunStore(store_dir)
    cp = store.load(project_id)
    cp.status = "running"
    for task_id in unfinished:
        cp.results.pop(task_id, None)
    store.save(cp)


def serve_hello(server: socket.socket, stop: threading.Event, accepted: list[str]) -> None:
    """Accept connections until ``stop``: each is counted in ``accepted``, greeted with
    ``hello`` and closed (``server`` needs a timeout, so ``stop`` is seen)."""
    while not stop.is_set():
        try:
            conn, _ = server.accept()
        except (TimeoutError, OSError):
            continue
        accepted.append("x")
        conn.sendall(b"hello")
        conn.close()
