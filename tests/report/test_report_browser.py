"""The report in a real browser: headless Chromium, the file opened from ``file://`` with
the network blocked.  README's quick start really run on the embedded model with
``--report``; hostile text in every field; a 1,000-task run.  Never skipped: without a
Chromium the tests fail (``.ci/run`` installs it)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from bench.report import record_run
from orchestrator.report import build_report, events_from_files, render_html
from tests.report import browser
from tests.report.pages import parse, rows

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ["-p", "Write a Python function add(a, b) that returns a + b", "-c", "add(1, 1) == 2"]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """README's first command with ``--report``, on the embedded model, as a user runs it."""
    d = tmp_path_factory.mktemp("quickstart")
    env = {**os.environ, "ORCHESTRATOR_STATE_DIR": str(d / "state"), "XDG_CONFIG_HOME": str(d / "config")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            *QUICKSTART,
            "--report",
            str(d / "r.html"),
            "--cache-dir",
            str(d / "cache"),
            "-o",
            str(d / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Report written to {d / 'r.html'}" in " ".join(proc.stdout.split())
    return d, json.loads((d / "out" / "summary.json").read_text())


def test_the_quickstart_report_opens_offline_and_agrees_with_the_summary(quickstart):
    d, summary = quickstart
    page = browser.load(d / "r.html")
    assert page.console == []  # no error, no CSP violation, nothing logged
    dom = parse(page.dom)
    usage = summary["usage"]
    assert usage["llm_calls"] == 1 and summary["status"] == "success"
    assert dom.bars["task"] == 1 and dom.bars["llm"] == 1
    assert dom.texts["t-calls"] == "1"
    assert dom.texts["t-tokens"] == f"{usage['input_tokens']:,} / {usage['output_tokens']:,}"
    assert dom.texts["t-cost"] == "$0.000000 of $8.000000" and dom.texts["t-status"] == "success"
    assert dom.texts["t-models"] == "smollm2-135m" and dom.texts["t-profile"] == "local"
    assert rows(dom, "checks-table") == [["add", "1", "draft", "add(1, 1) == 2", "passed", ""]]
    (task,) = [r for r in rows(dom, "tasks-table") if r[0] == "add"]
    assert task[2] == "completed" and task[4] == "no evaluator score: the acceptance checks passed (1/1)"
    assert (dom.data["totals"]["tokens_in"], dom.data["totals"]["tokens_out"]) == (
        usage["input_tokens"],
        usage["output_tokens"],
    )
    assert 'id="tl-controls" hidden' not in page.dom  # the script ran: the timeline's controls are shown


def test_a_screenshot_of_the_report_is_not_blank(quickstart):
    d, _ = quickstart
    page = browser.load(d / "r.html", screenshot=True, width=1000, height=700)
    assert page.screenshot is not None
    assert browser.png_colours(page.screenshot) > 40  # text, bars, boxes: a blank page has 1 or 2


def test_the_static_parts_show_without_javascript(quickstart):
    d, summary = quickstart
    page = browser.load(browser.without_scripts(d / "r.html"), screenshot=True, width=1000, height=700)
    assert page.screenshot is not None and browser.png_colours(page.screenshot) > 40
    dom = parse(page.dom)
    assert dom.bars["task"] == 1 and dom.bars["llm"] == 1 and dom.texts["t-calls"] == "1"
    assert rows(dom, "checks-table")[0][4] == "passed"
    assert 'id="tl-controls" hidden' in page.dom  # buttons that need the script stay hidden
    assert "task:add" in dom.texts["spans-table"]


def _rows_differing(first: bytes, second: bytes) -> set[int]:
    """The indexes of the pixel rows two PNG screenshots differ in (a row only one has
    counts)."""
    (_, a), (_, b) = browser.png_rows(first), browser.png_rows(second)
    return {i for i in range(max(len(a), len(b))) if i >= len(a) or i >= len(b) or a[i] != b[i]}


def test_the_report_opens_in_firefox_and_its_script_runs_there(quickstart):
    """Firefox, from ``file://``, network blocked: the page draws, and our script (allowed
    by its hash in the Content-Security-Policy) runs: it shows the timeline's controls,
    which the same page without scripts leaves hidden, so the two screenshots differ."""
    d, _ = quickstart
    with_script = browser.firefox_screenshot(d / "r.html")
    without = browser.firefox_screenshot(browser.without_scripts(d / "r.html"))
    again = browser.firefox_screenshot(browser.without_scripts(d / "r.html"))
    assert browser.png_colours(with_script) > 40 and browser.png_colours(without) > 40
    # Firefox may draw a few rows differently from one screenshot to the next (seen once in
    # CI): the rows two drawings without scripts disagree on are noise; the script must
    # change rows the page draws the same every time (the controls it shows)
    noise = _rows_differing(without, again)
    assert _rows_differing(with_script, without) - noise


def test_the_report_of_the_quickstart_by_project_id_is_the_same(quickstart, tmp_path):
    from orchestrator.cli.main import main

    d, summary = quickstart
    os.environ["ORCHESTRATOR_STATE_DIR"] = str(d / "state")  # restored by the autouse fixture
    assert main(["report", summary["project_id"], "-o", str(tmp_path / "again.html")]) == 0
    assert parse((tmp_path / "again.html").read_text()).data == parse((d / "r.html").read_text()).data


# -- hostile content ---------------------------------------------------------------------------

PWNED = "#ff00ff"
"""What every payload's script also does: turn the page magenta, which a screenshot shows."""
PAYLOADS = (
    "<img src=x onerror=\"document.body.setAttribute('data-pwned','img');document.body.style.background='#ff00ff'\">",
    "</script><script>document.body.setAttribute('data-pwned','script');"
    "document.body.style.background='#ff00ff'</script>",
    "<svg onload=\"document.body.setAttribute('data-pwned','svg')\"><script>"
    "document.body.setAttribute('data-pwned','svg-script');document.body.style.background='#ff00ff'</script></svg>",
    "\"'><iframe srcdoc=\"<script>parent.document.body.setAttribute('data-pwned','iframe');"
    "parent.document.body.style.background='#ff00ff'</script>\">",
    "<style>body{display:none}</style><!-- \u2028\u2029 ]]> <![CDATA[",
)
STRUCTURE = {"signal", "correlation_id", "parent_id"}


def _poison(value):
    """Every text gets a payload (the same text the same one, so ids still match)."""
    if isinstance(value, str):
        return value + PAYLOADS[zlib.crc32(value.encode()) % len(PAYLOADS)]
    if isinstance(value, dict):
        return {k: (v if k in STRUCTURE else _poison(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_poison(v) for v in value]
    return value


def _hostile_events(tmp_path: Path) -> Path:
    """A real scripted run's events (a remediation, failures, captured content), every
    text in every field - task ids, model names, error texts, completions - poisoned."""
    from orchestrator import Budget, Orchestrator, UnifiedClient
    from orchestrator.llm.providers.base import ProviderError
    from orchestrator.observers.recorder import EventRecorder
    from tests.scripted import ScriptedProvider, decomposition

    answers = iter(["fine", ProviderError("boom", transient=True, error_type="Overloaded")] + ["fine"] * 50)
    provider = ScriptedProvider(
        plan=decomposition(
            {"id": "a", "type": "summarization", "prompt": "Summarise a.", "depends_on": []},
            {"id": "b", "type": "creative_writing", "prompt": "Write b.", "depends_on": ["a"]},
        ),
        answer=lambda request: next(answers),
        score=0.5,
    )
    raw = tmp_path / "raw.jsonl"
    with EventRecorder(jsonl_path=raw, mode="w", include_content=True):
        asyncio.run(
            Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({"local": provider})).run_project(
                "Hostile", "prose"
            )
        )
    lines = [json.loads(line) for line in raw.read_text().splitlines()]
    assert any(e["signal"] == "remediation_started" for e in lines)
    assert any(e.get("status") == "error" for e in lines) and any(e.get("completion") for e in lines)
    poisoned = tmp_path / "hostile.jsonl"
    poisoned.write_text("".join(json.dumps(_poison(e)) + "\n" for e in lines))
    return poisoned


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    report = build_report(events_from_files([_hostile_events(d)]), notes=[PAYLOADS[0], PAYLOADS[1]])
    html = render_html(report)
    return d, html, report


def _assert_inert(page_dom: str, console: list[str]) -> None:
    dom = parse(page_dom)
    assert "data-pwned" not in dom.body_attrs  # no payload's script ran (each would set it)
    assert "data-pwned=" not in page_dom.replace("&#39;", "'").split("<body", 1)[1].split(">", 1)[0]
    assert dom.tags["img"] == dom.tags["iframe"] == dom.tags["style"] - 1 == 0
    assert dom.handlers == []
    assert [s.get("type") for s in dom.scripts] == ["application/json", None]  # ours, and only ours
    assert dom.data is not None and dom.data["project_id"].startswith("proj-")
    assert console == []


def test_hostile_text_is_inert_in_the_file(hostile):
    _, html, report = hostile
    dom = parse(html)
    assert dom.handlers == [] and dom.tags["img"] == dom.tags["iframe"] == 0
    assert len(dom.scripts) == 2 and dom.tags["style"] == 1
    assert "</script><script>" not in html.split('id="report-data">', 1)[1].split("</script>", 1)[0]
    assert dom.data["project_id"] == report.project_id  # the data block still parses back
    assert sum(1 for c in report.content if PAYLOADS[0] in c.completion + c.prompt + c.system) >= 1


def test_hostile_text_runs_nothing_in_the_browser(hostile):
    d, html, report = hostile
    (d / "hostile.html").write_text(html)
    page = browser.load(d / "hostile.html")
    _assert_inert(page.dom, page.console)
    bars = parse(page.dom).bars  # the page still works
    assert bars["task"] == len(report.attempts[0].tasks) >= 1 and bars["llm"] == len(report.attempts[0].calls) >= 3


def test_escaping_alone_holds_without_the_content_security_policy(hostile):
    """The policy is the second line: with it removed, escaping still runs nothing."""
    d, html, _ = hostile
    start = html.index('<meta http-equiv="Content-Security-Policy"')
    bare = html[:start] + html[html.index(">", start) + 1 :]
    (d / "no-csp.html").write_text(bare)
    page = browser.load(d / "no-csp.html")
    _assert_inert(page.dom, page.console)


def test_hostile_text_runs_nothing_in_firefox(hostile):
    """Every payload's script would turn the page magenta; Firefox's screenshot has none of
    it, and the page still draws (the ``display:none`` payload did not apply either)."""
    d, html, _ = hostile
    (d / "hostile-firefox.html").write_text(html)
    shot = browser.firefox_screenshot(d / "hostile-firefox.html")
    assert bytes.fromhex(PWNED[1:]) not in browser.png_palette(shot, step=2)
    assert browser.png_colours(shot) > 40


def test_the_firefox_check_sees_a_payload_that_runs(tmp_path):
    """The check above can fail: a page where one payload does run is seen as magenta."""
    page = tmp_path / "pwned.html"
    page.write_text(
        "<!doctype html><html><body><p>report</p>" + PAYLOADS[1].split("</script>", 1)[1] + "</body></html>"
    )
    assert bytes.fromhex(PWNED[1:]) in browser.png_palette(browser.firefox_screenshot(page), step=2)


# -- scale -------------------------------------------------------------------------------------


def test_a_thousand_task_report_renders_and_grows_linearly(tmp_path):
    """Size grows with the tasks, linearly; the 1,000-task page loads whole in the browser.
    (How fast is a figure, not a test: ``bench/report.py`` prints it.)"""
    sizes, calls = {}, {}
    for n in (500, 1000):
        events = tmp_path / f"events{n}.jsonl"
        record_run(n, events)
        report = build_report(events_from_files([events]))
        calls[n] = report.acct.totals.calls
        html = render_html(report)
        (tmp_path / f"r{n}.html").write_text(html)
        sizes[n] = len(html.encode())
    assert 1.9 <= sizes[1000] / sizes[500] <= 2.1  # linear: twice the tasks, twice the bytes
    page = browser.load(tmp_path / "r1000.html")
    dom = parse(page.dom)
    assert dom.bars["task"] == 1000 and dom.bars["llm"] == calls[1000] >= 4000 and page.console == []
    assert dom.texts["t-calls"] == f"{calls[1000]}"
