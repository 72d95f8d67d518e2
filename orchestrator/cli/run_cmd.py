"""``orchestrator [run] -p "project" -c "criteria" [options]``: one project, start to end.

The one place where the parts are wired together for a run: providers and cache into
the client, policies/remediation/validators and the run store into the engine,
observers onto the bus.  The project id is printed first, so a run that stops (a kill,
a reboot) can be resumed by id.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from ..domain.checkpoint import StoreError
from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_POLICY_BLOCKED, EXIT_RUN_FAILED, EXIT_USAGE, UsageError
from .output import print_summary, write_results
from .parser import build_parser
from .project_file import resolve_options
from .store_wiring import cli_settings, open_store, resume_hint
from .wiring import build_orchestrator, check_model_choice, setup_catalog, setup_server


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not verbose:
        for noisy in ("httpx", "httpcore", "openai", "anthropic", "google_genai"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _policy_blocked(exc: Exception, output_dir: str | None, session: Any, console: Any) -> int:
    """The policies leave the project no model: one line on stderr, exit 3.  The run
    stopped before any call, so nothing was spent; the (empty) results still go to the
    observers and, with ``--output-dir``, to ``summary.json`` with the reason."""
    state = getattr(exc, "state", None)
    session.finish(state, console=console)
    print(f"orchestrator: error: {' '.join(str(exc).split())}", file=sys.stderr)
    if state is not None and output_dir:
        write_results(state, output_dir, console)
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

        opts.config = load_run_config(opts.file_data, args.file, args.policy, opts.tasks)
        from .observers import validate_observer_options

        validate_observer_options(args)
        store = open_store(args.state_dir)
    except (UsageError, ValueError, StoreError) as exc:
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from rich.console import Console

    from ..engine.orchestrator import new_project_id
    from .observers import setup_observers

    console = Console()
    if not console.is_terminal:  # piped or captured: a table folded to 80 columns reads badly
        console = Console(width=140)
    try:
        session = setup_observers(args, console=console)
    except ValueError as exc:  # an --observer that cannot be loaded, an unwritable JSONL
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    project_id = new_project_id()
    console.print(f"Project {project_id}: if it stops, go on with: {resume_hint(project_id, args.state_dir)}",
                  highlight=False, soft_wrap=True)
    orch = None
    try:
        orch = build_orchestrator(opts, args, store=store, run_settings=cli_settings(opts, args))
    except Exception as exc:  # a provider that cannot be built: one line, no traceback
        session.finish(None, console=console)
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return execute(orch, lambda: orch.run_project(opts.project, opts.criteria, project_id), opts.output_dir,
                   session, console)


def execute(orch: Any, make_run: Callable[[], Coroutine[Any, Any, Any]], output_dir: str | None,
            session: Any, console: Any, *, remove_stale: bool = False) -> int:
    """Run (or resume) a project and report it: the summary, the observers' finish, the
    results on disk, and the exit code.  Shared by ``run`` and ``resume``."""
    from ..governance.policy import PolicyViolationError

    try:
        state = asyncio.run(make_run())
    except KeyboardInterrupt:
        state = getattr(orch, "state", None)
        if state is not None:  # what finished (and the best output of what was running) is kept
            print_summary(state, console)
        session.finish(state, console=console)  # spans left open end as errors and still export
        if state is not None and output_dir:
            write_results(state, output_dir, console, remove_stale=remove_stale)
        print("orchestrator: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except PolicyViolationError as exc:  # stopped before any call: nothing was spent
        return _policy_blocked(exc, output_dir, session, console)
    except StoreError as exc:  # unknown id, a run in progress elsewhere: nothing run
        session.finish(None, console=console)
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
    if output_dir and not write_results(state, output_dir, console, remove_stale=remove_stale):
        return EXIT_USAGE
    from ..domain.results import ProjectStatus

    return EXIT_OK if state.status == ProjectStatus.SUCCESS else EXIT_RUN_FAILED
