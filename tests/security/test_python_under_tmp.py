"""A Python that lives under /tmp (a venv made there, as CI systems and quick tries do):
the sandbox's own private /tmp must not hide it.  Both levels build the sandbox's /tmp
first and bind the interpreter's prefix onto it, read-only; the check still cannot write
there, and still writes its own /tmp."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import pytest

from tests.sandboxes import OFFERED

ROOT = Path(__file__).resolve().parents[2]
SITE = [p for p in sys.path if p.endswith("site-packages")]

CHILD = """
import json, sys
from orchestrator.governance.acceptance import parse_criteria, run_checks
from orchestrator.governance.sandbox import Sandbox, probe

level = sys.argv[1]
out = {"probe": probe(level), "prefix": sys.prefix}
code = '''
import os, sys
def tmp_writable():
    with open("/tmp/mine", "w") as f:
        f.write("x")
    return True
def under_tmp():
    return sys.prefix.startswith("/tmp/")
def prefix_writable():
    try:
        open(os.path.join(sys.prefix, "planted"), "w").close()
        return True
    except OSError:
        return False
'''
checks = parse_criteria("tmp_writable() == True; prefix_writable() == False; under_tmp() == True").checks
report = run_checks(code, checks, prelude=["import sys"], sandbox=Sandbox(level), timeout=60)
out["checks"] = [[r.passed, r.error] for r in report.results]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def python_under_tmp():
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="orchestrator-venv-") as where:
        venv.EnvBuilder(with_pip=False).create(where)
        yield Path(where) / "bin" / "python"


@pytest.mark.parametrize("level", OFFERED)
def test_the_sandbox_runs_a_python_that_lives_under_tmp(python_under_tmp, level):
    env = {"PYTHONPATH": ":".join([str(ROOT), *SITE]), "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    proc = subprocess.run(
        [str(python_under_tmp), "-c", CHILD, level], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["prefix"].startswith("/tmp/") and out["probe"] is None, out
    # its own /tmp writable, the interpreter's prefix there but bound read-only
    assert out["checks"] == [[True, ""], [True, ""], [True, ""]], out
