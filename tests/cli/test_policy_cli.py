"""The CLI side of policies: ``--policy FILE``, the project file's policies / remediation /
validators sections, ``orchestrator policy check FILE``, one-line errors with exit 2, and
a project the policies leave no model for (exit 3, nothing spent, results kept)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import cli
from orchestrator.domain.results import ProjectState, ProjectStatus
from orchestrator.domain.tasks import TaskType
from orchestrator.engine import Orchestrator
from orchestrator.governance.policy import EnforcementMode
from orchestrator.governance.remediation import Strategy, Trigger

ROOT = Path(__file__).resolve().parents[2]

GOOD_POLICY = """\
policies:
  - name: no_cn
    allowed_regions: [us, local]
  - name: cost
    max_cost_per_call_usd: 0.05
    enforcement_mode: soft
task_types:
  code_generation:
    - name: cost
      enforcement_mode: monitor
tasks:
  secret:
    - name: offline
      requires: [offline]
"""


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch, tmp_path):
    """No remote provider is usable, so only the local model can satisfy a policy."""
    import os

    for name in list(os.environ):
        if name.endswith(("_API_KEY", "_TOKEN")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no ./.env is read


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# (file name, content, key in the message, reason fragment)
MALFORMED = [
    ("unknown_key.yaml", "polices:\n  - name: a\n", "polices", "unknown key 'polices' (did you mean 'policies'?"),
    (
        "unknown_policy_key.yaml",
        "policies:\n  - name: a\n    blocked_provider: [openai]\n",
        "policies[0].blocked_provider",
        "unknown key 'blocked_provider' (did you mean 'blocked_providers'?",
    ),
    (
        "unknown_mode.yaml",
        "policies:\n  - name: a\n    enforcement_mode: strict\n",
        "policies[0].enforcement_mode",
        "unknown mode 'strict' (known: hard, soft, monitor)",
    ),
    (
        "unknown_model.json",
        '{"policies": [{"name": "a", "blocked_models": ["gpt-9"]}]}',
        "policies[0].blocked_models",
        "unknown model 'gpt-9'",
    ),
    (
        "unknown_provider.yaml",
        "policies:\n  - name: a\n    allowed_providers: [opneai]\n",
        "policies[0].allowed_providers",
        "unknown provider 'opneai' (did you mean 'openai'?",
    ),
    (
        "allowed_and_blocked.yaml",
        "policies:\n  - name: a\n    allowed_providers: [openai, local]\n    blocked_providers: [openai]\n",
        "policies[0].allowed_providers",
        "provider 'openai' is both allowed and blocked",
    ),
    (
        "empty_allowed.yaml",
        "policies:\n  - name: a\n    allowed_providers: []\n",
        "policies[0].allowed_providers",
        "empty list allows nothing",
    ),
    (
        "disjoint.yaml",
        "policies:\n  - name: a\n    allowed_providers: [openai]\n  - name: b\n    allowed_providers: [local]\n",
        "policies",
        "policies a, b together leave no provider",
    ),
    ("bad_type.yaml", "task_types:\n  poetry:\n    - name: a\n", "task_types.poetry", "unknown task type 'poetry'"),
    ("bad_yaml.yaml", "policies:\n  - name: [unclosed\n", "", "not valid YAML (line 3: expected ',' or ']'"),
    ("bad_json.json", '{"policies": [}', "", "not valid JSON (line 1"),
    ("empty.yaml", "\n", "", "empty policy file"),
]


@pytest.mark.parametrize("name, content, key, reason", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_policy_files_are_one_line_and_exit_2(tmp_path, capsys, name, content, key, reason):
    path = _write(tmp_path, name, content)
    expected = f"orchestrator: error: {path}: " + (f"{key}: " if key else "")
    for argv in (["-p", "x", "--policy", path], ["policy", "check", path]):
        assert cli.main(argv) == cli.EXIT_USAGE, argv
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert err.startswith(expected) and reason in err, (argv, err)
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert captured.out == ""


def test_a_missing_policy_file(tmp_path, capsys):
    assert cli.main(["-p", "x", "--policy", str(tmp_path / "nope.yaml")]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip() == f"orchestrator: error: {tmp_path / 'nope.yaml'}: no such policy file"


def test_malformed_files_through_a_real_process(tmp_path):
    path = _write(tmp_path, "p.yaml", "policies:\n  - name: a\n    enforcement_mode: strict\n")
    for argv in (["-p", "x", "--policy", path], ["policy", "check", path]):
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={**_env(), "PYTHONPATH": str(ROOT)},
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == (
            f"orchestrator: error: {path}: policies[0].enforcement_mode: unknown "
            "mode 'strict' (known: hard, soft, monitor)"
        )
        assert proc.stdout == ""


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_TOKEN"))}


# -- policy check ---------------------------------------------------------------------------


def test_policy_check_a_good_file(tmp_path, capsys):
    path = _write(tmp_path, "policies.yaml", GOOD_POLICY)
    assert cli.main(["policy", "check", path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: ok (policy file): 2 global policies, overrides for 1 task type and 1 task"
    by_type = {line.split(":")[0].strip(): line for line in out[1:]}
    assert set(by_type) == {t.value for t in TaskType}
    assert "deepseek-v4-pro" not in by_type["code_generation"]  # region cn is not allowed
    assert "smollm2-135m" in by_type["code_generation"] or "(+" in by_type["code_generation"]


def test_policy_check_a_file_no_model_satisfies(tmp_path, capsys):
    path = _write(
        tmp_path,
        "none.yaml",
        "policies:\n  - name: x\n    requires: [offline]\n  - name: y\n    blocked_providers: [local]\n",
    )
    assert cli.main(["policy", "check", path]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"orchestrator: error: {path}: no catalog model satisfies the policies for any task type; "
        "a run would stop before spending anything"
    )


def test_policy_check_a_project_file(tmp_path, capsys):
    path = _write(
        tmp_path,
        "project.yaml",
        """\
