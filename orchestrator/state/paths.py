"""Where the run store lives: ``--state-dir``, else ``$ORCHESTRATOR_STATE_DIR``, else
the user data directory (e.g. ``~/.local/share/multi-llm-orchestrator`` on Linux)."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "multi-llm-orchestrator"
DB_NAME = "runs.sqlite3"
ENV_VAR = "ORCHESTRATOR_STATE_DIR"


def default_state_dir() -> Path:
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False))
