"""The report's numbers agree with the run's own: ``summary.json``, the root span's
totals, every task's; the same from the run store as from an events file; an unpriced
call is never shown as $0.  A scripted run with remote-style prices, through the real
command line (in-process)."""

from __future__ import annotations

import asyncio
import json

import pytest

from orchestrator import Budget, Orchestrator, UnifiedClient
from orchestrator.llm.catalog import preserved, register_model
from orchestrator.llm.model_info import ModelInfo
from orchestrator.observers.recorder import EventRecorder
from orchestrator.report import build_report, events_from_files, render_html
from tests.report.pages import parse, rows
from tests.scripted import ScriptedProvider, decomposition
from tests.state import scripted_cli


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    """A 5-task run with prices (a remediation, a degraded task), its report written by
    ``--report``, its summary and its events file."""
    d = tmp_path_factory.mktemp("scripted")
    code = scripted_cli.main(
        [
            *scripted_cli.ARGS,
            "--state-dir",
            str(d / "state"),
            "-o",
            str(d / "out"),
            "--events-jsonl",
            str(d / "events.jsonl"),
            "--report",
            str(d / "report.html"),
        ]
    )
    assert code in (0, 1)
    summary = json.loads((d / "out" / "summary.json").read_text())
    return d, summary


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9


def test_every_total_equals_the_summary_and_the_span_totals(scripted):
    d, summary = scripted
    page = parse((d / "report.html").read_text())
    data = page.data
    usage, totals = summary["usage"], data["totals"]
    assert usage["cost_usd"] > 0 and usage["llm_calls"] > 20  # a priced run, with a remediation
    assert (totals["calls"], totals["cached_calls"], totals["tokens_in"], totals["tokens_out"]) == (
        usage["llm_calls"],
        usage["cached_calls"],
        usage["input_tokens"],
        usage["output_tokens"],
    )
    assert _close(totals["cost_usd"], usage["cost_usd"])
    # the root span's totals, as the run set them, agree with the sum of its calls
    recorded = data["recorded"]
    assert (
        recorded["project.llm_calls"] == usage["llm_calls"] and recorded["project.tokens_in"] == usage["input_tokens"]
    )
    assert _close(recorded["project.cost_usd"], round(usage["cost_usd"], 8)) and data["mismatches"] == []
    # planning and every task
    plan = summary["planning"]
    assert (data["planning"]["calls"], data["planning"]["tokens_in"]) == (plan["llm_calls"], plan["input_tokens"])
    by_task = {t["id"]: t for t in data["tasks"]}
    assert set(by_task) == set(summary["results"])
    for tid, result in summary["results"].items():
        mine = by_task[tid]
        assert (mine["calls"], mine["tokens_in"], mine["tokens_out"], mine["status"]) == (
            result["llm_calls"],
            result["input_tokens"],
            result["output_tokens"],
            result["status"],
        ), tid
        assert _close(mine["cost_usd"], result["cost_usd"]) and mine["score"] == result["score"], tid
    # by model: the same calls, grouped otherwise
    (model,) = data["models"]
    assert model["model"] == scripted_cli.MODEL and model["calls"] == usage["llm_calls"]
    assert _close(model["cost_usd"], usage["cost_usd"])
    # and the header says it in words
    assert page.texts["t-calls"].startswith(str(usage["llm_calls"]))
    assert page.texts["t-tokens"] == f"{usage['input_tokens']:,} / {usage['output_tokens']:,}"
    assert page.texts["t-cost"] == f"${usage['cost_usd']:.6f} of $8.000000"
    assert page.texts["t-status"] == summary["status"] == "partial_success"
    assert page.texts["t-profile"] == "full"
    assert (d / "report.html").stat().st_mode & 0o777 == 0o600  # private, as every file a run leaves


def test_the_pictures_hold_what_the_run_did(scripted):
    d, summary = scripted
    page = parse((d / "report.html").read_text())
    assert page.bars["task"] == len(summary["results"]) == 5
    assert page.bars["llm"] == summary["usage"]["llm_calls"]
    assert page.bars["remediation"] >= 1 and page.bars["project"] == 1
    table = rows(page, "tasks-table")
    assert [r[0] for r in table] == ["(planning)", *summary["execution_order"]]
    gamma = next(r for r in table if r[0] == "gamma")
    assert gamma[2] == "degraded" and gamma[4] == "0.55" and gamma[5] == "0.70"  # score below its threshold
    remediations = rows(page, "remediations-table")
    assert any(r[0] == "gamma" and r[1] == "score_below_threshold" for r in remediations)
    iterations = rows(page, "iterations-table")
    assert sum(1 for r in iterations if r[0] == "gamma") == summary["results"]["gamma"]["iterations"]
    assert page.texts["critical-path"].startswith("attempt 1: llm_call:decompose")
    assert "task:delta" in page.texts["critical-path"]  # the last task to end is on the path


