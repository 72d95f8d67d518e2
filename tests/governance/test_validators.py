"""Validators: each built-in one, the pytest validator in each sandbox level this machine
offers (no loopback server of the host reachable, killed at its timeout with its
children, no key), per-task-type configuration, and the engine sending validation_failed."""

from __future__ import annotations

import textwrap
import time
import uuid

import pytest

from orchestrator.domain.budget import Budget
from orchestrator.domain.results import TaskStatus
from orchestrator.domain.tasks import Task, TaskType
from orchestrator.engine import Orchestrator
from orchestrator.governance.sandbox import Sandbox
from orchestrator.governance.validators import (
    ConfigError,
    ValidatorConfig,
    ValidatorSpec,
    json_valid,
    length,
    pytest_check,
    python_syntax,
    ruff_check,
    run_validators,
    validators_for,
)
from orchestrator.llm.client import UnifiedClient
from tests.sandboxes import BOXES, processes_with
from tests.scripted import ScriptedProvider


def _py(code: str) -> str:
    return f"```python\n{textwrap.dedent(code).strip()}\n```"


# -- the cheap ones -----------------------------------------------------------------------


def test_python_syntax():
    assert python_syntax(_py("def f():\n    return 1")).passed
    bad = python_syntax(_py("def f(:\n    return 1"))
    assert not bad.passed and bad.message.startswith("line 1:")
    assert python_syntax("x = [1, 2]").passed  # bare code, no fence
    assert not python_syntax("```python\n\n```").passed


def test_json_with_and_without_schema():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert json_valid('{"n": 1}').passed and json_valid('```json\n{"n": 1}\n```', schema=schema).passed
    assert not json_valid("{n: 1}").passed
    wrong = json_valid('{"n": "one"}', schema=schema)
    assert not wrong.passed and wrong.message.startswith("schema: n: 'one' is not of type 'integer'")
    missing = json_valid("{}", schema=schema)
    assert not missing.passed and "(root)" in missing.message and "'n' is a required property" in missing.message


def test_length():
    assert length("a b c", min_words=3, max_chars=10).passed
    short = length("a b", min_words=3)
    assert not short.passed and short.message == "answer has 2 words, fewer than min_words 3"
    assert length("x" * 11, max_chars=10).message == "answer has 11 characters, more than max_chars 10"


def test_ruff_finds_undefined_names():
    assert ruff_check(_py("def f(x):\n    return x + 1")).passed
    bad = ruff_check(_py("def f(x):\n    return y + 1"))
    assert not bad.passed and "F821" in bad.message and "`y`" in bad.message
    assert ruff_check(_py("import os"), select="F401").message.count("F401") == 1


# -- pytest: tests, smoke import, sandbox -------------------------------------------------


def test_pytest_runs_the_answers_tests():
    good = pytest_check(
        _py("""
        def add(a, b):
            return a + b

        def test_add():
            assert add(2, 3) == 5
    """)
    )
    assert good.passed and "1 passed" in good.message
    bad = pytest_check(
        _py("""
        def add(a, b):
            return a - b

        def test_add():
            assert add(2, 3) == 5
    """)
    )
    assert not bad.passed and "1 failed" in bad.message and "test_add" in bad.message


def test_pytest_smoke_imports_code_without_tests():
    assert pytest_check(_py("X = 1")).message == "import smoke test passed (the answer has no tests)"
    broken = pytest_check(_py("import no_such_module_xyz"))
    assert not broken.passed and "No module named 'no_such_module_xyz'" in broken.message


def test_tests_importing_the_solution_by_another_name_still_run():
    answer = (
        _py("def slug(s):\n    return s.lower()")
        + "\n\n"
        + _py("from slugger import slug\n\ndef test_slug():\n    assert slug('A') == 'a'")
    )
    result = pytest_check(answer)
    assert result.passed and "1 passed" in result.message


def _connecting_test(port: int) -> str:
    """An answer whose test connects to the host's loopback server (through the C-level
    ``_socket`` module: no Python-level guard is involved) and passes only if it got data."""
    return _py(f"""
        import _socket as s

        def test_reaches_the_server():
            conn = s.socket(s.AF_INET, s.SOCK_STREAM)
            conn.settimeout(5)
            conn.connect(("127.0.0.1", {port}))
            assert conn.recv(5) == b"hello"
    """)


@pytest.mark.parametrize("box", BOXES)
def test_the_pytest_validator_cannot_reach_a_loopback_server_outside(loopback_server, box):
    port, accepted = loopback_server
    # control: without isolation the very same test connects and passes
    assert pytest_check(_connecting_test(port), sandbox=Sandbox("none")).passed
    assert len(accepted) == 1
    result = pytest_check(_connecting_test(port), sandbox=box)
    assert not result.passed and "1 failed" in result.message, result.message
    assert "ConnectionRefusedError" in result.message or "refused" in result.message.lower(), result.message
    assert len(accepted) == 1  # no connection arrived


