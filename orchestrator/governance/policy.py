"""Policies: which models a task may send its data to, checked before every use.

A :class:`Policy` constrains providers, models, regions, required tags (``no_train``,
``pii_allowed``...), cost per call and per task, and observed latency; its
:class:`EnforcementMode` says what a violation does, and :class:`PolicyEngine` checks
models against policies (:mod:`.policy_engine`).

Policies come from Python, a policy file (``--policy FILE``, YAML or JSON) or the
project file's ``policies`` key, as a :class:`PolicySet`: global policies, then
per-task-type and per-task entries.  An entry whose name matches an inherited policy
overrides only the keys it gives (it is a :class:`PolicyPatch`); a new name adds a
policy.  A file is read by the one loader (:mod:`orchestrator.config`); every problem is
a one-line :class:`~orchestrator.domain.errors.ConfigError` naming file, key and reason.

This module is the public face: the names of :mod:`.policy_types` and
:mod:`.policy_engine` are importable from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, ClassVar

from msgspec import Meta, Struct, field

from ..config import convert, key_text, read_document
from ..config.fields import Name
from ..domain.errors import ConfigError, join_key
from ..domain.tasks import Task, TaskType
from .policy_engine import (
    NOMINAL_CALL_TOKENS,
    NOMINAL_CALLS_PER_TASK,
    ModelProfile,
    PolicyEngine,
    PolicyResult,
    PolicyViolationError,
    Violation,
    compliant_models,
)
from .policy_types import (
    HARD_CONSTRAINTS,
    SOFT_CONSTRAINTS,
    EnforcementMode,
    Policy,
    PolicyPatch,
    known_providers,
    known_regions,
    known_tags,
)

__all__ = [
    "EnforcementMode",
    "Policy",
    "PolicyPatch",
    "ModelProfile",
    "Violation",
    "PolicyResult",
    "PolicyEngine",
    "PolicySet",
    "PolicyFile",
    "PolicyViolationError",
    "ConfigError",
    "load_policy_file",
    "HARD_CONSTRAINTS",
    "SOFT_CONSTRAINTS",
    "NOMINAL_CALL_TOKENS",
    "NOMINAL_CALLS_PER_TASK",
    "compliant_models",
    "known_providers",
    "known_regions",
    "known_tags",
    "join_key",
]

Entry = Policy | PolicyPatch
"""A layer's item: a complete policy (replaces a same-named one whole) or a file's entry
(overrides the keys it gives)."""
Layer = tuple[Entry, ...]

Entries = Annotated[list[PolicyPatch] | PolicyPatch, Meta(extra={"expected": "a list of policies"})]


class PolicyFile(Struct, frozen=True, forbid_unknown_fields=True):
    """A policy file, and a project file's ``policies`` key (a bare list is the global
    policies): global policies, then per-task-type and per-task entries."""

    described_as: ClassVar[str] = "a list of policies or a mapping with policies, task_types and tasks"

    policies: Entries | None = None
    global_: Entries | None = field(name="global", default=None)
    task_types: dict[TaskType, Entries | None] | None = None
    tasks: dict[Name, Entries | None] | None = None

    def __post_init__(self) -> None:
        if self.policies is not None and self.global_ is not None:
            raise ConfigError("give the global policies once, under 'policies' or 'global', not both", key="global")


def _layer(entries: list[PolicyPatch] | PolicyPatch | None) -> Layer:
    return () if entries is None else (entries,) if isinstance(entries, PolicyPatch) else tuple(entries)


class PolicySet(Struct, frozen=True):
    """Global policies plus per-task-type and per-task entries (applied in that order;
    a same-named entry overrides the keys it gives, a new name adds a policy).

    Checked on construction: no name twice in one list, every combination a task can get
    (global, global + its type, global + its type + its own) builds valid policies, and
    policies in force together leave some provider, model and region."""

    global_policies: Layer = ()
    by_task_type: Mapping[TaskType, Layer] = field(default_factory=dict)
    by_task: Mapping[str, Layer] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        for ttype in self.by_task_type:
            if not isinstance(ttype, TaskType):
                raise ConfigError(f"a key must be a TaskType, got {ttype!r}", key="task_types")
        layers = [("policies", self.global_policies)]
        layers += [(join_key("task_types", key_text(t)), v) for t, v in self.by_task_type.items()]
        layers += [(join_key("tasks", key_text(t)), v) for t, v in self.by_task.items()]
        for key, layer in layers:
            _check_unique(layer, key)
        global_ = _resolve(self.global_policies, "policies")
        _check_consistent(global_, "policies")
        bases = [self.global_policies]
        for ttype, entries in self.by_task_type.items():
            key = join_key("task_types", key_text(ttype))
            merged = _overlay(self.global_policies, entries, key)
            _check_consistent(_resolve(merged, key), key)
            bases.append(merged)
        for tid, entries in self.by_task.items():  # a task's entries may override a global or a per-type policy
            key = join_key("tasks", key_text(tid))
            for base in bases:
                _check_consistent(_resolve(_overlay(base, entries, key), key), key)

    def __bool__(self) -> bool:
        return bool(self.global_policies or any(self.by_task_type.values()) or any(self.by_task.values()))

    @property
    def count(self) -> int:
        return (
            len(self.global_policies)
            + sum(len(v) for v in self.by_task_type.values())
            + sum(len(v) for v in self.by_task.values())
        )

    def for_project(self) -> tuple[Policy, ...]:
        """The policies of project-level calls (decomposition): the global ones."""
        return _resolve(self.global_policies)

    def for_type(self, task_type: TaskType) -> tuple[Policy, ...]:
        return _resolve(self._type_layer(task_type))

    def for_task(self, task: Task) -> tuple[Policy, ...]:
        return _resolve(_overlay(self._type_layer(task.type), self.by_task.get(task.id, ())))

    def _type_layer(self, task_type: TaskType) -> Layer:
        return _overlay(self.global_policies, self.by_task_type.get(TaskType(task_type), ()))

    def merged(self, other: PolicySet) -> PolicySet:
        """This set with ``other`` applied on top (``other`` wins by name, key by key)."""
        try:
            types = {
                t: _overlay(
                    self.by_task_type.get(t, ()), other.by_task_type.get(t, ()), join_key("task_types", key_text(t))
                )
                for t in dict.fromkeys([*self.by_task_type, *other.by_task_type])
            }  # in order: errors too
            tasks = {
                t: _overlay(self.by_task.get(t, ()), other.by_task.get(t, ()), join_key("tasks", key_text(t)))
                for t in dict.fromkeys([*self.by_task, *other.by_task])
            }
            return PolicySet(
                _overlay(self.global_policies, other.global_policies, "policies"),
                types,
                tasks,
                other.source or self.source,
            )
        except ConfigError as exc:
            raise exc.within(source=other.source or self.source) from None

    @classmethod
    def coerce(cls, value: object, source: str = "policies") -> PolicySet:
        """A PolicySet from a PolicySet, a Policy or a list of them, or file-shaped data."""
        if value is None:
            return cls()
        if isinstance(value, PolicySet):
            return value
        if isinstance(value, Policy):
            return cls((value,))
        if isinstance(value, Sequence) and not isinstance(value, str) and all(isinstance(p, Policy) for p in value):
            return cls(tuple(value))
        return cls.from_data(value, source)

    @classmethod
    def from_data(cls, data: object, source: str = "") -> PolicySet:
        """File-shaped data (a list of policies, or a mapping with ``policies`` or
        ``global``, ``task_types`` and ``tasks``); one-line :class:`ConfigError` naming
        ``source`` and the key."""
        if data is None:
            return cls(source=source)
        shape: PolicyFile = convert({"policies": data} if isinstance(data, list) else data, PolicyFile, source=source)
        return cls.from_file(shape, source)

    @classmethod
    def from_file(cls, shape: PolicyFile, source: str = "") -> PolicySet:
        try:
            return cls(
                _layer(shape.global_ if shape.global_ is not None else shape.policies),
                {t: _layer(v) for t, v in (shape.task_types or {}).items()},
                {t: _layer(v) for t, v in (shape.tasks or {}).items()},
                source,
            )
        except ConfigError as exc:
            raise exc.within(source=source) from None

    def describe(self) -> str:
        types = sum(1 for v in self.by_task_type.values() if v)
        tasks = sum(1 for v in self.by_task.values() if v)
        return (
            f"{len(self.global_policies)} global polic{'y' if len(self.global_policies) == 1 else 'ies'}, "
            f"overrides for {types} task type{'s' if types != 1 else ''} and {tasks} task{'s' if tasks != 1 else ''}"
        )


def _stack(lower: Entry | None, upper: Entry) -> Entry:
    """``upper`` on top of ``lower`` (same name)."""
    if isinstance(upper, Policy) or lower is None:
        return upper
    if isinstance(lower, Policy):
        return upper.onto(lower)
    return upper.over(lower)


def _overlay(base: Layer, over: Layer, where: str = "") -> Layer:
    """``over``'s entries on top of ``base``'s, by name; a problem is located at the entry."""
    out = {e.name: e for e in base}
    for index, entry in enumerate(over):
        try:
            out[entry.name] = _stack(out.get(entry.name), entry)
        except ConfigError as exc:
            raise exc.within(f"{where}[{index}]" if where else "") from None
    return tuple(out.values())


def _resolve(layer: Layer, where: str = "") -> tuple[Policy, ...]:
    """The complete policies of a layer (an entry with nothing under it is a new policy)."""
    out = []
    for index, entry in enumerate(layer):
        try:
            out.append(entry if isinstance(entry, Policy) else entry.onto(None))
        except ConfigError as exc:
            raise exc.within(f"{where}[{index}]" if where else "") from None
    return tuple(out)


def _check_unique(layer: Layer, key: str) -> None:
    seen: set[str] = set()
    for index, entry in enumerate(layer):
        if entry.name in seen:
            raise ConfigError(f"duplicate policy name {entry.name!r}", key=f"{key}[{index}].name")
        seen.add(entry.name)


def _check_consistent(policies: Sequence[Policy], key: str) -> None:
    """Policies in force together must leave some provider, model and region."""
    blocking = [p for p in policies if p.enforcement_mode != EnforcementMode.MONITOR]
    for allowed_field, blocked_field, what in (
        ("allowed_providers", "blocked_providers", "provider"),
        ("allowed_models", "blocked_models", "model"),
        ("allowed_regions", None, "region"),
    ):
        allowing = [p for p in blocking if getattr(p, allowed_field) is not None]
        if not allowing:
            continue
        left = set.intersection(*(set(getattr(p, allowed_field)) for p in allowing))
        blockers = [p for p in blocking if blocked_field and set(getattr(p, blocked_field)) & left]
        if blocked_field:
            for p in blocking:
                left -= set(getattr(p, blocked_field))
        if not left:
            names = ", ".join(sorted({p.name for p in allowing + blockers}))
            how = f"{allowed_field}" + (f" minus {blocked_field}" if blockers else "")
            raise ConfigError(f"policies {names} together leave no {what} ({how} is empty)", key=key)


def load_policy_file(path: str | Path) -> PolicySet:
    """Read a policy file (JSON when it ends in ``.json``, else YAML) through the loader.
    Every problem is a one-line :class:`ConfigError` naming the file, the key and the reason."""
    source = str(path)
    data = read_document(path, what="policy")
    if data is None or data == {} or data == []:
        raise ConfigError("empty policy file: give 'policies', 'task_types' or 'tasks'", source=source)
    return PolicySet.from_data(data, source)
