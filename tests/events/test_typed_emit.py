"""Point events are typed: an emitter's misspelled, missing or wrongly typed field is a mypy
error at the call site (mypy really run, through its API, on a small file), while emit
still builds nothing when nobody listens."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from mypy import api

from orchestrator import events
from orchestrator.events.bus import PointSignal

ROOT = Path(__file__).resolve().parents[2]

SNIPPET = textwrap.dedent("""\
    from orchestrator import events

    def right() -> None:
        events.emit(events.budget_warning, spent_usd=1.0, max_usd=2.0, fraction=0.5, reason="r")
        events.emit(events.task_skipped, task_id="a", reason=events.ModelText("dependency failed"))
        events.emit(events.cache_hit, model="m", call_type="generate", cache_key="k")

    def misspelled() -> None:
        events.emit(events.budget_warning, spent_usd=1.0, max_usd=2.0, fracton=0.5)

    def missing() -> None:
        events.emit(events.cache_hit, model="m", call_type="generate")

    def wrong_type() -> None:
        events.emit(events.llm_retry, model="m", attempt="2", error_type="E", delay_seconds=1.0)

    def a_pair_signal() -> None:
        events.emit(events.task_started, task_id="a")
""")


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory) -> dict[str, list[str]]:
    """mypy's errors on :data:`SNIPPET`, by the function they are in."""
    work = tmp_path_factory.mktemp("typed_emit")
    snippet = work / "snippet.py"
    snippet.write_text(SNIPPET, encoding="utf-8")
    out, err, _ = api.run(
        [
            "--strict",
            "--follow-imports=silent",
            "--no-incremental",
            "--cache-dir",
            str(work / "cache"),
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--show-error-codes",
            str(snippet),
        ]
    )
    assert "Traceback" not in err, err
    starts = {n + 1: line.split("(")[0][4:] for n, line in enumerate(SNIPPET.splitlines()) if line.startswith("def ")}
    by_function: dict[str, list[str]] = {name: [] for name in starts.values()}
    for line in out.splitlines():
        if ": error: " not in line:
            continue
        lineno = int(line.split(":")[1])
        function = starts[max(n for n in starts if n <= lineno)]
        by_function[function].append(line.split(": error: ", 1)[1])
    return by_function


def test_correct_emits_pass(mypy_report):
    assert mypy_report["right"] == []


def test_a_misspelled_field_is_a_type_error_naming_the_right_one(mypy_report):
    [error] = mypy_report["misspelled"]
    assert 'Unexpected keyword argument "fracton"' in error and 'did you mean "fraction"' in error


def test_a_missing_field_is_a_type_error(mypy_report):
    [error] = mypy_report["missing"]
    assert 'Missing named argument "cache_key"' in error


def test_a_wrongly_typed_field_is_a_type_error(mypy_report):
    [error] = mypy_report["wrong_type"]
    assert 'Argument "attempt"' in error and 'expected "int"' in error


def test_only_point_signals_take_emit(mypy_report):
    [error] = mypy_report["a_pair_signal"]
    assert 'incompatible type "BusSignal"' in error


def test_every_point_signal_is_typed_by_its_payload():
    for sig in events.POINT_SIGNALS:
        assert isinstance(sig, PointSignal) and issubclass(sig.payload_type, events.PointEvent)
    for start, finish in events.PAIRS:
        assert not isinstance(start, PointSignal) and not isinstance(finish, PointSignal)


def test_with_no_receiver_emit_builds_nothing():
    """Not even a payload with a missing field (which would raise if it were built)."""
    assert not events.budget_warning.receivers
    events.emit(events.budget_warning, spent_usd=1.0)  # type: ignore[call-arg]


def test_with_a_receiver_emit_fills_the_ids_in():
    seen: list[events.Event] = []
    events.budget_warning.connect(seen.append)
    try:
        with events.traced_task("t1", "code_generation") as task:
            events.emit(events.budget_warning, spent_usd=1.0, max_usd=2.0, fraction=0.5)
        with pytest.raises(TypeError, match="max_usd"):  # a receiver: the payload is built and checked
            events.emit(events.budget_warning, spent_usd=1.0)  # type: ignore[call-arg]
    finally:
        events.budget_warning.disconnect(seen.append)
    [warning] = seen
    assert isinstance(warning, events.BudgetWarning) and warning.signal_name == "budget_warning"
    assert warning.task_id == "t1" and warning.parent_id == task.correlation_id
    assert len(warning.correlation_id) == 16 and warning.timestamp_ns > 0
