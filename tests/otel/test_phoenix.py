"""Against a real backend: Arize Phoenix (``phoenix serve`` from the venv, loopback ports,
a temporary working directory).  A run's spans are sent over OTLP gRPC and over
OTLP HTTP; Phoenix's REST API must show every span of each run as one tree, with the
LLM calls classified as LLM spans (OpenInference ``openinference.span.kind``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.phoenix_server import _get

ROOT = Path(__file__).resolve().parents[2]

SEND = """
import asyncio, json, sys
from orchestrator.cli.observers import setup_observers
from orchestrator import Orchestrator, Budget, UnifiedClient
from tests.scripted import ScriptedProvider, decomposition

provider = ScriptedProvider(plan=decomposition(
    {"id": "a", "type": "code_generation", "prompt": "write add(a, b)", "depends_on": []},
    {"id": "b", "type": "summarization", "prompt": "summarize add", "depends_on": ["a"]}))
provider.name = "openai"  # a remote, priced model: LLM spans of kind CLIENT
session = setup_observers({"otlp_endpoint": sys.argv[1], "service_name": "phoenix-test", "quiet": True})
orch = Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({"openai": provider}), concurrency=2)
state = asyncio.run(orch.run_project("Build add", "it adds"))
report = session.finish(state)
print(json.dumps({"status": state.status.value, "project_id": state.project_id, "calls": len(provider.requests),
                  "flushed": report["flushed"], "exported": report["exported"]}))
"""


SEND_BATCH = """
import asyncio, json, sys
from orchestrator.cli.observers import setup_observers
from orchestrator.batch.backend import LocalBackend
from orchestrator.batch.driver import BatchDriver
from orchestrator.state import RunStore
from tests.batch.scripted import ScriptedFactory, jobs

session = setup_observers({"otlp_endpoint": sys.argv[1], "service_name": "phoenix-test", "quiet": True})
batch = jobs(sys.argv[2], 5)
result = asyncio.run(BatchDriver(sys.argv[2], batch, LocalBackend(ScriptedFactory(), RunStore(sys.argv[3])),
                                 max_usd=5.0, max_parallel=3).run())
report = session.finish(None)
print(json.dumps({"status": result.status, "calls": result.usage.llm_calls, "flushed": report["flushed"],
                  "costs": {o.project_id: round(o.usage.cost_usd, 8) for o in result.outcomes}}))
