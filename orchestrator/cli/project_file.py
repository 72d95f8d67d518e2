"""The YAML project file (``--file``): its keys, its tasks, and the options a run gets
from flags and file together (flags beat the file; the file beats defaults)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..domain.errors import ConfigError, unknown
from ..domain.tasks import Task, tasks_from_data
from ..domain.values import finite_number, text_value, whole_number
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


PROJECT_KEYS = ("project", "criteria", "budget_usd", "time_seconds", "concurrency", "output_dir", "tasks",
                "policies", "remediation", "validators")


def load_project_file(path: str) -> dict[str, Any]:
    """The project file as a mapping; every problem is one line naming the file."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{path}: no such project file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not a UTF-8 text file (byte {exc.start + 1})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the project file ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({yaml_problem(exc)})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping with at least 'project' and 'criteria'")
    for key in data:
        if key not in PROJECT_KEYS:
            raise UsageError(f"{path}: {unknown('key', key, PROJECT_KEYS)}")
    return data


def yaml_problem(exc: Exception) -> str:
    """A YAML error in one line: where and what (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if problem is None and hasattr(exc, "position") and hasattr(exc, "character"):  # a ReaderError
        char = exc.character
        shown = f"#x{ord(char):04x}" if isinstance(char, str) else f"#x{char:02x}" if isinstance(char, int) else "?"
        return f"character {exc.position + 1}: unacceptable character {shown}: {getattr(exc, 'reason', '')}"
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return " ".join(f"{where}{problem or exc}".split())


def _number(name: str, value: Any, *, integer: bool = False, positive: bool = False) -> Any:
    """A flag's or the file's number: finite, >= 0 (> 0 when ``positive``), an integer
    >= 1 when ``integer``; else one line naming ``name``."""
    try:
        if integer:
            return whole_number(value, minimum=1)
        return finite_number(value, minimum=None if positive else 0, positive=positive)
    except ConfigError as exc:
        raise UsageError(f"{name} {exc.reason}") from None


def _text(name: str, value: Any) -> str:
    try:
        return text_value(value, what="text")
    except ConfigError as exc:
        raise UsageError(f"{name} {exc.reason}") from None


def resolve_options(args: argparse.Namespace) -> RunOptions:
    """Flags beat the project file; the file beats defaults.  Every value is checked
    here, before anything runs - a file's value too when a flag overrides it (a broken
    file is reported, not silently half-used)."""
    data: dict[str, Any] = load_project_file(args.file) if args.file else {}
    where = f"{args.file}: " if args.file else ""
    file: dict[str, Any] = {}
    for key in ("project", "criteria"):
        if data.get(key) is not None:
            file[key] = _text(f"{where}{key}", data[key])
    if data.get("budget_usd") is not None:
        file["budget_usd"] = _number(f"{where}budget_usd", data["budget_usd"])
    if data.get("time_seconds") is not None:
        file["time_seconds"] = _number(f"{where}time_seconds", data["time_seconds"], positive=True)
    if data.get("concurrency") is not None:
        file["concurrency"] = _number(f"{where}concurrency", data["concurrency"], integer=True)
    if data.get("output_dir") is not None:
        if not isinstance(data["output_dir"], str) or not data["output_dir"].strip():
            raise UsageError(f"{where}output_dir must be a directory path, got {data['output_dir']!r}")
        file["output_dir"] = data["output_dir"]
    project = _text("--project", args.project) if args.project is not None else file.get("project", "")
    criteria = _text("--criteria", args.criteria) if args.criteria is not None else file.get("criteria", "")
    if not project.strip():
        raise UsageError("no project given: use --project TEXT or --file project.yaml")
    opts = RunOptions(project=project.strip(), criteria=criteria.strip())
    opts.budget_usd = (_number("--budget", args.budget) if args.budget is not None
                       else file.get("budget_usd", opts.budget_usd))
    opts.time_seconds = (_number("--time", args.time, positive=True) if args.time is not None
                         else file.get("time_seconds", opts.time_seconds))
    opts.concurrency = (_number("--concurrency", args.concurrency, integer=True) if args.concurrency is not None
                        else file.get("concurrency", opts.concurrency))
    if args.output_dir is not None and not args.output_dir.strip():
        raise UsageError("--output-dir must be a directory path, got ''")
    opts.output_dir = args.output_dir if args.output_dir is not None else file.get("output_dir")
    if args.max_tasks is not None and not 1 <= args.max_tasks <= 15:
        raise UsageError("--max-tasks must be between 1 and 15")
    if data.get("tasks") is not None:
        opts.tasks = parse_tasks(data["tasks"], args.file)
    opts.file_data = data
    return opts


def parse_tasks(raw: Any, path: str) -> list[Task]:
    """The project file's tasks, every field and the graph checked (one line naming the
    file, the task and the field)."""
    try:
        return tasks_from_data(raw)
    except ConfigError as exc:
        raise UsageError(str(exc.within(source=path))) from None
