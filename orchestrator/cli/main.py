"""``orchestrator``: the entry point, dispatching to a subcommand.

Subcommands: ``run`` (the default: ``orchestrator -p ...`` is ``orchestrator run -p ...``),
``models`` (the catalog; ``--list-models`` is the same), ``policy check FILE``,
``resume PROJECT_ID`` (go on with a stopped run), ``runs`` (the history: ``runs show ID``,
``runs rm ID``), ``doctor`` (what this install is, and whether the default run works here),
``report`` (one HTML file of a run), ``replay`` (a recorded run to an OTLP backend).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence


def _run(argv: list[str]) -> int:
    from .run_cmd import run_main

    return run_main(argv)


def _models(argv: list[str]) -> int:
    from .models_cmd import models_main

    return models_main(argv)


def _policy(argv: list[str]) -> int:
    from .policy_cmd import policy_main

    return policy_main(argv)


def _resume(argv: list[str]) -> int:
    from .resume_cmd import resume_main

    return resume_main(argv)


def _doctor(argv: list[str]) -> int:
    from .doctor_cmd import doctor_main

    return doctor_main(argv)


def _batch(argv: list[str]) -> int:
    from .batch_cmd import batch_main

    return batch_main(argv)


def _runs(argv: list[str]) -> int:
    from .runs_cmd import runs_main

    return runs_main(argv)


def _report(argv: list[str]) -> int:
    from .report_cmd import report_main

    return report_main(argv)


def _replay(argv: list[str]) -> int:
    from .replay_cmd import replay_main

    return replay_main(argv)


SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "run": _run,
    "models": _models,
    "policy": _policy,
    "resume": _resume,
    "runs": _runs,
    "doctor": _doctor,
    "report": _report,
    "replay": _replay,
    "batch": _batch,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--list-models" in args and args[:1] not in (
        ["policy"],
        ["resume"],
        ["runs"],
        ["report"],
        ["replay"],
        ["batch"],
    ):
        return _models([a for a in args if a not in ("models", "run", "--list-models")])
    if args[:1] and args[0] in SUBCOMMANDS:
        return SUBCOMMANDS[args[0]](args[1:])
    return _run(args)


def console_main() -> None:
    """The ``orchestrator`` command and ``python -m orchestrator``: :func:`main`, then
    exit; after an interrupt, without waiting long for worker threads still busy.  A
    Ctrl-C that no run catches (before one starts, or as the command returns) is the
    same one line and exit 130, never a traceback."""
    from .errors import EXIT_INTERRUPTED
    from .interrupt import exit_when_stuck, ignore_sigint_at_the_end

    ignore_sigint_at_the_end()
    try:
        code = main()
    except KeyboardInterrupt:
        print("orchestrator: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    exit_when_stuck(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    console_main()
