"""Secrets never reach a file: a key a user pastes into any text they give (the project,
the criteria, a project file's tasks: ids, prompts, dependencies) is masked where it
enters the run, and every sink redacts what a model writes.

The property test runs the real command line in a subprocess against a loopback server
speaking OpenAI's wire format (the official SDK talks to it), which answers like a
model that repeats everything it is told and also invents a key of its own; then every
byte the run wrote (events JSON lines, ``summary.json``, the output files, the run store
with its WAL, the response cache, stdout and stderr at ``-v``) is searched for the keys.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.redaction import REDACTED, redact, redact_data
from tests.fake_providers import (
    BASE_URL_VARIABLES,
    KEY_VARIABLES,
    FakeServer,
    Recorded,
    Reply,
    openai_answer,
    request_schema,
)

ROOT = Path(__file__).resolve().parents[2]
TAIL = "Zq7Kx3Lw"
"""Every generated key ends with this, so even a key hypothesis makes of one repeated
character is a string that appears nowhere unless the key leaked."""

_BODY = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _key(prefix: str, alphabet: str, size: tuple[int, int], tail: str) -> st.SearchStrategy[tuple[str, str]]:
    """(the key as pasted, its secret part)."""
    return st.text(alphabet, min_size=size[0], max_size=size[1]).map(
        lambda body: (f"{prefix}{body}{tail}", f"{body}{tail}")
    )


def key_shapes(tail: str = TAIL) -> st.SearchStrategy[tuple[str, str]]:
    return st.one_of(
        _key("sk-", _BODY + "_-", (12, 40), tail),
        _key("sk-proj-", _BODY + "_-", (12, 60), tail),
        _key("sk-ant-api03-", _BODY + "_-", (12, 60), tail),
        _key("AIza", _BODY + "_-", (27, 27), tail),
        _key("Authorization: Bearer ", _BODY + "._-~+/", (12, 60), tail),
        _key("Bearer ", _BODY + "._-", (12, 40), tail),
    )


KEYS = key_shapes()
MODEL_KEYS = key_shapes("Mq4Vn8Rp")
"""Keys the model makes up: never equal to one the user pasted."""
WORDS = st.lists(
    st.sampled_from(["build", "a", "rate", "limiter", "with", "tests", "key", "use", "the"]), min_size=0, max_size=4
).map(" ".join)
GLUE = st.sampled_from([" ", " key=", ": ", " (", ' "', "\n"])


@st.composite
def pasted(draw: Any, keys: list[tuple[str, str]]) -> str:
    """User text with a generated key somewhere in it (kept as prose: never a Python line)."""
    key, secret = draw(KEYS)
    keys.append((key, secret))
    return f"Please {draw(WORDS)}{draw(GLUE)}{key}{draw(GLUE)}{draw(WORDS)} now."


# -- the scrubber itself ---------------------------------------------------------------------


@given(key=KEYS, before=WORDS, glue=GLUE, after=WORDS)
@settings(max_examples=200, deadline=None)
def test_redact_masks_every_key_shape_and_keeps_the_text(key, before, glue, after):
    pasted_key, secret = key
    text = f"{before}{glue}{pasted_key}{glue}{after}"
    clean = redact(text)
    assert secret not in clean and REDACTED in clean
    assert clean.startswith(before) and clean.endswith(after)  # the user's own words are kept


@given(key=KEYS, before=WORDS, glue=GLUE, after=WORDS)
@settings(max_examples=200, deadline=None)
def test_redact_masks_keys_inside_json_text(key, before, glue, after):
    """A model's JSON answer (a plan, a score's reasons) is stored as text in the response
    cache: a key after an escaped newline in it is masked too."""
    pasted_key, secret = key
    text = json.dumps({"prompt": f"{before}{glue}{pasted_key}{glue}{after}"})
    clean = redact(text)
    assert secret not in clean
    assert json.loads(clean)["prompt"].startswith(before)


@given(
    data=st.recursive(
        st.text(max_size=20) | st.integers() | st.none() | st.booleans(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    ),
    key=KEYS,
)
@settings(max_examples=150, deadline=None)
def test_redact_data_keeps_json_well_formed_and_masks_keys_and_field_names(data, key):
    pasted_key, secret = key
    shaped = {"field": data, f"name {pasted_key}": [pasted_key, {"deep": f"x {pasted_key} y"}]}
    text = json.dumps(redact_data(shaped))
    assert secret not in text
    assert json.loads(text)["field"] == json.loads(json.dumps(redact_data(data)))


def test_ordinary_text_and_code_are_not_taken_for_keys():
    """The key shapes are anchored: a word that merely contains ``sk-`` and code that reads
    its key from the environment are left alone (redacting them would break output files)."""
    for text in (
        "task-runner-for-the-risk-assessment-pipeline",
        "api_key = os.environ['OPENAI_API_KEY']",
        "client = OpenAI(api_key=settings.openai_key)",
        "the desk-organiser-and-lamp-project",
    ):
        assert redact(text) == text
    assert redact('api_key = "hunter2-hunter2"') == f'{REDACTED}"'
    assert redact("api_key=abc123def456") == REDACTED


# -- the whole command line ------------------------------------------------------------------


def _prompt(record: Recorded) -> str:
    body = record.body if isinstance(record.body, dict) else {}
    return "\n".join(str(m.get("content", "")) for m in body.get("messages", []))


def _echo_model(invented_key: str) -> Any:
    """A model that repeats what it is told: its plan's ids and prompts, its reasons and
    its answers all quote the prompt it got (so a key that reached it would come back in
    every output), and every answer also holds a key the model made up."""

    def answer(record: Recorded) -> Reply:
        schema = request_schema("openai", record.body) or {}
        props = schema.get("properties", {})
        prompt = _prompt(record)
        if "tasks" in props:
            first = prompt.split("Project:", 1)[-1].strip().splitlines()[0][:50]
            content: Any = {
                "tasks": [
                    {"id": first, "type": "summarization", "prompt": f"Summarise: {prompt[:400]}", "depends_on": []},
                    {
                        "id": f"notes {first}",
                        "type": "creative_writing",
                        "prompt": f"Write about: {prompt[:300]}",
                        "depends_on": [first],
                    },
                ]
            }
            text = json.dumps(content)
        elif "score" in props:
            text = json.dumps({"reasons": f"echo {prompt[:300]} {invented_key}", "score": 0.95})
        else:
            text = f"Echo of the request:\n{prompt}\nA key I made up: {invented_key}\n"
        return Reply(body=openai_answer(text, model="echo"))

    return answer


@st.composite
def user_input(draw: Any) -> tuple[list[str], dict[str, Any] | None, list[tuple[str, str]], tuple[str, str]]:
    """Flags (and maybe a project file) with keys pasted into every text a user gives."""
    keys: list[tuple[str, str]] = []
    invented = draw(MODEL_KEYS)
    if draw(st.booleans()):  # a project file with tasks: no planning call
        ids = [f"t{i} {draw(pasted(keys))}" for i in range(draw(st.integers(1, 3)))]
        tasks = [
            {
                "id": tid,
                "type": draw(st.sampled_from(["summarization", "creative_writing"])),
                "prompt": draw(pasted(keys)),
                "depends_on": ids[:i][-1:],
            }
            for i, tid in enumerate(ids)
        ]
        data: dict[str, Any] = {"project": draw(pasted(keys)), "criteria": draw(pasted(keys)), "tasks": tasks}
        return [], data, keys, invented
    return ["-p", draw(pasted(keys)), "-c", draw(pasted(keys))], None, keys, invented


def _everything_written(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@given(case=user_input())
@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
def test_no_pasted_key_reaches_any_file_a_run_writes(case, tmp_path_factory):
    flags, project_file, keys, (invented_key, invented_secret) = case
    root = tmp_path_factory.mktemp("run")
    written = root / "written"
    written.mkdir()
    args = list(flags)
    if project_file is not None:
        path = root / "project.yaml"
        path.write_text(yaml.safe_dump(project_file, allow_unicode=True), encoding="utf-8")
        args += ["-f", str(path)]
    with FakeServer("openai") as server:
        server.fallback = _echo_model(invented_key)
        env = {k: v for k, v in os.environ.items() if k not in (*KEY_VARIABLES, *BASE_URL_VARIABLES)}
        env.update(PYTHONPATH=str(ROOT), XDG_CONFIG_HOME=str(root / "config"), XDG_CACHE_HOME=str(root / "xdg"))
        code = (
            "import sys; sys.modules['llama_cpp'] = None\n"
            "from orchestrator import cli\nsys.exit(cli.main(sys.argv[1:]))\n"
        )
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                *args,
                "--provider-url",
                server.url,
                "--model",
                "echo",
                "--budget",
                "1",
                "-v",
                "-o",
                str(written / "out"),
                "--state-dir",
                str(written / "state"),
                "--cache-dir",
                str(written / "cache"),
                "--events-jsonl",
                str(written / "events.jsonl"),
            ],
            capture_output=True,
            timeout=240,
            cwd=root,
            env=env,
        )
        requests = list(server.requests)
    assert proc.returncode in (0, 1), proc.stderr.decode()[-3000:]
    assert b"Traceback" not in proc.stderr
    files = _everything_written(written)
    # the run really wrote every kind of file, and the model's text really reached them
    names = set(files)
    assert {"events.jsonl", "out/summary.json", "state/runs.sqlite3", "cache/responses.sqlite3"} <= names, names
    assert any(n.startswith("out/") and n.endswith(".md") for n in names)
    assert b"Echo of the request" in b"".join(files.values())
    haystacks = {**files, "stdout": proc.stdout, "stderr": proc.stderr}
    for key, secret in [*keys, (invented_key, invented_secret)]:
        for where, data in haystacks.items():
            assert secret.encode() not in data, f"{key!r} found in {where}"
    # no provider was ever sent a key the user pasted (the model's own text is its own)
    for key, secret in keys:
        assert not any(secret in json.dumps(r.body) for r in requests), f"{key!r} sent to the provider"
    # the user's own words are kept, with the key masked
    summary = json.loads(files["out/summary.json"])
    assert summary["description"].startswith("Please ") and REDACTED in summary["description"]
    assert REDACTED in summary["criteria"]
    if project_file is not None:
        assert len(summary["tasks"]) == len(project_file["tasks"])  # the masked ids stay distinct
        assert all(REDACTED in tid and tid.startswith(f"t{i} ") for i, tid in enumerate(summary["tasks"]))
    store = sqlite3.connect(written / "state" / "runs.sqlite3")
    try:
        (description,) = store.execute("SELECT description FROM runs").fetchone()
    finally:
        store.close()
    assert description == summary["description"]
