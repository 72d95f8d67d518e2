"""Policies: which models a task may send its data to, checked before every use.

A :class:`Policy` constrains providers, models, regions, required tags (``no_train``,
``pii_allowed``...), cost per call and per task, and observed latency.  Its
:class:`EnforcementMode` says what a violation does:

* ``hard``: every violation blocks; a violating model is never used.
* ``soft``: only the *hard constraints* block - who gets the data (providers, models,
  regions, required tags); cost and latency limits are warnings (logged and recorded).
* ``monitor``: nothing blocks; every violation is recorded.

:meth:`PolicyEngine.check` evaluates one model (its :class:`ModelProfile`) against the
policies in force and sends a ``policy_check_started``/``policy_checked`` pair on the
event bus with ``policy.passed`` and ``policy.violations``.  The engine checks every
candidate model of a task (and every critic/evaluator) before its first use and skips
those that fail; when none passes, the task fails with a :class:`PolicyViolationError`
message naming the task, the policies and the reasons.

Policies come from Python, a policy file (``--policy FILE``, YAML or JSON) or the
project file's ``policies`` key, as a :class:`PolicySet`: global policies, then
per-task-type and per-task entries.  An entry whose name matches an inherited policy
overrides only the fields it gives; a new name adds a policy.  Every problem in a file
is a one-line :class:`~orchestrator.domain.errors.ConfigError` naming file, key and
reason.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from .. import attributes as attr
from .. import events
from ..domain.errors import ConfigError, join_key, unknown
from ..domain.tasks import Task, TaskType
from ..llm.catalog import CATALOG, ModelInfo
from ..llm.pricing import PriceSource, Pricing, flat_price

__all__ = [
    "EnforcementMode", "Policy", "ModelProfile", "Violation", "PolicyResult", "PolicyEngine",
    "PolicySet", "PolicyViolationError", "ConfigError", "load_policy_file", "HARD_CONSTRAINTS",
    "SOFT_CONSTRAINTS",
]

logger = logging.getLogger("orchestrator.policy")


class EnforcementMode(StrEnum):
    HARD = "hard"
    SOFT = "soft"
    MONITOR = "monitor"


_STRICTNESS = {EnforcementMode.MONITOR: 0, EnforcementMode.SOFT: 1, EnforcementMode.HARD: 2}

HARD_CONSTRAINTS = frozenset({"allowed_providers", "blocked_providers", "allowed_models", "blocked_models",
                              "allowed_regions", "requires"})
"""Who receives the data: these block in ``hard`` and ``soft`` mode."""
SOFT_CONSTRAINTS = frozenset({"max_cost_per_call_usd", "max_cost_per_task_usd", "max_latency_ms"})
"""Cost and latency: these block only in ``hard`` mode."""

# A nominal call for cost limits when the caller gives no estimate (2,000 tokens in, 1,000
# out) and a nominal task (four such calls).
NOMINAL_CALL_TOKENS = (2000, 1000)
NOMINAL_CALLS_PER_TASK = 4

_LIST_FIELDS = ("allowed_providers", "blocked_providers", "allowed_models", "blocked_models",
                "allowed_regions", "requires", "skippable_validators")
_OPTIONAL_LISTS = ("allowed_providers", "allowed_models", "allowed_regions")  # None: anything allowed
_NUMBER_FIELDS = ("max_cost_per_call_usd", "max_cost_per_task_usd", "max_latency_ms")


def known_providers() -> list[str]:
    return sorted({m.provider for m in CATALOG.values()})


def known_regions() -> list[str]:
    return sorted({m.region for m in CATALOG.values()})


def known_tags() -> list[str]:
    return sorted({t for m in CATALOG.values() for t in m.tags})


# ---------------------------------------------------------------------------------------
# Policy
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    """One named policy.  List fields take any iterable of names; ``None`` for an
    ``allowed_*`` field means "anything"; an empty allowed list is an error (it would
    allow nothing).  Unknown providers, models, tags and validators are errors, so a typo
    cannot silently disable a constraint.

    ``skippable_validators``: validators the ``skip_validator`` remediation may skip for
    tasks under this policy (nothing is skippable unless a policy says so).
    """

    name: str
    allowed_providers: tuple[str, ...] | None = None
    blocked_providers: tuple[str, ...] = ()
    allowed_models: tuple[str, ...] | None = None
    blocked_models: tuple[str, ...] = ()
    allowed_regions: tuple[str, ...] | None = None
    max_cost_per_call_usd: float | None = None
    max_cost_per_task_usd: float | None = None
    max_latency_ms: float | None = None
    requires: tuple[str, ...] = ()
    skippable_validators: tuple[str, ...] = ()
    enforcement_mode: EnforcementMode = EnforcementMode.HARD
    given: frozenset[str] | None = field(default=None, repr=False, compare=False)
    """Fields set explicitly (from a file entry); an override applies only these.
    ``None``: every field (a Policy built in Python replaces a same-named one whole)."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("a policy needs a non-empty string name", key="name")
        set_(self, "name", self.name.strip())
        for name in _LIST_FIELDS:
            value = getattr(self, name)
            if value is None:
                if name not in _OPTIONAL_LISTS:
                    set_(self, name, ())
                continue
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise ConfigError(f"must be a list of names, got {value!r}", key=name)
            items = tuple(value)
            for item in items:
                if not isinstance(item, str) or not item.strip():
                    raise ConfigError(f"must be a list of non-empty names, got {item!r}", key=name)
            set_(self, name, tuple(dict.fromkeys(i.strip() for i in items)))
        for name in _NUMBER_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ConfigError(f"must be a finite number > 0, got {value!r}", key=name)
            set_(self, name, float(value))
        mode = self.enforcement_mode
        if not isinstance(mode, EnforcementMode):
            try:
                mode = EnforcementMode(str(mode).strip().lower())
            except ValueError:
                raise ConfigError(unknown("mode", mode, [m.value for m in EnforcementMode]),
                                  key="enforcement_mode") from None
            set_(self, "enforcement_mode", mode)
        self._check_names()
        self._check_contradictions()

    def _check_names(self) -> None:
        from .validators import validator_names

        checks = (("allowed_providers", "provider", known_providers()),
                  ("blocked_providers", "provider", known_providers()),
                  ("allowed_models", "model", sorted(CATALOG)),
                  ("blocked_models", "model", sorted(CATALOG)),
                  ("allowed_regions", "region", known_regions()),
                  ("requires", "tag", known_tags()),
                  ("skippable_validators", "validator", validator_names()))
        for name, what, known in checks:
            for item in getattr(self, name) or ():
                if item not in known:
                    raise ConfigError(unknown(what, item, known), key=name)

    def _check_contradictions(self) -> None:
        for name in _OPTIONAL_LISTS:
            if getattr(self, name) == ():
                raise ConfigError("empty list allows nothing (leave the key out to allow any)", key=name)
        both = set(self.allowed_providers or ()) & set(self.blocked_providers)
        if both:
            raise ConfigError(f"provider {sorted(both)[0]!r} is both allowed and blocked (blocked_providers)",
                              key="allowed_providers")
        both = set(self.allowed_models or ()) & set(self.blocked_models)
        if both:
            raise ConfigError(f"model {sorted(both)[0]!r} is both allowed and blocked (blocked_models)",
                              key="allowed_models")
        for model in self.allowed_models or ():
            info = CATALOG[model]
            if info.provider in self.blocked_providers or (
                    self.allowed_providers is not None and info.provider not in self.allowed_providers):
                raise ConfigError(f"allowed model {model!r} is served by provider {info.provider!r}, "
                                  "which this policy does not allow", key="allowed_models")
            if self.allowed_regions is not None and info.region not in self.allowed_regions:
                raise ConfigError(f"allowed model {model!r} is in region {info.region!r}, which "
                                  "allowed_regions does not allow", key="allowed_models")
        if (self.max_cost_per_call_usd is not None and self.max_cost_per_task_usd is not None
                and self.max_cost_per_call_usd > self.max_cost_per_task_usd):
            raise ConfigError(f"max_cost_per_call_usd {self.max_cost_per_call_usd:g} exceeds "
                              f"max_cost_per_task_usd {self.max_cost_per_task_usd:g}", key="max_cost_per_call_usd")

    # -- building --------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "given"]

    @classmethod
    def from_dict(cls, data: Any, *, inherited: Policy | None = None) -> Policy:
        """A policy from a file entry; with ``inherited``, the entry overrides only the
        fields it gives.  Raises :class:`ConfigError` (key relative to the entry)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a policy must be a mapping with at least 'name', got {_short(data)}")
        known = cls.field_names()
        for key in data:
            if key not in known:
                raise ConfigError(unknown("key", key, known), key=str(key))
        if "name" not in data:
            raise ConfigError("a policy needs a 'name'")
        given = frozenset(data)
        if inherited is not None:
            values = {k: data[k] for k in data if k != "name"}
            merged = replace(inherited, **values)
            explicit = given | (inherited.given if inherited.given is not None else frozenset(known))
            object.__setattr__(merged, "given", explicit)
            return merged
        return cls(**dict(data), given=given)

    def overridden_by(self, other: Policy) -> Policy:
        """``other`` applied on top of this (same name): only ``other``'s given fields."""
        if other.given is None:
            return other
        values = {k: getattr(other, k) for k in other.given if k != "name"}
        merged = replace(self, **values)
        object.__setattr__(merged, "given", (self.given or frozenset(self.field_names())) | other.given)
        return merged

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.field_names():
            value = getattr(self, name)
            if value is None or value == () or (name != "name" and self.given is not None
                                                and name not in self.given and name != "enforcement_mode"):
                continue
            out[name] = list(value) if isinstance(value, tuple) else (
                value.value if isinstance(value, EnforcementMode) else value)
        return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------
