"""The model catalog and the response cache."""

from __future__ import annotations

import pytest

from orchestrator.domain.tasks import TaskType
from orchestrator.llm.cache import CachedAnswer, ResponseCache
from orchestrator.llm.catalog import CATALOG, LOCAL_MODEL, ROUTING, get_model


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
