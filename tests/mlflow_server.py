"""A real MLflow tracking server for the tests (``mlflow server`` from the venv, 127.0.0.1 on
a free port, a temporary SQLite store and artifact root): the module-scoped ``mlflow_server``
fixture (registered in ``tests/conftest.py``).

MLflow ingests OTLP/HTTP protobuf at ``/v1/traces`` (no gRPC), into the experiment named by
the ``x-mlflow-experiment-id`` header.  The server is kept off the network and quiet: no
usage telemetry, no background job runner (seven worker processes the OTLP endpoint does not
need, which would slow the start on a small machine).  ``mlflow server`` does not always stop
on SIGTERM (it forwards the signal to its uvicorn child), so the fixture starts it in a
session of its own and ends the whole process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port

START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class MlflowServer:
    base: str
    """The tracking URI, e.g. ``http://127.0.0.1:PORT``."""
    otlp: str
    """The OTLP/HTTP traces endpoint: ``{base}/v1/traces``."""
    log: Path


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, SIGKILL what is left after 15 s."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(proc.pid, 0)  # anyone of the group still there?
            except ProcessLookupError:
                return
            time.sleep(0.1)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    work = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLFLOW_"))}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    log_path = work / "mlflow.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{work / 'mlflow.db'}",
            "--default-artifact-root",
            str(work / "artifacts"),
        ],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(base):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise AssertionError("mlflow server did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.25)
        yield MlflowServer(base, f"{base}/v1/traces", log_path)
    finally:
        _stop(proc)
        log.close()
