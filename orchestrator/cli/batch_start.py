"""Checking a new batch (``orchestrator batch FILE``) before anything runs, and recording it.

Every input is checked before anything is written or started (one line, exit 2): the
flags, the batch file and every entry (with its defaults: project, criteria, caps,
tasks, policies...), the paths, the model choice, each first prompt's size, the cache,
the observers, and for ``--backend ray`` the cluster (started or joined) and the
workers' version.  Then the batch and every project's id are recorded in the run
store, the batch id is printed with the command that resumes it, and the projects run
(:mod:`orchestrator.batch`); :mod:`.batch_session` shows and writes the results.
Flags beat the file; the file beats defaults.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..domain.errors import ConfigError
from ..domain.values import finite_number, whole_number
from .errors import OneLineParser, UsageError
from .parser import add_observability, add_sandbox, add_state_dir

__all__ = ["build_batch_parser", "build_batch_resume_parser", "Prepared", "prepare_start", "make_backend"]

BACKENDS = ("local", "ray")


def _batch_flags(p: argparse.ArgumentParser, *, resume: bool) -> None:
    batch = p.add_argument_group("batch")
    batch.add_argument(
        "--max-parallel",
        type=int,
        metavar="N",
        help="projects run at once (default: the file's max_parallel, else 4 locally and the cluster's CPUs on Ray)",
    )
    batch.add_argument(
        "--budget",
        "-b",
        type=float,
        metavar="USD",
        help="the whole batch's spend cap"
        + (
            " (a resume can only raise it)"
            if resume
            else " (default: the file's budget_usd, else the sum of the projects' caps)"
        ),
    )
    batch.add_argument(
        "--time",
        "-t",
        type=float,
        metavar="SECONDS",
        help="the whole batch's wall-clock cap: no project starts after it, and each gets at most "
        "the time left (default: the file's time_seconds, else none)",
    )
    batch.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None if resume else "local",
        help="local (default): every project in this process; ray: each project a Ray task",
    )
    batch.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="join this Ray cluster ('auto': the one 'ray start' made here) and leave it running; "
        "without it a local cluster starts (dashboard off) and stops at the end",
    )
    batch.add_argument(
        "--ray-num-cpus",
        type=float,
        metavar="N",
        help="CPUs each project's Ray task asks for (default 1; at least 1 where the embedded model runs)",
    )
    batch.add_argument(
        "--output-dir",
        "-o",
        metavar="DIR",
        help="batch-summary.json here, and each project's files in DIR/<name>/ (unless its entry names an output_dir)",
    )
    batch.add_argument("--verbose", "-v", action="store_true", help="debug logging on stderr")
    add_state_dir(batch)


def build_batch_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="orchestrator batch",
        description="Run every project of a batch file (YAML with a 'projects' list, or JSON lines) under one "
        "hard budget, in this process or on a Ray cluster.",
        epilog="Exit codes: 0 every project succeeded; 1 some did not; 2 bad usage or input (nothing written); "
        "130 interrupted (go on with 'orchestrator batch resume BATCH_ID').",
    )
    p.add_argument("file", metavar="FILE", help="the batch file (.yaml/.yml, .json or .jsonl)")
    _batch_flags(p, resume=False)
    run = p.add_argument_group("every project")
    run.add_argument("--concurrency", type=int, help="tasks run at once in each project (default: the entry's, else 4)")
    run.add_argument("--policy", metavar="FILE", help="policy file applied on top of every entry's policies")
    run.add_argument("--model", help="use only this catalog model for every role")
    run.add_argument("--local-model", metavar="PATH", help="GGUF file for the embedded local model")
    run.add_argument("--provider-url", metavar="URL", help="an OpenAI-compatible server; needs --model NAME")
    run.add_argument("--catalog", metavar="FILE", help="your catalog file (TOML)")
    run.add_argument("--max-tasks", type=int, help="upper bound of each decomposition (1..15)")
    run.add_argument("--profile", choices=("auto", "local", "full"), default="auto", help="see 'orchestrator --help'")
    run.add_argument("--cache-dir", help="response cache directory (default: the user cache dir)")
    run.add_argument("--no-cache", action="store_true", help="do not read or write the response cache")
    add_sandbox(run)
    add_observability(p)
    p.set_defaults(project=None, criteria=None, update_prices=False)  # a run's flags the shared checks read
    return p


def build_batch_resume_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="orchestrator batch resume",
        description="Go on with a stopped batch: finished projects are kept, every other project resumes from "
        "its checkpoint (or starts); the batch budget goes on from what was spent.",
    )
    p.add_argument("batch_id", metavar="BATCH_ID", help="the id 'orchestrator batch' printed when it started")
    _batch_flags(p, resume=True)
    add_sandbox(p, resume=True)
    add_observability(p)
    return p


# -- checking ----------------------------------------------------------------------------------


@dataclass
class Prepared:
    """A batch ready to run: everything checked, nothing written yet (but the record)."""

    args: argparse.Namespace
    batch_id: str
    jobs: list[Any]
    output_dirs: dict[int, str | None]
    budget_usd: float
    time_seconds: float | None
    max_parallel: int | None
    output_dir: str | None
    backend: Any
    store: Any
    loaded: list[Any]
    client: Any
    run_args: argparse.Namespace
    kept: list[Any] = field(default_factory=list)
    spent_before: dict[str, float] = field(default_factory=dict)
    record: Any = None
    resumed: bool = False
    warnings: list[str] = field(default_factory=list)


def check_numbers(args: argparse.Namespace) -> None:
    """The batch flags' numbers: finite, in range (one line naming the flag)."""
    checks = (
        ("--max-parallel", args.max_parallel, "count"),
        ("--budget", args.budget, "usd"),
        ("--time", args.time, "positive"),
        ("--ray-num-cpus", args.ray_num_cpus, "positive"),
    )
    for flag, value, kind in checks:
        if value is None:
            continue
        try:
            if kind == "count":
                whole_number(value, minimum=1)
            else:
                finite_number(value, minimum=None if kind == "positive" else 0, positive=kind == "positive")
        except ConfigError as exc:
            raise UsageError(f"{flag} {exc.reason}") from None
    if args.ray_address is not None and not args.ray_address.strip():
        raise UsageError("--ray-address must be an address or 'auto', got ''")


