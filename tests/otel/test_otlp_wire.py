"""Spans on the wire: loopback OTLP receivers (gRPC with grpcio + opentelemetry-proto, and
HTTP/protobuf) get a real run's spans with the right resource and parentage; a collector
that is down, hangs or answers 503 never fails the run and the process exits within 5 s
of the run's end with one warning naming the endpoint."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

import orchestrator.tracing as t
from orchestrator import events
from orchestrator.domain.budget import Budget
from orchestrator.domain.results import ProjectStatus
from orchestrator.engine import Orchestrator
from orchestrator.llm.client import UnifiedClient
from tests.helpers import free_port
from tests.scripted import ScriptedProvider, decomposition

ROOT = Path(__file__).resolve().parents[2]
PLAN = decomposition(
    {"id": "a", "type": "code_generation", "prompt": "write add(a, b)", "depends_on": []},
    {"id": "b", "type": "code_generation", "prompt": "write mul(a, b)", "depends_on": ["a"]},
)


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    for var in list(os.environ):
        if var.startswith("OTEL_"):
            monkeypatch.delenv(var)
    t.shutdown_tracing()
    before = sum(len(s.receivers) for s in events.ALL_SIGNALS)
    yield
    t.shutdown_tracing()
    assert sum(len(s.receivers) for s in events.ALL_SIGNALS) == before


class GrpcCollector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list = []
        self.metadata: list[dict] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.metric_requests: list = []
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_GrpcMetrics(self.metric_requests), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def Export(self, request, context):  # noqa: N802 - the gRPC method name
        self.requests.append(request)
        self.metadata.append(dict(context.invocation_metadata()))
        return trace_service_pb2.ExportTraceServiceResponse()

    def stop(self) -> None:
        self.server.stop(0)


class _GrpcMetrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, requests: list) -> None:
        self.requests = requests

    def Export(self, request, context):  # noqa: N802 - the gRPC method name
        self.requests.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class HttpCollector:
    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.requests: list = []
        self.metric_requests: list = []
        self.headers: list[dict] = []
        self.paths: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(delay)  # a slow collector
                collector.paths.append(self.path)
                collector.headers.append({k.lower(): v for k, v in self.headers.items()})
                if status == 200 and self.path.endswith("/v1/metrics"):
                    collector.metric_requests.append(metrics_service_pb2.ExportMetricsServiceRequest.FromString(body))
                elif status == 200:
                    collector.requests.append(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
                payload = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(any_value):
    kind = any_value.WhichOneof("value")
    value = getattr(any_value, kind)
    if kind == "array_value":
        return tuple(_value(v) for v in value.values)
    return value


def spans_of(requests) -> tuple[dict, list]:
    """(resource attributes, spans as dicts) of every export request."""
    resource, spans = {}, []
    for req in requests:
        for rs in req.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(
                        {
                            "name": s.name,
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex() or None,
                            "kind": s.kind,
                            "scope": ss.scope.name,
                            "status": s.status.code,
                            "attrs": {kv.key: _value(kv.value) for kv in s.attributes},
                        }
                    )
    return resource, spans


def run_engine():
    provider = ScriptedProvider(plan=PLAN)
    provider.name = "openai"
    orch = Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({"openai": provider}), concurrency=2)
    return asyncio.run(orch.run_project("Build a calculator", "it adds")), provider


def check_tree(spans: list, provider) -> None:
    by_id = {s["span_id"]: s for s in spans}
    names = sorted(s["name"] for s in spans)
    assert names.count("run_project") == 1 and "task:a" in names and "task:b" in names
    assert sum(n.startswith("llm_call:") for n in names) == len(provider.requests)
    root = next(s for s in spans if s["name"] == "run_project")
    assert root["parent"] is None
    assert len({s["trace_id"] for s in spans}) == 1
    for s in spans:
        assert s["scope"] == "orchestrator"
        if s["name"].startswith("task:") or s["name"] == "llm_call:decompose":
            assert by_id[s["parent"]] is root
        elif s["name"].startswith("llm_call:"):
            assert by_id[s["parent"]]["name"].startswith("task:")
            assert s["kind"] == 3  # SPAN_KIND_CLIENT
            assert s["attrs"]["gen_ai.usage.input_tokens"] == 100
            assert s["attrs"]["gen_ai.response.finish_reasons"] == ("stop",)
    assert root["attrs"]["project.status"] == "success"


def test_grpc_receiver_gets_the_tree_with_resource_and_headers(monkeypatch):
    collector = GrpcCollector()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=observability")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci")
    try:
        t.configure_tracing(
            t.TracingConfig(enabled=True, otlp_endpoint=f"http://127.0.0.1:{collector.port}", service_name="wire-grpc")
        )
        assert t.tracing_state()["resolved"].protocol == "grpc"
        state, provider = run_engine()
        assert t.shutdown_tracing(5.0) is True
    finally:
        collector.stop()
    assert state.status == ProjectStatus.SUCCESS
    resource, spans = spans_of(collector.requests)
    assert resource["service.name"] == "wire-grpc"
    assert resource["deployment.environment"] == "ci"
    assert resource["telemetry.sdk.language"] == "python" and "service.version" in resource
    check_tree(spans, provider)
    assert collector.metadata[0].get("x-team") == "observability"


def test_http_receiver_from_environment_variables(monkeypatch):
    collector = HttpCollector()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=observability")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "wire-http-env")
    try:
        t.configure_tracing(t.TracingConfig(enabled=True))
        state, provider = run_engine()
        assert t.shutdown_tracing(5.0) is True
    finally:
        collector.stop()
    assert state.status == ProjectStatus.SUCCESS
    assert set(collector.paths) == {"/v1/traces"}
    assert collector.headers[0]["content-type"] == "application/x-protobuf"
    assert collector.headers[0]["x-team"] == "observability"
    resource, spans = spans_of(collector.requests)
    assert resource["service.name"] == "wire-http-env"  # not overwritten by the default
    check_tree(spans, provider)


def test_http_receiver_chosen_by_the_url():
    collector = HttpCollector()
    try:
        t.configure_tracing(t.TracingConfig(enabled=True, otlp_endpoint=f"http://127.0.0.1:{collector.port}/v1/traces"))
        assert t.tracing_state()["resolved"].protocol == "http/protobuf"
        state, provider = run_engine()
        assert t.shutdown_tracing(5.0) is True
    finally:
        collector.stop()
    resource, spans = spans_of(collector.requests)
    assert resource["service.name"] == "multi-llm-orchestrator"
    check_tree(spans, provider)


def attributes_of(point) -> dict:
    return {kv.key: _value(kv.value) for kv in point.attributes}


def metrics_of(requests) -> tuple[dict, dict]:
    """(resource attributes, {metric name: [data points]}) of every metrics export request."""
    resource, found = {}, {}
    for req in requests:
        for rm in req.resource_metrics:
            resource = {kv.key: _value(kv.value) for kv in rm.resource.attributes}
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    found.setdefault(m.name, []).extend(getattr(m, kind).data_points)
    return resource, found


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_metrics_go_to_the_same_collector_as_the_spans(transport):
    from orchestrator.cli.observers import setup_observers

    collector = GrpcCollector() if transport == "grpc" else HttpCollector()
    url = f"http://127.0.0.1:{collector.port}" + ("/v1/traces" if transport == "http" else "")
    try:
        session = setup_observers(
            {"otlp_endpoint": url, "metrics": True, "quiet": True, "service_name": "wire-metrics"}
        )
        state, provider = run_engine()
        report = session.finish(state)
    finally:
        collector.stop()
    assert state.status == ProjectStatus.SUCCESS
    assert report["metrics_flushed"] is True and report["metrics_exported"] >= 1
    if transport == "http":
        assert "/v1/metrics" in collector.paths and "/v1/traces" in collector.paths
    resource, found = metrics_of(collector.metric_requests)
    assert resource["service.name"] == "wire-metrics"
    _, spans = spans_of(collector.requests)
    assert len(spans) == len(provider.requests) + 3  # spans went out too
    calls = len(provider.requests)  # the scripted provider reports 100 in / 50 out per call
    tokens = {"input": 0, "output": 0}
    for dp in found["gen_ai.client.token.usage"]:
        attrs = attributes_of(dp)
        tokens[attrs["gen_ai.token.type"]] += dp.sum
        assert attrs["gen_ai.provider.name"] == "openai" and attrs["gen_ai.operation.name"] == "chat"
    assert tokens == {"input": 100 * calls, "output": 50 * calls}
    assert sum(dp.count for dp in found["gen_ai.client.operation.duration"]) == calls
    assert sum(dp.as_double for dp in found["orchestrator.llm.cost"]) == pytest.approx(state.budget.spent_usd)
    statuses = {attributes_of(dp)["task.status"]: dp.as_int for dp in found["orchestrator.tasks"]}
    assert statuses == {"completed": 2}


def test_metrics_without_an_endpoint_is_a_usage_error():
    from orchestrator.cli.observers import validate_observer_options

    with pytest.raises(ValueError, match="--metrics needs an OTLP endpoint"):
        validate_observer_options({"metrics": True})


# -- collector faults (separate processes: the exit time is part of the contract) ------------

SCRIPT = """
import asyncio, json, sys, time
from orchestrator.cli.observers import setup_observers
from orchestrator import Orchestrator, Budget, UnifiedClient
from tests.scripted import ScriptedProvider

