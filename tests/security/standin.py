"""A stand-in for the orchestrator's process in the probe tests: started (by the test, as
a subprocess) with a secret in its initial environment, as the command line is, it runs
acceptance checks or the pytest validator in a sandbox and prints, as JSON, the results,
its pid and its peak memory before and after.  Exiting normally with that JSON is how a
test sees that the checked code neither killed it nor grew its memory.

``python -m tests.security.standin`` reads its job as JSON on stdin: ``level``, ``kind``
(``checks`` or ``pytest``), ``answer`` (``HOSTPID`` in it becomes this process's pid),
``criteria``, ``timeout``.
"""

from __future__ import annotations

import json
import os
import resource
import sys

from orchestrator.governance.acceptance import parse_criteria, run_checks
from orchestrator.governance.sandbox import Sandbox
from orchestrator.governance.validators import pytest_check


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> int:
    job = json.loads(sys.stdin.read())
    box = Sandbox(job["level"])
    answer = job["answer"].replace("HOSTPID", str(os.getpid()))
    before = _peak_kib()
    results: object
    if job["kind"] == "checks":
        report = run_checks(
            answer, parse_criteria(job["criteria"]).checks, sandbox=box, timeout=float(job.get("timeout", 30))
        )
        results = [r.to_dict() for r in report.results]
    else:
        verdict = pytest_check(answer, sandbox=box, timeout=float(job.get("timeout", 30)))
        results = {"passed": verdict.passed, "message": verdict.message}
    print(
        json.dumps({"results": results, "pid": os.getpid(), "peak_before_kib": before, "peak_after_kib": _peak_kib()})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