"""


def _send(endpoint: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SEND), endpoint],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "export" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _spans_of_project(base: str, project_id: str, expected: int) -> list[dict]:
    """Spans of one run (by ``project.id`` on its root), waiting for Phoenix to ingest them."""
    deadline = time.monotonic() + 60
    while True:
        status, body = _get(f"{base}/v1/projects/default/spans?limit=1000")
        spans = json.loads(body)["data"] if status == 200 else []
        roots = [s for s in spans if s["name"] == "run_project" and s["attributes"].get("project.id") == project_id]
        if roots:
            trace_id = roots[0]["context"]["trace_id"]
            mine = [s for s in spans if s["context"]["trace_id"] == trace_id]
            if len(mine) >= expected:
                return mine
        if time.monotonic() > deadline:
            raise AssertionError(f"phoenix has {len(spans)} spans, not the {expected} of {project_id}")
        time.sleep(0.5)


def _check_tree(spans: list[dict], calls: int) -> None:
    by_id = {s["context"]["span_id"]: s for s in spans}
    roots = [s for s in spans if s["parent_id"] is None]
    assert [r["name"] for r in roots] == ["run_project"]
    root = roots[0]
    assert root["span_kind"] == "AGENT"
    assert root["attributes"]["project.status"] == "success"
    tasks = [s for s in spans if s["name"].startswith("task:")]
    assert sorted(s["name"] for s in tasks) == ["task:a", "task:b"]
    for task in tasks:
        assert task["span_kind"] == "CHAIN" and by_id[task["parent_id"]] is root
        assert task["attributes"]["task.status"] == "completed"
    llm = [s for s in spans if s["name"].startswith("llm_call:")]
    assert len(llm) == calls and len(spans) == 1 + len(tasks) + calls
    for span in llm:
        assert span["span_kind"] == "LLM", span["name"]
        parent = by_id[span["parent_id"]]
        assert parent is root if span["name"] == "llm_call:decompose" else parent in tasks
        a = span["attributes"]
        assert a["llm.token_count.prompt"] == 100 and a["llm.token_count.completion"] == 50
        assert a["llm.model_name"] == a["gen_ai.request.model"]
        assert a["gen_ai.usage.input_tokens"] == 100


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_phoenix_shows_the_whole_tree_with_llm_spans(phoenix, transport):
    result = _send(phoenix[transport])
    assert result["status"] == "success" and result["flushed"] is True
    assert result["exported"] == result["calls"] + 3  # every span went out
    spans = _spans_of_project(phoenix["base"], result["project_id"], result["calls"] + 3)
    _check_tree(spans, result["calls"])


def test_a_real_cli_run_configured_by_otel_variables_alone_tells_the_truth(phoenix, tmp_path):
    """What a user does: the CLI on the embedded model, with nothing but the standard
    ``OTEL_EXPORTER_OTLP_TRACES_*`` variables pointing at Phoenix.  The trace arrives
    whole; its root's totals are the sum of its LLM spans (the decomposition included) and
    match the summary; no attribute holds text the model wrote; no export warning."""
    out = tmp_path / "out"
    jsonl = tmp_path / "events.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and not k.endswith("_API_KEY")}
    env.update(
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=phoenix["http"],
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_TRACES_HEADERS="x-run-label=phoenix-test",
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "-p",
            "Write a Python function double(x) that returns 2 * x",
            "-c",
            "double(2) == 4",
            "--max-tasks",
            "1",
            "--no-cache",
            "-q",
            "-o",
            str(out),
            "--events-jsonl",
            str(jsonl),
            "--profile",
            "full",
        ],  # with a decomposition, whose calls the totals include
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # no export warning, no traceback
    recorded = [json.loads(line) for line in jsonl.read_text().splitlines()]
    project_id = recorded[0]["project_id"]
    pairs = [
        r
        for r in recorded
        if r["signal"]
        in ("llm_call_finished", "task_finished", "project_finished", "remediation_finished", "policy_checked")
    ]
    spans = _spans_of_project(phoenix["base"], project_id, len(pairs))
    assert len(spans) == len(pairs)
    (root,) = [s for s in spans if s["parent_id"] is None]
    llm = [s for s in spans if s["name"].startswith("llm_call:")]
    assert any(s["name"] == "llm_call:decompose" for s in llm)
    for span in llm:
        assert span["span_kind"] == "LLM" and span["attributes"]["gen_ai.provider.name"] == "llama_cpp"
    summary = json.loads((out / "summary.json").read_text())
    a = root["attributes"]
    assert a["project.tokens_in"] == sum(s["attributes"].get("gen_ai.usage.input_tokens", 0) for s in llm)
    assert a["project.tokens_out"] == sum(s["attributes"].get("gen_ai.usage.output_tokens", 0) for s in llm)
    assert a["project.llm_calls"] == len(llm) == summary["usage"]["llm_calls"]
    assert (a["project.tokens_in"], a["project.tokens_out"]) == (
        summary["usage"]["input_tokens"],
        summary["usage"]["output_tokens"],
    )
    # the model's text: its answers (the output files) never appear in an attribute
    written = [
        line.strip()
        for f in out.iterdir()
        if f.suffix in (".py", ".md")
        for line in f.read_text().splitlines()
        if len(line.strip()) >= 16
    ]
    assert written, "the run wrote nothing to compare against"
    allowed = {"task.description", "project.description"}
    for span in spans:
        for key, value in span["attributes"].items():
            if key in allowed or not isinstance(value, str):
                continue
            assert not [w for w in written if w in value], (span["name"], key)


def test_a_real_cli_run_on_the_local_model_arrives_in_phoenix(phoenix, tmp_path):
    """What a user does: the CLI, the embedded model, ``--otlp-endpoint`` to Phoenix."""
    project = tmp_path / "project.yaml"
    project.write_text(
        "project: Write a Python function double(x) that returns 2 * x\n"
        "criteria: double(2) == 4\n"
        "tasks:\n  - id: double\n    type: code_generation\n"
        "    prompt: Write a Python function double(x) that returns 2 * x.\n"
        "    max_iterations: 1\n"
    )
    jsonl = tmp_path / "events.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and not k.endswith("_API_KEY")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "-f",
            str(project),
            "--no-cache",
            "--profile",
            "full",  # the whole loop, so several LLM spans arrive
            "--otlp-endpoint",
            phoenix["grpc"],
            "--events-jsonl",
            str(jsonl),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr and "export" not in proc.stderr, proc.stderr
    recorded = [json.loads(line) for line in jsonl.read_text().splitlines()]
    project_id = recorded[0]["project_id"]
    pairs = [
        r
        for r in recorded
        if r["signal"]
        in ("llm_call_finished", "task_finished", "project_finished", "remediation_finished", "policy_checked")
    ]
    spans = _spans_of_project(phoenix["base"], project_id, len(pairs))
    assert len(spans) == len(pairs)
    by_id = {s["context"]["span_id"]: s for s in spans}
    (root,) = [s for s in spans if s["parent_id"] is None]
    assert root["name"] == "run_project" and root["attributes"]["project.id"] == project_id
    (task,) = [s for s in spans if s["name"] == "task:double"]
    assert by_id[task["parent_id"]] is root
    llm = [s for s in spans if s["name"].startswith("llm_call:")]
    finished = [r for r in recorded if r["signal"] == "llm_call_finished"]
    assert len(llm) == len(finished) >= 3  # generate, critique, revise at least
    for span in llm:
        assert span["span_kind"] == "LLM"
        assert span["attributes"]["gen_ai.request.model"] == "smollm2-135m"
    # token counts in Phoenix are the model's own, as the events reported them
    assert sorted(s["attributes"]["gen_ai.usage.output_tokens"] for s in llm) == sorted(
        r["attributes"]["llm.tokens_out"] for r in finished
    )


# -- orchestrator replay ----------------------------------------------------------------------


def _traces_of_project(base: str, project_id: str, roots: int, spans: int) -> dict[str, list[dict]]:
    """Every trace whose root is ``project_id``'s, by trace id, once Phoenix has them all."""
    deadline = time.monotonic() + 60
    while True:
        status, body = _get(f"{base}/v1/projects/default/spans?limit=1000")
        everything = json.loads(body)["data"] if status == 200 else []
        ids = {
            s["context"]["trace_id"]
            for s in everything
            if s["parent_id"] is None and s["attributes"].get("project.id") == project_id
        }
        traces = {t: [s for s in everything if s["context"]["trace_id"] == t] for t in ids}
        if len(traces) >= roots and sum(map(len, traces.values())) >= spans:
            return traces
        if time.monotonic() > deadline:
            raise AssertionError(f"phoenix has {len(traces)} traces of {project_id}, not {roots}")
        time.sleep(0.5)


