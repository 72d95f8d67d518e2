"""Fixtures shared by the project's own tests (users get theirs from the pytest plugin)."""

from __future__ import annotations

import datetime as dt
import select
import socket
import threading
import time

import pytest

from orchestrator import events
from orchestrator.llm import catalog, clock
from tests.helpers import serve_hello
from tests.mlflow_server import mlflow_server  # noqa: F401 - a real MLflow, one per module that asks
from tests.phoenix_server import phoenix  # noqa: F401 - a real Phoenix, one per module that asks

TEST_NOW = dt.datetime(2026, 11, 16, 12, 0, tzinfo=dt.UTC)
"""The moment every test runs at, for the catalog and prices (end of life, deprecation
windows, dated and time-of-day prices): the suite answers the same on any day.  A test
about another day says which (``catalog.as_of(day)``)."""


def _select_sleep(seconds: float) -> None:
    select.select([], [], [], max(0.0, seconds))


try:  # CI runs the date-sensitive tests under `DONT_FAKE_MONOTONIC=1 faketime DATE`, whose
    time.sleep(1e-6)  # libfaketime 0.9.10 fails every time.sleep of Python >= 3.11 (EINVAL:
except OSError:  # wolfcw/libfaketime#426); subprocess.run waits with time.sleep, so sleep with select
    time.sleep = _select_sleep


@pytest.fixture
def recorded():
    """Every payload sent on any signal during the test, in order (raw payload objects,
    unlike the plugin's ``orchestrator_events`` recorder)."""
    seen: list[events.Event] = []
    for sig in events.ALL_SIGNALS:
        sig.connect(seen.append)
    yield seen
    for sig in events.ALL_SIGNALS:
        sig.disconnect(seen.append)


@pytest.fixture(autouse=True)
def _no_user_catalog(monkeypatch, tmp_path_factory):
    """No test reads the developer's own catalog file (the user config directory) or
    fetches prices because of their environment."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.getbasetemp() / "xdg-config"))
    monkeypatch.delenv("ORCHESTRATOR_UPDATE_PRICES", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_PRICES_URL", raising=False)


@pytest.fixture(autouse=True)
def _state_dir(tmp_path_factory, monkeypatch):
    """Runs started by tests keep their checkpoints in a temporary run store, never in the
    user's data directory (subprocesses inherit the variable)."""
    monkeypatch.setenv("ORCHESTRATOR_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def scripted(monkeypatch):
    """The CLI in this process, on the scripted priced provider of ``tests.state.scripted_cli``
    (the real providers are back after the test: monkeypatch restores what it saw first)."""
    from orchestrator.cli import wiring
    from tests.state import scripted_cli

    monkeypatch.setattr(wiring, "build_providers", wiring.build_providers)
    scripted_cli.install()
    yield
    assert wiring.build_providers.__name__ == "<lambda>"  # still the scripted one until teardown


@pytest.fixture
def loopback_server():
    """A TCP server on the host's 127.0.0.1 (outside any sandbox), counting the
    connections it accepts; yields (port, accepted)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list[str] = []
    stop = threading.Event()

    thread = threading.Thread(target=serve_hello, args=(server, stop, accepted), daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(2)
    server.close()


@pytest.fixture(scope="session", autouse=True)
def _catalog_clock():
    """The catalog clock pinned at :data:`TEST_NOW`, in this process (the catalog rebuilt
    for it) and, through ``ORCHESTRATOR_TODAY``, in every command line a test starts."""
    with pytest.MonkeyPatch.context() as patch, catalog.as_of(TEST_NOW):
        patch.setenv(clock.TODAY_ENV, TEST_NOW.isoformat())
        yield TEST_NOW
