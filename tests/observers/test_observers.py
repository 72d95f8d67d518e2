"""Observer building blocks: the base, the recorder and its JSON lines, loading by spec
and entry point, the progress display, the CLI setup (validation, no OpenTelemetry
without --tracing, the missing-extra message), and the pytest fixtures as a user sees them."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import textwrap
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from orchestrator import events
from orchestrator.cli.observers import ObserverOptions, setup_observers, validate_observer_options
from orchestrator.domain.budget import Budget
from orchestrator.engine import Orchestrator
from orchestrator.llm.client import UnifiedClient
from orchestrator.observers import loading
from orchestrator.observers.base import Observer, redact
from orchestrator.observers.progress import ProgressObserver
from orchestrator.observers.recorder import EventRecorder, read_jsonl
from tests.scripted import ScriptedProvider, decomposition

ROOT = Path(__file__).resolve().parents[2]
PLAN = decomposition(
    {"id": "a", "type": "code_generation", "prompt": "write add(a, b)", "depends_on": []},
    {"id": "b", "type": "summarization", "prompt": "summarize add", "depends_on": ["a"]},
)


def _run_engine(provider=None):
    provider = provider or ScriptedProvider(plan=PLAN)
    orch = Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({"local": provider}))
    return asyncio.run(orch.run_project("Build add", "it adds"))


def connected() -> int:
    """Receivers on the bus (other test files' leftovers included: compare, don't assume 0)."""
    return sum(len(s.receivers) for s in events.ALL_SIGNALS)


@pytest.fixture(autouse=True)
def nothing_left_connected():
    before = connected()
    yield
    assert connected() == before, "a test left a receiver connected"


# -- base ------------------------------------------------------------------------------------


class Counter(Observer):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_task_started(self, p):
        self.seen.append(p.signal_name)

    def on_task_finished(self, p):
        self.seen.append(p.signal_name)


def test_observer_connects_its_on_methods_strongly_and_as_context_manager():
    base, base_task = connected(), len(events.task_started.receivers)
    obs = Counter()
    with obs:
        gc.collect()  # a weak connection would be gone now
        with events.traced_task("t", "x"):
            pass
        assert obs.subscribed
        obs.subscribe()  # a second subscribe does not double the receivers
        assert len(events.task_started.receivers) == base_task + 1
        assert connected() == base + 2
    assert not obs.subscribed and connected() == base
    with events.traced_task("t", "x"):
        pass
    assert obs.seen == ["task_started", "task_finished"]
    obs.unsubscribe()  # twice is fine


def test_redact_removes_env_secrets_and_key_shapes(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "my-very-secret-value-123")
    text = "key my-very-secret-value-123 and sk-abcdefghijklmnopqrstuv and Bearer abc.def.ghijklmnop"
    clean = redact(text)
    assert "my-very-secret" not in clean and "sk-abcdef" not in clean and "abc.def.ghij" not in clean
    assert clean.count("[REDACTED]") == 3
    assert redact("nothing secret here") == "nothing secret here"


# -- recorder --------------------------------------------------------------------------------


def test_recorder_keeps_order_filters_and_round_trips_json_lines(tmp_path):
    with EventRecorder() as rec:
        state = _run_engine()
    names = rec.names()
    assert names[0] == "project_started" and names[-1] == "project_finished"
    assert names.count("task_started") == names.count("task_finished") == len(state.tasks)
    assert [p.signal_name for p in rec.of("task_started", events.task_finished)] == [
        n for n in names if n in ("task_started", "task_finished")
    ]
    assert rec.of(events.LlmCallFinished) == rec.of("llm_call_finished")
    assert rec.first("task_started", task_id="b").task_type == "summarization"
    with pytest.raises(AssertionError):
        rec.first("task_started", task_id="zzz")
    with pytest.raises(KeyError):
        rec.of("no_such_signal")
    assert rec.unfinished() == []
    assert len(rec.pairs("llm_call")) == len(rec.of("llm_call_started"))
    path = rec.write_jsonl(tmp_path / "events.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == len(rec)
    first = json.loads(lines[0])
    assert first["signal"] == "project_started" and first["project_id"] == state.project_id
    # content stays out of the file unless asked for
    assert not any("prompt" in json.loads(line) or "completion" in json.loads(line) for line in lines)
    dicts = read_jsonl(path)
    assert [d["signal"] for d in dicts] == names
    payloads = read_jsonl(path, as_payloads=True)
    assert [type(p) for p in payloads] == [type(p) for p in rec.events]
    assert payloads[-1].attributes["project.status"] == "success"
    assert payloads[3].correlation_id == rec.events[3].correlation_id
    with_content = rec.write_jsonl(tmp_path / "full.jsonl", include_content=True)
    assert any(json.loads(line).get("completion") for line in with_content.read_text().splitlines())


def test_recorder_streams_to_a_file_and_can_filter(tmp_path):
    target = tmp_path / "sub" / "stream.jsonl"
    target.parent.mkdir()
    target.write_text("old line\n")
    rec = EventRecorder(signals=["task_started", events.task_finished], jsonl_path=target, mode="w", keep=False)
    with rec:
        _run_engine()
    assert rec.events == []  # keep=False
    written = [json.loads(line) for line in target.read_text().splitlines()]
    assert [d["signal"] for d in written] == ["task_started", "task_finished"] * 2


def test_broken_jsonl_line_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"signal": "task_skipped"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a JSON line"):
        read_jsonl(bad)


# -- loading ---------------------------------------------------------------------------------


def test_load_observer_by_module_factory(tmp_path, monkeypatch):
    (tmp_path / "my_obs.py").write_text(
        textwrap.dedent("""
        from orchestrator.observers.base import Observer

        class Mine(Observer):
            def on_task_started(self, p):
                pass

        def make():
            return Mine()

        instance = Mine()
        not_an_observer = 42

        def broken():
            raise RuntimeError("nope")
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert type(loading.load_observer("my_obs:Mine")).__name__ == "Mine"
    assert type(loading.load_observer("my_obs:make")).__name__ == "Mine"
    import my_obs

    assert loading.load_observer("my_obs:instance") is my_obs.instance
    for spec, fragment in [
        ("my_obs:missing", "has no attribute 'missing'"),
        ("no_such_mod_xyz:f", "cannot import 'no_such_mod_xyz'"),
        ("my_obs:not_an_observer", "neither an observer nor a factory"),
        ("my_obs:broken", "the factory failed: RuntimeError: nope"),
        ("unknown-name", "no entry point 'unknown-name'"),
        (":x", "expected package.module:factory"),
    ]:
        with pytest.raises(loading.ObserverLoadError) as info:
            loading.load_observer(spec)
        assert fragment in str(info.value) and "\n" not in str(info.value)
        assert isinstance(info.value, ValueError)