# Model profile, result, errors
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelProfile:
    """What the policies judge: who serves a model, where, at what price, with which
    guarantees, and how fast it answered so far (``None``: not observed yet)."""

    model: str
    provider: str
    input_per_m: float | None = 0.0
    output_per_m: float | None = 0.0
    region: str = ""
    tags: tuple[str, ...] = ()
    observed_latency_ms: float | None = None
    pricing: Pricing | None = field(default=None, compare=False, repr=False)
    """The catalog model's pricing (tiers, dates); None: the flat prices above."""

    @classmethod
    def from_catalog(cls, model: str | ModelInfo, observed_latency_ms: float | None = None) -> ModelProfile:
        info = model if isinstance(model, ModelInfo) else CATALOG.get(model)
        if info is None:
            raise KeyError(f"unknown model {model!r}")
        return cls(info.name, info.provider, info.input_per_m, info.output_per_m, info.region,
                   tuple(info.tags), observed_latency_ms, info.price)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """Worst-case USD of a call of this size (infinite when the price is unknown)."""
        pricing = self.pricing
        if pricing is None:
            if self.input_per_m is None or self.output_per_m is None:
                return math.inf
            pricing = Pricing(PriceSource.CATALOG, flat_price([("input", self.input_per_m),
                                                               ("output", self.output_per_m)]))
        return pricing.worst_case(input_tokens, output_tokens) if pricing.known else math.inf


