"""Against a real backend: an MLflow tracking server (``mlflow server`` from the venv, see
``tests/mlflow_server.py``), which ingests OTLP/HTTP protobuf at ``/v1/traces`` into the
experiment the ``x-mlflow-experiment-id`` header names.  What the orchestrator sends is read
back through MLflow's own client (``MlflowClient.search_traces``): a run is one MLflow trace
whose spans are the run's span tree, with the GenAI token counts and our cost; a resumed
run, replayed, is two traces, the second linked to the first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.mlflow_server import MlflowServer
from tests.state import scripted_cli

if TYPE_CHECKING:  # mlflow itself is imported by the tests that use it (2-3 s: not at collection)
    from mlflow import MlflowClient
    from mlflow.entities import Trace

ROOT = Path(__file__).resolve().parents[2]
HEADER = "x-mlflow-experiment-id"
SPAN_NAMES = {
    "project_started": "run_project",
    "llm_call_started": "llm_call:{call_type}",
    "remediation_started": "remediation",
    "policy_check_started": "policy_check",
}


def _env(experiment_id: str | None) -> dict[str, str]:
    """The user's environment without OTel settings or keys, plus the experiment header the
    way MLflow's documentation says to give it: ``OTEL_EXPORTER_OTLP_TRACES_HEADERS``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLFLOW_")) and not k.endswith("_API_KEY")}
    if experiment_id is not None:
        env["OTEL_EXPORTER_OTLP_TRACES_HEADERS"] = f"{HEADER}={experiment_id}"
    return env