def new_batch_id() -> str:
    return f"batch-{uuid.uuid4().hex[:12]}"


def embedded_model_runs(run_args: argparse.Namespace, client: Any) -> bool:
    """The embedded model plans (and so runs) these projects."""
    from ..llm.catalog import get_model
    from ..llm.routing import Router

    planners = Router(client, run_args.model).planner_candidates()
    return bool(planners) and get_model(planners[0]).is_local


def make_backend(
    args: argparse.Namespace, backend: str, run_args: argparse.Namespace, client: Any, state_dir: str | None
) -> Any:
    """The Ray backend connected (cluster started or joined, version checked), or the
    name ``local`` (built later).  One line (RuntimeError/UsageError) when Ray cannot be used."""
    if backend != "ray":
        if args.ray_address or args.ray_num_cpus is not None:
            raise UsageError("--ray-address and --ray-num-cpus need --backend ray")
        return "local"
    from ..batch.ray_backend import RayBackend, RayOptions, ray_problem

    problem = ray_problem()
    if problem is not None:
        raise UsageError(problem)
    cpus = 1.0 if args.ray_num_cpus is None else float(args.ray_num_cpus)
    if cpus < 1 and embedded_model_runs(run_args, client):
        raise UsageError(
            f"--ray-num-cpus {cpus:g}: the embedded model runs in these projects, so each needs at "
            "least 1 CPU (its own llama.cpp worker)"
        )
    from ..state import default_state_dir

    where = Path(state_dir).expanduser() if state_dir else default_state_dir()  # the actor's, resolved here
    options = RayOptions(address=args.ray_address, num_cpus=cpus, log_to_driver=bool(args.verbose))
    ray_backend = RayBackend(None, str(where.resolve()), options)  # type: ignore[arg-type]  # the factory comes later
    ray_backend.connect()
    return ray_backend


