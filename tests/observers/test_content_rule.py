"""The content rule, field by field: with content capture off, no model or prompt text
reaches a log line (its message or its structured fields) or an event file (top-level
fields, attributes, prompt and completion); with capture on, the prompt, system and
completion text a span records is redacted of secrets.

Every signal is sent with model text in every string field it has, so a field an
observer forgets is caught whichever it is (a test-suite audit found that an engine run
alone did not put model text in every field an observer writes).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import msgspec
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator import attributes as attr
from orchestrator import events
from orchestrator.observers.logging import LoggingObserver
from orchestrator.observers.recorder import EventRecorder
from orchestrator.observers.tracing import TracingObserver

MARK = "OKAPI_MODEL_TEXT_4417"
KEY = "sk-proj-CAPTURED0123456789abcdefXYZ"
_COMMON = {"correlation_id", "parent_id", "project_id", "timestamp_ns", "task_id"}


def _sample(kind: Any, text: str) -> Any:
    """A value of a payload field's type; strings are marked model text."""
    if isinstance(kind, msgspec.inspect.StrType):
        return events.ModelText(text)
    if isinstance(kind, msgspec.inspect.UnionType):
        return _sample(next(t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType)), text)
    if isinstance(kind, msgspec.inspect.BoolType):
        return False
    if isinstance(kind, msgspec.inspect.IntType):
        return 1
    if isinstance(kind, msgspec.inspect.FloatType):
        return 0.5
    if isinstance(kind, msgspec.inspect.VarTupleType | msgspec.inspect.TupleType):
        return ()
    raise AssertionError(f"no sample for {kind!r}")


def _point_fields(signal: events.BusSignal, text: str) -> dict[str, Any]:
    info = msgspec.inspect.type_info(signal.payload_type)
    return {f.name: _sample(f.type, text) for f in info.fields if f.name not in _COMMON}


def _emit_everything(text: str) -> None:
    """A task with an LLM call (prompt, system, completion, what was really sent), a
    remediation whose detail quotes the model, and every point signal, all carrying ``text``."""
    with events.traced_task("t1", "code_generation"):
        with events.traced_llm_call(
            "gpt-4o", "generate", provider="openai", prompt=f"prompt {text}", system=f"system {text}"
        ) as call:
            call.set_completion(f"answer {text}")
            call.set_sent_system(f"system {text} and the schema")
            for signal in events.POINT_SIGNALS:
                events.emit(signal, **_point_fields(signal, f"{signal.name} {text}"))
        with events.traced_remediation("retry", "validation_failed") as fix:
            fix.set_attribute(attr.REMEDIATION_DETAIL, events.ModelText(f"the model wrote {text}"))


def test_the_logging_observer_writes_no_model_text_with_capture_off(caplog):
    with LoggingObserver(), caplog.at_level(logging.DEBUG, logger="orchestrator"):
        _emit_everything(MARK)
    records = [r for r in caplog.records if r.name == "orchestrator"]
    logged = {getattr(r, "orchestrator", {}).get("event") for r in records}
    assert {s.name for s in events.POINT_SIGNALS} <= logged  # every point event was logged...
    assert {"task:t1", "llm_call:generate", "remediation"} <= logged
    texts = [r.getMessage() for r in records] + [json.dumps(r.orchestrator, default=str) for r in records]
    assert [t for t in texts if MARK in t] == []  # ...without the text, in the line or its fields
    assert any("[content omitted: " in t for t in texts)


@pytest.mark.parametrize("capture", [False, True])
def test_the_event_file_holds_model_text_only_with_capture_on(capture, tmp_path):
    path = tmp_path / "events.jsonl"
    with EventRecorder(jsonl_path=path, include_content=capture) as recorder:
        _emit_everything(MARK)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert {s.name for s in events.POINT_SIGNALS} <= {line["signal"] for line in lines}
    if capture:  # the sample did carry the text into every kind of field
        assert MARK in path.read_text() and any(MARK in (line.get("prompt") or "") for line in lines)
        return
    assert MARK not in path.read_text()
    assert MARK not in json.dumps(recorder.to_dicts())
    for line in lines:
        assert not {"prompt", "system", "completion", "sent_system"} & set(line), line["signal"]
    point = {line["signal"]: line for line in lines if line["signal"] == "validation_failed"}
    assert point["validation_failed"]["message"].startswith("[content omitted: ")  # a top-level field


def test_captured_prompt_system_and_completion_are_redacted(monkeypatch):
    monkeypatch.setenv("HOUSE_LLM_API_KEY", "house-secret-value-0042")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    secrets = f"{KEY} and house-secret-value-0042"
    with TracingObserver(provider, capture_content=True):
        _emit_everything(secrets)
    spans = exporter.get_finished_spans()
    (call,) = [s for s in spans if s.name == "llm_call:generate"]
    captured = {k: str(v) for k, v in call.attributes.items() if k.endswith(("messages", "instructions"))}
    assert set(captured) == {"gen_ai.input.messages", "gen_ai.output.messages"}  # openai: the system is a message
    messages = json.loads(captured["gen_ai.input.messages"])
    assert [m["role"] for m in messages] == ["system", "user"]
    texts = [str(v) for s in spans for v in s.attributes.values()]
    texts += [str(v) for s in spans for e in s.events for v in e.attributes.values()]
    assert [t for t in texts if KEY in t or "house-secret-value-0042" in t] == []
    for name, value in captured.items():
        assert "[REDACTED]" in value, name
    (remediation,) = [s for s in spans if s.name == "remediation"]
    assert remediation.attributes[attr.REMEDIATION_DETAIL] == "the model wrote [REDACTED] and [REDACTED]"
