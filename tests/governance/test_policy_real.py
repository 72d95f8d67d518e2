"""Issue 5's "done when": the seed's whole span tree - run_project > task > llm_call /
policy_check / remediation - from a real run on the embedded SmolLM2 model in which a
policy blocks a model and a provider fails every call.

The failing provider is scripted (no network in tests); everything else is real: the
local model plans and does the work, the policies are checked by the engine, and the
remediation engine falls back to the local model.
"""

from __future__ import annotations

import asyncio

from orchestrator import cli
from orchestrator.cli import wiring
from orchestrator.domain.budget import Budget
from orchestrator.domain.results import TaskStatus
from orchestrator.domain.tasks import TaskType
from orchestrator.engine import Orchestrator
from orchestrator.llm.catalog import LOCAL_MODEL
from orchestrator.llm.client import UnifiedClient
from orchestrator.llm.providers.base import ProviderError
from orchestrator.llm.providers.local import LocalProvider
from tests.helpers import no_sleep
from tests.scripted import ScriptedProvider


def _providers(local_model: str | None = None) -> dict:
    """The real local model; Anthropic failing every call with a 503; Google answering
    fine but blocked by the policies (it must never be called)."""
    overloaded = ProviderError("503 overloaded", transient=True, status_code=503)
    return {
        "local": LocalProvider(local_model),
        "anthropic": ScriptedProvider(name="anthropic", answer=overloaded, plan=overloaded),
        "google": ScriptedProvider(name="google"),
    }


# Google is blocked everywhere.  Anthropic is blocked for project-level calls (the
# planner), but each task type overrides that policy to monitor mode, so tasks try it
# first (every task type routes to an Anthropic model before the local one) and it fails.
POLICIES = {
    "policies": [
        {"name": "no_google", "blocked_providers": ["google"]},
        {"name": "plan_offline", "blocked_providers": ["anthropic"]},
    ],
    "task_types": {t.value: [{"name": "plan_offline", "enforcement_mode": "monitor"}] for t in TaskType},
}


def test_the_seed_span_tree_in_a_real_run_where_a_policy_blocks_and_a_call_fails(span_exporter):
    provs = _providers()
    # the full profile: the seed's whole loop (decompose, generate, critique, revise), on the local model
    orch = Orchestrator(
        budget=Budget(1.0, 900),
        client=UnifiedClient(provs, sleep=no_sleep),
        max_tasks=1,
        policies=POLICIES,
        profile="full",
    )
    state = asyncio.run(orch.run_project("Write a Python function add(a, b) that returns a + b", "add(1, 1) == 2"))
    assert provs["google"].requests == []  # blocked: never sent anything
    assert provs["anthropic"].requests  # tried, and failed

    ex = span_exporter
    root = ex.by_name("run_project")
    assert root.parent is None and root.attributes["project.status"] == state.status.value
    children = [s for s in ex.spans() if ex.parent_of(s) is root]
    names = [s.name for s in children]
    # the plan: the local model decomposed, after the planner's policy checks refused the others
    decompositions = [s for s in children if s.name == "llm_call:decompose"]  # a second try if unusable
    assert 1 <= len(decompositions) <= 2
    assert all(
        s.attributes["llm.model"] == LOCAL_MODEL and s.attributes["gen_ai.usage.output_tokens"] > 0
        for s in decompositions
    )
    planner_checks = [
        (s.attributes["policy.model"], s.attributes["policy.passed"]) for s in children if s.name == "policy_check"
    ]
    assert planner_checks[-1] == (LOCAL_MODEL, True)
    assert all(not passed for _, passed in planner_checks[:-1]) and len(planner_checks) >= 2

    tasks = [s for s in children if s.name.startswith("task:")]
    assert len(tasks) == len(state.tasks) == 1 and set(names) == {"llm_call:decompose", "policy_check", tasks[0].name}
    task = tasks[0]
    result = state.results[task.name.removeprefix("task:")]
    # the 135M model's code may or may not pass the validators; it did the work either way
    assert result.model_used == LOCAL_MODEL and result.iterations >= 1 and result.status != TaskStatus.SKIPPED
    assert task.status.status_code.name != "ERROR"
    under_task = [s for s in ex.spans() if ex.parent_of(s) is task]
    kinds = {s.name.split(":")[0] for s in under_task}
    assert {"llm_call", "policy_check", "remediation"} <= kinds

    # policy_check: a blocked one (Google) and passed ones, under the task (the checks of
    # a fallback sit in its remediation span: they are part of that attempt)
    subtree = _descendants(ex, task)
    checks = {
        (s.attributes["policy.model"], s.attributes["policy.passed"]) for s in subtree if s.name == "policy_check"
    }
    assert any(not passed and model.startswith("gemini") for model, passed in checks), checks
    assert (LOCAL_MODEL, True) in checks

    # the failing calls, and the remediation that moved the task to the local model
    failed_calls = [s for s in ex.spans("llm_call:") if s.status.status_code.name == "ERROR"]
    assert failed_calls and {s.attributes["llm.model"].split("-")[0] for s in failed_calls} == {"claude"}
    assert all(s in subtree for s in failed_calls)
    remediations = [s for s in under_task if s.name == "remediation"]
    assert {r.attributes["remediation.trigger"] for r in remediations} >= {"llm_error"}
    (to_local,) = [r for r in remediations if r.attributes.get("remediation.to_model") == LOCAL_MODEL]
    assert to_local.attributes["remediation.strategy"] == "fallback_model"
    assert to_local.attributes["remediation.success"] is True
    local_calls = [
        s for s in ex.spans("llm_call:") if ex.parent_of(s) is to_local and s.attributes["llm.model"] == LOCAL_MODEL
    ]
    assert {"llm_call:generate", "llm_call:revise"} <= {s.name for s in local_calls}
    assert all(s.attributes["gen_ai.usage.output_tokens"] > 0 for s in local_calls)
    # nothing is left open, nothing is cut loose
    assert all(s.end_time is not None for s in ex.spans())
    assert all(ex.parent_of(s) is not None for s in ex.spans() if s is not root)


