"""Fixtures shared by the project's own tests (users get theirs from the pytest plugin)."""

from __future__ import annotations

import pytest

from orchestrator import events


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
