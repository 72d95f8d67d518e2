"""One remote provider against its loopback server, for the adapter test modules.

A module sets ``PROVIDER`` (``openai``, ``anthropic`` or ``google``), ``TOKENS`` (the
usage the server reports by default) and ``KEY``; then ``server`` is that server, ``env``
points the registry at it (and at nothing else), and ``client`` is a ``UnifiedClient``
over the registry's providers whose backoff sleeps are recorded, not waited."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.llm.client import UnifiedClient
from orchestrator.llm.providers.registry import default_providers
from tests.fake_providers import ENDPOINTS, FakeServer, SleepRecorder, clean_provider_env, point_at


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[FakeServer]:
    with FakeServer(ENDPOINTS[request.module.PROVIDER].kind, tokens=request.module.TOKENS) as srv:
        yield srv


@pytest.fixture
def env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, server: FakeServer) -> pytest.MonkeyPatch:
    clean_provider_env(monkeypatch)
    point_at(monkeypatch, request.module.PROVIDER, server, request.module.KEY)
    return monkeypatch


@pytest.fixture
def client(env: pytest.MonkeyPatch) -> UnifiedClient:
    return UnifiedClient(default_providers(dotenv=False), sleep=SleepRecorder())
