"""Domain types and the response cache."""

from __future__ import annotations

import pytest

from orchestrator.domain.budget import Budget
from orchestrator.domain.tasks import TaskType
from orchestrator.llm.cache import CachedAnswer, ResponseCache
from orchestrator.llm.catalog import CATALOG, LOCAL_MODEL, ROUTING, get_model


def test_budget_reserve_and_settle_never_overshoot():
    b = Budget(max_usd=1.0)
    assert b.reserve(0.6) and not b.reserve(0.5)  # the second would overshoot while the first is out
    b.settle(0.6, 0.2, "generation")
    assert b.spent_usd == pytest.approx(0.2) and b.remaining_usd == pytest.approx(0.8)
    assert b.reserve(0.8) and b.remaining_usd == pytest.approx(0.0)
    b.settle(0.8, 0.8, "evaluation")
    assert b.spent_usd == pytest.approx(1.0) and not b.can_afford(0.0001)
    assert b.phase_spend["generation"] == pytest.approx(0.2)
    assert b.phase_spend["evaluation"] == pytest.approx(0.8)


def test_budget_defaults_and_validation():
    b = Budget()
    assert (b.max_usd, b.max_time_seconds) == (8.0, 5400.0)
    assert 0 <= b.elapsed_seconds < 5 and b.remaining_seconds > 5390
    with pytest.raises(ValueError):
        Budget(max_usd=-1)


def test_catalog_costs_and_routing_table():
    gpt = get_model("gpt-4o")
    assert gpt.cost(1_000_000, 1_000_000) == pytest.approx(gpt.input_per_m + gpt.output_per_m)
    assert get_model(LOCAL_MODEL).cost(10**6, 10**6) == 0.0
    for task_type in TaskType:
        assert ROUTING[task_type], task_type
        assert all(name in CATALOG for name in ROUTING[task_type])
    with pytest.raises(KeyError, match="unknown model"):
        get_model("gpt-99")


def test_cache_persists_across_instances(tmp_path):
    first = ResponseCache(tmp_path)
    first.put("k1", "m", CachedAnswer("hello", 3, 4, "stop", "m-2024"))
    first.close()
    second = ResponseCache(tmp_path)
    assert second.get("k1") == CachedAnswer("hello", 3, 4, "stop", "m-2024")
    assert second.get("missing") is None and len(second) == 1
