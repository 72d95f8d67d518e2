"""``orchestrator batch resume BATCH_ID``: a stopped batch goes on.

The batch is rebuilt from the run store (its projects, their jobs, its settings), so the
batch file is not needed.  Projects that finished (success, partial success, failed)
are kept and not run; every other project resumes from its checkpoint (completed tasks
are never paid twice) or starts; the batch ledger starts from what every project spent
before.  A higher ``-b``/``-t`` raises the caps (a lower ``-b`` is refused); the backend,
parallelism and output directory can be changed.  An unknown id, a batch another
process runs now, or a store that cannot be read: one line, exit 2.
"""

from __future__ import annotations

import argparse
import sys

from ..domain.checkpoint import Checkpoint, ProjectBusyError, StoreError
from .batch_start import Prepared, build_batch_resume_parser, check_numbers, make_backend
from .errors import UsageError

__all__ = ["prepare_resume"]


class UnknownBatchError(StoreError):
    def __init__(self, batch_id: str) -> None:
        super().__init__(f"unknown batch id {batch_id!r} (see 'orchestrator runs --batches')")


def prepare_resume(argv: list[str]) -> Prepared:
    from ..batch.jobs import ProjectJob, ProjectOutcome
    from ..domain.batch import BATCH_RUNNING
    from ..engine.checkpoints import restored_state, resumed_budget
    from .observers import load_observers, validate_observer_options
    from .paths import check_paths
    from .preflight import check_cache, check_sandbox, prepare_output_dir
    from .run_cmd import _configure_logging
    from .store_wiring import open_store, rebuild
    from .wiring import check_model_choice, setup_catalog, setup_server, start_local_model

    args = build_batch_resume_parser().parse_args(argv)
    _configure_logging(args.verbose)
    check_numbers(args)
    check_paths(args, args.output_dir)
    if args.report:
        from .report_cmd import check_report_path

        check_report_path(args.report)
    store = open_store(args.state_dir, create=False)
    record = store.batches.load(args.batch_id)
    if record is None:
        raise UnknownBatchError(args.batch_id)
    settings = record.settings
    if args.budget is not None and args.budget < record.budget_usd:
        raise UsageError(f"--budget can only raise the batch's cap ${record.budget_usd:g} of {record.batch_id}")
    jobs: list[ProjectJob] = []
    kept: list[ProjectOutcome] = []
    spent_before: dict[str, float] = {}
    output_dirs: dict[int, str | None] = {}
    for p in record.projects:
        if store.is_running(p.project_id):
            raise ProjectBusyError(p.project_id, "")
        cp: Checkpoint | None = store.load(p.project_id)
        cli = (p.job.get("settings") or {}).get("cli") or {}
        output_dirs[p.position] = cli.get("output_dir")
        if cp is not None:
            spent_before[p.project_id] = cp.spent_usd
            if cp.finished:
                state = restored_state(cp, resumed_budget(cp), next_attempt=False)
                kept.append(ProjectOutcome(p.position, p.name, p.project_id, cp.status, state=state, kept=True))
                continue
        job = p.job
        jobs.append(
            ProjectJob(
                record.batch_id,
                p.position,
                p.name,
                p.project_id,
                str(job["description"]),
                str(job["criteria"]),
                float(job["budget_usd"]),
                float(job["time_seconds"]),
                dict(job.get("settings") or {}),
            )
        )
    first = jobs[0] if jobs else None
    run_args = argparse.Namespace(**vars(args))
    client = None
    warnings: list[str] = []
    if first is not None:  # the flags every project shares (model, catalog, cache...), from a job
        shell = Checkpoint(
            first.project_id,
            first.description,
            first.criteria,
            max_usd=first.budget_usd,
            max_time_seconds=first.time_seconds,
            settings=dict(first.settings),
        )
        _, run_args = rebuild(shell, argparse.Namespace(**vars(args)))
        warnings = setup_catalog(run_args)
        setup_server(run_args)
        client = check_model_choice(run_args)
        check_cache(run_args)
        warnings += check_sandbox(run_args)
    validate_observer_options(args)
    loaded = load_observers(args)
    backend_name = args.backend or settings.get("backend") or "local"
    ray = settings.get("ray") or {}
    if backend_name == "ray":
        args.ray_address = args.ray_address if args.ray_address is not None else ray.get("address")
        args.ray_num_cpus = args.ray_num_cpus if args.ray_num_cpus is not None else ray.get("num_cpus")
    backend = make_backend(args, backend_name, run_args, client, args.state_dir) if first is not None else "local"
    output_dir = args.output_dir or settings.get("output_dir")
    prepare_output_dir(output_dir)
    if backend == "local" and client is not None:
        start_local_model(run_args, client)
    if first is not None:  # reopened for writing: the batch goes on
        store = open_store(args.state_dir)
    args.progress = False
    time_cap = args.time if args.time is not None else settings.get("time_seconds")
    record.status, record.attempt = BATCH_RUNNING, record.attempt + 1
    record.budget_usd = float(args.budget) if args.budget is not None else record.budget_usd
    prepared = Prepared(
        args=args,
        batch_id=record.batch_id,
        jobs=jobs,
        output_dirs=output_dirs,
        budget_usd=record.budget_usd,
        time_seconds=time_cap,
        max_parallel=args.max_parallel or settings.get("max_parallel"),
        output_dir=output_dir,
        backend=backend,
        store=store,
        loaded=loaded,
        client=client,
        run_args=run_args,
        kept=kept,
        spent_before=spent_before,
        record=record,
        resumed=True,
        warnings=warnings,
    )
    if jobs:
        import time

        record.updated_at = time.time()
        store.batches.update(record)
    else:
        print(f"batch {record.batch_id}: every project already finished; nothing to resume", file=sys.stderr)
    return prepared