project: Build a rate limiter
tasks:
  - id: limiter
    type: code_generation
    prompt: write it
policies:
  - name: offline
    requires: [offline]
remediation:
  llm_error: [fallback_model, abort_task]
validators:
  code_generation: [python_syntax]
""",
    )
    assert cli.main(["policy", "check", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: ok (project file): 1 global policy")
    assert "remediation: llm_error: fallback_model x1, abort_task x1;" in out
    assert "validators: changed for code_generation" in out


@pytest.mark.parametrize("argv", [["policy"], ["policy", "lint", "f"], ["policy", "check"]])
def test_policy_command_usage(argv, capsys):
    assert cli.main(argv) == 2
    assert "usage: orchestrator policy check FILE" in capsys.readouterr().err


# -- the project file's sections ------------------------------------------------------------


@pytest.mark.parametrize(
    "section, fragment",
    [
        (
            "policies:\n  - name: a\n    enforcement_mode: strict\n",
            "policies[0].enforcement_mode: unknown mode 'strict'",
        ),
        ("remediation:\n  llm_error: [retry]\n", "remediation.llm_error[0]: unknown strategy 'retry'"),
        ("validators:\n  code_generation: [pylint]\n", "validators.code_generation[0]: unknown validator 'pylint'"),
        (
            "tasks:\n  - id: a\n    prompt: p\npolicies:\n  tasks:\n    b:\n      - name: x\n        requires: [offline]\n",
            "policies.tasks.b: no task has the id 'b' (tasks: a)",
        ),
    ],
)
def test_malformed_project_file_sections(tmp_path, capsys, section, fragment):
    path = _write(tmp_path, "project.yaml", "project: x\n" + section)
    assert cli.main(["-f", path]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"orchestrator: error: {path}: ") and fragment in err and len(err.splitlines()) == 1, err


def test_the_project_files_sections_and_the_policy_flag_reach_the_engine(tmp_path, monkeypatch, capsys):
    seen: dict[str, Orchestrator] = {}

    async def fake_run(self, description, criteria, project_id=None):
        seen["orch"] = self
        state = ProjectState(project_id="p1", description=description, criteria=criteria, budget=self.budget)
        state.status = ProjectStatus.SUCCESS
        return state

    monkeypatch.setattr(Orchestrator, "run_project", fake_run)
    project = _write(
        tmp_path,
        "project.yaml",
        """\
