"""``orchestrator batch FILE``: many projects under one hard budget, in this process or
on a Ray cluster; ``orchestrator batch resume BATCH_ID`` goes on with a stopped batch.

The parts: :mod:`.batch_start` (a new batch's checks and record), :mod:`.batch_resume`
(a stopped batch rebuilt from the run store), :mod:`.batch_session` (running it: the live
view, the outputs, the summary), :mod:`.batch_file` (the batch file), :mod:`.batch_runner`
(how each project's engine is built where it runs).
"""

from __future__ import annotations

import sys

from ..domain.checkpoint import StoreError
from .errors import EXIT_INTERRUPTED, EXIT_USAGE, UsageError, one_line

__all__ = ["batch_main"]


def batch_main(argv: list[str]) -> int:
    """``orchestrator batch FILE ...`` or ``orchestrator batch resume BATCH_ID ...``; the
    exit code.  The catalog is put back afterwards, as for a run."""
    from ..llm.catalog import preserved
    from .batch_session import drive

    with preserved():
        try:
            if argv[:1] == ["resume"]:
                from .batch_resume import prepare_resume

                prepared = prepare_resume(argv[1:])
            else:
                from .batch_start import prepare_start

                prepared = prepare_start(argv)
        except (UsageError, ValueError, StoreError, RuntimeError) as exc:  # ConfigError is a ValueError
            print(f"orchestrator: error: {one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("orchestrator: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        for warning in prepared.warnings:
            print(f"orchestrator: warning: {one_line(warning)}", file=sys.stderr)
        return drive(prepared)
