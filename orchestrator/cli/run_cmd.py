"""``orchestrator [run] -p "project" -c "criteria" [options]``: one project, start to end.

The one place where the parts are wired together for a run: providers and cache into
the client, policies/remediation/validators and the run store into the engine,
observers onto the bus.  The project id is printed first, so a run that stops (a kill,
a reboot) can be resumed by id.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..domain.checkpoint import StoreError
from ..llm.cache import CacheError
from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_POLICY_BLOCKED, EXIT_RUN_FAILED, EXIT_USAGE, UsageError, one_line
from .interrupt import Interrupted, InterruptibleRun
from .output import print_summary, write_results
from .parser import build_parser
from .paths import check_paths
from .preflight import check_cache, check_prompts_fit, check_sandbox, prepare_output_dir
from .project_file import RunOptions, resolve_options
from .store_wiring import StoreRecording, cli_settings, open_store, resume_hint
from .wiring import build_orchestrator, check_model_choice, setup_catalog, setup_server, start_local_model

if TYPE_CHECKING:
    from rich.console import Console

    from ..domain.results import ProjectState
    from ..engine.orchestrator import Orchestrator
    from ..governance.policy import PolicyViolationError
    from ..llm.client import UnifiedClient
    from ..observers.base import Subscribable
    from ..state import RunStore
    from .observers import ObserverSession

Running = Coroutine[Any, Any, "ProjectState"]
"""A run or a resume of the engine, not yet awaited."""

INTERRUPTED_FLUSH_SECONDS = 1.0
"""After Ctrl-C, the span export waits at most this long (the command exits within 2 s)."""
CLOSE_SECONDS = 0.5
"""How long closing the providers' connections may take at the end of a run."""