def test_the_store_and_the_events_file_give_the_same_report(scripted):
    from orchestrator.cli.report_cmd import events_from_store

    d, summary = scripted
    events, notes, status = events_from_store(summary["project_id"], str(d / "state"))
    from_store = build_report(events, notes=notes, status=status)
    from_file = build_report(events_from_files([d / "events.jsonl"]))
    a, b = parse(render_html(from_store)).data, parse(render_html(from_file)).data
    assert a == b and status == summary["status"]


def test_a_fifteen_task_report_is_small(tmp_path):
    tasks = [
        {"id": f"t{i}", "type": "summarization", "prompt": f"Summarise part {i}.", "depends_on": []} for i in range(15)
    ]
    provider = ScriptedProvider(plan=decomposition(*tasks))
    path = tmp_path / "events.jsonl"
    with EventRecorder(jsonl_path=path, mode="w"):
        state = asyncio.run(
            Orchestrator(
                budget=Budget(1.0, 600), client=UnifiedClient({"local": provider}), concurrency=4, max_tasks=15
            ).run_project("Fifteen parts", "summaries")
        )
    assert len(state.tasks) == 15
    html = render_html(build_report(events_from_files([path])))
    assert len(html.encode()) < 1_000_000
    assert parse(html).bars["task"] == 15


def test_an_unpriced_call_is_marked_unpriced_never_0(tmp_path):
    """A model with no known price (the client calls it only without a budget: here from
    Python, inside a project and a task of its own): its cost of 0 is no price, and the
    report says "unpriced", never $0."""
    from orchestrator import events

    async def calls(client: UnifiedClient) -> None:
        with events.traced_project("proj-unpriced", "direct calls"), events.traced_task("t", "summarization"):
            await client.call("mystery-model", "Say hi", max_tokens=16)
            await client.call("mystery-model", "Say bye", max_tokens=16)

    with preserved():
        register_model(ModelInfo("mystery-model", "local", None, None, 8192, 512, "local", ()))
        path = tmp_path / "events.jsonl"
        with EventRecorder(jsonl_path=path, mode="w"):
            asyncio.run(calls(UnifiedClient({"local": ScriptedProvider()})))
    finished = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["attributes"].get("orchestrator.unpriced") for e in finished if e["signal"] == "llm_call_finished"] == [
        True,
        True,
    ]
    report = build_report(events_from_files([path]))
    assert report.acct.totals.unpriced == report.acct.totals.calls == 2
    page = parse(render_html(report))
    (model_row,) = [r for r in rows(page, "models-table") if r[0] == "mystery-model"]
    assert model_row[-1] == "unpriced (2 calls)"
    assert page.texts["t-cost"] == "unpriced (2 calls)"
    calls_rows = [r for r in rows(page, "spans-table") if r[0].startswith("llm_call:")]
    assert [r[8] for r in calls_rows] == ["unpriced", "unpriced"]
    task_row = next(r for r in rows(page, "tasks-table") if r[0] == "t")
    assert task_row[11] == "unpriced"


def test_the_isolation_level_is_shown_when_the_run_records_it(tmp_path):
    """The sandbox records the isolation on the root (``orchestrator.sandbox``); a run of a
    version that does not is "not recorded"."""
    started = {
        "signal": "project_started",
        "correlation_id": "r",
        "parent_id": None,
        "project_id": "proj-i",
        "timestamp_ns": 1_000,
        "attributes": {},
        "description": "d",
        "criteria": "",
        "budget_usd": 1.0,
        "time_limit_seconds": 60.0,
        "attempt": 1,
    }
    finished = {
        **started,
        "signal": "project_finished",
        "timestamp_ns": 2_000,
        "start_timestamp_ns": 1_000,
        "status": "ok",
        "attributes": {"project.status": "success", "orchestrator.sandbox": "bwrap"},
    }
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(started) + "\n" + json.dumps(finished) + "\n")
    assert parse(render_html(build_report(events_from_files([path])))).texts["t-isolation"] == "bwrap"
    path.write_text(json.dumps(started) + "\n")
    assert parse(render_html(build_report(events_from_files([path])))).texts["t-isolation"] == "not recorded"
