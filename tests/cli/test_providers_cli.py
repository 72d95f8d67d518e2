"""The CLI with remote providers: ``orchestrator models``, ``--provider-url`` errors, and a
whole run whose every output is scanned for the API keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import cli
from orchestrator.llm.catalog import CATALOG
from tests.assertions import assert_one_line_error
from tests.fake_providers import BASE_URL_VARIABLES, KEY_VARIABLES, FakeServer, error

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def catalog_restored():
    """--provider-url registers its model in the catalog for the process: undo it."""
    before = dict(CATALOG)
    yield
    CATALOG.clear()
    CATALOG.update(before)


@pytest.mark.parametrize("argv", [["models"], ["--list-models"]])
def test_models_lists_the_catalog_with_reasons(argv, no_keys, capsys):
    no_keys.setenv("OPENAI_API_KEY", "sk-proj-list-models-test-000000")
    assert cli.main(argv) == cli.EXIT_OK
    out = capsys.readouterr().out
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 5}
    assert set(CATALOG) <= set(lines)
    assert "yes" in lines["gpt-4o"] and "2.50" in lines["gpt-4o"] and "128,000" in lines["gpt-4o"]
    assert "ANTHROPIC_API_KEY not set" in lines["claude-haiku-4-5"]
    assert "KIMI_API_KEY or MOONSHOT_API_KEY not set" in lines["kimi-k3"]
    assert "free" in lines["smollm2-135m"]
    assert "sk-proj-list-models" not in out


def test_models_with_a_server_shows_its_model(no_keys, capsys, catalog_restored):
    with FakeServer("openai") as srv:
        assert cli.main(["models", "--provider-url", srv.url, "--model", "llama3.2"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if "llama3.2" in line]
    assert "server" in row and "yes" in row and "free" in row


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--provider-url", "ftp://host/v1", "--model", "m", "-p", "x"], "is not an http(s) URL"),
        (["--provider-url", "localhost:11434", "--model", "m", "-p", "x"], "is not an http(s) URL"),
        (["--provider-url", "http://127.0.0.1:11434/v1", "-p", "x"], "needs --model NAME"),
        (["--provider-url", "http://127.0.0.1:1/v1", "--model", "m", "-p", "x"], "cannot connect"),
        (["models", "--provider-url", "nonsense", "--model", "m"], "is not an http(s) URL"),
    ],
)
def test_bad_provider_url_is_a_one_line_usage_error(argv, fragment, no_keys, capsys, catalog_restored):
    assert cli.main(argv) == cli.EXIT_USAGE
    assert_one_line_error(capsys.readouterr().err, fragment)


def test_a_server_that_rejects_every_call_fails_the_run_in_one_line(no_keys, capsys, catalog_restored, tmp_path):
    with FakeServer("openai") as srv:
        srv.fallback = lambda r: error("openai", 401, "no such key sk-proj-ABCDEFGHIJKLMNOPQRST")
        code = cli.main(["-p", "x", "--provider-url", srv.url, "--model", "tiny", "--no-cache", "-q"])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_RUN_FAILED
    assert "Traceback" not in err and "sk-proj-ABCDEFGHIJKLMNOPQRST" not in out + err
    assert "failed" in out


KEYS = {
    "OPENAI_API_KEY": "sk-proj-SCAN0penAIkey0123456789abcdef",
    "ANTHROPIC_API_KEY": "sk-ant-api03-SCANanthropicKEY0123456789",
    "GOOGLE_API_KEY": "AIzaSCANgoogleKEY0123456789abcdefghijk",
}


def test_no_key_appears_in_anything_a_run_produces(tmp_path):
    """A whole run through the CLI in a subprocess: events JSONL, tracing dev tree, debug
    logging, cache, run store, output files, stdout and stderr are scanned for every key's value.
    The Anthropic server echoes the key in its 401 message (as a careless gateway would);
    the Google key comes from a .env file in the working directory."""
    work = tmp_path / "work"
    work.mkdir()
    (work / ".env").write_text(f"GOOGLE_API_KEY={KEYS['GOOGLE_API_KEY']}\n")
    with FakeServer("openai") as oai, FakeServer("anthropic") as ant, FakeServer("gemini") as gem:
        ant.fallback = lambda r: error(
            "anthropic", 401, f"invalid x-api-key: {r.headers.get('x-api-key')}", error_type="authentication_error"
        )
        env = {k: v for k, v in os.environ.items() if k not in (*KEY_VARIABLES, *BASE_URL_VARIABLES)}
        env.update(
            PYTHONPATH=str(ROOT),
            OPENAI_API_KEY=KEYS["OPENAI_API_KEY"],
            OPENAI_BASE_URL=oai.url,
            ANTHROPIC_API_KEY=KEYS["ANTHROPIC_API_KEY"],
            ANTHROPIC_BASE_URL=ant.url,
            GOOGLE_GEMINI_BASE_URL=gem.url,
        )
        code = (
            "import sys; sys.modules['llama_cpp'] = None\n"  # reviewers from the fakes only
            "from orchestrator import cli\nsys.exit(cli.main(sys.argv[1:]))\n"
        )
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                "-p",
                "Write a Python function add(a, b)",
                "-c",
                "add(1, 2) == 3",
                "--cache-dir",
                str(tmp_path / "cache"),
                "-o",
                str(tmp_path / "out"),
                "--events-jsonl",
                str(tmp_path / "events.jsonl"),
                "--tracing",
                "-v",
                "--budget",
                "1",
                "--state-dir",
                str(tmp_path / "state"),
            ],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=work,
            env=env,
        )
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    # the run really used all three keys, and tracing really propagated
    assert ant.requests and ant.requests[0].headers["x-api-key"] == KEYS["ANTHROPIC_API_KEY"]
    assert oai.requests and oai.requests[0].headers["authorization"] == f"Bearer {KEYS['OPENAI_API_KEY']}"
    assert gem.requests and gem.requests[0].headers["x-goog-api-key"] == KEYS["GOOGLE_API_KEY"]
    assert all("traceparent" in r.headers for r in oai.requests + ant.requests + gem.requests)
    recorded = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert any(r["signal"] == "model_unhealthy" and r["model"] == "claude-sonnet-5-5" for r in recorded)
    assert "llm_call:critique" in proc.stdout and "DEBUG" in proc.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != ".env"]
    assert any(p.parent.name == "out" for p in files) and any("cache" in p.parts for p in files)
    assert any(p.name.startswith("runs.sqlite3") for p in files)  # the run store (and its WAL) too
    haystacks = {"stdout": proc.stdout.encode(), "stderr": proc.stderr.encode()}
    haystacks.update({str(p): p.read_bytes() for p in files})
    for name, value in KEYS.items():
        for where, data in haystacks.items():
            assert value.encode() not in data, f"{name} found in {where}"
