"""The tracing benchmark compares like with like: each of its bare-SDK baselines makes the
very spans (names, kinds, parents, attributes, events, links, status) and carriers that the
bus and the TracingObserver make, so its ratios are between equal work."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "tracing_overhead.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("tracing_overhead_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.mark.parametrize("baseline", ["direct", "direct_seed"])
def test_each_baseline_makes_the_spans_the_observer_makes(bench, baseline):
    bench.check_same_spans(getattr(bench, baseline))  # raises SystemExit naming the difference


def test_a_baseline_that_differs_is_caught(bench):
    def fewer(tracer, carriers=None):
        bench.direct(tracer, carriers)
        with tracer.start_as_current_span("extra"):
            pass

    with pytest.raises(SystemExit):
        bench.check_same_spans(fewer)