def test_load_observer_by_entry_point_name(monkeypatch):
    class FakeEP:
        name, value = "counter", "tests.test_observers:Counter"

        def load(self):
            return Counter

    monkeypatch.setattr(loading, "entry_points", lambda group: [FakeEP()] if group == loading.ENTRY_POINT_GROUP else [])
    assert isinstance(loading.load_observer("counter"), Counter)
    assert "counter" in loading.available_observer_names()
    logging_obs = loading.load_observer("logging")  # a built-in name
    assert type(logging_obs).__name__ == "LoggingObserver"


# -- progress --------------------------------------------------------------------------------


def test_progress_is_off_when_not_a_terminal_or_quiet():
    plain = ProgressObserver(Console(file=StringIO()))
    assert not plain.enabled and plain.handlers() == []
    quiet = ProgressObserver(Console(file=StringIO(), force_terminal=True), quiet=True)
    assert not quiet.enabled and quiet.handlers() == []


def test_progress_tracks_tasks_spend_and_calls_on_a_terminal():
    out = StringIO()
    progress = ProgressObserver(Console(file=out, force_terminal=True, width=120), refresh_per_second=50)
    assert progress.enabled
    snapshots = []

    class Snap(Observer):
        def on_llm_call_started(self, p):
            snapshots.append(progress.render())

    with progress, Snap():
        state = _run_engine(ScriptedProvider(plan=PLAN, latency=0.01))
    assert progress.done == len(state.tasks) and progress.failed == 0 and not progress.calls
    console = Console(file=StringIO(), width=120, record=True)
    console.print(snapshots[-1])
    text = console.export_text()
    assert "tasks 1/? done" in text or "tasks 1/2 done" in text  # the total once the engine sends tasks_planned
    progress.on_tasks_planned(
        events.TasksPlanned(correlation_id="x", parent_id=None, project_id=None, timestamp_ns=0, task_count=2)
    )
    assert progress.total == 2
    assert "$1.00" in text and "smollm2-135m" in text
    assert progress._live is None  # stopped at project end