@dataclass(frozen=True)
class Violation:
    policy: str
    constraint: str
    message: str
    mode: EnforcementMode
    blocking: bool

    def __str__(self) -> str:
        return f"{self.message} ({self.policy})"


@dataclass(frozen=True)
class PolicyResult:
    """``passed``: no blocking violation.  ``violations`` holds every violation, the
    non-blocking ones too (``warnings``).  ``mode``: the mode that decided - the mode of
    the first blocking violation, else the strictest mode among violated policies, else
    the strictest mode checked (``monitor`` when no policy applied)."""

    passed: bool
    violations: tuple[Violation, ...] = ()
    mode: EnforcementMode = EnforcementMode.MONITOR
    model: str = ""

    @property
    def blocking(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.blocking)

    @property
    def warnings(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if not v.blocking)

    @property
    def reason(self) -> str:
        """The blocking violations (or every violation when none blocks), ``; ``-joined."""
        chosen = self.blocking or self.violations
        return "; ".join(str(v) for v in chosen)


class PolicyViolationError(Exception):
    """No model may be used: the message names the task, the policies and the reasons."""

    def __init__(self, message: str, *, task_id: str | None = None,
                 policies: Sequence[Policy] = (), results: Sequence[PolicyResult] = ()) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.policies = tuple(policies)
        self.results = tuple(results)
        self.state: Any = None
        """Set by ``Orchestrator.run_project`` when it stops a project: the (empty) ProjectState,
        so a caller can still report and write the results of a run that spent nothing."""

    @classmethod
    def for_candidates(cls, task_id: str | None, policies: Sequence[Policy],
                       results: Sequence[PolicyResult], what: str = "") -> PolicyViolationError:
        who = f"task {task_id}" if task_id else (what or "project")
        names = ", ".join(f"{p.name} ({p.enforcement_mode.value})" for p in policies) or "(none)"
        failed = [r for r in results if not r.passed]
        if failed:
            detail = "; ".join(f"{r.model}: {r.reason}" for r in failed[:6])
            if len(failed) > 6:
                detail += f"; and {len(failed) - 6} more"
        else:
            detail = "no usable candidate model to check"
        return cls(f"{who}: no model satisfies the policies {names}: {detail}", task_id=task_id,
                   policies=policies, results=results)