session = setup_observers({{"otlp_endpoint": "{url}", "quiet": True, "metrics": {metrics}, "otlp_timeout": 2}})
orch = Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({{"local": ScriptedProvider(latency=0.01)}}))
started = time.monotonic()
state = asyncio.run(orch.run_project("Build add", "it adds"))
print("RUN", json.dumps({{"status": state.status.value, "tasks": len(state.results),
                         "seconds": time.monotonic() - started, "end": time.time()}}), flush=True)
session.finish(state)
"""


@pytest.mark.parametrize(
    "protocol, fault, metrics",
    [
        ("grpc", "refused", False),
        ("grpc", "hang", False),
        ("http", "hang", False),
        ("http", "503", False),
        ("grpc", "hang", True),
        ("http", "refused", True),
    ],
)
def test_collector_fault_never_fails_or_stalls_the_run(protocol, fault, metrics):
    import json

    cleanup = None
    if fault == "refused":
        port = free_port()
    elif fault == "hang":  # accepts connections (kernel backlog) and never answers
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        cleanup = listener.close
    else:
        server = HttpCollector(status=503)
        port = server.port
        cleanup = server.stop
    url = f"http://127.0.0.1:{port}" + ("/v1/traces" if protocol == "http" else "")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(SCRIPT.format(url=url, metrics=metrics))],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        exited = time.time()
    finally:
        if cleanup:
            cleanup()
    assert proc.returncode == 0, proc.stderr
    run_line = next(line for line in proc.stdout.splitlines() if line.startswith("RUN "))
    result = json.loads(run_line[4:])
    assert result["status"] == "success" and result["tasks"] == 1
    assert result["seconds"] < 5.0  # the run itself was not slowed
    # the final flush waits for one export deadline (2 s here) plus a second; a refused
    # connection is given up at once
    bound = 2.0 if fault == "refused" else 5.0
    assert exited - result["end"] < bound, f"process exited {exited - result['end']:.1f}s after the run"
    assert "Traceback" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.strip()]
    if metrics:  # one more line, for the metrics, naming their endpoint
        (metric_warning,) = [w for w in warnings if "metric export to" in w]
        assert f"metric export to {url.removesuffix('/v1/traces')}" in metric_warning
        warnings.remove(metric_warning)
    assert len(warnings) == 1, proc.stderr
    assert f"span export to {url} " in warnings[0]
    # why, as the endpoint answers a probe (not as the exporter's log text says it)
    expected = {
        "refused": ["(connection refused)"],
        "503": ["(HTTP 503 Service Unavailable)"],
        # whichever comes first: the bounded flush giving up, or the export's own deadline
        "hang": ["did not finish within 3 s", "(no answer within 1 s)"],
    }
    assert "spans were not exported" in warnings[0], warnings[0]
    assert any(e in warnings[0] for e in expected[fault]), warnings[0]


def test_a_flush_cut_short_still_says_why(caplog):
    """A 503 the exporter keeps retrying outlasts a short flush: the one warning names
    the endpoint and the collector's answer, not only the timeout."""
    from orchestrator.cli.observers import setup_observers

    collector = HttpCollector(status=503)
    url = f"http://127.0.0.1:{collector.port}/v1/traces"
    try:
        session = setup_observers({"otlp_endpoint": url, "quiet": True, "progress": False})
        state, _ = run_engine()
        with caplog.at_level("WARNING", logger="orchestrator.tracing"):
            report = session.finish(state, timeout_s=0.3)
    finally:
        collector.stop()
    assert state.status == ProjectStatus.SUCCESS and report["flushed"] is False
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "orchestrator.tracing"]
    assert warning.startswith(f"span export to {url} ")
    assert "(HTTP 503 Service Unavailable)" in warning


