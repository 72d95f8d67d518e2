"""``orchestrator replay``: a recorded run becomes the same spans a live run made - names,
parentage, recorded start and end times, attributes, span events - only the ids are new;
a killed attempt's open pairs end at its last event; a resumed run's second root links
to the replayed first."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator import Budget, Orchestrator, UnifiedClient
from orchestrator.cli.main import main
from orchestrator.cli.replay_cmd import replay_attempts
from orchestrator.observers.recorder import EventRecorder
from orchestrator.observers.tracing import TracingObserver
from orchestrator.report import events_from_files, split_attempts
from tests.assertions import assert_one_line_error
from tests.report.runs import killed_and_resumed
from tests.scripted import ScriptedProvider, decomposition


def _memory() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _shape(spans) -> list[tuple]:
    """Everything about each span but its ids: name, parent's name, times, kind, status,
    attributes, events (name, time, attributes)."""
    by_id = {s.context.span_id: s for s in spans}
    out = []
    for s in spans:
        parent = by_id.get(s.parent.span_id).name if s.parent is not None else None
        events = tuple(
            (e.name, e.timestamp, tuple(sorted(e.attributes.items()))) for e in s.events if e.name != "exception"
        )  # the live one has a traceback object, a replay its text
        out.append(
            (
                s.name,
                parent,
                s.start_time,
                s.end_time,
                s.kind,
                s.status.status_code,
                tuple(sorted(s.attributes.items())),
                events,
            )
        )
    return sorted(out, key=lambda t: (t[2], t[0]))


def test_a_replay_makes_the_spans_the_live_run_made(tmp_path):
    provider, live = _memory()
    answers = iter(["draft", "critique", "revised"] * 20)
    scripted = ScriptedProvider(
        plan=decomposition(
            {"id": "a", "type": "summarization", "prompt": "Summarise a.", "depends_on": []},
            {"id": "b", "type": "creative_writing", "prompt": "Write b.", "depends_on": ["a"]},
        ),
        answer=lambda request: next(answers),
        score=0.5,
        latency=0.002,
    )
    path = tmp_path / "events.jsonl"
    with TracingObserver(provider), EventRecorder(jsonl_path=path, mode="w"):
        asyncio.run(
            Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({"local": scripted})).run_project(
                "Replay me", "prose"
            )
        )
    live_spans = live.get_finished_spans()
    assert any(s.name == "remediation" for s in live_spans) and len(live_spans) > 10

    provider2, replayed = _memory()
    _, attempts = split_attempts(events_from_files([path]))
    observer = TracingObserver(provider2, attach_context=False)
    done, skipped = replay_attempts(attempts, observer)
    assert skipped == 0 and done == len(path.read_text().splitlines())
    again = replayed.get_finished_spans()
    assert _shape(again) == _shape(live_spans)
    assert {s.context.trace_id for s in again}.isdisjoint({s.context.trace_id for s in live_spans})  # new ids


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    return killed_and_resumed(tmp_path_factory.mktemp("replay-resumed"))


def test_a_resumed_run_replays_as_two_linked_traces(resumed):
    provider, memory = _memory()
    events, _, _ = __import__("orchestrator.cli.report_cmd", fromlist=["x"]).events_from_store(
        resumed.project_id, str(resumed.state_dir)
    )
    _, attempts = split_attempts(events)
    replay_attempts(attempts, TracingObserver(provider, attach_context=False))
    spans = memory.get_finished_spans()
    roots = sorted((s for s in spans if s.parent is None), key=lambda s: s.start_time)
    assert [r.attributes["orchestrator.attempt"] for r in roots] == [1, 2]
    first, second = roots
    assert first.status.status_code.name == "ERROR"  # killed: its root never finished
    assert first.end_time == max(e["timestamp_ns"] for e in attempts[0])  # ends at its last event
    assert [link.context.trace_id for link in second.links] == [first.context.trace_id]
    assert second.attributes["orchestrator.original_trace_id"] == f"{first.context.trace_id:032x}"
    for root, recorded in zip(roots, attempts, strict=True):
        mine = [s for s in spans if s.context.trace_id == root.context.trace_id]
        pairs = [e for e in recorded if e["signal"].endswith("_started") or e["signal"] == "policy_check_started"]
        assert len(mine) == len(pairs)
        assert root.start_time == recorded[0]["timestamp_ns"]


def test_a_resumed_run_replays_linked_under_another_propagator(resumed):
    """The second root's link is read from the first replayed root's whole carrier, in the
    configured format: with B3 (no W3C ``traceparent`` at all) the link still holds."""
    from opentelemetry.propagators.b3 import B3SingleFormat

    provider, memory = _memory()
    events, _, _ = __import__("orchestrator.cli.report_cmd", fromlist=["x"]).events_from_store(
        resumed.project_id, str(resumed.state_dir)
    )
    _, attempts = split_attempts(events)
    observer = TracingObserver(provider, attach_context=False, propagator=B3SingleFormat())
    replay_attempts(attempts, observer)
    first, second = sorted((s for s in memory.get_finished_spans() if s.parent is None), key=lambda s: s.start_time)
    assert [link.context.trace_id for link in second.links] == [first.context.trace_id]
    assert [link.context.span_id for link in second.links] == [first.context.span_id]


def test_replay_without_an_endpoint_prints_the_tree(resumed, capsys):
    assert main(["replay", *map(str, resumed.events)]) == 0
    out = capsys.readouterr().out
    assert "run_project" in out and "task:alpha" in out and "2 attempt(s)" in out and "(replayed)" in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["replay"], "the following arguments are required"),
        (["replay", "no-such-run"], "no such file, and no run with this id"),
        (["replay", "x.jsonl", "--otlp-endpoint", "localhost:4317"], "--otlp-endpoint"),
        (["replay", "x.jsonl", "--sample-rate", "2"], "sample"),
    ],
)
def test_bad_replay_input_is_one_line_and_exit_2(argv, fragment, capsys):
    assert main(argv) == 2
    assert_one_line_error(capsys.readouterr().err, fragment)
