"""What a policy is: :class:`Policy` (complete, what the engine judges with) and
:class:`PolicyPatch` (a file's entry: the keys it gives), with the checks of meaning both
share.

The types say what a value may be, and the loader (:mod:`orchestrator.config`) checks
them when a file is read; in Python, pass the declared types (tuples, an
:class:`EnforcementMode`), or data through :meth:`Policy.from_data`.  What types cannot
say is checked on construction: every provider, model, region, tag and validator named
exists (a typo must not silently disable a constraint), and the fields do not contradict
each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, ClassVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from ..config import convert
from ..config.fields import Name, Names, OptionalNames, Positive
from ..domain.errors import ConfigError, unknown
from ..llm.catalog import CATALOG

__all__ = [
    "EnforcementMode",
    "Policy",
    "PolicyPatch",
    "HARD_CONSTRAINTS",
    "SOFT_CONSTRAINTS",
    "known_providers",
    "known_regions",
    "known_tags",
]


class EnforcementMode(StrEnum):
    HARD = "hard"
    SOFT = "soft"
    MONITOR = "monitor"


Mode = Annotated[EnforcementMode, Meta(extra={"noun": "mode"})]

HARD_CONSTRAINTS = frozenset(
    {"allowed_providers", "blocked_providers", "allowed_models", "blocked_models", "allowed_regions", "requires"}
)
"""Who receives the data: these block in ``hard`` and ``soft`` mode."""
SOFT_CONSTRAINTS = frozenset({"max_cost_per_call_usd", "max_cost_per_task_usd", "max_latency_ms"})
"""Cost and latency: these block only in ``hard`` mode."""

_OPTIONAL_LISTS = ("allowed_providers", "allowed_models", "allowed_regions")  # None: anything allowed


def known_providers() -> list[str]:
    return sorted({m.provider for m in CATALOG.values()})


def known_regions() -> list[str]:
    return sorted({m.region for m in CATALOG.values()})


def known_tags() -> list[str]:
    return sorted({t for m in CATALOG.values() for t in m.tags})


class Policy(Struct, frozen=True):
    """One named policy.  ``None`` for an ``allowed_*`` field means "anything"; an empty
    allowed list is an error (it would allow nothing).

    ``skippable_validators``: validators the ``skip_validator`` remediation may skip for
    tasks under this policy (nothing is skippable unless a policy says so).
    """

    name: Name
    allowed_providers: OptionalNames = None
    blocked_providers: Names = ()
    allowed_models: OptionalNames = None
    blocked_models: Names = ()
    allowed_regions: OptionalNames = None
    max_cost_per_call_usd: Positive | None = None
    max_cost_per_task_usd: Positive | None = None
    max_latency_ms: Positive | None = None
    requires: Names = ()
    skippable_validators: Names = ()
    enforcement_mode: Mode = EnforcementMode.HARD

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def from_data(cls, data: object, source: str = "") -> Policy:
        """A policy from file-shaped data (lists, strings); one-line :class:`ConfigError`."""
        patch: PolicyPatch = convert(data, PolicyPatch, source=source)
        return patch.onto(None)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return cls.__struct_fields__

    def to_dict(self) -> dict[str, object]:
        """The file shape: the fields that differ from the defaults, and the mode."""
        out: dict[str, object] = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name == "enforcement_mode" or (value is not None and value != () and value != []):
                out[name] = _plain(value)
        return out


class PolicyPatch(Struct, frozen=True, forbid_unknown_fields=True):
    """A policy as a file gives it: the keys written, the others unset.  On a policy of the
    same name (inherited from the global or a task type's entries, or from another file)
    it overrides only those keys; alone it is a new policy with defaults for the rest."""

    described_as: ClassVar[str] = "a policy (a mapping with at least 'name')"

    name: Name
    allowed_providers: OptionalNames | UnsetType = UNSET
    blocked_providers: Names | UnsetType = UNSET
    allowed_models: OptionalNames | UnsetType = UNSET
    blocked_models: Names | UnsetType = UNSET
    allowed_regions: OptionalNames | UnsetType = UNSET
    max_cost_per_call_usd: Positive | None | UnsetType = UNSET
    max_cost_per_task_usd: Positive | None | UnsetType = UNSET
    max_latency_ms: Positive | None | UnsetType = UNSET
    requires: Names | UnsetType = UNSET
    skippable_validators: Names | UnsetType = UNSET
    enforcement_mode: Mode | UnsetType = UNSET

    def __post_init__(self) -> None:
        _check(self)

    def given(self) -> dict[str, object]:
        """The keys this entry sets (``name`` included)."""
        return {k: v for k in self.__struct_fields__ if (v := getattr(self, k)) is not UNSET}

    def onto(self, base: Policy | None) -> Policy:
        """The policy this entry makes: ``base`` with the given keys replaced, or (no base)
        a new policy.  Raises :class:`ConfigError` when the result contradicts itself."""
        given = self.given()
        given.pop("name")
        return msgspec.structs.replace(Policy(self.name) if base is None else base, **given)

    def over(self, lower: PolicyPatch) -> PolicyPatch:
        """One entry doing what ``lower`` then this one would do."""
        return msgspec.structs.replace(lower, **self.given())

    def to_dict(self) -> dict[str, object]:
        return {k: _plain(v) for k, v in self.given().items()}


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else (value.value if isinstance(value, StrEnum) else value)


# -- the checks of meaning -----------------------------------------------------------------


def _check(policy: Policy | PolicyPatch) -> None:
    values = _effective(policy)
    _check_names(values)
    _check_contradictions(values)


def _effective(policy: Policy | PolicyPatch) -> Mapping[str, object]:
    """The values a policy (or an entry, unset keys at their defaults) stands for."""
    return {
        name: getattr(policy, name) if getattr(policy, name) is not UNSET else default
        for name, default in _DEFAULTS.items()
    }


def _names(values: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = values[key]
    return tuple(str(v) for v in value) if isinstance(value, tuple | list) else ()


def _number(values: Mapping[str, object], key: str) -> float | None:
    value = values[key]
    return float(value) if isinstance(value, int | float) else None


def _check_names(values: Mapping[str, object]) -> None:
    from .validators import validator_names

    checks = (
        ("allowed_providers", "provider", known_providers()),
        ("blocked_providers", "provider", known_providers()),
        ("allowed_models", "model", sorted(CATALOG)),
        ("blocked_models", "model", sorted(CATALOG)),
        ("allowed_regions", "region", known_regions()),
        ("requires", "tag", known_tags()),
        ("skippable_validators", "validator", validator_names()),
    )
    for key, what, known in checks:
        for item in _names(values, key):
            if item not in known:
                raise ConfigError(unknown(what, item, known), key=key)


def _check_contradictions(values: Mapping[str, object]) -> None:
    for key in _OPTIONAL_LISTS:
        if values[key] is not None and not _names(values, key):
            raise ConfigError("empty list allows nothing (leave the key out to allow any)", key=key)
    allowed_providers = set(_names(values, "allowed_providers"))
    blocked_providers = set(_names(values, "blocked_providers"))
    both = allowed_providers & blocked_providers
    if both:
        raise ConfigError(
            f"provider {sorted(both)[0]!r} is both allowed and blocked (blocked_providers)", key="allowed_providers"
        )
    both = set(_names(values, "allowed_models")) & set(_names(values, "blocked_models"))
    if both:
        raise ConfigError(
            f"model {sorted(both)[0]!r} is both allowed and blocked (blocked_models)", key="allowed_models"
        )
    regions = values["allowed_regions"]
    for model in _names(values, "allowed_models"):
        info = CATALOG[model]
        if info.provider in blocked_providers or (
            values["allowed_providers"] is not None and info.provider not in allowed_providers
        ):
            raise ConfigError(
                f"allowed model {model!r} is served by provider {info.provider!r}, which this policy does not allow",
                key="allowed_models",
            )
        if regions is not None and info.region not in _names(values, "allowed_regions"):
            raise ConfigError(
                f"allowed model {model!r} is in region {info.region!r}, which allowed_regions does not allow",
                key="allowed_models",
            )
    per_call, per_task = _number(values, "max_cost_per_call_usd"), _number(values, "max_cost_per_task_usd")
    if per_call is not None and per_task is not None and per_call > per_task:
        raise ConfigError(
            f"max_cost_per_call_usd {per_call:g} exceeds max_cost_per_task_usd {per_task:g}",
            key="max_cost_per_call_usd",
        )


_DEFAULTS: dict[str, object] = {f.name: f.default for f in msgspec.structs.fields(Policy)}
