"""Start-up cost of the sandbox, per isolation level, against no isolation (``none``: the
same harness, limits and capture, no namespaces), interleaved in one run.

For each level: the median wall time of ``python -c pass`` in the sandbox (the harness
starts, runs it in a child, reports, ends), of one acceptance check, of three, and of
the pytest validator's import smoke test.  The last line: the extra milliseconds each level costs a check run
over ``none``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.governance.acceptance import parse_criteria, run_checks
from orchestrator.governance.sandbox import Sandbox, probe
from orchestrator.governance.validators import pytest_check

ROUNDS = 7
ANSWER = "```python\ndef add(a, b):\n    return a + b\n```"
ONE = parse_criteria("add(1, 1) == 2").checks
THREE = parse_criteria("add(1, 1) == 2\nadd(2, 3) == 5\nadd(-1, 1) == 0").checks


def main() -> None:
    levels = [level for level in ("bwrap", "unshare") if probe(level) is None] + ["none"]
    cases = {
        "python -c pass": lambda box: box.run("command", {}, timeout=10, argv=[sys.executable, "-c", "pass"]),
        "1 check": lambda box: run_checks(ANSWER, ONE, sandbox=box),
        "3 checks": lambda box: run_checks(ANSWER, THREE, sandbox=box),
        "smoke import": lambda box: pytest_check(ANSWER, sandbox=box),
    }
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(ROUNDS):
        for case, run in cases.items():
            for level in levels:  # interleaved: load changes hit every level alike
                started = time.perf_counter()
                run(Sandbox(level))
                times.setdefault((case, level), []).append((time.perf_counter() - started) * 1000)
    print(f"{'':16}" + "".join(f"{level:>10}" for level in levels))
    for case in cases:
        print(f"{case:16}" + "".join(f"{statistics.median(times[(case, level)]):>8.0f}ms" for level in levels))
    extra = {
        level: statistics.median(times[("1 check", level)]) - statistics.median(times[("1 check", "none")])
        for level in levels
        if level != "none"
    }
    print("one check over none: " + ", ".join(f"{level} {ms:+.0f} ms" for level, ms in extra.items()))


if __name__ == "__main__":
    main()
