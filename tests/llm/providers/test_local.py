"""The embedded model (SmolLM2 through llama-cpp-python), really run."""

from __future__ import annotations

import asyncio

from orchestrator.llm.client import UnifiedClient
from orchestrator.llm.providers.local import LocalProvider


async def test_waiting_for_the_generation_lock_is_queueing_not_working(span_exporter):
    """Two calls at once: llama.cpp generates one at a time.  The second call's span says
    how long it waited (``orchestrator.queue_ms``, and an ``llm_call_dispatched`` event
    when it really started); its ``llm.latency_ms`` is its own generation only."""
    client = UnifiedClient({"local": LocalProvider()})
    await client.call("smollm2-135m", "warm up", max_tokens=2)  # load the model first
    span_exporter.clear()
    first, second = await asyncio.gather(
        client.call("smollm2-135m", "Count from one to twenty.", max_tokens=48, temperature=0.0),
        client.call("smollm2-135m", "Name three colours.", max_tokens=48, temperature=0.0))
    spans = sorted(span_exporter.spans("llm_call:"), key=lambda s: s.attributes["orchestrator.queue_ms"])
    waited, went_first = spans[1], spans[0]
    assert waited.attributes["orchestrator.queue_ms"] >= 0.8 * went_first.attributes["llm.latency_ms"]
    (dispatched,) = [e for e in waited.events if e.name == "llm_call_dispatched"]
    assert dispatched.timestamp - waited.start_time >= waited.attributes["orchestrator.queue_ms"] * 1e6 * 0.9
    span_ms = (waited.end_time - waited.start_time) / 1e6
    assert waited.attributes["llm.latency_ms"] < span_ms - 0.8 * waited.attributes["orchestrator.queue_ms"]
    assert sorted((first.queue_ms, second.queue_ms)) == [went_first.attributes["orchestrator.queue_ms"],
                                                          waited.attributes["orchestrator.queue_ms"]]
    assert waited.attributes["gen_ai.response.id"].startswith("chatcmpl")