def _descendants(ex, span) -> list:
    out, frontier = [], [span]
    while frontier:
        parent = frontier.pop()
        kids = [s for s in ex.spans() if ex.parent_of(s) is parent]
        out += kids
        frontier += kids
    return out


def test_the_cli_dev_tree_shows_policy_checks_and_remediations(tmp_path, monkeypatch, capsys):
    """The same situation through the CLI (project file policies, --tracing without an
    endpoint): the printed tree has the blocked and passed checks and the fallback."""
    monkeypatch.setattr(wiring, "build_providers", lambda args: _providers(args.local_model))
    monkeypatch.setenv("COLUMNS", "250")  # one line per tree node
    project = tmp_path / "project.yaml"
    project.write_text(
        "project: Summarize why tests matter\n"
        "criteria: one short paragraph\n"
        "tasks:\n"
        "  - id: why\n"
        "    type: summarization\n"
        "    prompt: In two sentences, say why automated tests matter.\n"
        "    max_iterations: 1\n"
        "    max_output_tokens: 128\n"
        "policies:\n"
        "  - name: no_google\n"
        "    blocked_providers: [google]\n",
        encoding="utf-8",
    )
    code = cli.main(["-f", str(project), "--tracing", "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert code in (cli.EXIT_OK, cli.EXIT_RUN_FAILED)
    tree = out[out.index("Total:") :]
    lines = [ln for ln in tree.splitlines() if "policy_check" in ln or "remediation" in ln]
    assert "run_project" in tree and "llm_call:generate" in tree
    assert any("policy_check" in ln and "gemini-3.5-flash-lite" in ln and "blocked" in ln for ln in lines), tree
    assert any("policy_check" in ln and LOCAL_MODEL in ln and "passed" in ln for ln in lines), tree
    assert any("remediation" in ln and "fallback_model (llm_error)" in ln and "succeeded" in ln for ln in lines), tree
    task_line = next(ln for ln in tree.splitlines() if "task:why" in ln)
    indent = len(task_line) - len(task_line.lstrip("│├└─ "))
    for ln in lines:  # every check and remediation is drawn under the task
        assert len(ln) - len(ln.lstrip("│├└─ ")) > indent, ln
