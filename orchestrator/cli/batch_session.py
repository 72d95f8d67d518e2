"""Running a checked batch (:class:`~.batch_cmd.Prepared`) from the command line: the
observers (the batch's live view instead of a project's), the factory and backend, the
driver under Ctrl-C rules, each project's output files as it ends, the summary table,
``batch-summary.json`` and the batch's record in the run store.

Ctrl-C: the running projects are told to stop, checkpoint and report (at most a few
seconds), the summary of what finished is printed and written, exit 130; a second
Ctrl-C exits at once (and kills a local Ray cluster this command started).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from .batch_output import print_batch_summary, project_line, write_batch_summary
from .batch_start import Prepared
from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, one_line

__all__ = ["drive"]

DEFAULT_PARALLEL = 4
INTERRUPTED_FLUSH_SECONDS = 1.0


def _relay_wanted(options: Any, endpoint: str | None) -> bool:
    """Ray workers' events go to the driver when something here reads them: the dev
    tree (tracing without an endpoint), the events file, log lines, your observers."""
    return bool((options.tracing and not endpoint) or options.events_jsonl or options.verbose or options.observers)


def _batch_spans_only() -> None:
    """With an endpoint, Ray workers export their projects' spans themselves: the
    driver's tracing observer keeps to the batch span (relayed events must not make the
    same spans twice)."""
    from .. import events, tracing

    observer = tracing.tracing_state().get("observer")
    if observer is None:
        return
    for signal, receiver in observer.handlers():
        if signal not in (events.batch_started, events.batch_finished):
            signal.disconnect(receiver)


def drive(p: Prepared) -> int:
    from ..batch.backend import LocalBackend
    from ..batch.driver import BatchDriver
    from ..observers.batch_progress import BatchProgressObserver
    from .batch_runner import CliProjectFactory, mark_prepared
    from .interrupt import InterruptibleRun
    from .run_cmd import open_session
    from .store_wiring import resume_hint

    opened = open_session(p.args, p.loaded)
    if opened is None:
        if p.backend != "local":
            p.backend._shutdown()  # noqa: SLF001 - a cluster this command started stops with it
        return EXIT_USAGE
    console, session = opened
    progress = BatchProgressObserver(console, quiet=p.args.quiet)
    if progress.enabled:
        progress.subscribe()
        session.observers.append(progress)
    mark_prepared(p.run_args)
    factory = CliProjectFactory(capture_content=bool(session.options.capture_content))
    if p.backend == "local":
        backend: Any = LocalBackend(factory, p.store)
        max_parallel = p.max_parallel or DEFAULT_PARALLEL
    else:
        backend = p.backend
        options = session.options
        if session.tracing_enabled and session.endpoint:
            factory.worker_tracing = {
                "tracing": True,
                "otlp_endpoint": session.endpoint,
                "otlp_protocol": options.otlp_protocol,
                "otlp_timeout": options.otlp_timeout,
                "service_name": options.service_name,
                "sample_rate": options.sample_rate,
                "capture_content": options.capture_content,
            }
        backend.options.relay_events = _relay_wanted(options, session.endpoint)
        backend.options.include_content = bool(options.capture_content)
        if backend.options.relay_events and session.endpoint:
            _batch_spans_only()
        backend.factory = factory
        max_parallel = p.max_parallel or max(1, int(backend.cpus() // max(backend.options.num_cpus, 1e-9)))
    total = len(p.jobs) + len(p.kept)
    hint = resume_hint(p.batch_id, p.args.state_dir).replace("orchestrator resume", "orchestrator batch resume")
    console.print(
        f"Batch {p.batch_id}: {total} projects"
        + (f" ({len(p.kept)} finished before, {len(p.jobs)} to run)" if p.resumed else "")
        + f", {max_parallel} at once, {backend.name} backend, budget ${p.budget_usd:g}; if it stops, go on "
        f"with: {hint}",
        highlight=False,
        soft_wrap=True,
    )

    def on_outcome(outcome: Any) -> None:
        out = p.output_dirs.get(outcome.position)
        if outcome.state is not None and out and not outcome.kept:
            from .output import write_results

            write_results(outcome.state, out, console, announce=False, remove_stale=p.resumed)
        console.print(project_line(outcome), highlight=False, soft_wrap=True)

    driver = BatchDriver(
        p.batch_id,
        p.jobs,
        backend,
        max_usd=p.budget_usd,
        max_parallel=max_parallel,
        time_seconds=p.time_seconds,
        kept=p.kept,
        spent_before=p.spent_before,
        on_outcome=on_outcome,
    )
    result = None
    failure: BaseException | None = None
    with InterruptibleRun(on_hard_exit=backend.kill_now) as runner:
        try:
            result = runner.run(driver.run())
        except BaseException as exc:  # noqa: BLE001 - reported in one line below; the record says so
            failure = exc
        interrupted = runner.interrupted
        code = _conclude(p, result, failure, interrupted, console, session)
    return code


def _conclude(
    p: Prepared, result: Any, failure: BaseException | None, interrupted: bool, console: Any, session: Any
) -> int:
    record = p.record
    written = True
    if result is not None:
        record.status = result.status
        record.summary = result.to_dict()
        if p.output_dir:
            written = write_batch_summary(result, p.output_dir)
        print_batch_summary(result, console)
        if p.output_dir and written:
            console.print(f"Results written to {p.output_dir}")
        if getattr(p.args, "report", None):
            from .report_cmd import write_batch_report

            try:
                target = write_batch_report(record.summary, p.args.report)
                console.print(f"Report written to {target}", highlight=False, soft_wrap=True)
            except OSError as exc:
                print(
                    f"orchestrator: error: no report written to {p.args.report}: {exc.strerror or exc}", file=sys.stderr
                )
    else:
        record.status = "interrupted" if interrupted else "failed"
    record.updated_at = time.time()
    try:
        p.store.batches.update(record)
    except Exception as exc:  # noqa: BLE001 - a store that fails now must not hide the results
        print(f"orchestrator: warning: the batch's record was not updated ({one_line(exc)})", file=sys.stderr)
    session.finish(None, console=console, timeout_s=INTERRUPTED_FLUSH_SECONDS if interrupted else None)
    if interrupted or (result is not None and result.interrupted):
        print("orchestrator: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if failure is not None:
        print(f"orchestrator: error: {one_line(failure) or type(failure).__name__}", file=sys.stderr)
        return EXIT_RUN_FAILED
    if not written:
        return EXIT_USAGE
    return EXIT_OK if result is not None and result.status == "success" else EXIT_RUN_FAILED
