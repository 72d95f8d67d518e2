"""Model health as a circuit breaker: repeated transient failures open it for a
cool-down, one probe then goes alone, an answer closes it; permanent errors stay final.
And under load: 30 % transient faults at concurrency 10 over 400 tasks lose no task."""

from __future__ import annotations

import asyncio
import random

import pytest

from orchestrator import events
from orchestrator.domain.budget import Budget
from orchestrator.domain.results import TaskStatus
from orchestrator.domain.tasks import Task, TaskType
from orchestrator.engine import Orchestrator
from orchestrator.llm.client import LLMCallError, UnifiedClient
from orchestrator.llm.providers.base import ProviderError, ProviderRequest, ProviderResponse
from tests.scripted import ScriptedProvider


def _503() -> ProviderError:
    return ProviderError("503 service unavailable", transient=True, status_code=503, error_type="ServiceUnavailable")


class Flaky(ScriptedProvider):
    """Fails each request with probability ``rate`` (transient 503), else answers."""

    def __init__(self, rate: float, seed: int = 7, **kw) -> None:
        super().__init__(**kw)
        self.rate = rate
        self.rng = random.Random(seed)
        self.in_flight = 0
        self.max_in_flight = 0

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            if self.rng.random() < self.rate:
                self.requests.append(request)
                raise _503()
            return await super().complete(request)
        finally:
            self.in_flight -= 1


async def test_thirty_percent_transient_faults_lose_no_task_to_the_breaker(orchestrator_events):
    provider = Flaky(0.3, name="local", answer="A fine summary of the text.")
    # a low threshold trips the breaker often; retries make a genuinely lost call negligible
    client = UnifiedClient(
        {"local": provider},
        concurrency=20,
        default_retries=6,
        unhealthy_after=3,
        breaker_cooldown=0.005,
        breaker_cooldown_max=0.05,
        backoff_base=0.001,
        backoff_max=0.002,
    )
    tasks = [Task(f"t{i}", TaskType.SUMMARIZATION, f"summarize text {i}", max_iterations=1) for i in range(400)]
    orch = Orchestrator(budget=Budget(1.0, 600), client=client, concurrency=10, project_tasks=tasks)
    state = await orch.run_project("Summaries", "faithful")
    statuses = {r.status for r in state.results.values()}
    lost = {
        tid: r.error for tid, r in state.results.items() if r.status not in (TaskStatus.COMPLETED, TaskStatus.DEGRADED)
    }
    assert lost == {} and statuses <= {TaskStatus.COMPLETED, TaskStatus.DEGRADED}
    trips = [e for e in orchestrator_events.of("model_unhealthy") if "consecutive failures" in e.reason]
    assert trips, "the breaker never opened: the test did not exercise it"
    assert client.unhealthy == {}  # transient faults never put the model out for good
    assert not client.cooling_down("smollm2-135m") or provider.requests  # it closed again after answers
    failed = [f for f in orchestrator_events.of("llm_call_finished") if f.status == "error"]
    assert all(f.attributes.get("error.type") == "ServiceUnavailable" for f in failed)


async def test_one_probe_goes_alone_and_an_answer_closes_the_breaker():
    answers: list[ProviderError | str] = [_503(), _503(), _503()]  # three in a row open it
    sent = 0

    def answer(request: ProviderRequest) -> str:
        nonlocal sent
        sent += 1
        if answers:
            raise answers.pop(0)
        return "back"

    provider = ScriptedProvider(name="openai", answer=answer, latency=0.01)
    client = UnifiedClient({"openai": provider}, unhealthy_after=3, breaker_cooldown=0.05, backoff_base=0.001)
    for _ in range(3):
        try:
            await client.call("gpt-4o", "x", retries=0)
        except LLMCallError:
            pass
    assert client.cooling_down("gpt-4o") and client.is_usable("gpt-4o")
    sent_before = sent
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(*[client.call("gpt-4o", f"q{i}", retries=0) for i in range(5)])
    assert loop.time() - started >= 0.04  # waited the cool-down out instead of failing
    assert [r.text for r in results] == ["back"] * 5
    assert sent - sent_before == 5 and not client.cooling_down("gpt-4o")


