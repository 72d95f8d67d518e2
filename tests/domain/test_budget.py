"""The budget: reservations keep concurrent calls under the cap."""

from __future__ import annotations

import pytest

from orchestrator.domain.budget import Budget


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
