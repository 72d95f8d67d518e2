"""Connections are closed on the loop that opened them: ``UnifiedClient.aclose`` closes
every provider's SDK client of the running loop (real SDKs against loopback servers), a
later call opens a new one, and the command line closes them at the end of a run."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from orchestrator.llm.client import UnifiedClient
from orchestrator.llm.providers.registry import default_providers
from tests.fake_providers import ENDPOINTS, FakeServer, SleepRecorder, clean_provider_env, point_at

CASES = [("openai", "gpt-4o"), ("anthropic", "claude-haiku-4-5"), ("google", "gemini-2.5-flash")]


@pytest.mark.parametrize(("name", "model"), CASES, ids=[c[0] for c in CASES])
async def test_aclose_closes_the_loops_client_and_a_later_call_opens_a_new_one(monkeypatch, name, model):
    with FakeServer(ENDPOINTS[name].kind) as server:
        clean_provider_env(monkeypatch)
        point_at(monkeypatch, name, server, "test-key-0123456789abcdefghijklmnop")
        client = UnifiedClient(default_providers(dotenv=False), sleep=SleepRecorder())
        provider = client.providers[name]
        await client.call(model, "hello", max_tokens=10)
        loop = asyncio.get_running_loop()
        sdk = provider._clients[loop]
        await client.aclose()
        assert loop not in provider._clients
        if hasattr(sdk, "is_closed"):  # openai's and anthropic's clients say so
            assert sdk.is_closed()
        await client.call(model, "hello again", max_tokens=10)
        assert provider._clients[loop] is not sdk and len(server.requests) == 2
        await client.aclose()


def test_runs_on_fresh_loops_leave_no_client_to_close_on_a_closed_one(monkeypatch, caplog):
    """Before: the first loop's SDK client, collected while a later loop ran, tried to
    close its connections there and logged 'Event loop is closed'."""
    with FakeServer("openai") as server:
        clean_provider_env(monkeypatch)
        point_at(monkeypatch, "openai", server, "sk-test-0123456789abcdefghijklmnop")
        client = UnifiedClient(default_providers(dotenv=False), sleep=SleepRecorder())

        async def one_run() -> None:
            try:
                await client.call("gpt-4o", "hello", max_tokens=10)
            finally:
                await client.aclose()

        caplog.set_level(logging.ERROR, logger="asyncio")
        for _ in range(3):
            asyncio.run(one_run())
            gc.collect()
        assert not client.providers["openai"]._clients
        assert "Event loop is closed" not in caplog.text
        assert len(server.requests) == 3