# -- CLI setup -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, fragment",
    [
        (dict(tracing=True, otlp_endpoint="localhost:4317"), "must start with http:// or https://"),
        (dict(tracing=True, sample_rate=2.0), "--sample-rate must be between 0 and 1"),
        (dict(tracing=True, sample_rate="abc"), "--sample-rate must be a number"),
        (dict(tracing=True, otlp_protocol="udp"), "--otlp-protocol must be one of grpc, http/protobuf"),
        (dict(observer=["nope_mod_xyz:f"]), "cannot import 'nope_mod_xyz'"),
        (dict(service_name="  ", tracing=True), "--service-name must not be empty"),
    ],
)
def test_setup_rejects_bad_options_with_one_line(options, fragment, tmp_path):
    with pytest.raises(ValueError) as info:
        setup_observers(SimpleNamespace(**options))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_events_jsonl_that_is_a_directory_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        validate_observer_options({"events_jsonl": str(tmp_path)})


def test_endpoint_implies_tracing_and_env_is_validated(monkeypatch):
    opts = validate_observer_options({"otlp_endpoint": "http://127.0.0.1:4317"})
    assert opts.tracing is True
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        validate_observer_options({"tracing": True})
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):  # an endpoint variable turns export on
        validate_observer_options(ObserverOptions())
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    assert validate_observer_options(ObserverOptions()).tracing is True
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert validate_observer_options(ObserverOptions()).tracing is False
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert validate_observer_options(ObserverOptions()).tracing is False
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    assert validate_observer_options(ObserverOptions()).tracing is False


def test_session_writes_jsonl_and_prints_the_dev_tree(tmp_path):
    out = StringIO()
    console = Console(file=out, width=200)
    path = tmp_path / "ev.jsonl"
    session = setup_observers({"tracing": True, "events_jsonl": str(path)}, console=console)
    state = _run_engine()
    assert out.getvalue() == ""  # nothing printed during the run: the tree comes after the summary
    report = session.finish(state)
    assert report["flushed"] is True and report["spans"] > 0 and report["events_jsonl"] == str(path)
    text = out.getvalue()
    assert text.startswith("run_project") and "task:a" in text and "llm_call:decompose" in text
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["signal"] == "project_started" and json.loads(lines[-1])["signal"] == (
        "project_finished"
    )
    assert session.finish(state) is not None  # a second finish is harmless
    quiet_out = StringIO()
    quiet = setup_observers({"tracing": True, "quiet": True}, console=Console(file=quiet_out))
    _run_engine()
    quiet.finish()
    assert quiet_out.getvalue() == ""


def _python(code: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )


