"""Checking a model against policies: :class:`PolicyEngine` and what it reports.

:meth:`PolicyEngine.check` evaluates one model (its :class:`ModelProfile`) against the
policies in force and sends a ``policy_check_started``/``policy_checked`` pair on the
event bus with ``policy.passed`` and ``policy.violations``.  The engine checks every
candidate model of a task (and every critic/evaluator) before its first use and skips
those that fail; when none passes, the task fails with a :class:`PolicyViolationError`
message naming the task, the policies and the reasons.  A policy's
:class:`~.policy_types.EnforcementMode` says what a violation does:

* ``hard``: every violation blocks; a violating model is never used.
* ``soft``: only the *hard constraints* block - who gets the data (providers, models,
  regions, required tags); cost and latency limits are warnings (logged and recorded).
* ``monitor``: nothing blocks; every violation is recorded.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .. import attributes as attr
from .. import events
from ..domain.errors import OrchestratorError
from ..domain.results import ProjectState
from ..llm.catalog import CATALOG, ModelInfo
from ..llm.pricing import PriceSource, Pricing, flat_price
from .policy_types import HARD_CONSTRAINTS, EnforcementMode, Policy

__all__ = [
    "ModelProfile",
    "Violation",
    "PolicyResult",
    "PolicyEngine",
    "PolicyViolationError",
    "compliant_models",
    "NOMINAL_CALL_TOKENS",
    "NOMINAL_CALLS_PER_TASK",
]

logger = logging.getLogger("orchestrator.policy")

_STRICTNESS = {EnforcementMode.MONITOR: 0, EnforcementMode.SOFT: 1, EnforcementMode.HARD: 2}

# A nominal call for cost limits when the caller gives no estimate (2,000 tokens in, 1,000
# out) and a nominal task (four such calls).
NOMINAL_CALL_TOKENS = (2000, 1000)
NOMINAL_CALLS_PER_TASK = 4


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
        return cls(
            info.name,
            info.provider,
            info.input_per_m,
            info.output_per_m,
            info.region,
            tuple(info.tags),
            observed_latency_ms,
            info.price,
        )

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """Worst-case USD of a call of this size (infinite when the price is unknown)."""
        pricing = self.pricing
        if pricing is None:
            if self.input_per_m is None or self.output_per_m is None:
                return math.inf
            pricing = Pricing(
                PriceSource.CATALOG, flat_price([("input", self.input_per_m), ("output", self.output_per_m)])
            )
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


class PolicyViolationError(OrchestratorError):
    """No model may be used: the message names the task, the policies and the reasons."""

    def __init__(
        self,
        message: str,
        *,
        task_id: str | None = None,
        policies: Sequence[Policy] = (),
        results: Sequence[PolicyResult] = (),
    ) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.policies = tuple(policies)
        self.results = tuple(results)
        self.state: ProjectState | None = None
        """Set by ``Orchestrator.run_project`` when it stops a project: the (empty) ProjectState,
        so a caller can still report and write the results of a run that spent nothing."""

    @classmethod
    def for_candidates(
        cls, task_id: str | None, policies: Sequence[Policy], results: Sequence[PolicyResult], what: str = ""
    ) -> PolicyViolationError:
        who = f"task {task_id}" if task_id else (what or "project")
        names = ", ".join(f"{p.name} ({p.enforcement_mode.value})" for p in policies) or "(none)"
        failed = [r for r in results if not r.passed]
        if failed:
            detail = "; ".join(f"{r.model}: {r.reason}" for r in failed[:6])
            if len(failed) > 6:
                detail += f"; and {len(failed) - 6} more"
        else:
            detail = "no usable candidate model to check"
        return cls(
            f"{who}: no model satisfies the policies {names}: {detail}",
            task_id=task_id,
            policies=policies,
            results=results,
        )


# ---------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------


class PolicyEngine:
    """Checks models against policies; every :meth:`check` is a
    ``policy_check_started``/``policy_checked`` pair on the event bus."""

    def check(
        self,
        model: str | ModelInfo,
        profile: ModelProfile | None = None,
        policies: Sequence[Policy] = (),
        *,
        call_cost_usd: float | None = None,
        task_cost_usd: float | None = None,
    ) -> PolicyResult:
        """Evaluate ``model`` against ``policies``.  ``call_cost_usd``/``task_cost_usd``
        are the caller's worst-case estimates for cost limits (default: a nominal call
        of 2,000 input and 1,000 output tokens, and four such calls per task)."""
        name = model.name if isinstance(model, ModelInfo) else model
        with events.traced_policy_check(len(policies), model=name) as span:
            result = self.evaluate(model, profile, policies, call_cost_usd=call_cost_usd, task_cost_usd=task_cost_usd)
            span.set_attribute(attr.POLICY_PASSED, result.passed)
            span.set_attribute(attr.POLICY_VIOLATIONS, len(result.violations))
            span.set_attribute(attr.POLICY_MODE, result.mode.value)
            if policies:
                span.set_attribute(attr.POLICY_NAMES, tuple(p.name for p in policies))
            if result.violations:
                span.set_attribute(attr.POLICY_REASONS, tuple(str(v)[:200] for v in result.violations[:8]))
        for v in result.warnings:
            logger.warning(
                "policy %s (%s mode) violated by %s, not blocking: %s", v.policy, v.mode.value, result.model, v.message
            )
        return result

    def enforce(
        self,
        model: str | ModelInfo,
        profile: ModelProfile | None = None,
        policies: Sequence[Policy] = (),
        *,
        task_id: str | None = None,
        call_cost_usd: float | None = None,
        task_cost_usd: float | None = None,
    ) -> PolicyResult:
        """:meth:`check`, raising :class:`PolicyViolationError` when the model is blocked."""
        result = self.check(model, profile, policies, call_cost_usd=call_cost_usd, task_cost_usd=task_cost_usd)
        if not result.passed:
            who = f"task {task_id}" if task_id else "project"
            names = ", ".join(sorted({v.policy for v in result.blocking}))
            raise PolicyViolationError(
                f"{who}: model {result.model} violates the policies {names}: {result.reason}",
                task_id=task_id,
                policies=policies,
                results=[result],
            )
        return result

    def evaluate(
        self,
        model: str | ModelInfo,
        profile: ModelProfile | None = None,
        policies: Sequence[Policy] = (),
        *,
        call_cost_usd: float | None = None,
        task_cost_usd: float | None = None,
    ) -> PolicyResult:
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
                    mode == EnforcementMode.SOFT and constraint in HARD_CONSTRAINTS
                )
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


def _violations(
    policy: Policy, model: str, profile: ModelProfile, call_cost: float, task_cost: float
) -> Iterable[tuple[str, str]]:
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
        yield (
            "max_cost_per_call_usd",
            (f"worst-case call cost {_usd(call_cost)} > max_cost_per_call_usd ${policy.max_cost_per_call_usd:g}"),
        )
    if policy.max_cost_per_task_usd is not None and task_cost > policy.max_cost_per_task_usd:
        yield (
            "max_cost_per_task_usd",
            (f"worst-case task cost {_usd(task_cost)} > max_cost_per_task_usd ${policy.max_cost_per_task_usd:g}"),
        )
    if (
        policy.max_latency_ms is not None
        and profile.observed_latency_ms is not None
        and profile.observed_latency_ms > policy.max_latency_ms
    ):
        yield (
            "max_latency_ms",
            (f"observed latency {profile.observed_latency_ms:.0f} ms > max_latency_ms {policy.max_latency_ms:g}"),
        )


def _usd(amount: float) -> str:
    return "unknown (no price)" if math.isinf(amount) else f"${amount:.6f}"


def compliant_models(
    policies: Sequence[Policy], candidates: Iterable[str], engine: PolicyEngine | None = None
) -> list[str]:
    """The candidates that pass ``policies`` (no events; catalog profiles)."""
    engine = engine or PolicyEngine()
    return [m for m in candidates if m in CATALOG and engine.evaluate(m, None, policies).passed]