# ---------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------

class PolicyEngine:
    """Checks models against policies; every :meth:`check` is a
    ``policy_check_started``/``policy_checked`` pair on the event bus."""

    def check(self, model: str | ModelInfo, profile: ModelProfile | None = None,
              policies: Sequence[Policy] = (), *, call_cost_usd: float | None = None,
              task_cost_usd: float | None = None) -> PolicyResult:
        """Evaluate ``model`` against ``policies``.  ``call_cost_usd``/``task_cost_usd``
        are the caller's worst-case estimates for cost limits (default: a nominal call
        of 2,000 input and 1,000 output tokens, and four such calls per task)."""
        name = model.name if isinstance(model, ModelInfo) else model
        with events.traced_policy_check(len(policies), model=name) as span:
            result = self.evaluate(model, profile, policies, call_cost_usd=call_cost_usd,
                                   task_cost_usd=task_cost_usd)
            span.set_attribute(attr.POLICY_PASSED, result.passed)
            span.set_attribute(attr.POLICY_VIOLATIONS, len(result.violations))
            span.set_attribute(attr.POLICY_MODE, result.mode.value)
            if policies:
                span.set_attribute(attr.POLICY_NAMES, tuple(p.name for p in policies))
            if result.violations:
                span.set_attribute(attr.POLICY_REASONS, tuple(str(v)[:200] for v in result.violations[:8]))
        for v in result.warnings:
            logger.warning("policy %s (%s mode) violated by %s, not blocking: %s", v.policy, v.mode.value,
                           result.model, v.message)
        return result

    def enforce(self, model: str | ModelInfo, profile: ModelProfile | None = None,
                policies: Sequence[Policy] = (), *, task_id: str | None = None,
                call_cost_usd: float | None = None, task_cost_usd: float | None = None) -> PolicyResult:
        """:meth:`check`, raising :class:`PolicyViolationError` when the model is blocked."""
        result = self.check(model, profile, policies, call_cost_usd=call_cost_usd, task_cost_usd=task_cost_usd)
        if not result.passed:
            who = f"task {task_id}" if task_id else "project"
            names = ", ".join(sorted({v.policy for v in result.blocking}))
            raise PolicyViolationError(f"{who}: model {result.model} violates the policies {names}: "
                                       f"{result.reason}", task_id=task_id, policies=policies, results=[result])
        return result

    def evaluate(self, model: str | ModelInfo, profile: ModelProfile | None = None,
                 policies: Sequence[Policy] = (), *, call_cost_usd: float | None = None,
                 task_cost_usd: float | None = None) -> PolicyResult:
        """The check itself, without events (pure: used for feasibility checks too)."""
        if profile is None:
            profile = ModelProfile.from_catalog(model)
        name = model.name if isinstance(model, ModelInfo) else str(model)
        if call_cost_usd is None:
            call_cost_usd = profile.cost(*NOMINAL_CALL_TOKENS)
        if task_cost_usd is None:
            task_cost_usd = call_cost_usd * NOMINAL_CALLS_PER_TASK
        violations: list[Violation] = []
        for policy in policies:
            mode = policy.enforcement_mode
            for constraint, message in _violations(policy, name, profile, call_cost_usd, task_cost_usd):
                blocks = mode == EnforcementMode.HARD or (
                    mode == EnforcementMode.SOFT and constraint in HARD_CONSTRAINTS)
                violations.append(Violation(policy.name, constraint, message, mode, blocks))
        blocking = [v for v in violations if v.blocking]
        if blocking:
            mode = blocking[0].mode
        elif violations:
            mode = max((v.mode for v in violations), key=_STRICTNESS.__getitem__)
        elif policies:
            mode = max((p.enforcement_mode for p in policies), key=_STRICTNESS.__getitem__)
        else:
            mode = EnforcementMode.MONITOR
        return PolicyResult(not blocking, tuple(violations), mode, name)


