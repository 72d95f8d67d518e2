"""The event bus: pairs, payloads, isolation of receivers, the no-receiver fast path."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from orchestrator import events


class Collector:
    """A bound-method observer: blinker would drop it at the next GC if connected weakly."""

    def __init__(self) -> None:
        self.seen: list[events.Event] = []

    def on_event(self, payload: events.Event) -> None:
        self.seen.append(payload)


@pytest.fixture
def collector():
    c = Collector()
    for sig in events.ALL_SIGNALS:
        sig.connect(c.on_event)
    yield c
    for sig in events.ALL_SIGNALS:
        sig.disconnect(c.on_event)


def test_bound_methods_stay_connected_after_gc():
    c = Collector()
    events.task_started.connect(c.on_event)
    try:
        gc.collect()
        with events.traced_task("t", "code_generation"):
            pass
        assert [type(p).__name__ for p in c.seen] == ["TaskStarted"]
    finally:
        events.task_started.disconnect(c.on_event)


def test_pair_payloads_share_ids_and_nest(collector):
    with events.traced_project("p1", "describe", "criteria", 1.0, 60.0):
        with events.traced_task("t1", "code_generation", "do it") as task:
            with events.traced_llm_call("m1", "generate", provider="local", max_tokens=10) as call:
                call.set_attribute("llm.tokens_in", 7)
                call.set_completion("answer")
            task.set_attribute("task.status", "completed")
    names = [p.signal_name for p in collector.seen]
    assert names == [
        "project_started",
        "task_started",
        "llm_call_started",
        "llm_call_finished",
        "task_finished",
        "project_finished",
    ]
    proj_s, task_s, call_s, call_f, task_f, proj_f = collector.seen
    assert proj_s.correlation_id == proj_f.correlation_id and proj_s.parent_id is None
    assert task_s.parent_id == proj_s.correlation_id
    assert call_s.parent_id == task_s.correlation_id == task_f.correlation_id
    assert call_f.attributes["llm.tokens_in"] == 7 and call_f.completion == "answer"
    assert call_s.task_id == "t1" and call_s.project_id == "p1" and call_f.provider == "local"
    assert task_f.attributes["task.status"] == "completed"
    assert len({proj_s.correlation_id, task_s.correlation_id, call_s.correlation_id}) == 3
    assert all(p.timestamp_ns > 0 for p in collector.seen)
    assert call_f.duration_ns >= 0 and call_f.status == "ok"


def test_payloads_are_immutable(collector):
    with events.traced_task("t1", "code_generation"):
        pass
    with pytest.raises(AttributeError):
        collector.seen[0].task_id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        collector.seen[1].attributes["x"] = 1  # type: ignore[index]


def test_finish_carries_the_error_and_is_sent_once(collector):
    with pytest.raises(ValueError):
        with events.traced_llm_call("m", "critique"):
            raise ValueError("boom")
    finishes = [p for p in collector.seen if isinstance(p, events.LlmCallFinished)]
    assert len(finishes) == 1
    assert finishes[0].status == "error" and finishes[0].error_type == "ValueError"
    assert isinstance(finishes[0].exception, ValueError)


async def test_cancelled_task_sends_finish_with_cancelled(collector):
    started = asyncio.Event()

    async def body():
        with events.traced_task("slow", "summarization"):
            started.set()
            await asyncio.sleep(10)

    fut = asyncio.ensure_future(body())
    await started.wait()
    fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fut
    finish = [p for p in collector.seen if isinstance(p, events.TaskFinished)]
    assert len(finish) == 1 and finish[0].status == "cancelled"


async def test_concurrent_tasks_keep_their_own_parents(collector):
    async def one(i):
        with events.traced_task(f"t{i}", "code_generation"):
            await asyncio.sleep(0.001 * (i % 3))
            with events.traced_llm_call("m", "generate"):
                await asyncio.sleep(0.001)

    with events.traced_project("p", "d"):
        await asyncio.gather(*(one(i) for i in range(20)))
    task_ids = {p.task_id: p.correlation_id for p in collector.seen if isinstance(p, events.TaskStarted)}
    calls = [p for p in collector.seen if isinstance(p, events.LlmCallStarted)]
    assert len(calls) == 20
    for call in calls:
        assert call.parent_id == task_ids[call.task_id]


def test_raising_receiver_is_isolated_and_logged_once(collector, caplog):
    def broken(payload):
        raise RuntimeError("observer bug")

    events.task_started.connect(broken)
    try:
        with caplog.at_level(logging.WARNING, logger="orchestrator.events"):
            for _ in range(3):
                with events.traced_task("t", "code_generation"):
                    pass
    finally:
        events.task_started.disconnect(broken)
    # the healthy collector still saw every event
    assert sum(isinstance(p, events.TaskStarted) for p in collector.seen) == 3
    assert sum(isinstance(p, events.TaskFinished) for p in collector.seen) == 3
    failures = [r for r in caplog.records if "observer bug" in r.getMessage()]
    assert len(failures) == 1


def test_no_receiver_means_shared_noop_handle():
    assert not events.is_active()
    handle = events.traced_llm_call("m", "generate")
    assert handle is events.traced_task("t", "x") is events.traced_policy_check(1)
    with handle as h:
        h.set_attribute("a", 1)
    assert h.correlation_id is None and h.carrier == {}


def test_point_events_carry_the_enclosing_pair(collector):
    with events.traced_task("t9", "summarization") as task:
        events.emit(events.validation_failed, validator="json", message="bad", iteration=2)
    point = next(p for p in collector.seen if isinstance(p, events.ValidationFailed))
    assert point.parent_id == task.correlation_id and point.task_id == "t9"
    assert point.to_dict()["signal"] == "validation_failed"


def test_every_signal_documents_its_payload():
    """The catalogue names each signal once, gives each payload class its signal's name
    (the one place it is written) and documents it; README's table: test_catalogue.py."""
    assert len(events.ALL_SIGNALS) == len({s.name for s in events.ALL_SIGNALS}) == len(events.SIGNALS_BY_NAME)
    assert len({s.payload_type for s in events.ALL_SIGNALS}) == len(events.ALL_SIGNALS)
    for sig in events.ALL_SIGNALS:
        assert sig.payload_type.signal_name == sig.name
        assert sig.payload_type.__name__ in sig.__doc__
        assert getattr(events, sig.name) is sig and getattr(events, sig.payload_type.__name__) is sig.payload_type
    assert all(
        issubclass(start.payload_type, events.PairStart) and issubclass(finish.payload_type, events.PairFinish)
        for start, finish in events.PAIRS
    )


