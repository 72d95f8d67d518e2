"""A killed and resumed run is one report: each attempt its own lane, the gap between
them shown, the totals those of the run's own accounting (``summary.json``), from the
run store by project id alone; and ``orchestrator replay`` of it rebuilds both attempts'
span trees, the second linked to the first."""

from __future__ import annotations

import pytest

from orchestrator.cli.main import main
from orchestrator.report import build_report, events_from_files, render_html
from tests.report import browser
from tests.report.pages import parse, rows
from tests.report.runs import killed_and_resumed


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    return killed_and_resumed(tmp_path_factory.mktemp("resumed"))


def test_a_resumed_run_is_one_report_with_a_lane_per_attempt(resumed):
    page = parse(resumed.report.read_text())
    data, usage = page.data, resumed.summary["usage"]
    assert [a["number"] for a in data["attempts"]] == [1, 2]
    assert [a["finished"] for a in data["attempts"]] == [False, True]  # the first was killed
    first, second = data["attempts"]
    assert second["start_ns"] > first["end_ns"]
    lanes = [t for t in page.texts.get("tl-title", "").split()]  # the chart says how many attempts
    assert "2 attempt(s)" in " ".join(lanes)
    html = resumed.report.read_text()
    assert "attempt 1:" in html and "stopped (no finish recorded)" in html and " later</text>" in html
    # the run's accounting: every call behind a kept result once, as summary.json counts
    totals = data["totals"]
    assert (totals["calls"], totals["tokens_in"], totals["tokens_out"]) == (
        usage["llm_calls"],
        usage["input_tokens"],
        usage["output_tokens"],
    )
    assert abs(totals["cost_usd"] - usage["cost_usd"]) < 1e-9 and data["mismatches"] == []
    by_task = {t["id"]: t for t in data["tasks"]}
    for tid, kept_from in resumed.summary["restored"].items():
        assert by_task[tid]["restored"] and by_task[tid]["attempt"] == kept_from
        assert by_task[tid]["calls"] == resumed.summary["results"][tid]["llm_calls"]
    froms = {r[0]: r[-1] for r in rows(page, "tasks-table")}
    assert any(v.startswith("kept from attempt 1") for v in froms.values())
    assert page.texts["t-attempts"] == "2" and page.texts["t-status"] == resumed.summary["status"]


def test_report_by_project_id_works_for_the_killed_and_resumed_run(resumed, tmp_path, capsys):
    out = tmp_path / "again.html"
    assert main(["report", resumed.project_id, "--state-dir", str(resumed.state_dir), "-o", str(out)]) == 0
    assert "2 attempt(s)" in capsys.readouterr().out
    again = parse(out.read_text()).data
    assert again == parse(resumed.report.read_text()).data
    page = browser.load(out)
    dom = parse(page.dom)
    assert page.console == [] and dom.bars["project"] == 2
    assert dom.bars["task"] == sum(a["tasks"] for a in again["attempts"])


def test_the_events_files_of_both_attempts_give_the_same_accounting(resumed):
    """The killed attempt's file may end in half a line; the kept results are whole."""
    from_files = build_report(events_from_files(resumed.events))
    data = parse(render_html(from_files)).data
    stored = parse(resumed.report.read_text()).data
    assert data["totals"] == stored["totals"]
    fields = ("id", "status", "score", "attempt", "restored", "calls", "tokens_in", "tokens_out", "cost_usd")
    assert [{k: t[k] for k in fields} for t in data["tasks"]] == [{k: t[k] for k in fields} for t in stored["tasks"]]
