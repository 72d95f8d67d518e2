"""Cost of one emit point with nothing subscribed.

An emit point is a whole ``with traced_llm_call(...) as s:`` block with three
``s.set_attribute`` calls, as the client writes it.  Prints ns per emit point and its ratio
to an empty function call measured in the same run; target <= 300 ns.  Also a point event,
``emit(budget_warning, ...)`` with four typed fields, as the budget code writes it (same
target: the typing is the type checker's, so with no receiver nothing is built).
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator import events

N = 500_000
REPEATS = 7

EMIT = """
with traced_llm_call("gpt-4o", "generate") as s:
    s.set_attribute("llm.tokens_in", 1)
    s.set_attribute("llm.tokens_out", 2)
    s.set_attribute("llm.cost_usd", 0.1)
"""


POINT = 'emit(budget_warning, spent_usd=1.0, max_usd=2.0, fraction=0.5, reason="r")'


def empty(a, b):
    return None


def best_ns(stmt: str, env: dict) -> float:
    return min(timeit.repeat(stmt, globals=env, number=N, repeat=REPEATS)) / N * 1e9


def main() -> None:
    assert not events.is_active(), "nothing may be subscribed for this measurement"
    baseline = best_ns('empty("gpt-4o", "generate")', {"empty": empty})
    loop_only = best_ns("pass", {})
    emit = best_ns(EMIT, {"traced_llm_call": events.traced_llm_call})
    point = best_ns(POINT, {"emit": events.emit, "budget_warning": events.budget_warning})
    print(f"empty function call: {baseline:.1f} ns (loop overhead {loop_only:.1f} ns)")
    print(f"emit point, no receiver: {emit:.1f} ns")
    print(f"ratio to empty call: {emit / baseline:.2f}")
    print(f"point event, no receiver: {point:.1f} ns (ratio {point / baseline:.2f})")
    print(f"emit point ns (target <= 300): {emit:.1f}")


if __name__ == "__main__":
    main()
