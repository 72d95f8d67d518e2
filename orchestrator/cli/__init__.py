"""The command line: argparse subcommands (run, resume, runs, models, policy check) and
the one place where the parts are wired together.

Modules: ``main`` (dispatch), ``parser`` (the run and resume flags), ``project_file``
(``--file`` and flag resolution), ``wiring`` (client, providers, engine from flags),
``store_wiring`` (the run store, what a run keeps of its flags), ``preflight`` (output
directory, cache and prompt sizes checked before a run), ``interrupt`` (Ctrl-C: cancel,
summary, exit 130), ``run_cmd``, ``resume_cmd``, ``runs_cmd``, ``models_cmd``,
``policy_cmd``, ``observers`` (observers from flags: tracing, metrics, logging, progress,
JSONL, user ones), ``output`` (summary table, files), ``errors`` (exit codes, one-line
usage errors).
"""

from __future__ import annotations

from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_POLICY_BLOCKED, EXIT_RUN_FAILED, EXIT_USAGE, UsageError
from .main import main
from .parser import build_parser

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_POLICY_BLOCKED",
    "EXIT_RUN_FAILED",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "main",
]
