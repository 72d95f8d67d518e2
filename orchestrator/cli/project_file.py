"""The YAML project file (``--file``): its keys, its tasks, and the options a run gets
from flags and file together (flags beat the file; the file beats defaults)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..domain.tasks import Task, TaskType
from .errors import UsageError


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
    config: Any = None  # governance.config.RunConfig, loaded once the catalog is final


def load_project_file(path: str) -> dict[str, Any]:
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
    data: dict[str, Any] = load_project_file(args.file) if args.file else {}
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
        opts.tasks = parse_tasks(data["tasks"], args.file)
    opts.file_data = data
    return opts


def parse_tasks(raw: Any, path: str) -> list[Any]:
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