def _configure_logging(verbose: bool) -> None:
    """Log lines on stderr, each through :func:`~orchestrator.redaction.redact`."""
    from ..redaction import RedactingFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler])
    if not verbose:
        for noisy in ("httpx", "httpcore", "openai", "anthropic", "google_genai"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _policy_blocked(
    exc: PolicyViolationError, output_dir: str | None, session: ObserverSession, console: Console
) -> int:
    """The policies leave the project no model: one line on stderr, exit 3.  The run
    stopped before any call, so nothing was spent; the (empty) results still go to the
    observers and, with ``--output-dir``, to ``summary.json`` with the reason."""
    state = exc.state
    session.finish(state, console=console)
    print(f"orchestrator: error: {one_line(exc)}", file=sys.stderr)
    if state is not None and output_dir:
        write_results(state, output_dir, console)
    return EXIT_POLICY_BLOCKED


def run_main(argv: list[str]) -> int:
    """The run command; returns the exit code.  The catalog (a user file, a server's
    model, fetched prices) is put back afterwards, so an in-process caller keeps its own."""
    from ..llm.catalog import preserved

    with preserved():
        return _run_command(argv)


def open_session(args: argparse.Namespace, loaded: list[Subscribable]) -> tuple[Console, ObserverSession] | None:
    """The summary's console and the observers' session, or None (after one line on
    stderr) when an observer cannot be set up.  Piped or captured, the console is
    ``COLUMNS`` wide, else 140 columns (a table folded to 80 columns reads badly)."""
    import os

    from rich.console import Console

    from .observers import setup_observers

    console = Console()
    if not (console.is_terminal or os.environ.get("COLUMNS")):
        console = Console(width=140)
    try:
        return console, setup_observers(args, console=console, loaded=loaded)
    except ValueError as exc:  # an --observer that cannot be loaded, an unwritable JSONL
        print(f"orchestrator: error: {one_line(exc)}", file=sys.stderr)
        return None


def _run_command(argv: list[str]) -> int:
    try:
        args, opts, warnings, loaded, store = _prepare(argv)
    except (UsageError, ValueError, StoreError) as exc:  # ConfigError is a ValueError
        print(f"orchestrator: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("orchestrator: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    for warning in warnings:
        print(f"orchestrator: warning: {one_line(warning)}", file=sys.stderr)
    from ..engine.orchestrator import new_project_id

    opened = open_session(args, loaded)
    if opened is None:
        return EXIT_USAGE
    console, session = opened
    project_id = new_project_id()
    console.print(
        f"Project {project_id}: if it stops, go on with: {resume_hint(project_id, args.state_dir)}",
        highlight=False,
        soft_wrap=True,
    )
    recording = StoreRecording(store, project_id, 1, bool(args.capture_content)).start()
    with InterruptibleRun() as runner:
        return execute(
            lambda: build_orchestrator(opts, args, store=store, run_settings=cli_settings(opts, args)),
            lambda orch: orch.run_project(opts.project, opts.criteria, project_id),
            opts.output_dir,
            session,
            console,
            runner,
            after=lambda: _after(recording, project_id, args, console),
        )


def _prepare(argv: list[str]) -> tuple[argparse.Namespace, RunOptions, list[str], list[Subscribable], RunStore]:
    """Every check that needs no model and no call, in order; the first problem raises
    (one line, exit 2) and nothing has been written: the output directory and the run
    store are made last, once every path and an existing store were checked."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    opts = resolve_options(args)  # flags, project file and its tasks: values, types, the task graph
    check_paths(args, opts.output_dir)  # nothing is created before every path is known to be usable
    warnings = setup_catalog(args)
    setup_server(args)
    client = check_model_choice(args)
    from ..governance.config import load_run_config

    opts.config = load_run_config(opts.sections, args.file, args.policy, opts.tasks)
    from .observers import load_observers, validate_observer_options

    validate_observer_options(args)
    loaded = load_observers(args)
    check_prompts_fit(opts, args, client)
    check_cache(args)
    warnings += check_sandbox(args)
    if args.report:
        from .report_cmd import check_report_path

        check_report_path(args.report)
    open_store(args.state_dir, create=False).close()  # an existing store is checked; nothing is made yet
    prepare_output_dir(opts.output_dir)
    store = open_store(args.state_dir)  # made last: every check passed
    start_local_model(args, client)  # every check passed: let the model load while the run starts
    return args, opts, warnings, loaded, store


def _after(recording: StoreRecording, project_id: str, args: argparse.Namespace, console: Console) -> None:
    """After the run, however it ended: the event log written, then the report."""
    recording.finish()
    if args.report:
        from .report_cmd import write_run_report

        write_run_report(project_id, args.state_dir, args.report, console)


def execute(
    build: Callable[[], Orchestrator],
    start: Callable[[Orchestrator], Running],
    output_dir: str | None,
    session: ObserverSession,
    console: Console,
    runner: InterruptibleRun,
    *,
    remove_stale: bool = False,
    after: Callable[[], None] | None = None,
) -> int:
    """Build the engine and run (or resume) the project; whatever happens, the summary of
    what finished is printed and (with ``--output-dir``) written, and the observers are
    finished; then ``after`` (the event log and the report).  Shared by ``run`` and
    ``resume``."""
    try:
        return _execute(build, start, output_dir, session, console, runner, remove_stale=remove_stale)
    finally:
        if after is not None:
            after()


def _execute(
    build: Callable[[], Orchestrator],
    start: Callable[[Orchestrator], Running],
    output_dir: str | None,
    session: ObserverSession,
    console: Console,
    runner: InterruptibleRun,
    *,
    remove_stale: bool = False,
) -> int:
    from ..governance.policy import PolicyViolationError

    orch: Orchestrator | None = None
    try:
        orch = build()
        state = runner.run(_closing(start(orch), orch.client))
    except (Interrupted, KeyboardInterrupt, asyncio.CancelledError):
        _conclude(
            orch.state if orch is not None else None,
            output_dir,
            session,
            console,
            interrupted=True,
            remove_stale=remove_stale,
        )
        print("orchestrator: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except PolicyViolationError as exc:  # stopped before any call: nothing was spent
        return _policy_blocked(exc, output_dir, session, console)
    except (UsageError, CacheError, StoreError) as exc:  # the cache became unusable; a run in progress elsewhere
        session.finish(None, console=console)
        print(f"orchestrator: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug or an unexpected failure: one line, and what finished is kept
        _conclude(orch.state if orch is not None else None, output_dir, session, console, remove_stale=remove_stale)
        print(f"orchestrator: error: {one_line(exc) or type(exc).__name__}", file=sys.stderr)
        return EXIT_RUN_FAILED
    written = _conclude(state, output_dir, session, console, interrupted=runner.interrupted, remove_stale=remove_stale)
    if runner.interrupted:
        print("orchestrator: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not written:
        return EXIT_USAGE
    from ..domain.results import ProjectStatus

    return EXIT_OK if state.status == ProjectStatus.SUCCESS else EXIT_RUN_FAILED


async def _closing(run: Running, client: UnifiedClient) -> ProjectState:
    """The run, then the client's connections closed on the run's own loop (bounded: an
    interrupted command still exits within 2 s)."""
    try:
        return await run
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.aclose(), CLOSE_SECONDS)


def _conclude(
    state: ProjectState | None,
    output_dir: str | None,
    session: ObserverSession,
    console: Console,
    *,
    interrupted: bool = False,
    remove_stale: bool = False,
) -> bool:
    """Write ``summary.json`` (first: it is what must survive), print the summary, finish
    the observers (open spans end as errors and still export; after an interrupt the
    final flush is bounded by a second).  False when the results could not be written."""
    written = True
    if state is not None and output_dir:
        written = write_results(state, output_dir, console, announce=False, remove_stale=remove_stale)
    if state is not None:
        print_summary(state, console)
        if output_dir and written:
            console.print(f"Results written to {output_dir}")
    session.finish(state, console=console, timeout_s=INTERRUPTED_FLUSH_SECONDS if interrupted else None)
    return written