def test_without_tracing_nothing_of_opentelemetry_is_imported():
    proc = _python("""
        import asyncio, sys
        from orchestrator.cli.observers import setup_observers
        from orchestrator import Orchestrator, Budget, UnifiedClient
        from tests.scripted import ScriptedProvider
        session = setup_observers({"tracing": False, "verbose": True, "observer": ["logging"],
                                   "events_jsonl": "/dev/null"})
        orch = Orchestrator(budget=Budget(1.0, 60), client=UnifiedClient({"local": ScriptedProvider()}))
        state = asyncio.run(orch.run_project("p", "c"))
        session.finish(state)
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        print("LOADED", loaded, state.status.value)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED [] success" in proc.stdout


def test_missing_tracing_packages_name_the_extra():
    proc = _python("""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ModuleNotFoundError(f"No module named {name!r}")
                return None

        sys.meta_path.insert(0, Block())
        from orchestrator.cli.observers import setup_observers
        try:
            setup_observers({"tracing": True})
        except ValueError as exc:
            print("ERROR", exc)
        from orchestrator.tracing import TracingConfig, configure_tracing, TracingUnavailable
        try:
            configure_tracing(TracingConfig(enabled=True))
        except TracingUnavailable as exc:
            print("PYERROR", exc)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "ERROR --tracing needs the OpenTelemetry packages (the 'tracing' extra)" in proc.stdout
    assert "pip install 'multi-llm-orchestrator[tracing]'" in proc.stdout
    assert "PYERROR tracing needs the OpenTelemetry packages" in proc.stdout


def test_import_orchestrator_does_not_import_opentelemetry():
    proc = _python("""
        import sys
        import orchestrator
        from orchestrator import TracingConfig, configure_tracing, get_tracer, Orchestrator, Budget
        from orchestrator.tracing import traced_task, traced_llm_call, traced_policy_check, traced_remediation
        import orchestrator.observers
        print("LOADED", sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        print("CFG", TracingConfig().service_name)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout and "CFG multi-llm-orchestrator" in proc.stdout


# -- the pytest fixtures as a user writes them ----------------------------------------------


def test_fixtures_work_in_a_users_test_file(tmp_path):
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent("""
        import asyncio
        from orchestrator import Orchestrator, Budget, UnifiedClient
        from tests.scripted import ScriptedProvider

        def run():
            orch = Orchestrator(budget=Budget(1.0, 60), client=UnifiedClient({"local": ScriptedProvider()}))
            return asyncio.run(orch.run_project("Build add", "it adds"))

        def test_events(orchestrator_events):
            state = run()
            assert len(orchestrator_events.of("task_started")) == len(state.tasks)
            assert orchestrator_events.unfinished() == []

        def test_spans(span_exporter):
            run()
            for call in span_exporter.spans("llm_call:"):
                expected = "run_project" if call.name == "llm_call:decompose" else "task:t1"
                assert span_exporter.parent_of(call).name == expected
            assert span_exporter.by_name("run_project").attributes["project.status"] == "success"

        def test_fails_on_purpose(orchestrator_events):
            run()
            assert orchestrator_events.of("task_skipped"), "no task was skipped"
    """)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert "1 failed, 2 passed" in proc.stdout, proc.stdout[-2000:]
    assert "no task was skipped" in proc.stdout


def test_a_recorded_event_log_replays_into_the_same_spans(tmp_path, span_exporter):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from orchestrator.observers.recorder import replay
    from orchestrator.observers.tracing import TracingObserver

    path = tmp_path / "run.jsonl"
    with EventRecorder(jsonl_path=path):
        _run_engine()
    live = span_exporter.get_finished_spans()
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = TracingObserver(provider, attach_context=False)
    assert replay(read_jsonl(path), observer) == len(path.read_text().splitlines())
    assert observer.open_span_count == 0
    rebuilt = exporter.get_finished_spans()

    def shape(spans):
        by_id = {s.context.span_id: s.name for s in spans}
        return sorted(
            (
                s.name,
                s.start_time,
                s.end_time,
                by_id.get(s.parent.span_id) if s.parent else None,
                s.attributes.get("llm.tokens_in"),
            )
            for s in spans
        )

    assert shape(rebuilt) == shape(live)