def _violations(policy: Policy, model: str, profile: ModelProfile, call_cost: float,
                task_cost: float) -> Iterable[tuple[str, str]]:
    provider, region = profile.provider, profile.region
    if policy.allowed_providers is not None and provider not in policy.allowed_providers:
        yield "allowed_providers", f"provider {provider!r} not in allowed_providers {list(policy.allowed_providers)}"
    if provider in policy.blocked_providers:
        yield "blocked_providers", f"provider {provider!r} is blocked"
    if policy.allowed_models is not None and model not in policy.allowed_models:
        yield "allowed_models", f"model not in allowed_models {list(policy.allowed_models)}"
    if model in policy.blocked_models:
        yield "blocked_models", "model is blocked"
    if policy.allowed_regions is not None and region not in policy.allowed_regions:
        yield "allowed_regions", f"region {region!r} not in allowed_regions {list(policy.allowed_regions)}"
    missing = [t for t in policy.requires if t not in profile.tags]
    if missing:
        yield "requires", f"model lacks required tag{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
    if policy.max_cost_per_call_usd is not None and call_cost > policy.max_cost_per_call_usd:
        yield "max_cost_per_call_usd", (f"worst-case call cost {_usd(call_cost)} > max_cost_per_call_usd "
                                        f"${policy.max_cost_per_call_usd:g}")
    if policy.max_cost_per_task_usd is not None and task_cost > policy.max_cost_per_task_usd:
        yield "max_cost_per_task_usd", (f"worst-case task cost {_usd(task_cost)} > max_cost_per_task_usd "
                                        f"${policy.max_cost_per_task_usd:g}")
    if (policy.max_latency_ms is not None and profile.observed_latency_ms is not None
            and profile.observed_latency_ms > policy.max_latency_ms):
        yield "max_latency_ms", (f"observed latency {profile.observed_latency_ms:.0f} ms > max_latency_ms "
                                 f"{policy.max_latency_ms:g}")


def _usd(amount: float) -> str:
    return "unknown (no price)" if math.isinf(amount) else f"${amount:.6f}"


# ---------------------------------------------------------------------------------------
# Policy sets and files
# ---------------------------------------------------------------------------------------

_SET_KEYS = ("policies", "global", "task_types", "tasks")