def test_pairs_and_points_see_the_ids_reseeded_after_a_fork(collector):
    """The id prefix is rebound in a forked child; the helpers read it where it lives."""
    from orchestrator.events import context

    before = context._ID_PREFIX
    context._reseed_ids()
    try:
        assert context._ID_PREFIX != before
        with events.traced_task("t", "code_generation"):
            events.emit(events.task_skipped, reason="r")
        assert {p.correlation_id[:8] for p in collector.seen} == {context._ID_PREFIX}
    finally:
        context._reseed_ids()


def test_the_listening_flag_follows_connections():
    assert not events.is_active()
    assert events.traced_task("t", "x") is events.traced_llm_call("m", "generate")  # the shared no-op
    seen: list[events.Event] = []
    events.cache_hit.connect(seen.append)
    try:
        assert events.is_active()
        assert events.traced_task("t", "x") is not events.traced_llm_call("m", "generate")
    finally:
        events.cache_hit.disconnect(seen.append)
    assert not events.is_active()


class PairLog:
    """A pair receiver that logs what the bus hands it, next to a plain receiver."""

    def __init__(self, log: list) -> None:
        self.log = log
        self.receiver = events.PairReceiver(self.started, self.finished, self.on_finish)

    def started(self, p):
        self.log.append(("pair start", p))
        return ("state of", p.correlation_id)

    def finished(self, state, end_ns, attrs, content, failure):
        self.log.append(("pair finish", state, end_ns, dict(attrs), content, failure))

    def on_finish(self, p):
        self.log.append(("pair finish payload", p))


@pytest.fixture
def pair_log():
    log: list = []
    pair = PairLog(log)

    def plain(p):
        log.append(("plain", p.signal_name))

    for sig in (events.task_started, events.task_finished):
        sig.connect(pair.receiver)
    for sig in (events.task_started, events.task_finished):
        sig.connect(plain)
    yield pair
    for sig in (events.task_started, events.task_finished):
        sig.disconnect(pair.receiver)
        sig.disconnect(plain)


def test_a_pair_receiver_gets_its_state_back_with_what_the_handle_set(pair_log):
    with events.traced_task("t1", "code_generation") as task:
        task.set_attribute("task.status", "completed")
    log = pair_log.log
    assert [entry[0] for entry in log] == ["pair start", "plain", "plain", "pair finish"]  # it encloses the others
    start = log[0][1]
    assert isinstance(start, events.TaskStarted) and start.task_id == "t1"
    _, state, end_ns, attrs, content, failure = log[3]
    assert state == ("state of", start.correlation_id)
    assert end_ns >= start.timestamp_ns
    assert attrs == {"task.status": "completed"}  # only what was set: the span has the start's
    assert content is None and failure is None


def test_a_pair_receiver_hears_how_the_pair_failed(pair_log):
    with pytest.raises(ValueError):
        with events.traced_task("t1", "code_generation"):
            raise ValueError("boom")
    failure = pair_log.log[-1][5]
    assert failure[:3] == ("error", "ValueError", "boom") and isinstance(failure[3], ValueError)


def test_a_pair_receiver_alone_is_called_directly_and_a_late_one_gets_the_payload():
    log: list = []
    first, late = PairLog(log), PairLog(log)
    events.task_started.connect(first.receiver)
    events.task_finished.connect(first.receiver)
    try:
        with events.traced_task("t1", "code_generation"):
            events.task_finished.connect(late.receiver)  # connected after the start
        kinds = [entry[0] for entry in log]
        assert kinds == ["pair start", "pair finish", "pair finish payload"]
        assert isinstance(log[2][1], events.TaskFinished) and log[2][1].task_id == "t1"
    finally:
        for sig in (events.task_started, events.task_finished):
            sig.disconnect(first.receiver)
        events.task_finished.disconnect(late.receiver)


def test_a_pair_receiver_whose_start_raises_is_isolated(collector, caplog):
    def broken(p):
        raise RuntimeError("pair receiver bug")

    log: list = []
    receiver = events.PairReceiver(broken, lambda *a: log.append("finished"), lambda p: log.append(p.signal_name))
    events.task_started.connect(receiver)
    events.task_finished.connect(receiver)
    try:
        with caplog.at_level(logging.WARNING, logger="orchestrator.events"):
            with events.traced_task("t", "code_generation"):
                pass
    finally:
        events.task_started.disconnect(receiver)
        events.task_finished.disconnect(receiver)
    assert log == ["task_finished"]  # no state to hand back: the finish payload instead
    assert [type(p).__name__ for p in collector.seen] == ["TaskStarted", "TaskFinished"]
    assert any("pair receiver bug" in r.getMessage() for r in caplog.records)


def test_correlation_ids_stay_unique_across_id_blocks():
    ids = [events.new_correlation_id() for _ in range(3000)]  # more than two blocks of 1024
    assert len(set(ids)) == 3000
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
