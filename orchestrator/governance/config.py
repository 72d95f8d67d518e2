"""Policies, remediation plans and validators of a run, from files and data.

This module turns a project file's ``policies``/``remediation``/``validators`` keys
(:class:`Sections`, read with the rest of the file by the one loader,
:mod:`orchestrator.config`) and ``--policy FILE`` into the objects the engine takes.

Every problem is a one-line :class:`~orchestrator.domain.errors.ConfigError` (a
``ValueError``) naming the file, the key and the reason, which the CLI prints as is and
exits 2 on; nothing is half-loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, TypedDict

from msgspec import Meta, Struct

from ..config import convert, key_text
from ..domain.errors import ConfigError, join_key
from ..domain.tasks import Task
from .policy import PolicyFile, PolicyPatch, PolicySet, load_policy_file
from .remediation import RemediationConfig, RemediationFile
from .validators import ValidatorConfig, ValidatorsFile

__all__ = ["RunConfig", "Sections", "load_run_config", "SECTIONS"]

SECTIONS = ("policies", "remediation", "validators")

PolicySection = Annotated[
    list[PolicyPatch] | PolicyFile,
    Meta(extra={"expected": "a list of policies or a mapping with policies, task_types and tasks"}),
]


class Sections(Struct, frozen=True, forbid_unknown_fields=True):
    """The governance keys of a project file (what a run also keeps for its resume)."""

    policies: PolicySection | None = None
    remediation: RemediationFile | None = None
    validators: ValidatorsFile | None = None


class EngineKwargs(TypedDict):
    policies: PolicySet
    remediation: RemediationConfig
    validators: ValidatorConfig


@dataclass(frozen=True)
class RunConfig:
    """What the engine gets besides the project: policies, remediation plans, validators."""

    policies: PolicySet = field(default_factory=PolicySet)
    remediation: RemediationConfig = field(default_factory=RemediationConfig)
    validators: ValidatorConfig = field(default_factory=ValidatorConfig)

    def engine_kwargs(self) -> EngineKwargs:
        return {"policies": self.policies, "remediation": self.remediation, "validators": self.validators}

    def with_policies(self, extra: PolicySet) -> RunConfig:
        """``extra`` applied on top of these policies (as ``--policy`` is)."""
        return replace(self, policies=self.policies.merged(extra))


def load_run_config(
    sections: Sections | Mapping[str, object] | None = None,
    project_path: str | None = None,
    policy_path: str | None = None,
    tasks: Sequence[Task] | None = None,
) -> RunConfig:
    """The run's configuration from the project file's sections (checked
    :class:`Sections`, or their data) and ``--policy FILE``.

    ``--policy`` is applied on top of the project file's policies (same name: the keys
    it gives win; a new name adds a policy), as flags beat the file everywhere else.  With
    explicit ``tasks``, a per-task entry for an id that is not a task is an error (it
    would silently apply to nothing)."""
    source = project_path or "project file"
    if isinstance(sections, Sections):
        shape = sections
    else:
        data = {k: v for k, v in (sections or {}).items() if k in SECTIONS and v is not None}
        shape = convert(data, Sections, source=source)
    config = RunConfig()
    if shape.policies is not None:
        section = shape.policies
        policy_file = section if isinstance(section, PolicyFile) else PolicyFile(policies=section)
        try:
            config = replace(config, policies=PolicySet.from_file(policy_file))
        except ConfigError as exc:  # a list's keys start at "policies" already; a mapping's are inside it
            raise exc.within("policies" if isinstance(section, PolicyFile) else "", source=source) from None
    if shape.remediation is not None:
        config = replace(config, remediation=shape.remediation.config())
    if shape.validators is not None:
        config = replace(config, validators=shape.validators.config())
    ids = [t.id for t in tasks or ()]
    if ids:
        _check_task_ids(config.policies.by_task, ids, "policies.tasks", source)
        _check_task_ids(config.validators.by_task, ids, "validators.tasks", source)
    if policy_path:
        extra = load_policy_file(policy_path)
        if ids:
            _check_task_ids(extra.by_task, ids, "tasks", policy_path)
        config = config.with_policies(extra)
    return config


def _check_task_ids(entries: Iterable[str], ids: Sequence[str], key: str, source: str) -> None:
    for tid in entries:
        if tid not in ids:
            raise ConfigError(
                f"no task has the id {tid!r} (tasks: {', '.join(ids)})", key=join_key(key, key_text(tid)), source=source
            )
