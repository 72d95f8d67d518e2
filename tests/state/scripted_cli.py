"""The real command line with a scripted, priced provider, for kill-and-resume tests that
need a real process (a real SIGKILL) and a deterministic run.

``python -m tests.state.scripted_cli ARGS...`` runs ``orchestrator ARGS...``; ``child``
does the same in a forked process (the tests use a forkserver that preloaded this
module, so a process starts in milliseconds).  Every answer depends on the whole prompt
(so a task that got other context would answer differently), costs money, and takes a
little time, so kills land mid-run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from orchestrator import cli
from orchestrator.cli import wiring
from orchestrator.llm.providers.base import ProviderRequest, ProviderResponse
from tests.scripted import ScriptedProvider, decomposition

MODEL = "scripted-pro"
CATALOG_FILE = str(Path(__file__).with_name("scripted_catalog.toml"))
ARGS = [
    "-p",
    "Scripted project",
    "-c",
    "ok",
    "--model",
    MODEL,
    "--catalog",
    CATALOG_FILE,
    "--max-tasks",
    "5",
    "--no-cache",
    "-q",
]
"""A run of the scripted project; add the store, output and event flags."""
PLAN = decomposition(
    {"id": "alpha", "type": "summarization", "prompt": "Summarise alpha.", "depends_on": []},
    {"id": "beta", "type": "summarization", "prompt": "Summarise beta using alpha.", "depends_on": ["alpha"]},
    {"id": "gamma", "type": "creative_writing", "prompt": "Write gamma from alpha.", "depends_on": ["alpha"]},
    {"id": "delta", "type": "summarization", "prompt": "Join beta and gamma.", "depends_on": ["beta", "gamma"]},
    {"id": "epsilon", "type": "summarization", "prompt": "Summarise epsilon alone.", "depends_on": []},
)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


class PricedScript(ScriptedProvider):
    """Answers from the prompt's digest; ``gamma`` scores low (remediation, then degraded)."""

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        import asyncio

        self.requests.append(request)
        digest = _digest(request.system + "\n" + request.prompt)
        slow = float(os.environ.get("SCRIPTED_SLOW", "1"))  # a multiplier, for tests that need time
        await asyncio.sleep((0.004 + int(digest[:2], 16) / 255 * 0.012) * slow)
        props = (request.json_schema or {}).get("properties", {})
        if "tasks" in props:
            text = PLAN
        elif "score" in props:
            score = 0.55 if "gamma" in request.prompt.lower() else 0.9
            text = json.dumps({"reasons": f"scripted {digest}", "score": score})
        else:
            text = f"answer {digest}"
        tokens_in = 50 + int(digest[2:4], 16)
        tokens_out = 20 + int(digest[4:6], 16)
        return ProviderResponse(text, tokens_in, tokens_out, "stop", request.model)


def install() -> None:
    """Every provider is the scripted one; the priced model comes from ``CATALOG_FILE``
    (give ``--catalog``: ARGS below do), as a user's own catalog file would add it."""
    provider = PricedScript()
    wiring.build_providers = lambda args: {"local": provider, "server": provider}  # type: ignore[assignment]


def child(argv: list[str], log_path: str) -> None:
    """Entry point of a forked test process: output to ``log_path``, exit with the CLI's code."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    install()
    code = cli.main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> Any:
    """The command line on the scripted provider; called in a test's own process, it puts
    the real providers back afterwards (later tests must not get the scripted one)."""
    real = wiring.build_providers
    install()
    try:
        return cli.main(sys.argv[1:] if argv is None else argv)
    finally:
        wiring.build_providers = real  # type: ignore[assignment]


if __name__ == "__main__":
    sys.exit(main())
