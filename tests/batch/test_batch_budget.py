"""The batch's one hard budget as a property, through the real ``UnifiedClient``,
``Budget`` and batch ledger: several projects at once, each with its own cap and its own
client, random prompts, output caps, errors, cancels - and workers killed mid-call.

A kill is what a worker's death looks like to the ledger: the attempt's calls are
cancelled where they stand, the provider may already have billed a call whose settle
never reaches the ledger, and the project's next attempt begins (a Ray retry).  After
everything: what the providers billed is <= the batch cap, the ledger's spend is <= the
cap, and each project's bills (all attempts) are <= its own cap.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.batch.ledger import BatchLedger
from orchestrator.batch.pool import InProcessLedger, LedgerPool, PoolUnavailable
from orchestrator.domain.budget import Budget
from orchestrator.llm.budgeting import call_cost
from orchestrator.llm.catalog import get_model
from orchestrator.llm.client import BudgetExceededError, UnifiedClient
from orchestrator.llm.pricing import now
from orchestrator.llm.providers.base import ProviderError, ProviderRequest, ProviderResponse
from tests.reliability.test_budget_property import SCHEMA, honest_input_bound

MODELS = {"gpt-4o": "openai", "claude-haiku-5-5": "anthropic"}  # flat prices: billed here as the client prices


class KillableAccess(InProcessLedger):
    """The ledger as one attempt reaches it; after ``kill()`` its messages are lost."""

    def __init__(self, ledger: BatchLedger) -> None:
        super().__init__(ledger)
        self.dead = False

    def kill(self) -> None:
        self.dead = True

    async def reserve(self, holder: str, project_id: str, rid: str, amount: float) -> bool:
        if self.dead:
            raise PoolUnavailable("the worker is dead")
        return await super().reserve(holder, project_id, rid, amount)

    def settle(self, rid: str, actual: float) -> None:
        if not self.dead:
            super().settle(rid, actual)


@dataclass
class BillingProvider:
    """Honest usage, billed the moment it answers (before the client settles)."""

    name: str
    rng: random.Random
    bills: list[tuple[str, float]]
    project: str = ""
    requests: int = 0
    killed: list[bool] = field(default_factory=lambda: [False])

    def availability(self, model: str) -> tuple[bool, str]:
        return True, ""

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.requests += 1
        await asyncio.sleep(self.rng.choice((0, 0.0005, 0.002)))
        if self.rng.random() < 0.1:
            raise ProviderError("503", transient=True, status_code=503, error_type="ServiceUnavailable")
        raw = ProviderResponse(
            "ok", self.rng.randint(0, honest_input_bound(request)), self.rng.randint(0, request.max_tokens)
        )
        self.bills.append((self.project, call_cost(get_model(request.model), raw, now())))
        return raw


call_spec = st.tuples(st.sampled_from(sorted(MODELS)), st.text(max_size=300), st.integers(1, 3000), st.booleans())
project_spec = st.tuples(
    st.lists(call_spec, min_size=1, max_size=8),
    st.floats(0.0, 0.2, allow_nan=False),  # the project's own cap
    st.one_of(st.none(), st.floats(0.0, 0.006)),
)  # killed after this long


async def _no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    projects=st.lists(project_spec, min_size=1, max_size=5),
    cap=st.floats(0.0, 0.3, allow_nan=False),
    seed=st.integers(0, 2**31),
)
def test_the_batch_cap_holds_under_concurrency_and_kills(projects, cap, seed):
    rng = random.Random(seed)
    ledger = BatchLedger(cap)
    bills: list[tuple[str, float]] = []

    async def attempt(pid: str, number: int, calls: list, project_cap: float, kill_after: float | None) -> None:
        access = KillableAccess(ledger)
        holder = f"{pid}/{number}"
        floor = await access.begin(pid, holder)
        budget = Budget(project_cap, 3600, pool=LedgerPool(access, pid, holder))
        budget.restore_spend(floor, {})  # what a resume from the checkpoint starts from (SpentFloor)
        providers = {name: BillingProvider(name, rng, bills, pid) for name in set(MODELS.values())}
        client = UnifiedClient(providers, budget=budget, concurrency=3, sleep=_no_sleep, breaker_cooldown=0.001)

        async def one(model: str, prompt: str, max_tokens: int, json: bool) -> None:
            try:
                await client.call(model, prompt, max_tokens=max_tokens, json_schema=SCHEMA if json else None, retries=1)
            except Exception:  # refused for money or every attempt failed: outcomes here
                pass

        tasks = [asyncio.ensure_future(one(*c)) for c in calls]
        if kill_after is not None:
            await asyncio.sleep(kill_after)
            access.kill()  # settles in flight are lost; then the worker's tasks die where they stand
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await attempt(pid, number + 1, calls, project_cap, None)  # the retry runs everything again
        else:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def main() -> None:
        await asyncio.gather(
            *(attempt(f"p{i}", 1, calls, pcap, kill) for i, (calls, pcap, kill) in enumerate(projects))
        )

    asyncio.run(main())
    ledger.close()
    billed = math.fsum(cost for _, cost in bills)
    assert billed <= cap  # what providers charged, every attempt and every kill included
    assert ledger.spent_usd <= cap and billed <= ledger.spent_usd + 1e-12
    for i, (_calls, project_cap, _kill) in enumerate(projects):
        assert math.fsum(cost for p, cost in bills if p == f"p{i}") <= project_cap  # per-project caps hold too


def test_an_unreachable_ledger_starts_no_call():
    class Gone(InProcessLedger):
        async def reserve(self, holder: str, project_id: str, rid: str, amount: float) -> bool:
            raise ConnectionError("the ledger's node is down")

    bills: list[tuple[str, float]] = []
    provider = BillingProvider("openai", random.Random(0), bills)
    budget = Budget(1.0, 600, pool=LedgerPool(Gone(BatchLedger(1.0)), "p", "p/1"))
    client = UnifiedClient({"openai": provider}, budget=budget)

    async def run() -> None:
        try:
            await client.call("gpt-4o", "hello", max_tokens=10)
        except BudgetExceededError as exc:
            assert "batch budget cannot be asked" in str(exc) and "ConnectionError" in str(exc)
        else:
            raise AssertionError("a call started without the ledger")

    asyncio.run(run())
    assert provider.requests == 0 and bills == []
    assert budget.reserved_usd == 0.0 and budget.spent_usd == 0.0  # the project's own hold was given back


def test_the_batch_cap_refuses_what_the_project_cap_allows():
    bills: list[tuple[str, float]] = []
    provider = BillingProvider("openai", random.Random(1), bills)
    ledger = BatchLedger(0.0)
    budget = Budget(5.0, 600, pool=LedgerPool(InProcessLedger(ledger), "p", "p/1"))
    client = UnifiedClient({"openai": provider}, budget=budget)

    async def run() -> None:
        try:
            await client.call("gpt-4o", "hello", max_tokens=10)
        except BudgetExceededError as exc:
            assert "batch budget has left" in str(exc)
        else:
            raise AssertionError("a call the batch cannot pay was sent")

    asyncio.run(run())
    assert provider.requests == 0 and ledger.snapshot().refused == 1 and budget.reserved_usd == 0.0
