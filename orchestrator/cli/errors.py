"""Exit codes and the usage error of the command line.

Exit codes: 0 the project succeeded; 1 partial success, failure, budget exhausted or
timed out; 2 bad usage or input (one line on stderr, nothing run); 3 the policies leave
the project no model (one line on stderr, nothing spent); 130 interrupted.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from ..domain.errors import OrchestratorError

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_POLICY_BLOCKED = 3
"""The policies leave no model for the project: stopped before spending anything."""
EXIT_INTERRUPTED = 130


def one_line(message: object) -> str:
    """``message`` on one line (an error from a library may span several), redacted: an
    error may quote the input it refuses, and a key in it must not reach the terminal's
    scrollback or a captured log."""
    from ..redaction import redact

    return " ".join(redact(str(message)).split())


class UsageError(OrchestratorError):
    """Bad flags or input: reported in one line, exit 2."""


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (a :class:`UsageError`), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)