@pytest.mark.parametrize("box", BOXES)
def test_the_pytest_validator_is_killed_at_its_timeout_with_its_children(box):
    marker = f"orchestrator-test-{uuid.uuid4().hex}"
    answer = _py(f"""
        import subprocess
        import sys
        import time

        def test_sleeps_forever():
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", "{marker}"])
            while True:
                time.sleep(1)
    """)
    started = time.monotonic()
    result = pytest_check(answer, timeout=3, sandbox=box)
    elapsed = time.monotonic() - started
    assert not result.passed and result.message == "timed out after 3s (killed)"
    assert 3 <= elapsed < 15
    assert processes_with(marker) == []  # the test process and its child are gone


@pytest.mark.parametrize("box", BOXES)
def test_the_sandbox_holds_no_api_key(monkeypatch, box):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    answer = _py("import os\n\ndef test_env():\n    assert 'OPENAI_API_KEY' not in os.environ")
    assert pytest_check(answer, sandbox=box).passed
    assert pytest_check(answer, sandbox=Sandbox("none")).passed  # the environment is cleaned whatever the level


# -- configuration ------------------------------------------------------------------------


def test_defaults_per_task_type():
    def names(ttype: TaskType) -> list[str]:
        return [s.name for s in validators_for(Task("t", ttype, "p"))]

    assert names(TaskType.CODE_GENERATION) == ["not_empty", "python_syntax", "pytest"]
    assert names(TaskType.DATA_EXTRACTION) == ["not_empty", "json"]
    assert names(TaskType.SUMMARIZATION) == ["not_empty"]


def test_the_project_file_changes_them_per_type_and_per_task():
    cfg = ValidatorConfig.from_data(
        {
            "code_generation": ["python_syntax", {"ruff": {"select": ["F"]}}, {"pytest": {"timeout": 20}}],
            "summarization": [{"length": {"max_words": 5}}],
            "tasks": {"raw": ["not_empty"]},
        },
        "project.yaml",
    )
    code = cfg.for_task(Task("c", TaskType.CODE_GENERATION, "p"))
    assert [(s.name, dict(s.options)) for s in code] == [
        ("python_syntax", {}),
        ("ruff", {"select": "F"}),
        ("pytest", {"timeout": 20.0}),
    ]
    assert [s.name for s in cfg.for_task(Task("raw", TaskType.CODE_GENERATION, "p"))] == ["not_empty"]
    assert [s.name for s in cfg.for_task(Task("d", TaskType.DATA_EXTRACTION, "p"))] == ["not_empty", "json"]
    summary = Task("s", TaskType.SUMMARIZATION, "p")
    assert [r.passed for r in run_validators("one two three four five six", summary, cfg)] == [False]


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"code_generation": ["pylint"]}, "code_generation[0]: unknown validator 'pylint'"),
        (
            {"code_generation": [{"pytest": {"timout": 3}}]},
            "code_generation[0].pytest.timout: unknown option of pytest",
        ),
        ({"code_generation": [{"pytest": {"timeout": -1}}]}, "pytest.timeout: must be a finite number > 0"),
        ({"poetry": ["length"]}, "poetry: unknown task type 'poetry'"),
        ({"data_extraction": [{"json": {"schema": {"type": "objekt"}}}]}, "json.schema: not a valid JSON schema"),
        ({"summarization": [{"length": {"min_words": 9, "max_words": 3}}]}, "min_words 9 is more than max_words 3"),
        ({"code_generation": "pytest"}, "code_generation: must be a list of validators"),
    ],
)
def test_bad_validator_config_is_one_line(data, fragment):
    with pytest.raises(ConfigError) as info:
        ValidatorConfig.from_data(data, "project.yaml")
    text = str(info.value)
    assert text.startswith("project.yaml: ") and fragment in text and "\n" not in text, text


def test_expensive_validators_run_only_after_the_cheap_ones_pass():
    task = Task("t", TaskType.CODE_GENERATION, "p")
    cfg = ValidatorConfig({TaskType.CODE_GENERATION: [ValidatorSpec("python_syntax"), ValidatorSpec("pytest")]})
    results = run_validators(_py("def f(:"), task, cfg)
    assert [r.validator for r in results] == ["python_syntax"]
    assert [r.validator for r in run_validators(_py("X = 1"), task, cfg)] == ["python_syntax", "pytest"]
    assert [r.validator for r in run_validators(_py("X = 1"), task, cfg, skip=["pytest"])] == ["python_syntax"]


# -- in the engine ------------------------------------------------------------------------


async def test_configured_validators_run_in_the_engine_and_send_validation_failed(orchestrator_events):
    provider = ScriptedProvider(name="local", answer="far too many words for this task, really")
    tasks = [Task("s", TaskType.SUMMARIZATION, "summarize", max_iterations=1)]
    orch = Orchestrator(
        budget=Budget(1.0, 600),
        client=UnifiedClient({"local": provider}),
        project_tasks=tasks,
        validators={"summarization": [{"length": {"max_words": 3}}]},
    )
    state = await orch.run_project("p", "c")
    assert state.results["s"].status == TaskStatus.FAILED
    assert state.results["s"].error == "no output passed the validators"
    (event,) = orchestrator_events.of("validation_failed")
    assert event.validator == "length" and event.message == "answer has 8 words, more than max_words 3"
    assert event.task_id == "s" and event.iteration == 1
    assert provider.calls_of("evaluate") == []  # a rejected output is not scored by the LLM
