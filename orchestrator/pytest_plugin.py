"""pytest fixtures for users of the orchestrator (registered through the ``pytest11``
entry point, so they are available as soon as the package is installed).

``orchestrator_events``
    An :class:`~orchestrator.observers.recorder.EventRecorder` subscribed to the event
    bus for the test and unsubscribed after it::

        async def test_every_task_is_finished(orchestrator_events):
            state = await my_orchestrator.run_project("Build a CLI", "tests pass")
            started = orchestrator_events.of("task_started")
            assert len(started) == len(state.tasks)
            assert orchestrator_events.unfinished() == []

``span_exporter``
    An OpenTelemetry ``InMemorySpanExporter`` fed by a
    :class:`~orchestrator.observers.tracing.TracingObserver` subscribed for the test
    (its own tracer provider; the global one is left alone).  Needs the ``tracing``
    extra.  Extra helpers: ``.provider``, ``.observer``, ``.spans(prefix)``,
    ``.by_name(name)``, ``.parent_of(span)``::

        def test_llm_calls_nest_under_their_task(span_exporter):
            ...run...
            for call in span_exporter.spans("llm_call:"):
                assert span_exporter.parent_of(call).name.startswith("task:")
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import pytest

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from .observers.recorder import EventRecorder
    from .observers.tracing import TracingObserver


class SpanCapture(Protocol):
    """What the ``span_exporter`` fixture yields: an ``InMemorySpanExporter`` with lookups
    (its class is made when the fixture runs, so OpenTelemetry is imported only then)."""

    provider: TracerProvider | None
    observer: TracingObserver | None

    def get_finished_spans(self) -> tuple[ReadableSpan, ...]: ...
    def clear(self) -> None: ...
    def spans(self, prefix: str = "") -> list[ReadableSpan]: ...
    def by_name(self, name: str) -> ReadableSpan: ...
    def parent_of(self, span: ReadableSpan) -> ReadableSpan | None: ...


@pytest.fixture
def orchestrator_events() -> Iterator[EventRecorder]:
    """An EventRecorder subscribed for the duration of the test."""
    from .observers.recorder import EventRecorder

    recorder = EventRecorder()
    recorder.subscribe()
    try:
        yield recorder
    finally:
        recorder.unsubscribe()


def _new_capture() -> tuple[SpanExporter, SpanCapture]:
    """One exporter, as the processor sees it and as the test does."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    class _SpanCapture(InMemorySpanExporter):
        """InMemorySpanExporter with lookups for assertions."""

        provider: TracerProvider | None = None
        observer: TracingObserver | None = None

        def spans(self, prefix: str = "") -> list[ReadableSpan]:
            """Finished spans whose name starts with ``prefix``, in end order."""
            return [s for s in self.get_finished_spans() if s.name.startswith(prefix)]

        def by_name(self, name: str) -> ReadableSpan:
            """The one finished span called ``name`` (AssertionError if not exactly one)."""
            found = [s for s in self.get_finished_spans() if s.name == name]
            assert len(found) == 1, f"expected one span {name!r}, found {len(found)}"
            return found[0]

        def parent_of(self, span: ReadableSpan) -> ReadableSpan | None:
            """The finished span that is ``span``'s parent, or None."""
            if span.parent is None:
                return None
            for s in self.get_finished_spans():
                if s.context.span_id == span.parent.span_id:
                    return s
            return None

    capture = _SpanCapture()
    return capture, capture


@pytest.fixture
def span_exporter() -> Iterator[SpanCapture]:
    """An InMemorySpanExporter behind a TracingObserver subscribed for the test."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        from .observers.tracing import TracingObserver
    except ImportError:  # pragma: no cover - depends on the environment
        pytest.skip("span_exporter needs the tracing extra: pip install 'multi-llm-orchestrator[tracing]'")
    as_exporter, exporter = _new_capture()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(as_exporter))
    observer = TracingObserver(provider)
    exporter.provider, exporter.observer = provider, observer
    observer.subscribe()
    try:
        yield exporter
    finally:
        observer.unsubscribe()
        provider.shutdown()
