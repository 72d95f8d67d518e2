"""``orchestrator resume PROJECT_ID``: go on with a stopped run from its last checkpoint.

The run is rebuilt from what its checkpoint kept (project, tasks, models, policies,
cache, output directory); this command's own flags are the observability ones, a higher
budget or time cap, and another output directory.  A run that already finished is
reported and left alone (exit 0); an unknown id, a run another process is running right
now, or a store that cannot be read is one line and exit 2.
"""

from __future__ import annotations

import sys

from ..domain.checkpoint import Checkpoint, StoreError, UnknownProjectError
from ..domain.values import finite_number
from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, one_line
from .interrupt import InterruptibleRun
from .parser import build_resume_parser
from .paths import check_paths
from .preflight import check_cache, check_sandbox, prepare_output_dir
from .run_cmd import _after, _configure_logging, execute, open_session
from .store_wiring import StoreRecording, open_store, rebuild
from .wiring import build_orchestrator, check_model_choice, setup_catalog, setup_server, start_local_model


def _finished(cp: Checkpoint, output_dir: str | None) -> int:
    """Nothing to resume.  The results are written (again) to the output directory, in
    case the run was killed after its last checkpoint but before it wrote them."""
    print(
        f"project {cp.project_id} already finished ({cp.status}, {cp.tasks_done}/{cp.tasks_total} tasks "
        f"done, ${cp.spent_usd:.6f}); nothing to resume (see 'orchestrator runs show {cp.project_id}')"
    )
    out = output_dir or (cp.settings.get("cli") or {}).get("output_dir")
    if out:
        from rich.console import Console

        from ..engine.checkpoints import restored_state, resumed_budget
        from .output import write_results

        if not write_results(
            restored_state(cp, resumed_budget(cp), next_attempt=False), out, Console(), remove_stale=True
        ):
            return EXIT_USAGE
    return EXIT_OK


def resume_main(argv: list[str]) -> int:
    """The resume command; returns the exit code (as for a run).  The catalog is put back
    afterwards, as for a run."""
    from ..llm.catalog import preserved

    with preserved():
        return _resume(argv)


def _resume(argv: list[str]) -> int:
    try:
        args = build_resume_parser().parse_args(argv)
        _configure_logging(args.verbose)
        for flag, value in (("--budget", args.budget), ("--time", args.time)):
            if value is not None:
                try:
                    finite_number(value, positive=True)
                except ValueError as exc:
                    raise UsageError(f"{flag} {exc}") from None
        check_paths(args, args.output_dir)
        store = open_store(args.state_dir, create=False)
        cp = store.load(args.project_id)
        if cp is None:
            raise UnknownProjectError(args.project_id)
        if cp.finished:
            code = _finished(cp, args.output_dir)
            if args.report and code == EXIT_OK:  # the report of the run as it finished
                from rich.console import Console

                from .report_cmd import check_report_path, write_run_report

                check_report_path(args.report)
                write_run_report(cp.project_id, args.state_dir, args.report, Console())
            return code
        with store.claim(cp.project_id):  # refused now, before any output; the engine's claim decides
            pass
        if args.budget is not None and args.budget < cp.max_usd:
            raise UsageError(f"--budget can only raise the original cap ${cp.max_usd:g} of {cp.project_id}")
        if args.time is not None and args.time < cp.max_time_seconds:
            raise UsageError(f"--time can only raise the original cap {cp.max_time_seconds:g}s of {cp.project_id}")
        opts, run_args = rebuild(cp, args)
        for warning in setup_catalog(run_args):  # the run's own catalog file, when it had one
            print(f"orchestrator: warning: {one_line(warning)}", file=sys.stderr)
        setup_server(run_args)
        client = check_model_choice(run_args)
        from .observers import load_observers, validate_observer_options

        validate_observer_options(args)
        loaded = load_observers(args)
        check_cache(run_args)
        for warning in check_sandbox(run_args):
            print(f"orchestrator: warning: {warning}", file=sys.stderr)
        if args.report:
            from .report_cmd import check_report_path

            check_report_path(args.report)
        prepare_output_dir(opts.output_dir)
        start_local_model(run_args, client)
    except (UsageError, ValueError, StoreError) as exc:
        print(f"orchestrator: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("orchestrator: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    opened = open_session(args, loaded)
    if opened is None:
        return EXIT_USAGE
    console, session = opened
    console.print(
        f"Resuming project {cp.project_id} (attempt {cp.attempt + 1}): keeping {cp.tasks_done} of "
        f"{cp.tasks_total or '?'} task results; ${cp.spent_usd:.6f} of ${opts.budget_usd:g} spent before",
        highlight=False,
        soft_wrap=True,
    )
    recording = StoreRecording(store, cp.project_id, cp.attempt + 1, bool(args.capture_content)).start()
    with InterruptibleRun() as runner:
        return execute(
            lambda: build_orchestrator(opts, run_args, store=store),
            lambda orch: orch.resume(cp.project_id, max_usd=args.budget, max_time_seconds=args.time),
            opts.output_dir,
            session,
            console,
            runner,
            remove_stale=True,
            after=lambda: _after(recording, cp.project_id, args, console),
        )