async def test_a_failed_probe_reopens_with_a_longer_cool_down(recorded):
    provider = ScriptedProvider(name="openai", answer=_503())
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    client = UnifiedClient(
        {"openai": provider}, unhealthy_after=2, breaker_cooldown=10, breaker_cooldown_max=25, sleep=sleep
    )
    for _ in range(4):
        try:
            await client.call("gpt-4o", "x", retries=0)
        except LLMCallError:
            pass
    # two failures opened it; each later call waited a cool-down (10, then 20, then capped 25) and probed
    cool_downs = [s for s in slept if s > 1]
    assert [round(s) for s in cool_downs] == [10, 20]
    assert client.cooling_down("gpt-4o") and client.health._breakers["gpt-4o"].cooldown == 25
    opened = [p for p in recorded if isinstance(p, events.ModelUnhealthy)]
    assert len(opened) == 1 and "probed again after a 10s cool-down" in opened[0].reason


async def test_a_cool_down_longer_than_the_time_left_fails_the_call_without_sending():
    provider = ScriptedProvider(name="openai", answer=_503())
    client = UnifiedClient({"openai": provider}, budget=Budget(1.0, 30), unhealthy_after=1, breaker_cooldown=60)
    try:
        await client.call("gpt-4o", "x", retries=0)
    except LLMCallError:
        pass
    sent = len(provider.requests)
    try:
        await client.call("gpt-4o", "y", retries=0)
    except LLMCallError as exc:
        assert exc.error_type == "CircuitOpen"
    else:
        raise AssertionError("expected CircuitOpen")
    assert len(provider.requests) == sent


async def test_permanent_errors_stay_final():
    provider = ScriptedProvider(
        name="openai",
        answer=ProviderError("401", status_code=401, fatal_for_model=True, error_type="AuthenticationError"),
    )
    client = UnifiedClient({"openai": provider}, breaker_cooldown=0.001)
    try:
        await client.call("gpt-4o", "x")
    except LLMCallError:
        pass
    await asyncio.sleep(0.01)
    assert not client.is_usable("gpt-4o") and "gpt-4o" in client.unhealthy
    try:
        await client.call("gpt-4o", "again")
    except LLMCallError as exc:
        assert exc.error_type == "ModelUnhealthy"
    assert len(provider.requests) == 1


async def test_an_answer_resets_the_count_of_consecutive_failures(recorded):
    """The breaker opens after ``threshold`` failures in a row, not in total: two failures,
    an answer, two failures leave it closed; a third in a row opens it."""
    script: list[ProviderError | str] = [_503(), _503(), "ok", _503(), _503(), _503()]

    def answer(request: ProviderRequest) -> str:
        step = script.pop(0)
        if isinstance(step, ProviderError):
            raise step
        return step

    provider = ScriptedProvider(name="openai", answer=answer)
    client = UnifiedClient({"openai": provider}, unhealthy_after=3, breaker_cooldown=60.0)
    outcomes = []
    for _ in range(5):
        try:
            outcomes.append((await client.call("gpt-4o", "x", retries=0)).text)
        except LLMCallError:
            outcomes.append("failed")
    assert outcomes == ["failed", "failed", "ok", "failed", "failed"]
    assert client.health.failures("gpt-4o") == 2 and not client.cooling_down("gpt-4o")
    assert not [p for p in recorded if isinstance(p, events.ModelUnhealthy)]
    with pytest.raises(LLMCallError):
        await client.call("gpt-4o", "x", retries=0)
    assert client.cooling_down("gpt-4o")  # three in a row
    (opened,) = [p for p in recorded if isinstance(p, events.ModelUnhealthy)]
    assert opened.reason.startswith("3 consecutive failures")
