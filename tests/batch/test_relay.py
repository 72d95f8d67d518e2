"""The event relay from Ray workers to the driver, in one process: every payload a run
sends survives the trip (to its dict, pickled, rebuilt), model-text marks included, and
the driver sends them on its own bus in fresh contexts; the batch's live view renders
what the driver sends."""

from __future__ import annotations

import asyncio
import contextvars
import io
import pickle

from orchestrator import events
from orchestrator.batch.backend import LocalBackend
from orchestrator.batch.driver import BatchDriver
from orchestrator.batch.relay import Forwarder, deliver, rebuild
from orchestrator.llm.catalog import preserved
from orchestrator.observers.batch_progress import BatchProgressObserver
from orchestrator.state import RunStore
from tests.batch.scripted import ScriptedFactory, jobs


def test_every_event_of_a_batch_survives_the_trip(tmp_path, recorded):
    pushed: list[list[dict]] = []
    waits: list[bool] = []

    def push(batch, wait):
        pushed.append(pickle.loads(pickle.dumps(batch)))  # what crossing a process does to it
        waits.append(wait)

    with preserved(), Forwarder(push, flush_every=0.0) as forwarder:
        asyncio.run(
            BatchDriver(
                "batch-relay",
                jobs("batch-relay", 2),
                LocalBackend(ScriptedFactory(), RunStore(tmp_path / "state")),
                max_usd=5.0,
                max_parallel=2,
            ).run()
        )
    assert forwarder is not None and waits[-1] is True  # the last flush waits for delivery
    relayed = [d for batch in pushed for d in batch]
    mine = [p for p in recorded if p.signal_name not in ("batch_started", "batch_finished", "batch_progress")]
    assert [d["signal"] for d in relayed] == [p.signal_name for p in mine]  # every event, in order
    assert not [d for d in relayed if set(d) & events.CONTENT_FIELDS]  # no prompt or completion text
    for original, data in zip(mine, relayed, strict=True):
        again = rebuild(data)
        assert type(again) is type(original)
        for name in again.__struct_fields__:
            if name in ("exception", "carrier") or name in events.CONTENT_FIELDS:
                continue
            assert getattr(again, name) == getattr(original, name), name
        for key, value in original.attributes.items() if hasattr(original, "attributes") else ():
            assert type(again.attributes[key]) is type(value)  # ModelText stays marked


def test_the_driver_delivers_each_event_in_a_fresh_context(recorded):
    marker = contextvars.ContextVar("marker", default="fresh")
    seen: list[str] = []

    def receiver(payload):
        seen.append(marker.get())
        marker.set("dirty")  # must not leak into the next event's delivery

    events.task_skipped.connect(receiver)
    try:
        payload = {
            "signal": "task_skipped",
            "correlation_id": "c1",
            "parent_id": None,
            "project_id": "p",
            "timestamp_ns": 1,
            "task_id": "t",
            "reason": "x",
        }
        assert deliver([payload, dict(payload, correlation_id="c2"), {"signal": "no_such_signal"}]) == 2
    finally:
        events.task_skipped.disconnect(receiver)
    assert seen == ["fresh", "fresh"] and marker.get() == "fresh"


def test_the_live_view_shows_the_driver_s_figures():
    from rich.console import Console

    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    view = BatchProgressObserver(console)
    assert view.enabled
    view.on_batch_progress(
        events.BatchProgress(
            correlation_id="c",
            parent_id=None,
            project_id=None,
            timestamp_ns=1,
            batch_id="batch-x",
            total=5,
            done=2,
            running=3,
            failed=1,
            spent_usd=0.25,
            max_usd=5.0,
            eta_seconds=95.0,
        )
    )
    text = view.render().plain
    assert "projects 2/5 done" in text and "3 running" in text and "1 failed" in text
    assert "spend $0.2500 / $5.00" in text and "ETA 1m35s" in text
    assert not BatchProgressObserver(Console(file=io.StringIO())).handlers()  # not a terminal: nothing connected
