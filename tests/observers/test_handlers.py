"""Observer handlers are bound by name, and the names are checked: an ``on_*`` method that
matches no signal is an error when the observer subscribes (naming the nearest signal),
and ``--observer`` refuses such an observer with one line and exit 2 before a run."""

from __future__ import annotations

import pytest

from orchestrator import cli, events
from orchestrator.observers import Observer, loading
from orchestrator.observers.base import UnknownHandlerError, unknown_handlers
from tests.assertions import assert_one_line_error
from tests.observers.misspelled import SlowCalls

SPEC = "tests.observers.misspelled:SlowCalls"
MESSAGE = "SlowCalls.on_llm_call_finshed matches no signal: did you mean on_llm_call_finished?"


def connected() -> int:
    return sum(len(s.receivers) for s in events.ALL_SIGNALS)


def test_a_misspelled_handler_is_refused_naming_the_nearest_signal():
    before = connected()
    observer = SlowCalls()
    with pytest.raises(UnknownHandlerError) as caught:
        observer.subscribe()
    assert str(caught.value) == MESSAGE
    assert connected() == before and not observer.subscribed  # nothing was connected
    with pytest.raises(UnknownHandlerError):
        with SlowCalls():
            pass
    assert connected() == before


def test_a_name_near_no_signal_says_how_handlers_are_named():
    class Odd(Observer):
        def on_weather(self, p: object) -> None: ...

    assert unknown_handlers(Odd()) == [
        "Odd.on_weather matches no signal: handlers are on_<signal name> (see the event catalogue)"
    ]


def test_every_misspelling_is_reported_at_once_and_other_attributes_are_ignored():
    class Two(Observer):
        on_budget_warning_count = 3  # not callable: not a handler

        def on_task_strated(self, p: object) -> None: ...

        def on_cache_hits(self, p: object) -> None: ...

        def handle_task_started(self, p: object) -> None: ...  # not on_*: not a handler

    assert unknown_handlers(Two()) == [
        "Two.on_cache_hits matches no signal: did you mean on_cache_hit?",
        "Two.on_task_strated matches no signal: did you mean on_task_started?",
    ]


def test_correct_handlers_subscribe_and_receive():
    seen = []

    class Right(Observer):
        def on_task_started(self, p: events.TaskStarted) -> None:
            seen.append(p.task_id)

        def on_budget_warning(self, p: events.BudgetWarning) -> None:
            seen.append(p.reason)

    assert unknown_handlers(Right()) == []
    with Right():
        with events.traced_task("t1", "code_generation"):
            events.emit(events.budget_warning, spent_usd=1.0, max_usd=2.0, fraction=0.5, reason="r")
    assert seen == ["t1", "r"]


def test_loading_a_users_observer_checks_its_handlers():
    with pytest.raises(loading.ObserverLoadError) as caught:
        loading.load_observer(SPEC)
    assert str(caught.value) == f"--observer {SPEC}: {MESSAGE}"


def test_the_cli_refuses_it_with_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["-p", "x", "--observer", SPEC, "-o", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert code == cli.EXIT_USAGE
    assert_one_line_error(capsys.readouterr().err, MESSAGE)
    assert not out.exists() and not (tmp_path / "cache").exists()  # refused before the run started
