"""The real command line with a scripted provider whose code answer is an attack, for the
security tests that need a real process: ``python -m tests.security.attack_cli ARGS...``
runs ``orchestrator ARGS...`` with every model answering the code in the file named by
``ATTACK_ANSWER`` (and a passing grade), so the only thing standing between that code and
the machine is the sandbox.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from orchestrator import cli
from orchestrator.cli import wiring
from tests.scripted import ScriptedProvider

CATALOG_FILE = str(Path(__file__).resolve().parents[1] / "state" / "scripted_catalog.toml")
MODEL = "scripted-pro"


def install() -> None:
    answer = Path(os.environ["ATTACK_ANSWER"]).read_text(encoding="utf-8")
    provider = ScriptedProvider(name="server", answer=answer, score=0.95)
    wiring.build_providers = lambda args: {"local": provider, "server": provider}  # type: ignore[assignment]


def main() -> int:
    install()
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
