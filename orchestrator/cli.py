"""Command line: ``orchestrator -p "project" -c "criteria" [options]``.

Exit codes: 0 the project succeeded; 1 partial success, failure, budget exhausted or
timed out; 2 bad usage or input (one line on stderr, nothing run); 3 the policies leave
the project no model (one line on stderr, nothing spent); 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_POLICY_BLOCKED = 3  # the policies leave no model for the project: stopped before spending anything


class UsageError(Exception):
    """Bad flags or input: reported in one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="orchestrator",
        description="Decompose a project into tasks and run them across LLM providers with critique, "
                    "scoring, budgets and observable events.",
        epilog="Exit codes: 0 success; 1 partial success, failure, budget exhausted or timed out; "
               "2 bad usage or input; 3 the policies leave the project no model (nothing spent); "
               "130 interrupted. Subcommands: 'orchestrator models' lists the "
               "model catalog; 'orchestrator policy check FILE' validates a policy or project file.",
    )
    run = p.add_argument_group("project")
    run.add_argument("--project", "-p", help="what to build (the project description)")
    run.add_argument("--criteria", "-c", help="success criteria")
    run.add_argument("--file", "-f", metavar="YAML",
                     help="project file (keys: project, criteria, budget_usd, time_seconds, concurrency, "
                          "output_dir, tasks, policies, remediation, validators)")
    run.add_argument("--policy", metavar="FILE",
                     help="policy file (YAML or JSON): global policies and per-task-type / per-task overrides, "
                          "applied on top of the project file's; check one with 'orchestrator policy check FILE'")
    run.add_argument("--budget", "-b", type=float, help="max spend in USD (default 8.0)")
    run.add_argument("--time", "-t", type=float, help="max wall-clock seconds (default 5400)")
    run.add_argument("--concurrency", type=int, help="tasks run at once (default 4)")
    run.add_argument("--output-dir", "-o", help="write one file per task and summary.json here")
    run.add_argument("--model", help="use only this catalog model for every role")
    run.add_argument("--local-model", metavar="PATH", help="GGUF file for the embedded local model")
    run.add_argument("--provider-url", metavar="URL",
                     help="an OpenAI-compatible server (Ollama, vLLM, llama.cpp), e.g. "
                          "http://127.0.0.1:11434/v1; needs --model NAME (the server's model name)")
    run.add_argument("--list-models", action="store_true",
                     help="print the model catalog (prices, context, available or why not) and exit")
    run.add_argument("--max-tasks", type=int, help="upper bound of the decomposition (1..15)")
    run.add_argument("--cache-dir", help="response cache directory (default: the user cache dir)")
    run.add_argument("--no-cache", action="store_true", help="do not read or write the response cache")
    run.add_argument("--verbose", "-v", action="store_true", help="debug logging on stderr")
    obs = p.add_argument_group("observability")
    obs.add_argument("--tracing", action="store_true",
                     help="OpenTelemetry tracing (needs the 'tracing' extra); without --otlp-endpoint the span "
                          "tree is printed after the summary")
    obs.add_argument("--otlp-endpoint", metavar="URL", help="export spans over OTLP to this collector, e.g. "
                                                            "http://127.0.0.1:4317 (implies --tracing)")
    obs.add_argument("--otlp-protocol", choices=("grpc", "http/protobuf"),
                     help="OTLP protocol (default: OTEL_EXPORTER_OTLP_PROTOCOL, else from the URL)")
    obs.add_argument("--service-name", help="service.name resource attribute (default: OTEL_SERVICE_NAME, "
                                            "else multi-llm-orchestrator)")
    obs.add_argument("--sample-rate", type=float, help="trace sampling ratio 0..1 (default 1.0)")
    obs.add_argument("--capture-content", action="store_true",
                     help="record prompt and completion text in spans (off by default)")
    obs.add_argument("--metrics", action="store_true",
                     help="also export OpenTelemetry metrics (tokens, durations, cost, tasks) to the OTLP endpoint")
    obs.add_argument("--observer", action="append", default=[], metavar="SPEC",
                     help="subscribe an observer: package.module:factory or an entry-point name of the "
                          "'orchestrator.observers' group (repeatable)")
    obs.add_argument("--events-jsonl", metavar="FILE", help="write every event as a JSON line to FILE")
    obs.add_argument("--quiet", "-q", action="store_true", help="no live progress display")
    return p


