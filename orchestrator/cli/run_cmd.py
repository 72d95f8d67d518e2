"""``orchestrator [run] -p "project" -c "criteria" [options]``: one project, start to end.

The one place where the parts are wired together for a run: providers and cache into
the client, policies/remediation/validators into the engine, observers onto the bus.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_POLICY_BLOCKED, EXIT_RUN_FAILED, EXIT_USAGE, UsageError
from .output import print_summary, write_results
from .parser import build_parser
from .project_file import RunOptions, resolve_options
from .wiring import build_orchestrator, check_model_choice, setup_catalog, setup_server


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not verbose:
        for noisy in ("httpx", "httpcore", "openai", "anthropic", "google_genai"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _policy_blocked(exc: Exception, opts: RunOptions, session: Any, console: Any) -> int:
    """The policies leave the project no model: one line on stderr, exit 3.  The run
    stopped before any call, so nothing was spent; the (empty) results still go to the
    observers and, with ``--output-dir``, to ``summary.json`` with the reason."""
    state = getattr(exc, "state", None)
    session.finish(state, console=console)
    print(f"orchestrator: error: {' '.join(str(exc).split())}", file=sys.stderr)
    if state is not None and opts.output_dir:
        write_results(state, opts.output_dir, console)
    return EXIT_POLICY_BLOCKED


def run_main(argv: list[str]) -> int:
    """The run command; returns the exit code.  The catalog (a user file, a server's
    model, fetched prices) is put back afterwards, so an in-process caller keeps its own."""
    from ..llm.catalog import preserved

    with preserved():
        return _run_command(argv)


def _run_command(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
        _configure_logging(args.verbose)
        for warning in setup_catalog(args):
            print(f"orchestrator: warning: {warning}", file=sys.stderr)
        setup_server(args)
        opts = resolve_options(args)
        check_model_choice(args)
        from ..governance.config import load_run_config
        from ..governance.policy import PolicyViolationError

        opts.config = load_run_config(opts.file_data, args.file, args.policy, opts.tasks)
        from .observers import validate_observer_options

        validate_observer_options(args)
    except (UsageError, ValueError) as exc:
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from rich.console import Console

    from .observers import setup_observers

    console = Console()
    if not console.is_terminal:  # piped or captured: a table folded to 80 columns reads badly
        console = Console(width=140)
    try:
        session = setup_observers(args, console=console)
    except ValueError as exc:  # an --observer that cannot be loaded, an unwritable JSONL
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    orch = None
    try:
        orch = build_orchestrator(opts, args)
        state = asyncio.run(orch.run_project(opts.project, opts.criteria))
    except KeyboardInterrupt:
        state = getattr(orch, "state", None)
        if state is not None:  # what finished (and the best output of what was running) is kept
            print_summary(state, console)
        session.finish(state, console=console)  # spans left open end as errors and still export
        if state is not None and opts.output_dir:
            write_results(state, opts.output_dir, console)
        print("orchestrator: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except PolicyViolationError as exc:  # stopped before any call: nothing was spent
        return _policy_blocked(exc, opts, session, console)
    except Exception as exc:  # a provider or configuration failure: one line, no traceback
        session.finish(None, console=console)
        from ..redaction import redact

        print(f"orchestrator: error: {redact(str(exc)) or type(exc).__name__}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except BaseException:
        session.finish(None, console=console)
        raise
    print_summary(state, console)
    session.finish(state, console=console)
    if opts.output_dir and not write_results(state, opts.output_dir, console):
        return EXIT_USAGE
    from ..domain.results import ProjectStatus

    return EXIT_OK if state.status == ProjectStatus.SUCCESS else EXIT_RUN_FAILED