def _tree(spans: list[dict]) -> list[tuple]:
    """A trace without its ids: each span's name, its parent's name, times, attributes."""
    by_id = {s["context"]["span_id"]: s for s in spans}
    return sorted(
        (
            s["name"],
            by_id[s["parent_id"]]["name"] if s["parent_id"] else None,
            s["start_time"],
            s["end_time"],
            json.dumps(s["attributes"], sort_keys=True),
        )
        for s in spans
    )


def _replay(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and not k.endswith("_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "replay", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_quick_start_replayed_is_the_same_tree_as_sent_live(phoenix, tmp_path):
    """README's quick start on the embedded model, sent live to Phoenix with ``--report``
    and ``--events-jsonl``; then ``orchestrator replay`` of its events file: Phoenix holds
    two traces of the run with the same spans - names, parents, start and end times,
    attributes - only the ids differ."""
    jsonl = tmp_path / "events.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and not k.endswith("_API_KEY")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "-p",
            "Write a Python function add(a, b) that returns a + b",
            "-c",
            "add(1, 1) == 2",
            "--report",
            str(tmp_path / "r.html"),
            "--no-cache",
            "-q",
            "--otlp-endpoint",
            phoenix["grpc"],
            "--events-jsonl",
            str(jsonl),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recorded = [json.loads(line) for line in jsonl.read_text().splitlines()]
    project_id = recorded[0]["project_id"]
    pairs = sum(1 for r in recorded if r["signal"].endswith("_started"))
    _traces_of_project(phoenix["base"], project_id, 1, pairs)  # the live one is in
    replayed = _replay(str(jsonl), "--otlp-endpoint", phoenix["http"])
    assert replayed.returncode == 0, replayed.stderr
    assert f"to {phoenix['http']}" in replayed.stdout and replayed.stderr == ""
    traces = _traces_of_project(phoenix["base"], project_id, 2, 2 * pairs)
    live, again = sorted(traces.values(), key=lambda spans: min(s["start_time"] for s in spans))
    assert len(live) == len(again) == pairs >= 3  # run_project, task:add, its call(s)
    assert _tree(again) == _tree(live)
    names = {s["name"] for s in again}
    assert {"run_project", "task:add", "llm_call:generate"} <= names
    assert {s["span_kind"] for s in again if s["name"].startswith("llm_call:")} == {"LLM"}


def test_a_killed_and_resumed_run_replays_as_two_linked_traces(phoenix, tmp_path):
    from tests.report.runs import killed_and_resumed

    resumed = killed_and_resumed(tmp_path)
    from orchestrator.cli.report_cmd import events_from_store
    from orchestrator.report import split_attempts

    events, _, _ = events_from_store(resumed.project_id, str(resumed.state_dir))
    _, attempts = split_attempts(events)
    starts = [sum(1 for e in a if e["signal"].endswith("_started")) for a in attempts]
    proc = _replay(resumed.project_id, "--state-dir", str(resumed.state_dir), "--otlp-endpoint", phoenix["grpc"])
    assert proc.returncode == 0, proc.stderr
    traces = _traces_of_project(phoenix["base"], resumed.project_id, 2, sum(starts))
    first, second = sorted(traces.values(), key=lambda spans: min(s["start_time"] for s in spans))
    assert [len(first), len(second)] == starts
    (root1,) = [s for s in first if s["parent_id"] is None]
    (root2,) = [s for s in second if s["parent_id"] is None]
    assert (root1["attributes"]["orchestrator.attempt"], root2["attributes"]["orchestrator.attempt"]) == (1, 2)
    assert root2["attributes"]["orchestrator.original_trace_id"] == root1["context"]["trace_id"]
    assert root1["status_code"] == "ERROR"  # killed: the root never finished
    for trace in (first, second):
        by_id = {s["context"]["span_id"]: s for s in trace}
        for span in trace:
            if span["name"].startswith("llm_call:") and span["name"] != "llm_call:decompose":
                parent = by_id[span["parent_id"]]["name"]
                assert parent.startswith(("task:", "remediation")), (span["name"], parent)


def test_a_local_batch_is_one_trace_per_project_linked_to_its_batch_span(phoenix, tmp_path):
    """``orchestrator batch``'s local backend (5 scripted projects, one process): Phoenix
    shows the batch span and 5 project traces, each root naming the batch and the batch
    span's trace (Phoenix keeps no span links; the links are checked in memory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SEND_BATCH), phoenix["http"], "batch-phoenix", str(tmp_path / "state")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["flushed"] is True
    deadline = time.monotonic() + 60
    while True:
        status, body = _get(f"{phoenix['base']}/v1/projects/default/spans?limit=1000")
        spans = json.loads(body)["data"] if status == 200 else []
        batch = [s for s in spans if s["name"] == "run_batch" and s["attributes"].get("batch.id") == "batch-phoenix"]
        roots = [
            s
            for s in spans
            if s["name"] == "run_project"
            and s["parent_id"] is None
            and s["attributes"].get("orchestrator.batch_id") == "batch-phoenix"
        ]
        calls = [
            s
            for s in spans
            if s["name"].startswith("llm_call:")
            and s["context"]["trace_id"] in {r["context"]["trace_id"] for r in roots}
        ]
        if len(batch) == 1 and len(roots) == 5 and len(calls) >= result["calls"]:
            break
        assert time.monotonic() < deadline, f"{len(batch)} batch spans, {len(roots)} roots, {len(calls)} calls"
        time.sleep(0.5)
    (batch_span,) = batch
    assert len({r["context"]["trace_id"] for r in roots} | {batch_span["context"]["trace_id"]}) == 6
    assert {r["attributes"]["orchestrator.batch_trace_id"] for r in roots} == {batch_span["context"]["trace_id"]}
    assert {r["attributes"]["project.id"]: r["attributes"]["project.cost_usd"] for r in roots} == result["costs"]
    assert len(calls) == result["calls"] == batch_span["attributes"]["batch.llm_calls"]