@dataclass
class RunOptions:
    project: str
    criteria: str
    budget_usd: float = 8.0
    time_seconds: float = 5400.0
    concurrency: int = 4
    output_dir: str | None = None
    tasks: list[Any] | None = None
    file_data: dict[str, Any] | None = None  # the project file, for its policies/remediation/validators
    config: Any = None  # policy_cli.RunConfig, loaded once the catalog is final


def _load_project_file(path: str) -> dict[str, Any]:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{path}: no such project file")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UsageError(f"{path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a UTF-8 text file") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping with at least 'project' and 'criteria'")
    known = {"project", "criteria", "budget_usd", "time_seconds", "concurrency", "output_dir", "tasks",
             "policies", "remediation", "validators"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return data


def _positive(name: str, value: Any, integer: bool = False, allow_zero: bool = False) -> Any:
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number, got {value!r}") from None
    if number < 0 or (number == 0 and not allow_zero):
        raise UsageError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return number


def resolve_options(args: argparse.Namespace) -> RunOptions:
    """Flags beat the project file; the file beats defaults."""
    data: dict[str, Any] = _load_project_file(args.file) if args.file else {}
    project = args.project or data.get("project")
    criteria = args.criteria or data.get("criteria") or ""
    if not project or not str(project).strip():
        raise UsageError("no project given: use --project TEXT or --file project.yaml")
    where = f"{args.file}: " if args.file else ""
    opts = RunOptions(project=str(project).strip(), criteria=str(criteria).strip())
    budget = args.budget if args.budget is not None else data.get("budget_usd", 8.0)
    opts.budget_usd = _positive(f"{where}budget" if args.budget is None else "--budget", budget, allow_zero=True)
    time_s = args.time if args.time is not None else data.get("time_seconds", 5400.0)
    opts.time_seconds = _positive("--time" if args.time is not None else f"{where}time_seconds", time_s)
    conc = args.concurrency if args.concurrency is not None else data.get("concurrency", 4)
    opts.concurrency = _positive("--concurrency" if args.concurrency is not None else f"{where}concurrency",
                                 conc, integer=True)
    opts.output_dir = args.output_dir or data.get("output_dir")
    if args.max_tasks is not None and not 1 <= args.max_tasks <= 15:
        raise UsageError("--max-tasks must be between 1 and 15")
    if data.get("tasks") is not None:
        opts.tasks = _parse_tasks(data["tasks"], args.file)
    opts.file_data = data
    return opts


def _parse_tasks(raw: Any, path: str) -> list[Any]:
    from .models import Task, TaskType

    if not isinstance(raw, list) or not raw:
        raise UsageError(f"{path}: 'tasks' must be a non-empty list")
    tasks = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not item.get("prompt"):
            raise UsageError(f"{path}: tasks[{i}] needs at least a 'prompt'")
        try:
            ttype = TaskType(item.get("type", "complex_reasoning"))
        except ValueError:
            raise UsageError(f"{path}: tasks[{i}].type {item.get('type')!r} is not one of "
                             f"{', '.join(t.value for t in TaskType)}") from None
        tasks.append(Task(id=str(item.get("id", f"task_{i + 1}")), type=ttype, prompt=str(item["prompt"]),
                          depends_on=[str(d) for d in item.get("depends_on", [])],
                          acceptance_threshold=item.get("acceptance_threshold"),
                          max_iterations=item.get("max_iterations"),
                          max_output_tokens=item.get("max_output_tokens")))
    return tasks


def _safe_filename(task_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", task_id)[:80] or "task"


def write_outputs(state: Any, output_dir: str) -> Path:
    """One file per task (``<task_id>.md`` or ``.py`` for code) plus ``summary.json``."""
    from .models import TaskType

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for tid, result in state.results.items():
        task = state.tasks.get(tid)
        if not result.output:
            continue
        suffix = ".py" if task is not None and task.type == TaskType.CODE_GENERATION else ".md"
        text = result.output
        if suffix == ".py":
            from .validators import extract_code

            text = extract_code(result.output)
        (out / f"{_safe_filename(tid)}{suffix}").write_text(text, encoding="utf-8")
    summary = state.to_dict()
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return out


def print_summary(state: Any, console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"Project {state.project_id}: {state.status.value if state.status else '?'}")
    for col in ("task", "type", "model", "score", "iter", "tokens in/out", "cost $", "status"):
        table.add_column(col, justify="right" if col in ("score", "iter", "cost $") else "left",
                         overflow="fold")
    tin = tout = 0
    for tid in state.execution_order:
        task, r = state.tasks[tid], state.results.get(tid)
        if r is None:
            continue
        tin += r.input_tokens
        tout += r.output_tokens
        table.add_row(tid, task.type.value, r.model_used or "-", f"{r.score:.2f}", str(r.iterations),
                      f"{r.input_tokens}/{r.output_tokens}", f"{r.cost_usd:.6f}", r.status.value)
    console.print(table)
    b = state.budget
    console.print(f"Total: {len(state.tasks)} tasks, {tin}/{tout} tokens, ${b.spent_usd:.6f} of "
                  f"${b.max_usd:.2f}, {b.elapsed_seconds:.1f}s; status {state.status.value}")
    for note in state.notes:
        console.print(f"note: {note}", style="dim")


def _write_results(state: Any, output_dir: str, console: Any) -> bool:
    try:
        where = write_outputs(state, output_dir)
    except OSError as exc:
        print(f"orchestrator: error: cannot write results to {output_dir}: {exc.strerror}", file=sys.stderr)
        return False
    console.print(f"Results written to {where}")
    return True


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not verbose:
        for noisy in ("httpx", "httpcore", "openai", "anthropic", "google_genai"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _orchestrator(opts: RunOptions, args: argparse.Namespace) -> Any:
    from .api_clients import UnifiedClient
    from .cache import ResponseCache
    from .engine import Orchestrator
    from .models import Budget

    cache = None if args.no_cache else ResponseCache(args.cache_dir)
    client = UnifiedClient(_providers(args), cache=cache, concurrency=max(opts.concurrency, 1) * 2)
    orch = Orchestrator(budget=Budget(opts.budget_usd, opts.time_seconds), client=client,
                        concurrency=opts.concurrency, only_model=args.model, max_tasks=args.max_tasks,
                        project_tasks=opts.tasks, **(opts.config.engine_kwargs() if opts.config else {}))
    return orch


def _providers(args: argparse.Namespace) -> dict[str, Any]:
    from .providers.registry import default_providers

    return default_providers(args.local_model, server_url=getattr(args, "provider_url", None))


def _setup_server(args: argparse.Namespace) -> None:
    """``--provider-url URL --model NAME``: check the URL, reach the server, and put NAME
    in the catalog as a model of the ``server`` provider for this run."""
    if not getattr(args, "provider_url", None):
        return
    from .models import register_model
    from .providers.registry import check_server_url, probe_server, server_model_info

    if not args.model:
        raise UsageError("--provider-url needs --model NAME (the model name the server serves)")
    args.provider_url = check_server_url(args.provider_url)
    probe_server(args.provider_url)
    register_model(server_model_info(args.model, args.provider_url))


def _models_command(argv: list[str]) -> int:
    """``orchestrator models [--provider-url URL --model NAME] [--local-model PATH]``."""
    try:
        args = build_parser().parse_args(argv)
        _setup_server(args)
    except (UsageError, ValueError) as exc:
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from rich.console import Console

    from .api_clients import UnifiedClient
    from .model_list import print_models

    console = Console()
    if not console.is_terminal:  # piped: no folding of long model names and reasons
        console = Console(width=200)
    print_models(UnifiedClient(_providers(args)), console)
    return EXIT_OK


def _policy_blocked(exc: Exception, opts: RunOptions, session: Any, console: Any) -> int:
    """The policies leave the project no model: one line on stderr, exit 3.  The run
    stopped before any call, so nothing was spent; the (empty) results still go to the
    observers and, with ``--output-dir``, to ``summary.json`` with the reason."""
    state = getattr(exc, "state", None)
    session.finish(state, console=console)
    print(f"orchestrator: error: {' '.join(str(exc).split())}", file=sys.stderr)
    if state is not None and opts.output_dir:
        _write_results(state, opts.output_dir, console)
    return EXIT_POLICY_BLOCKED


def _check_model_choice(args: argparse.Namespace) -> None:
    from .api_clients import UnifiedClient
    from .models import CATALOG

    if args.local_model and not Path(args.local_model).is_file():
        raise UsageError(f"--local-model: no such file: {args.local_model}")
    client = UnifiedClient(_providers(args))
    if args.model:
        if args.model not in CATALOG:
            raise UsageError(f"--model: unknown model {args.model!r} (see 'orchestrator models')")
        ok, why = client.availability(args.model)
        if not ok:
            raise UsageError(f"--model {args.model} is not usable here: {why}")
    elif not any(client.is_usable(name) for name in CATALOG):
        ok, why = client.availability("smollm2-135m")
        raise UsageError(f"no usable model: set a provider API key, or {why}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["models"] or "--list-models" in argv:
        return _models_command([a for a in argv if a not in ("models", "--list-models")])
    if argv[:1] == ["policy"]:
        from .policy_cli import policy_main

        return policy_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        _configure_logging(args.verbose)
        _setup_server(args)
        opts = resolve_options(args)
        _check_model_choice(args)
        from .policy import PolicyViolationError
        from .policy_cli import load_run_config  # after the catalog is final (--provider-url)

        opts.config = load_run_config(opts.file_data, args.file, args.policy, opts.tasks)
        from .observers.setup import validate_observer_options

        validate_observer_options(args)
    except (UsageError, ValueError) as exc:
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from rich.console import Console

    from .observers.setup import setup_observers

    console = Console()
    try:
        session = setup_observers(args, console=console)
    except ValueError as exc:  # an --observer that cannot be loaded, an unwritable JSONL
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    orch = None
    try:
        orch = _orchestrator(opts, args)
        state = asyncio.run(orch.run_project(opts.project, opts.criteria))
    except KeyboardInterrupt:
        state = getattr(orch, "state", None)
        if state is not None:  # what finished (and the best output of what was running) is kept
            print_summary(state, console)
        session.finish(state, console=console)  # spans left open end as errors and still export
        if state is not None and opts.output_dir:
            _write_results(state, opts.output_dir, console)
        print("orchestrator: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except PolicyViolationError as exc:  # stopped before any call: nothing was spent
        return _policy_blocked(exc, opts, session, console)
    except Exception as exc:  # a provider or configuration failure: one line, no traceback
        session.finish(None, console=console)
        from .observers.base import redact

        print(f"orchestrator: error: {redact(str(exc)) or type(exc).__name__}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except BaseException:
        session.finish(None, console=console)
        raise
    print_summary(state, console)
    session.finish(state, console=console)
    if opts.output_dir and not _write_results(state, opts.output_dir, console):
        return EXIT_USAGE
    from .models import ProjectStatus

    return EXIT_OK if state.status == ProjectStatus.SUCCESS else EXIT_RUN_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