@dataclass(frozen=True)
class PolicySet:
    """Global policies plus per-task-type and per-task entries (applied in that order;
    a same-named entry overrides the fields it gives, a new name adds a policy)."""

    global_policies: tuple[Policy, ...] = ()
    by_task_type: Mapping[TaskType, tuple[Policy, ...]] = field(default_factory=dict)
    by_task: Mapping[str, tuple[Policy, ...]] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "global_policies", tuple(self.global_policies))
        object.__setattr__(self, "by_task_type", {TaskType(k): tuple(v) for k, v in self.by_task_type.items()})
        object.__setattr__(self, "by_task", {str(k): tuple(v) for k, v in self.by_task.items()})

    def __bool__(self) -> bool:
        return bool(self.global_policies or any(self.by_task_type.values()) or any(self.by_task.values()))

    @property
    def count(self) -> int:
        return (len(self.global_policies) + sum(len(v) for v in self.by_task_type.values())
                + sum(len(v) for v in self.by_task.values()))

    def for_project(self) -> tuple[Policy, ...]:
        """The policies of project-level calls (decomposition): the global ones."""
        return self.global_policies

    def for_type(self, task_type: TaskType) -> tuple[Policy, ...]:
        return _overlay(self.global_policies, self.by_task_type.get(TaskType(task_type), ()))

    def for_task(self, task: Task) -> tuple[Policy, ...]:
        return _overlay(self.for_type(task.type), self.by_task.get(task.id, ()))

    def merged(self, other: PolicySet) -> PolicySet:
        """This set with ``other`` applied on top (``other`` wins by name)."""
        types = {t: _overlay_entries(self.by_task_type.get(t, ()), other.by_task_type.get(t, ()))
                 for t in {*self.by_task_type, *other.by_task_type}}
        tasks = {t: _overlay_entries(self.by_task.get(t, ()), other.by_task.get(t, ()))
                 for t in {*self.by_task, *other.by_task}}
        return PolicySet(_overlay(self.global_policies, other.global_policies), types, tasks,
                         other.source or self.source)

    @classmethod
    def coerce(cls, value: Any, source: str = "policies") -> PolicySet:
        """A PolicySet from a PolicySet, an iterable of Policy objects, or file-shaped data."""
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
    def from_data(cls, data: Any, source: str = "") -> PolicySet:
        """Parse file-shaped data: a list of policies (the global ones), or a mapping with
        ``policies`` (or ``global``), ``task_types`` and ``tasks``.  Raises one-line
        :class:`ConfigError` naming ``source`` and the key."""
        try:
            return cls._parse(data, source)
        except ConfigError as exc:
            raise exc.within(source=source) from None

    @classmethod
    def _parse(cls, data: Any, source: str) -> PolicySet:
        if data is None:
            return cls(source=source)
        if isinstance(data, list):
            data = {"policies": data}
        if not isinstance(data, Mapping):
            raise ConfigError(f"expected a list of policies or a mapping with {', '.join(_SET_KEYS)}, "
                              f"got {_short(data)}")
        for key in data:
            if key not in _SET_KEYS:
                raise ConfigError(unknown("key", key, _SET_KEYS), key=str(key))
        if "policies" in data and "global" in data:
            raise ConfigError("give the global policies once, under 'policies' or 'global', not both",
                              key="global")
        gkey = "global" if "global" in data else "policies"
        global_ = _parse_list(data.get(gkey), gkey, inherited=())
        types_raw = data.get("task_types") or {}
        if not isinstance(types_raw, Mapping):
            raise ConfigError("must map task types to lists of policies", key="task_types")
        by_type: dict[TaskType, tuple[Policy, ...]] = {}
        for tname, entries in types_raw.items():
            try:
                ttype = TaskType(str(tname))
            except ValueError:
                raise ConfigError(unknown("task type", tname, [t.value for t in TaskType]),
                                  key=f"task_types.{tname}") from None
            key = f"task_types.{tname}"
            by_type[ttype] = _parse_list(entries, key, inherited=global_)
            _check_consistent(_overlay(global_, by_type[ttype]), key)
        tasks_raw = data.get("tasks") or {}
        if not isinstance(tasks_raw, Mapping):
            raise ConfigError("must map task ids to lists of policies", key="tasks")
        by_task: dict[str, tuple[Policy, ...]] = {}
        for tid, entries in tasks_raw.items():
            key = f"tasks.{tid}"
            # a task's entries may override a global or a per-type policy: check against each
            bases = [global_] + [_overlay(global_, v) for v in by_type.values()]
            parsed: tuple[Policy, ...] = ()
            for base in bases:
                parsed = _parse_list(entries, key, inherited=base)
                _check_consistent(_overlay(base, parsed), key)
            by_task[str(tid)] = parsed
        _check_consistent(global_, gkey)
        return cls(global_, by_type, by_task, source)

    def describe(self) -> str:
        types = sum(1 for v in self.by_task_type.values() if v)
        tasks = sum(1 for v in self.by_task.values() if v)
        return (f"{len(self.global_policies)} global polic{'y' if len(self.global_policies) == 1 else 'ies'}, "
                f"overrides for {types} task type{'s' if types != 1 else ''} and {tasks} task{'s' if tasks != 1 else ''}")