def prepare_start(argv: list[str]) -> Prepared:
    """Every check of a new batch, in order; the first problem raises (one line, exit 2)
    and nothing has been written.  Then the batch is recorded in the run store."""
    from ..batch.jobs import ProjectJob
    from ..engine.orchestrator import new_project_id
    from .batch_file import load_batch_file
    from .observers import load_observers, validate_observer_options
    from .paths import check_paths
    from .preflight import check_cache, check_prompts_fit, check_sandbox, prepare_output_dir
    from .run_cmd import _configure_logging
    from .store_wiring import cli_settings, open_store
    from .wiring import check_model_choice, setup_catalog, setup_server, start_local_model

    args = build_batch_parser().parse_args(argv)
    _configure_logging(args.verbose)
    check_numbers(args)
    if args.concurrency is not None:
        try:
            whole_number(args.concurrency, minimum=1)
        except ConfigError as exc:
            raise UsageError(f"--concurrency {exc.reason}") from None
    if args.max_tasks is not None and not 1 <= args.max_tasks <= 15:
        raise UsageError("--max-tasks must be between 1 and 15")
    spec = load_batch_file(args.file)
    output_dir = args.output_dir if args.output_dir is not None else spec.output_dir
    check_paths(args, output_dir)
    if args.report:
        from .report_cmd import check_report_path

        check_report_path(args.report)
    warnings = setup_catalog(args)
    setup_server(args)
    client = check_model_choice(args)
    entries = [entry_options(entry, args, output_dir) for entry in spec.entries]
    dirs = [opts.output_dir for opts in entries if opts.output_dir]
    clash = _first_clash(dirs)
    if clash:
        raise UsageError(f"{args.file}: two projects write to the same output directory {clash}")
    for opts in entries:
        check_prompts_fit(opts, args, client)
    budget = args.budget if args.budget is not None else spec.budget_usd
    if budget is None:
        budget = math.fsum(opts.budget_usd for opts in entries)
    time_cap = args.time if args.time is not None else spec.time_seconds
    validate_observer_options(args)
    loaded = load_observers(args)
    check_cache(args)
    warnings += check_sandbox(args)  # probed here; Ray workers probe their own machine on first use
    backend = make_backend(args, args.backend, args, client, args.state_dir)
    store = open_store(args.state_dir)
    prepare_output_dir(output_dir)
    for d in dict.fromkeys(d for d, e in zip(dirs, spec.entries, strict=False) if e.shape.output_dir):
        prepare_output_dir(d, "output_dir")
    batch_id = new_batch_id()
    args.progress = False
    jobs = []
    for entry, opts in zip(spec.entries, entries, strict=True):
        project_id = new_project_id()
        jobs.append(
            ProjectJob(
                batch_id,
                entry.position,
                entry.name,
                project_id,
                opts.project,
                opts.criteria,
                opts.budget_usd,
                opts.time_seconds,
                {**cli_settings(opts, args), "batch": {"id": batch_id, "name": entry.name}},
            )
        )
    if backend == "local":
        start_local_model(args, client)
    prepared = Prepared(
        args=args,
        batch_id=batch_id,
        jobs=jobs,
        output_dirs={e.position: o.output_dir for e, o in zip(spec.entries, entries, strict=True)},
        budget_usd=float(budget),
        time_seconds=time_cap,
        max_parallel=args.max_parallel or spec.max_parallel,
        output_dir=output_dir,
        backend=backend,
        store=store,
        loaded=loaded,
        client=client,
        run_args=args,
        warnings=warnings,
    )
    prepared.record = record_batch(prepared, {"batch_file": str(Path(args.file).resolve())})
    return prepared


def entry_options(entry: Any, args: argparse.Namespace, batch_output: str | None) -> Any:
    """One entry's run options: its keys (defaults applied), the flags that apply to
    every project on top, its output directory (its own, else ``DIR/<name>``)."""
    from ..governance.config import load_run_config
    from .project_file import RunOptions

    shape = entry.shape
    where = f"{args.file}: {entry.name}"
    opts = RunOptions(project=(shape.project or "").strip(), criteria=(shape.criteria or "").strip())
    if shape.budget_usd is not None:
        opts.budget_usd = shape.budget_usd
    if shape.time_seconds is not None:
        opts.time_seconds = shape.time_seconds
    opts.concurrency = args.concurrency or shape.concurrency or opts.concurrency
    if shape.output_dir:
        opts.output_dir = shape.output_dir
    elif batch_output:
        opts.output_dir = os.path.join(batch_output, entry.name)
    opts.tasks = shape.task_list()
    opts.file_data = entry.data
    opts.sections = shape
    opts.config = load_run_config(shape, where, args.policy, opts.tasks)
    return opts


def _first_clash(dirs: list[str]) -> str | None:
    seen: set[str] = set()
    for d in dirs:
        key = os.path.normcase(os.path.abspath(os.path.expanduser(d)))
        if key in seen:
            return d
        seen.add(key)
    return None


def record_batch(prepared: Prepared, extra: dict[str, Any]) -> Any:
    """The batch and every project's id in the run store, in one transaction, before any runs."""
    from ..domain.batch import BATCH_RUNNING, BatchProject, BatchRecord

    now = time.time()
    args = prepared.args
    settings = {
        "backend": "ray" if prepared.backend != "local" else "local",
        "max_parallel": prepared.max_parallel,
        "time_seconds": prepared.time_seconds,
        "output_dir": str(Path(prepared.output_dir).expanduser().resolve()) if prepared.output_dir else None,
        "ray": {"address": args.ray_address, "num_cpus": args.ray_num_cpus},
        **extra,
    }
    record = BatchRecord(
        prepared.batch_id,
        BATCH_RUNNING,
        now,
        now,
        prepared.budget_usd,
        settings,
        [BatchProject(j.position, j.name, j.project_id, job_data(j)) for j in prepared.jobs],
    )
    prepared.store.batches.create(record)
    return record


def job_data(job: Any) -> dict[str, Any]:
    """A job as the store keeps it (its position, name and id are the row's own)."""
    return {
        "description": job.description,
        "criteria": job.criteria,
        "budget_usd": job.budget_usd,
        "time_seconds": job.time_seconds,
        "settings": dict(job.settings),
    }