def _orchestrator(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``orchestrator ARGS`` as a process of its own, on the scripted, priced provider."""
    return subprocess.run(
        [sys.executable, "-m", "tests.state.scripted_cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _experiment(server: MlflowServer, name: str) -> tuple[MlflowClient, str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=server.base)
    return client, client.create_experiment(name)


def _traces(client: MlflowClient, experiment_id: str, count: int, spans: int) -> list[Trace]:
    """The experiment's traces, oldest first, once MLflow holds ``count`` of them with
    ``spans`` spans in all."""
    deadline = time.monotonic() + 30
    while True:
        traces = client.search_traces(locations=[experiment_id], max_results=50)
        if len(traces) >= count and sum(len(t.data.spans) for t in traces) >= spans:
            return sorted(traces, key=lambda t: t.info.request_time)
        assert time.monotonic() < deadline, f"{len(traces)} traces in experiment {experiment_id}, not {count}"
        time.sleep(0.2)


def _expected_tree(recorded: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """(span name, parent span name) of every pair in an event log, sorted."""
    names = {}
    for e in recorded:
        if e["signal"] == "task_started":
            names[e["correlation_id"]] = f"task:{e['task_id']}"
        elif e["signal"] in SPAN_NAMES:
            names[e["correlation_id"]] = SPAN_NAMES[e["signal"]].format(**e)
    parents = {e["correlation_id"]: e["parent_id"] for e in recorded if e["correlation_id"] in names}
    return sorted((name, names[parents[cid]] if parents[cid] else None) for cid, name in names.items())


def _tree(trace: Trace) -> list[tuple[str, str | None]]:
    by_id = {s.span_id: s for s in trace.data.spans}
    return sorted((s.name, by_id[s.parent_id].name if s.parent_id else None) for s in trace.data.spans)


def _content(trace: Trace) -> list[tuple]:
    """A trace without its ids: names, parents' names, times, attributes (MLflow's own
    ``mlflow.traceRequestId``, which names the trace, left out), span events."""
    by_id = {s.span_id: s for s in trace.data.spans}
    return sorted(
        (
            s.name,
            by_id[s.parent_id].name if s.parent_id else None,
            s.start_time_ns,
            s.end_time_ns,
            json.dumps(
                {k: v for k, v in s.attributes.items() if k != "mlflow.traceRequestId"}, sort_keys=True, default=str
            ),
            [(e.name, e.timestamp) for e in s.events],
        )
        for s in trace.data.spans
    )


def test_a_cli_run_is_one_mlflow_trace_with_the_span_tree_tokens_and_cost(mlflow_server, tmp_path):
    """The real command line with ``--otlp-endpoint .../v1/traces --otlp-protocol
    http/protobuf`` and the experiment header in ``OTEL_EXPORTER_OTLP_TRACES_HEADERS``: the
    run (5 tasks, 34 calls, remediations) is one trace in that experiment; its spans are the
    event log's pairs with the same parentage; each LLM span carries the call's
    ``gen_ai.usage.*`` tokens and ``llm.cost_usd`` and is an LLM span to MLflow; the
    trace's token usage, which MLflow sums from the spans, is the run's summary; the root's
    totals are there too.  Then ``orchestrator replay`` of the event log into the Default
    experiment: the same spans, times, attributes and span events, only the ids differ."""
    client, experiment = _experiment(mlflow_server, "live")
    events = tmp_path / "events.jsonl"
    proc = _orchestrator(
        _env(experiment),
        *scripted_cli.ARGS,
        "--state-dir",
        str(tmp_path / "state"),
        "-o",
        str(tmp_path / "out"),
        "--events-jsonl",
        str(events),
        "--otlp-endpoint",
        mlflow_server.otlp,
        "--otlp-protocol",
        "http/protobuf",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # two tasks degraded: partial success
    assert proc.stderr == "", proc.stderr  # no export warning: MLflow took every span
    recorded = [json.loads(line) for line in events.read_text().splitlines()]
    expected = _expected_tree(recorded)
    (trace,) = _traces(client, experiment, 1, len(expected))
    assert _tree(trace) == expected
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "partial_success"
    spans = trace.data.spans
    (root,) = [s for s in spans if s.parent_id is None]
    assert root.name == "run_project" and root.attributes["project.id"] == recorded[0]["project_id"]
    assert root.attributes["project.cost_usd"] == summary["usage"]["cost_usd"] > 0
    llm = [s for s in spans if s.name.startswith("llm_call:")]
    assert len(llm) == summary["usage"]["llm_calls"] == 34
    assert {s.name for s in spans} >= {"llm_call:decompose", "llm_call:generate", "remediation"}
    # each call's tokens and cost, as the events reported them (matched by start time)
    finished = {e["start_timestamp_ns"]: e["attributes"] for e in recorded if e["signal"] == "llm_call_finished"}
    for span in llm:
        a, sent = span.attributes, finished[span.start_time_ns]
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "scripted-pro"
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (
            sent["llm.tokens_in"],
            sent["llm.tokens_out"],
        )
        assert a["llm.cost_usd"] == sent["llm.cost_usd"] > 0
        assert a["mlflow.llm.model"] == "scripted-pro"  # the model column of MLflow's trace view
    # MLflow's own roll-up of the trace: the GenAI token counts summed, once (roll-ups use
    # names of their own, so the root and task totals are not counted again)
    usage = trace.info.token_usage
    assert (usage["input_tokens"], usage["output_tokens"]) == (
        summary["usage"]["input_tokens"],
        summary["usage"]["output_tokens"],
    )
    assert trace.info.state.value == "OK"
    # of the resource, MLflow keeps the service.* attributes, as trace tags (docs/tracing.md says so)
    tags = trace.info.tags
    assert tags["service.name"] == "multi-llm-orchestrator" and tags["service.version"]
    assert not [k for k in tags if k.startswith("telemetry.sdk.")]
    # MLflow's span types, from the OpenInference kinds we set
    assert {(s.name.split(":")[0], s.span_type) for s in spans} == {
        ("run_project", "AGENT"),
        ("task", "CHAIN"),
        ("remediation", "CHAIN"),
        ("llm_call", "LLM"),
    }
    # the recorded run replayed into MLflow's "Default" experiment (id 0, as the docs'
    # example sends to) is the same trace, new ids
    replay_experiment = "0"
    replayed = subprocess.run(
        [sys.executable, "-m", "orchestrator", "replay", str(events), "-q", "--otlp-endpoint", mlflow_server.otlp],
        cwd=ROOT,
        env=_env(replay_experiment),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replayed.returncode == 0 and replayed.stderr == "", replayed.stdout + replayed.stderr
    (again,) = _traces(client, replay_experiment, 1, len(spans))
    assert again.info.trace_id != trace.info.trace_id
    assert _content(again) == _content(trace)


def test_a_killed_and_resumed_run_replays_as_two_linked_mlflow_traces(mlflow_server, tmp_path):
    """A run killed (SIGKILL) after its first task and resumed, replayed from the run store:
    two traces, attempt 1 (an error: its root never finished) and attempt 2, whose root
    keeps a span link to attempt 1's root (MLflow stores links) and names its trace."""
    from orchestrator.cli.report_cmd import events_from_store
    from orchestrator.report import split_attempts
    from tests.report.runs import killed_and_resumed

    resumed = killed_and_resumed(tmp_path)
    events, _, _ = events_from_store(resumed.project_id, str(resumed.state_dir))
    _, attempts = split_attempts(events)
    starts = [sum(1 for e in a if e["signal"].endswith("_started")) for a in attempts]
    client, experiment = _experiment(mlflow_server, "resumed")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "replay",
            resumed.project_id,
            "-q",
            "--state-dir",
            str(resumed.state_dir),
            "--otlp-endpoint",
            mlflow_server.otlp,
            "--otlp-protocol",
            "http/protobuf",
        ],
        cwd=ROOT,
        env=_env(experiment),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stdout + proc.stderr
    first, second = _traces(client, experiment, 2, sum(starts))
    assert [len(first.data.spans), len(second.data.spans)] == starts
    (root1,) = [s for s in first.data.spans if s.parent_id is None]
    (root2,) = [s for s in second.data.spans if s.parent_id is None]
    assert (root1.attributes["orchestrator.attempt"], root2.attributes["orchestrator.attempt"]) == (1, 2)
    assert root1.attributes["project.id"] == root2.attributes["project.id"] == resumed.project_id
    assert (first.info.state.value, second.info.state.value) == ("ERROR", "OK")  # attempt 1 was killed
    (link,) = root2.links
    assert (link.trace_id, link.span_id) == (first.info.trace_id, root1.span_id)
    assert link.attributes == {"orchestrator.link": "resumed_from"}
    assert f"tr-{root2.attributes['orchestrator.original_trace_id']}" == first.info.trace_id
    assert not root1.links


def test_without_the_experiment_header_mlflow_refuses_and_the_run_says_so_once(mlflow_server, tmp_path):
    """MLflow requires the header: without it every export is refused (HTTP 422).  The run
    still succeeds and says so in one warning line naming the endpoint and the answer."""
    proc = _orchestrator(
        _env(None), *scripted_cli.ARGS, "--state-dir", str(tmp_path / "state"), "--otlp-endpoint", mlflow_server.otlp
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the run's own verdict: partial success
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert mlflow_server.otlp in lines[0] and "422" in lines[0], lines[0]
