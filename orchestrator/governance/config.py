"""Policies, remediation plans and validators of a run, from files and data.

This module turns a project file's ``policies``/``remediation``/``validators`` sections
and ``--policy FILE`` into the objects the engine takes.

Every problem is a one-line :class:`~orchestrator.domain.errors.ConfigError` (a
``ValueError``) naming the file, the key and the reason, which the CLI prints as is and
exits 2 on; nothing is half-loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..domain.errors import ConfigError
from ..domain.tasks import Task
from .policy import PolicySet, load_policy_file
from .remediation import RemediationConfig
from .validators import ValidatorConfig

__all__ = ["RunConfig", "load_run_config", "SECTIONS"]

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
