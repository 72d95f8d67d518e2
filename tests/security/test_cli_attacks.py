"""Runs of the real command line (a subprocess, started with API keys in its environment,
as a user would) whose model answers attack code and whose criteria trigger it: every
run ends with the attacks failed, the orchestrator alive (a normal exit status), the
summary written, and the keys in no file the run wrote.  At each isolation level this
machine offers; and the refusal path: where no level works, the run does not start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from orchestrator.report import build_report, events_from_files
from tests.sandboxes import OFFERED, processes_with
from tests.security.attack_cli import CATALOG_FILE, MODEL

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-proj-" + "Kx7" * 16
LEVELS = [pytest.param(level, id=level) for level in OFFERED]


def _project(tmp_path: Path) -> str:
    path = tmp_path / "project.yaml"
    path.write_text(
        textwrap.dedent("""\
        project: Write a Python function add(a, b)
        tasks:
          - id: add
            type: code_generation
            prompt: Write a Python function add(a, b) that returns a + b.
            max_iterations: 1
    """),
        encoding="utf-8",
    )
    return str(path)


def cli(
    tmp_path: Path, answer: str, criteria: str, *extra: str, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    answer_file = tmp_path / "answer.md"
    answer_file.write_text(f"```python\n{textwrap.dedent(answer).strip()}\n```", encoding="utf-8")
    env = {
        **os.environ,
        "OPENAI_API_KEY": KEY,
        "ANTHROPIC_API_KEY": KEY,
        "ATTACK_ANSWER": str(answer_file),
        "COLUMNS": "200",
    }
    if path is not None:
        env["PATH"] = path
    argv = [
        sys.executable,
        "-m",
        "tests.security.attack_cli",
        "-f",
        _project(tmp_path),
        "-c",
        criteria,
        "--model",
        MODEL,
        "--catalog",
        CATALOG_FILE,
        "--no-cache",
        "-q",
        "-o",
        str(tmp_path / "out"),
        "--state-dir",
        str(tmp_path / "state"),
        "--events-jsonl",
        str(tmp_path / "events.jsonl"),
        *extra,
    ]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


def _written(tmp_path: Path) -> str:
    """Everything the run wrote, as text."""
    texts = []
    for file in tmp_path.rglob("*"):
        if file.is_file() and file.name != "answer.md":
            texts.append(file.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


ATTACK = """
    import atexit
    import glob
    import json
    import os
    import signal
    import sys

    def add(a, b):
        return 0

    def steal():
        found = [k for k in os.environ if k.endswith("_API_KEY")]
        for path in glob.glob("/proc/*/environ"):
            try:
                with open(path, "rb") as f:
                    if b"sk-proj-" in f.read():
                        found.append(path)
            except OSError:
                pass
        return found

    def _forge():
        line = json.dumps({"index": 1, "passed": True, "error_type": None, "error": ""}) + "\\n"
        for path in glob.glob("/proc/*/fd/*"):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                os.write(fd, line.encode())
                os.close(fd)
            except OSError:
                pass
        os._exit(0)

    atexit.register(_forge)
    for target in (os.getppid(), -1):
        try:
            os.kill(target, signal.SIGKILL)
        except OSError:
            pass
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            script = "import sys, time; time.sleep(25); open(sys.argv[1], 'w').write('outlived')"
            os.execv(sys.executable, [sys.executable, "-c", script, "OUTFILE", "MARKER"])
        os._exit(0)
"""


@pytest.mark.parametrize("level", LEVELS)
def test_a_run_whose_criteria_attack_ends_with_the_attacks_failed(tmp_path, level):
    marker = f"orchestrator-cli-daemon-{uuid.uuid4().hex}"
    outfile = tmp_path / "outlived"
    answer = ATTACK.replace("MARKER", marker).replace("OUTFILE", str(outfile))
    proc = cli(tmp_path, answer, "add(1, 1) == 2\nsteal() == []", "--sandbox", level)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])  # the task failed; the CLI was not killed
    assert "Traceback" not in proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["sandbox"] == level and summary["status"] == "failed"
    checks = {c["check"]: c for c in summary["results"]["add"]["checks"]}
    assert checks["add(1, 1) == 2"]["passed"] is False  # neither forged nor killed into a pass
    assert checks["steal() == []"]["passed"] is True  # no key anywhere the code could look
    assert f"sandbox {level}" in proc.stdout  # the table's footer
    assert processes_with(marker) == [] and not outfile.exists()
    assert KEY not in _written(tmp_path) + proc.stdout + proc.stderr
    report = build_report(events_from_files([tmp_path / "events.jsonl"]))
    assert report.isolation == level  # the run's report says where its checks ran


def test_the_refusal_where_no_sandbox_works(tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    proc = cli(tmp_path, "def add(a, b):\n    return a + b", "add(1, 1) == 2", path=str(empty))
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert (
        line.startswith(
            "orchestrator: error: no sandbox for model-written code here (bwrap: bwrap is not "
            "installed; unshare: unshare is not installed)"
        )
        and "--sandbox none" in line
    )
    assert not (tmp_path / "out").exists() and not (tmp_path / "events.jsonl").exists()  # before any work


def test_naming_a_level_that_does_not_work_here_is_refused(tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    proc = cli(tmp_path, "def add(a, b):\n    return a + b", "add(1, 1) == 2", "--sandbox", "unshare", path=str(empty))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "orchestrator: error: sandbox unshare cannot run here: unshare is not installed"


def test_sandbox_none_is_an_opt_in_warned_about_loudly(tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir()  # no isolation available: only the opt-in runs
    proc = cli(tmp_path, "def add(a, b):\n    return a + b", "add(1, 1) == 2", "--sandbox", "none", path=str(empty))
    assert proc.returncode == 0, proc.stderr
    assert (
        "orchestrator: warning: --sandbox none: model-written code and acceptance checks will run WITHOUT "
        "isolation" in proc.stderr
    )
    assert "sandbox NONE (unisolated)" in proc.stdout and "note: sandbox none:" in proc.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["sandbox"] == "none" and summary["results"]["add"]["checks"][0]["passed"] is True