def test_a_slow_collector_that_answers_is_not_a_failure(caplog):
    """An export slower than the old fixed 3 s, within the export deadline: every span
    arrives and nothing is reported lost (the false alarm seen against MLflow)."""
    from orchestrator.cli.observers import setup_observers

    collector = HttpCollector(delay=3.5)
    url = f"http://127.0.0.1:{collector.port}/v1/traces"
    try:
        with caplog.at_level("WARNING", logger="orchestrator.tracing"):
            session = setup_observers({"otlp_endpoint": url, "quiet": True, "progress": False})
            state, _ = run_engine()
            report = session.finish(state)
    finally:
        collector.stop()
    assert report["flushed"] is True
    exported = sum(len(ss.spans) for r in collector.requests for rs in r.resource_spans for ss in rs.scope_spans)
    assert exported == report["exported"] and exported >= 4
    assert [r.getMessage() for r in caplog.records if r.name == "orchestrator.tracing"] == []


def test_exporter_logs_are_held_back_only_while_an_export_runs(caplog):
    """The OTLP exporters log each retry; those records are held back while one of our
    exports runs (our one warning says it), and the logger's level is given back after,
    also when the flush was abandoned mid-retry (no hold outlives its export)."""
    import logging

    from orchestrator.cli.observers import setup_observers
    from orchestrator.otel.export import OTLP_LOGGER

    otlp = logging.getLogger(OTLP_LOGGER)
    otlp.setLevel(logging.INFO)  # the user's own setting, to be given back
    collector = HttpCollector(status=503)
    url = f"http://127.0.0.1:{collector.port}/v1/traces"
    try:
        for _ in range(2):
            with caplog.at_level(logging.DEBUG):
                session = setup_observers({"otlp_endpoint": url, "quiet": True, "progress": False})
                state, _ = run_engine()
                report = session.finish(state, timeout_s=0.3)
            assert report["flushed"] is False
            deadline = time.monotonic() + 10
            while otlp.level != logging.INFO and time.monotonic() < deadline:
                time.sleep(0.05)  # the abandoned export ends its retry, then gives the level back
            assert otlp.level == logging.INFO
            assert not [r for r in caplog.records if r.name.startswith(OTLP_LOGGER)]
            (warning,) = [
                r.getMessage()
                for r in caplog.records
                if r.name == "orchestrator.tracing" and r.levelno >= logging.WARNING
            ]
            assert "(HTTP 503 Service Unavailable)" in warning
            caplog.clear()
    finally:
        collector.stop()
        otlp.setLevel(logging.NOTSET)