def _parse_list(entries: Any, key: str, inherited: Sequence[Policy]) -> tuple[Policy, ...]:
    if entries is None:
        return ()
    if isinstance(entries, Mapping) and "name" in entries:
        entries = [entries]
    if not isinstance(entries, list):
        raise ConfigError(f"must be a list of policies, got {_short(entries)}", key=key)
    by_name = {p.name: p for p in inherited}
    out: list[Policy] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{key}[{index}]"
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if isinstance(name, str) and name.strip() in seen:
            raise ConfigError(f"duplicate policy name {name.strip()!r}", key=f"{where}.name")
        try:
            policy = Policy.from_dict(entry, inherited=by_name.get(name.strip()) if isinstance(name, str) else None)
        except ConfigError as exc:
            raise exc.within(where) from None
        except TypeError as exc:  # pragma: no cover - from_dict checks keys first
            raise ConfigError(str(exc), key=where) from None
        if by_name.get(policy.name) is not None:
            # keep only what the entry gives, so the override applies on any base
            policy = _as_override(entry, policy)
        seen.add(policy.name)
        out.append(policy)
    return tuple(out)


def _as_override(entry: Mapping[str, Any], merged: Policy) -> Policy:
    object.__setattr__(merged, "given", frozenset(entry))
    return merged


def _overlay(base: Sequence[Policy], over: Sequence[Policy]) -> tuple[Policy, ...]:
    out = {p.name: p for p in base}
    for p in over:
        out[p.name] = out[p.name].overridden_by(p) if p.name in out else p
    return tuple(out.values())


def _overlay_entries(base: Sequence[Policy], over: Sequence[Policy]) -> tuple[Policy, ...]:
    out = {p.name: p for p in base}
    for p in over:
        out[p.name] = out[p.name].overridden_by(p) if p.name in out else p
    return tuple(out.values())


def _check_consistent(policies: Sequence[Policy], key: str) -> None:
    """Policies in force together must leave some provider, model and region."""
    blocking = [p for p in policies if p.enforcement_mode != EnforcementMode.MONITOR]
    for allowed_field, blocked_field, what in (("allowed_providers", "blocked_providers", "provider"),
                                               ("allowed_models", "blocked_models", "model"),
                                               ("allowed_regions", None, "region")):
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
    """Read a policy file (JSON when it ends in ``.json``, else YAML).  Every problem is a
    one-line :class:`ConfigError` naming the file, the key and the reason."""
    file = Path(path)
    source = str(path)
    if not file.is_file():
        raise ConfigError("no such policy file", source=source)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not a UTF-8 text file", source=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read ({exc.strerror})", source=source) from None
    if file.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"not valid JSON (line {getattr(exc, 'lineno', '?')}: "
                              f"{getattr(exc, 'msg', exc)})", source=source) from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}: " if mark else ""
            raise ConfigError(f"not valid YAML ({where}{getattr(exc, 'problem', None) or exc})",
                              source=source) from None
    if data is None or data == {} or data == []:
        raise ConfigError("empty policy file: give 'policies', 'task_types' or 'tasks'", source=source)
    return PolicySet.from_data(data, source)


def compliant_models(policies: Sequence[Policy], candidates: Iterable[str],
                     engine: PolicyEngine | None = None) -> list[str]:
    """The candidates that pass ``policies`` (no events; catalog profiles)."""
    engine = engine or PolicyEngine()
    return [m for m in candidates if m in CATALOG and engine.evaluate(m, None, policies).passed]


__all__ += ["compliant_models", "known_providers", "known_regions", "known_tags", "join_key"]
