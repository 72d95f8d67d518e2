"""A real Arize Phoenix for the tests (``phoenix serve`` from the venv, loopback ports, a
temporary working directory): the module-scoped ``phoenix`` fixture (registered in
``tests/conftest.py``) and a small HTTP getter for its REST API."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except OSError:
        return 0, b""


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory):
    work = tmp_path_factory.mktemp("phoenix")
    http_port, grpc_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_"))}
    env.update(
        PHOENIX_WORKING_DIR=str(work),
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(http_port),
        PHOENIX_GRPC_PORT=str(grpc_port),
        PHOENIX_TELEMETRY_ENABLED="false",
    )
    log = (work / "phoenix.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "phoenix"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 120
        while _get(f"{base}/healthz")[0] != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise AssertionError("phoenix did not start:\n" + (work / "phoenix.log").read_text()[-3000:])
            time.sleep(0.5)
        yield {"base": base, "grpc": f"http://127.0.0.1:{grpc_port}", "http": f"{base}/v1/traces"}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