project: x
policies:
  - name: where
    allowed_providers: [anthropic]
  - name: spend
    max_cost_per_task_usd: 1
remediation:
  llm_error: [{fallback_model: 2}]
validators:
  summarization: [{length: {max_words: 50}}]
""",
    )
    flag = _write(
        tmp_path,
        "flag.json",
        json.dumps(
            {
                "policies": [{"name": "where", "allowed_providers": ["local"]}],
                "task_types": {"summarization": [{"name": "spend", "enforcement_mode": "monitor"}]},
            }
        ),
    )
    assert cli.main(["-f", project, "--policy", flag, "--no-cache", "-q"]) == cli.EXIT_OK
    orch = seen["orch"]
    where, spend = orch.policies.global_policies
    assert where.allowed_providers == ("local",)  # the flag's file wins by name...
    assert spend.max_cost_per_task_usd == 1.0  # ...and the project file's other policy stays
    summary_spend = {p.name: p for p in orch.policies.for_type(TaskType.SUMMARIZATION)}["spend"]
    assert summary_spend.enforcement_mode == EnforcementMode.MONITOR and summary_spend.max_cost_per_task_usd == 1.0
    assert [str(s) for s in orch.remediation.config.plan(Trigger.LLM_ERROR)] == ["fallback_model x2"]
    assert orch.remediation.config.plan(Trigger.VALIDATION_FAILED)[0].strategy == Strategy.ADJUST_PROMPT
    assert [(s.name, dict(s.options)) for s in orch.validators.by_type[TaskType.SUMMARIZATION]] == [
        ("length", {"max_words": 50})
    ]


# -- a project no model may run -------------------------------------------------------------


def test_a_project_the_policies_block_exits_3_with_nothing_spent_and_results_kept(tmp_path, capsys):
    path = _write(tmp_path, "p.yaml", "policies:\n  - name: anthropic_only\n    allowed_providers: [anthropic]\n")
    out_dir, events = tmp_path / "out", tmp_path / "events.jsonl"
    code = cli.main(
        [
            "-p",
            "Write add(a, b)",
            "-c",
            "works",
            "--policy",
            path,
            "--cache-dir",
            str(tmp_path / "c"),
            "-o",
            str(out_dir),
            "--events-jsonl",
            str(events),
            "-q",
        ]
    )
    assert code == cli.EXIT_POLICY_BLOCKED == 3
    err = capsys.readouterr().err.strip()
    assert err == (
        "orchestrator: error: project: no usable model satisfies the policies anthropic_only for any "
        "task; nothing was run or spent: smollm2-135m: provider 'local' not in allowed_providers "
        "['anthropic'] (anthropic_only)"
    )
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["budget"]["spent_usd"] == 0
    assert summary["notes"] == [err.removeprefix("orchestrator: error: ")]
    recorded = [json.loads(line)["signal"] for line in events.read_text().splitlines()]
    assert recorded[0] == "project_started" and recorded[-1] == "project_finished"
    assert not any(s.startswith("llm_call") for s in recorded)


def test_the_project_files_policies_are_enforced_too_in_a_real_process(tmp_path):
    path = _write(
        tmp_path,
        "project.yaml",
        "project: Write add(a, b)\npolicies:\n  - name: no_local\n    blocked_providers: [local]\n",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "-f", path, "--cache-dir", str(tmp_path / "c")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**_env(), "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().startswith(
        "orchestrator: error: project: no usable model satisfies the policies "
        "no_local for any task; nothing was run or spent"
    )
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
