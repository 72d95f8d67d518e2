"""Policies, remediation plans and validators for a CLI run, and ``orchestrator policy check``.

Kept out of ``cli.py`` so the main command stays a thin shell: this module turns the
project file's ``policies``/``remediation``/``validators`` sections and ``--policy FILE``
into the objects the engine takes, and validates files without running anything.

Every problem is a one-line :class:`~orchestrator._config_errors.ConfigError` (a
``ValueError``) naming the file, the key and the reason, which the CLI prints as is and
exits 2 on; nothing is half-loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._config_errors import ConfigError
from .models import CATALOG, LOCAL_MODEL, ROUTING, Task, TaskType
from .policy import PolicyEngine, PolicySet, load_policy_file
from .remediation import RemediationConfig
from .validators import ValidatorConfig

__all__ = ["RunConfig", "load_run_config", "policy_main", "check_file", "EXIT_POLICY_BLOCKED"]

EXIT_POLICY_BLOCKED = 3
"""Exit code of a run the policies leave no model for: stopped before anything was spent."""

SECTIONS = ("policies", "remediation", "validators")


@dataclass
class RunConfig:
    """What the engine gets besides the project: policies, remediation plans, validators."""

    policies: PolicySet = field(default_factory=PolicySet)
    remediation: RemediationConfig = field(default_factory=RemediationConfig)
    validators: ValidatorConfig = field(default_factory=ValidatorConfig)

    def engine_kwargs(self) -> dict[str, Any]:
        return {"policies": self.policies, "remediation": self.remediation, "validators": self.validators}


def _section(parse: Any, data: Any, key: str, source: str) -> Any:
    """Parse one project-file section; errors are located as ``source: key.sub: reason``."""
    try:
        return parse(data, "")
    except ConfigError as exc:
        raise exc.within(key, source=source) from None


def load_run_config(project_data: Mapping[str, Any] | None = None, project_path: str | None = None,
                    policy_path: str | None = None, tasks: Sequence[Task] | None = None) -> RunConfig:
    """The run's configuration from the project file's sections and ``--policy FILE``.

    ``--policy`` is applied on top of the project file's policies (same name: the fields
    it gives win; a new name adds a policy), as flags beat the file everywhere else.  With
    explicit ``tasks``, a per-task entry for an id that is not a task is an error (it
    would silently apply to nothing)."""
    data = project_data or {}
    source = project_path or "project file"
    config = RunConfig()
    if data.get("policies") is not None:
        config.policies = _section(PolicySet.from_data, data["policies"], "policies", source)
    if data.get("remediation") is not None:
        config.remediation = _section(RemediationConfig.from_data, data["remediation"], "remediation", source)
    if data.get("validators") is not None:
        config.validators = _section(ValidatorConfig.from_data, data["validators"], "validators", source)
    ids = [t.id for t in tasks or ()]
    if ids:
        _check_task_ids(config.policies.by_task, ids, "policies.tasks", source)
        _check_task_ids(config.validators.by_task, ids, "validators.tasks", source)
    if policy_path:
        extra = load_policy_file(policy_path)
        if ids:
            _check_task_ids(extra.by_task, ids, "tasks", policy_path)
        config.policies = config.policies.merged(extra)
    return config


def _check_task_ids(entries: Mapping[str, Any], ids: Sequence[str], key: str, source: str) -> None:
    for tid in entries:
        if tid not in ids:
            raise ConfigError(f"no task has the id {tid!r} (tasks: {', '.join(ids)})", key=f"{key}.{tid}",
                              source=source)


# ---------------------------------------------------------------------------------------
# orchestrator policy check FILE
# ---------------------------------------------------------------------------------------

USAGE = "usage: orchestrator policy check FILE   (a policy file, YAML or JSON, or a YAML project file)"


def _read_mapping(path: str) -> Any:
    """The file's data when it is a YAML project file (a mapping with ``project``), else None."""
    if path.lower().endswith(".json"):
        return None
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # load_policy_file reports it properly
    return data if isinstance(data, Mapping) and "project" in data else None


def check_file(path: str) -> list[str]:
    """Validate a policy file or a project file's sections; the summary lines.  Raises
    :class:`ConfigError` (one line) on the first problem, or when no catalog model is
    allowed for any task type."""
    project = _read_mapping(path) if Path(path).is_file() else None
    if project is not None:
        tasks = _project_tasks(project, path)
        config = load_run_config(project, path, None, tasks)
        what = "project file"
    else:
        config = RunConfig(policies=load_policy_file(path))
        tasks = []
        what = "policy file"
    pset = config.policies
    lines = [f"{path}: ok ({what}): {pset.describe()}"]
    allowed = _allowed_by_type(pset)
    for ttype, (ok, total) in allowed.items():
        shown = ", ".join(ok[:4]) + (f" (+{len(ok) - 4} more)" if len(ok) > 4 else "")
        lines.append(f"  {ttype.value}: {len(ok)} of {total} candidates allowed"
                     + (f": {shown}" if ok else " - tasks of this type will fail"))
    for task in tasks:
        ok = _allowed(pset.for_task(task), _candidates(task.type))
        if not ok:
            lines.append(f"  task {task.id}: no candidate allowed - it will fail")
    if pset and not any(ok for ok, _ in allowed.values()):
        raise ConfigError("no catalog model satisfies the policies for any task type; a run would stop "
                          "before spending anything", source=path)
    if project is not None:
        lines.append("  remediation: " + "; ".join(config.remediation.describe()))
        changed = sorted({t.value for t in config.validators.by_type} | {f"task {t}" for t in config.validators.by_task})
        lines.append("  validators: " + (f"changed for {', '.join(changed)}" if changed else "defaults"))
    return lines


def _project_tasks(data: Mapping[str, Any], path: str) -> list[Task]:
    if data.get("tasks") is None:
        return []
    from .cli import UsageError, _parse_tasks

    try:
        return _parse_tasks(data["tasks"], path)
    except UsageError as exc:
        raise ConfigError(str(exc)) from None


def _candidates(task_type: TaskType) -> list[str]:
    return [m for m in dict.fromkeys((*ROUTING[task_type], LOCAL_MODEL)) if m in CATALOG]


def _allowed(policies: Sequence[Any], candidates: Sequence[str]) -> list[str]:
    engine = PolicyEngine()
    return [m for m in candidates if engine.evaluate(m, None, policies).passed]


def _allowed_by_type(pset: PolicySet) -> dict[TaskType, tuple[list[str], int]]:
    out = {}
    for ttype in TaskType:
        candidates = _candidates(ttype)
        out[ttype] = (_allowed(pset.for_type(ttype), candidates), len(candidates))
    return out


def policy_main(argv: Sequence[str]) -> int:
    """``orchestrator policy check FILE``: 0 and a short summary, or 2 and one line."""
    args = list(argv)
    if len(args) != 2 or args[0] != "check" or args[1].startswith("-"):
        if args in (["-h"], ["--help"], ["check", "-h"], ["check", "--help"]):
            print(USAGE)
            print("Validates the file without running anything: exit 0 and a summary, or exit 2 and "
                  "one line naming the file, the key and the reason.")
            return 0
        print(f"orchestrator: error: {USAGE}", file=sys.stderr)
        return 2
    try:
        lines = check_file(args[1])
    except ConfigError as exc:
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0
