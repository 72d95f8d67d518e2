"""Choosing the isolation level: what this machine offers (CI installs bubblewrap, so the
bwrap level is tested wherever it is installed), the fallback to unshare, the refusal
where nothing works (simulated through the search path, not skipped), a probe that
notices a sandbox that does not hold, and the level a run used, in its summary, its span
and its resume."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import threading
import time
import uuid

import pytest

from orchestrator import attributes as attr
from orchestrator import cli
from orchestrator.domain.budget import Budget
from orchestrator.engine import Orchestrator
from orchestrator.governance.acceptance import parse_criteria, run_checks
from orchestrator.governance.sandbox import SandboxUnavailable, kill_running, probe, resolve
from orchestrator.llm.client import UnifiedClient
from orchestrator.state import RunStore
from tests.helpers import as_if_killed
from tests.sandboxes import BOXES, OFFERED, processes_with
from tests.scripted import ScriptedProvider
from tests.state import scripted_cli


def test_the_machine_offers_a_level_and_bwrap_wherever_it_is_installed():
    assert OFFERED, "no isolation level works here: the security suite would test nothing"
    if shutil.which("bwrap"):
        assert "bwrap" in OFFERED, probe("bwrap")
    assert resolve("auto").level == OFFERED[0]  # bwrap first


def _path_with(tmp_path, *tools: str) -> str:
    """A search path holding only ``tools`` (links to the real ones)."""
    where = tmp_path / f"bin-{'-'.join(tools)}"
    where.mkdir(exist_ok=True)
    for tool in tools:
        real = shutil.which(tool)
        assert real is not None, tool
        (where / tool).symlink_to(real)
    return str(where)


def test_auto_falls_back_to_unshare_without_bwrap(tmp_path):
    only_unshare = _path_with(tmp_path, "unshare")
    if "unshare" in OFFERED:
        box = resolve("auto", search_path=only_unshare)
        assert box.level == "unshare" and box.isolated
    else:  # user namespaces restricted here: the refusal names why unshare failed
        with pytest.raises(SandboxUnavailable, match="bwrap: bwrap is not installed; unshare: "):
            resolve("auto", search_path=only_unshare)


def test_nothing_available_is_one_line_naming_each_level_and_the_opt_in(tmp_path):
    with pytest.raises(SandboxUnavailable) as info:
        resolve("auto", search_path=_path_with(tmp_path))
    message = str(info.value)
    assert message == (
        "no sandbox for model-written code here (bwrap: bwrap is not installed; unshare: unshare is "
        "not installed); install bubblewrap (e.g. apt-get install bubblewrap), or pass --sandbox none "
        "to run that code without isolation"
    )
    assert resolve("none", search_path=_path_with(tmp_path)).isolated is False  # the opt-in needs nothing


def test_the_probe_notices_a_sandbox_that_does_not_hold(tmp_path):
    """A 'bwrap' that runs the command without isolating anything is refused."""
    where = tmp_path / "fake"
    where.mkdir()
    fake = where / "bwrap"
    fake.write_text('#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done\nshift\nexec "$@"\n', encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    why = probe("bwrap", str(where))
    assert why is not None and why.startswith("the sandbox does not hold: not pid 1 of its own pid namespace")
    assert "other processes are visible" in why and "network interfaces other than loopback" in why
    assert not os.path.exists("/.orchestrator-probe")
    with pytest.raises(SandboxUnavailable, match="sandbox bwrap cannot run here: the sandbox does not hold"):
        resolve("bwrap", search_path=str(where))


@pytest.mark.parametrize("box", BOXES)
def test_an_interrupted_run_kills_its_sandboxes_at_once(box):
    """Ctrl-C (the command line calls kill_running): the check's whole sandbox goes."""
    marker = f"orchestrator-interrupted-{uuid.uuid4().hex}"
    answer = (
        "```python\nimport os, time\nif os.fork() == 0:\n    os.setsid()\n"
        f"    os.execv('/bin/sh', ['/bin/sh', '-c', 'sleep 60', '{marker}'])\n"
        "def spin():\n    while True:\n        time.sleep(1)\n```"
    )
    reports = []
    thread = threading.Thread(
        target=lambda: reports.append(
            run_checks(answer, parse_criteria("spin() is None").checks, sandbox=box, timeout=60)
        )
    )
    thread.start()
    deadline = time.monotonic() + 20
    while not processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker), "the check never started"
    started = time.monotonic()
    assert kill_running() >= 1
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 3
    (result,) = reports[0].results
    assert not result.passed and result.error_type == "SandboxError" and "stopped (signal 9)" in result.error
    assert processes_with(marker) == []


# -- the level a run used ------------------------------------------------------------------------

CODE = "```python\ndef add(a, b):\n    return a + b\n```"


@pytest.mark.parametrize("level", [*OFFERED, "none"])
def test_the_run_records_its_level_in_the_summary_and_on_its_span(level, span_exporter):
    provider = ScriptedProvider(answer=CODE)
    orch = Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({"local": provider}), sandbox=level)
    state = asyncio.run(orch.run_project("Write add(a, b)", "add(1, 1) == 2"))
    assert state.sandbox == level and state.to_dict()["sandbox"] == level
    assert state.results["add"].checks[0]["passed"] is True
    root = span_exporter.by_name("run_project")
    assert root.attributes[attr.ORCHESTRATOR_SANDBOX] == level
    assert any("WITHOUT isolation" in n for n in state.notes) == (level == "none")


def test_a_run_refuses_before_any_work_where_no_sandbox_works(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_with(tmp_path))
    provider = ScriptedProvider(answer=CODE)
    store = RunStore(tmp_path / "state")
    orch = Orchestrator(budget=Budget(1.0, 600), client=UnifiedClient({"local": provider}), store=store)
    with pytest.raises(SandboxUnavailable):
        asyncio.run(orch.run_project("Write add(a, b)", "add(1, 1) == 2"))
    assert provider.requests == [] and store.runs() == []


def test_an_unknown_level_is_refused_at_construction():
    with pytest.raises(ValueError, match="unknown sandbox 'docker'"):
        Orchestrator(sandbox="docker")


# -- resume keeps the run's choice ----------------------------------------------------------------


def test_resume_keeps_the_runs_sandbox_unless_it_names_another(tmp_path, scripted, capsys):
    state, out, level = tmp_path / "state", tmp_path / "out", OFFERED[-1]
    cli.main([*scripted_cli.ARGS, "--state-dir", str(state), "-o", str(out), "--sandbox", level])
    pid = RunStore(state).runs()[0].project_id
    as_if_killed(state, pid, ("epsilon",))
    capsys.readouterr()
    cli.main(["resume", pid, "--state-dir", str(state)])
    assert f"; sandbox {level}" in capsys.readouterr().out
    as_if_killed(state, pid, ("epsilon",))
    cli.main(["resume", pid, "--state-dir", str(state), "--sandbox", "none"])
    captured = capsys.readouterr()
    assert "sandbox NONE (unisolated)" in captured.out and "--sandbox none: model-written code" in captured.err
