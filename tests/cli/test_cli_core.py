"""The CLI: usage errors, and real end-to-end runs on the embedded local model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import cli, events
from tests.assertions import assert_one_line_error

ROOT = Path(__file__).resolve().parents[2]


def _run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--bogus"], "unrecognized arguments"),
        ([], "no project given"),
        (["-p", "x", "--budget", "-1"], "--budget must be a number >= 0"),
        (["-p", "x", "--concurrency", "0"], "--concurrency must be a whole number >= 1"),
        (["-p", "x", "--budget", "abc"], "invalid float value"),
        (["-p", "x", "--model", "no-such-model"], "unknown model"),
        (["-p", "x", "--local-model", "/nonexistent.gguf"], "no such file"),
        (["-p", "x", "--max-tasks", "40"], "--max-tasks must be between 1 and 15"),
        (["-p", "x", "--otlp-endpoint", "localhost:4317"], "--otlp-endpoint"),
        (["-p", "x", "--otlp-endpoint", "ftp://127.0.0.1:4317"], "--otlp-endpoint"),
        (["-p", "x", "--sample-rate", "1.5"], "sample"),
        (["-p", "x", "--otlp-protocol", "udp"], "invalid choice"),
        (["-p", "x", "--observer", "no_such_module_xyz:factory"], "no_such_module_xyz"),
        (["-p", "x", "--service-name", " "], "--service-name must not be empty"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv, fragment, capsys):
    assert cli.main(argv) == cli.EXIT_USAGE
    assert_one_line_error(capsys.readouterr().err, fragment)


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("project: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping with at least 'project'"),
        ("project: x\ncriteria: y\nbudjet_usd: 3\n", "unknown key 'budjet_usd'"),
        ("project: x\nbudget_usd: lots\n", "budget_usd: must be a finite number >= 0"),
        (
            "project: x\ntasks:\n  - id: a\n    type: poetry\n    prompt: p\n",
            "tasks[0].type: unknown task type 'poetry'",
        ),
        ("criteria: only criteria\n", "no project given"),
    ],
)
def test_malformed_project_files(tmp_path, content, fragment, capsys):
    f = tmp_path / "project.yaml"
    f.write_text(content)
    assert cli.main(["-f", str(f)]) == cli.EXIT_USAGE
    assert_one_line_error(capsys.readouterr().err, fragment)


def test_help_works_as_written():
    proc = _run_cli("--help", timeout=60)
    assert proc.returncode == 0
    for flag in ("--project", "--criteria", "--budget", "--output-dir", "--no-cache", "Exit codes"):
        assert flag in proc.stdout


def test_help_shows_the_profile_and_the_check_rule():
    proc = _run_cli("--help", timeout=60)
    text = " ".join(proc.stdout.split())
    assert "--profile {auto,local,full}" in text and "embedded model" in text
    assert "acceptance checks" in text


def test_the_readme_quick_start_succeeds_on_the_local_model(tmp_path):
    """README's first command, as a user runs it (plus a fresh cache and an output dir):
    exit 0, the task completed, the check shown as passed in the summary."""
    proc = _run_cli(
        "-p",
        "Write a Python function add(a, b) that returns a + b",
        "-c",
        "add(1, 1) == 2",
        "--tracing",
        "--cache-dir",
        str(tmp_path / "cache"),
        "-o",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = " ".join(proc.stdout.split())
    assert "check [add] add(1, 1) == 2: passed" in out and "status success" in out
    assert "task:add" in out and "acceptance_check" in out  # the span tree shows the check's event
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "success" and summary["profile"] == "local"
    (result,) = summary["results"].values()
    assert result["status"] == "completed"
    assert result["checks"] == [{"check": "add(1, 1) == 2", "passed": True, "error_type": None, "error": ""}]
    code = (tmp_path / "out" / "add.py").read_text()
    assert "def add" in code


def test_real_run_on_the_local_model(tmp_path, capsys):
    """The product's main job, in-process so the events can be checked: a real project on
    SmolLM2 through the real CLI code path, with the full profile (decompose, generate,
    critique, revise, evaluate)."""
    seen: list[events.Event] = []
    for sig in events.ALL_SIGNALS:
        sig.connect(seen.append)
    try:
        code = cli.main(
            [
                "-p",
                "Write a Python function add(a, b) that returns a + b",
                "-c",
                "add(1, 1) == 2",
                "--cache-dir",
                str(tmp_path / "cache"),
                "-o",
                str(tmp_path / "out"),
                "--max-tasks",
                "2",
                "--profile",
                "full",
                "--tracing",
                "--events-jsonl",
                str(tmp_path / "events.jsonl"),
            ]
        )
    finally:
        for sig in events.ALL_SIGNALS:
            sig.disconnect(seen.append)
    out = capsys.readouterr().out
    assert code in (cli.EXIT_OK, cli.EXIT_RUN_FAILED)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] in ("success", "partial_success", "failed")
    assert summary["budget"]["spent_usd"] == 0.0  # the local model is free
    assert "Total:" in out and summary["project_id"] in out
    # every start has exactly one finish, nesting is proper
    from tests.assertions import assert_pairs_balanced

    assert_pairs_balanced(seen)
    task_starts = {p.task_id: p for p in seen if isinstance(p, events.TaskStarted)}
    assert set(task_starts) == set(summary["tasks"])
    calls = [p for p in seen if isinstance(p, events.LlmCallFinished)]
    assert calls[0].call_type == "decompose" and calls[0].task_id is None
    remediations = {p.correlation_id: p for p in seen if isinstance(p, events.RemediationStarted)}
    for tid, start in task_starts.items():
        mine = [c for c in calls if c.task_id == tid]
        # a call's parent is its task, or a remediation attempt of that task (a round it re-ran)
        assert all(
            c.parent_id == start.correlation_id or remediations[c.parent_id].parent_id == start.correlation_id
            for c in mine
        ), tid
        assert {"generate", "critique", "revise"} <= {c.call_type for c in mine}, tid
        answered = [c for c in mine if c.status == "ok" and not c.attributes["llm.cached"]]
        assert all(c.attributes["llm.tokens_out"] > 0 for c in answered)
        assert summary["results"][tid]["output_tokens"] == sum(c.attributes["llm.tokens_out"] for c in answered)
        assert summary["results"][tid]["llm_calls"] == len(mine)  # failed attempts are calls too
    assert sum(c.attributes.get("llm.cost_usd", 0.0) for c in calls) == summary["budget"]["spent_usd"]
    assert summary["usage"]["llm_calls"] == len(calls)
    for tid, result in summary["results"].items():
        if result["output"]:
            assert any(p.name.startswith(tid) for p in (tmp_path / "out").iterdir())
    # --tracing without an endpoint: the span tree follows the summary, one node per span
    tree = out[out.index("Total:") :]
    assert "run_project" in tree and "llm_call:decompose" in tree
    for tid in task_starts:
        assert f"task:{tid}" in tree
    assert tree.count("llm_call:") == len(calls)
    # --events-jsonl: the same events, in order, as JSON lines
    recorded = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [r["signal"] for r in recorded] == [type(p).signal_name for p in seen]
    assert [r["correlation_id"] for r in recorded] == [p.correlation_id for p in seen]


def test_seed_command_works_as_written(tmp_path):
    proc = _run_cli("--project", "Add 1+1", "--criteria", "returns 2", "--budget", "0.01", "--cache-dir", str(tmp_path))
    assert proc.returncode in (0, 1), proc.stderr
    assert "Total:" in proc.stdout and "$0.000000 of $0.01" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_without_the_local_extra_the_message_names_it():
    code = (
        "import sys; sys.modules['llama_cpp'] = None\nfrom orchestrator import cli\nsys.exit(cli.main(['-p', 'x']))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.endswith("_API_KEY")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert proc.returncode == 2
    assert "'local' extra" in proc.stderr and "pip install" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_ctrl_c_keeps_the_results_so_far(tmp_path):
    """Interrupted after the first task finished: exit 130, the summary and summary.json
    still have the finished task, the running one is failed as interrupted, every span
    pair is closed."""
    import os
    import signal
    import time

    project = tmp_path / "project.yaml"
    project.write_text(
        "project: Two small functions\ncriteria: they work\ntasks:\n"
        "  - id: first\n    type: summarization\n    prompt: Say hello in one sentence.\n"
        "    max_iterations: 1\n"
        "  - id: second\n    type: code_generation\n    prompt: Write a long Python module "
        "with ten functions.\n    depends_on: [first]\n    max_iterations: 3\n"
    )
    jsonl = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "-f",
            str(project),
            "--no-cache",
            "-o",
            str(tmp_path / "out"),
            "--events-jsonl",
            str(jsonl),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not _second_started(jsonl):
            assert proc.poll() is None and time.monotonic() < deadline, "the second task never started"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == cli.EXIT_INTERRUPTED, err
    assert "Traceback" not in err and "interrupted" in err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    first, second = summary["results"]["first"], summary["results"]["second"]
    assert first["status"] in ("completed", "degraded") and first["output"]
    assert second["status"] in ("failed", "completed") and second["status"] != "running"
    if second["status"] == "failed":
        assert second["error"] == "interrupted"
    assert any(note.startswith("interrupted") for note in summary["notes"])
    assert "Total:" in out and "first" in out
    recorded = [json.loads(line) for line in jsonl.read_text().splitlines()]
    starts = [r["correlation_id"] for r in recorded if r["signal"].endswith("_started")]
    finishes = [
        r["correlation_id"] for r in recorded if r["signal"].endswith("_finished") or r["signal"] == "policy_checked"
    ]
    assert sorted(starts) == sorted(finishes)  # nothing left open
    (project_end,) = [r for r in recorded if r["signal"] == "project_finished"]
    assert project_end["status"] != "ok"


def _second_started(jsonl: Path) -> str:
    """The JSONL lines of the second task's start (empty until it starts)."""
    if not jsonl.exists():
        return ""
    return "".join(
        line for line in jsonl.read_text().splitlines(keepends=True) if '"task_started"' in line and '"second"' in line
    )