def test_export_timeout_from_the_standard_variables_and_the_flag():
    from orchestrator.otel.config import TracingConfig, resolve_config

    cfg = TracingConfig(enabled=True, otlp_endpoint="http://127.0.0.1:4317")
    assert resolve_config(cfg, {}).export_timeout_s == 10.0
    assert resolve_config(cfg, {}).shutdown_timeout_s == 11.0
    traces = resolve_config(cfg, {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2500", "OTEL_EXPORTER_OTLP_TIMEOUT": "9000"})
    assert (traces.export_timeout_s, traces.export_timeout_source) == (2.5, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
    assert resolve_config(cfg, {"OTEL_EXPORTER_OTLP_TIMEOUT": "60000"}).shutdown_timeout_s == 30.0  # capped
    flag = TracingConfig(enabled=True, otlp_endpoint="http://127.0.0.1:4317", export_timeout_s=4)
    assert resolve_config(flag, {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2500"}).export_timeout_s == 4.0
    for bad in ("abc", "-5", "0", "nan", "inf"):
        with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"):
            resolve_config(cfg, {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": bad})


@pytest.mark.parametrize("value", ["abc", "-1", "0", "nan", "inf"])
def test_a_bad_otlp_timeout_flag_is_a_usage_error(value, capsys):
    from orchestrator import cli

    code = cli.main(["-p", "x", "--otlp-endpoint", "http://127.0.0.1:4317", "--otlp-timeout", value])
    err = capsys.readouterr().err.strip()
    assert code == cli.EXIT_USAGE and err.count("\n") == 0 and "--otlp-timeout" in err


# -- metric temporality and aggregation: the standard variables, through public constructors --


def metric_kinds(requests) -> dict[str, tuple[str, int]]:
    """{metric name: (data kind, aggregation temporality)} of every metrics export request."""
    kinds = {}
    for req in requests:
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    kinds[m.name] = (kind, getattr(getattr(m, kind), "aggregation_temporality", 0))
    return kinds


@pytest.mark.parametrize(
    "temporality, histogram, expected",
    [
        (None, None, {"orchestrator.projects": ("sum", 2), "gen_ai.client.token.usage": ("histogram", 2)}),
        ("delta", None, {"orchestrator.projects": ("sum", 1), "gen_ai.client.token.usage": ("histogram", 1)}),
        ("LowMemory", None, {"orchestrator.projects": ("sum", 1), "gen_ai.client.token.usage": ("histogram", 1)}),
        (
            None,
            "base2_exponential_bucket_histogram",
            {"orchestrator.projects": ("sum", 2), "gen_ai.client.token.usage": ("exponential_histogram", 2)},
        ),
    ],
)
def test_metric_temporality_and_histogram_follow_the_standard_variables(monkeypatch, temporality, histogram, expected):
    """1 = DELTA, 2 = CUMULATIVE in OTLP.  The reader asks our wrapper, not the OTLP
    exporter, for the preference: both must be given the one the variables say."""
    from orchestrator.cli.observers import setup_observers

    if temporality:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", temporality)
    if histogram:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", histogram)
    collector = GrpcCollector()
    try:
        session = setup_observers(
            {"otlp_endpoint": f"http://127.0.0.1:{collector.port}", "metrics": True, "quiet": True}
        )
        state, _ = run_engine()
        report = session.finish(state)
    finally:
        collector.stop()
    assert report["metrics_flushed"] is True
    kinds = metric_kinds(collector.metric_requests)
    assert {name: kinds[name] for name in expected} == expected


@pytest.mark.parametrize(
    "variable, value",
    [
        ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "weekly"),
        ("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "buckets"),
    ],
)
def test_a_bad_metrics_preference_is_a_usage_error(monkeypatch, capsys, variable, value):
    from orchestrator import cli

    monkeypatch.setenv(variable, value)
    code = cli.main(["-p", "x", "--otlp-endpoint", "http://127.0.0.1:4317", "--metrics"])
    err = capsys.readouterr().err.strip()
    assert code == cli.EXIT_USAGE and err.count("\n") == 0 and variable in err and repr(value) in err


# -- the quiet exporter: a refusing endpoint is reported once and never stalls the run -------


def test_a_refusing_endpoint_is_reported_once_and_never_stalls_runs(caplog):
    """A real gRPC OTLP exporter to a loopback port nobody listens on, behind our wrapper
    and the batch processor: runs succeed at full speed, one warning names the endpoint
    and why, no record of the exporter's own retries reaches the logs, no exception."""
    import logging

    from orchestrator.cli.observers import setup_observers

    url = f"http://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.DEBUG):
        session = setup_observers({"otlp_endpoint": url, "quiet": True, "progress": False, "otlp_timeout": 2})
        exporter = t.tracing_state()["exporter"]
        started = time.monotonic()
        states = [run_engine()[0] for _ in range(3)]
        ran = time.monotonic() - started
        t.force_flush(1.0)  # exports during the runs' lifetime: each batch fails
        before_end = time.monotonic()
        session.finish(states[-1])
        ended = time.monotonic() - before_end
    assert all(s.status == ProjectStatus.SUCCESS for s in states)
    assert ran < 5.0 and ended < 2.0  # refused: the final flush is given up at once
    assert exporter.exported == 0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in warnings] == ["orchestrator.tracing"], [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert message.startswith(f"span export to {url} failed (connection refused); ")
    assert "spans were not exported" in message and not warnings[0].exc_info
    # a batch that failed during the run was booked as failed; the final flush was given
    # up at once, so whatever was in flight then is counted as lost in the same line
    assert exporter.failed > 0 or re.search(r"\b(\d+) of \1 spans were not exported", message), message


def test_an_exporter_that_raises_is_contained():
    """An exporter bug (an exception, not a failed result) is booked as failed, reported
    once with its type, and never reaches the batch processor's traceback log."""
    import logging

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

    from orchestrator.otel.export import QuietSpanExporter

    class Broken(SpanExporter):
        def export(self, spans):
            raise RuntimeError("encoder bug")

    quiet = QuietSpanExporter(Broken(), "http://127.0.0.1:1")
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(quiet))
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger().addHandler(handler)
    try:
        for _ in range(3):
            provider.get_tracer("t").start_span("s").end()
    finally:
        logging.getLogger().removeHandler(handler)
    assert (quiet.exported, quiet.failed) == (0, 3)
    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == [
        "span export to http://127.0.0.1:1 failed (RuntimeError: encoder bug); 1 spans were not exported; "
        "the run goes on"
    ]


def test_the_gate_drops_what_the_queue_cannot_hold_and_counts_it(monkeypatch, caplog):
    """A collector that hangs while a run makes more spans than the batch queue holds: the
    spans beyond it are dropped and counted before the batch processor sees them (it
    never logs "Queue full"), and the final warning counts them as not exported."""
    import logging

    from orchestrator.cli.observers import setup_observers

    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/traces"
    try:
        with caplog.at_level(logging.DEBUG):
            session = setup_observers({"otlp_endpoint": url, "quiet": True, "progress": False, "otlp_timeout": 1})
            state, provider = run_engine()
            gate = t.tracing_state()["gate"]
            session.finish(state, timeout_s=0.5)
    finally:
        listener.close()
    assert state.status == ProjectStatus.SUCCESS
    assert gate.ended == len(provider.requests) + 3 and gate.dropped >= gate.ended - 4 - 4
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert f"{gate.ended} of {gate.ended} spans were not exported" in warning
