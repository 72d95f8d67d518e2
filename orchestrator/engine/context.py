"""What the parts of one run share: the budget, the client, routing, governance, and the
few facts learned while running (observed latencies, why the run stopped)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from ..domain.budget import Budget
from ..domain.errors import OrchestratorError
from ..domain.tasks import Task
from ..governance.acceptance import Criteria
from ..governance.policy import ModelProfile, PolicyEngine, PolicySet
from ..governance.remediation import RemediationEngine
from ..governance.validators import ValidatorConfig
from ..llm.client import UnifiedClient
from ..llm.routing import Router
from .checks import CheckRunner
from .profile import FULL, RunProfile

StopKind = Literal["budget", "time"]
"""Why a call was refused: money or wall-clock time ran out."""


@dataclass
class RunContext:
    """One run's shared state; the planner, scheduler and task runners hold the same one."""

    budget: Budget
    client: UnifiedClient
    router: Router
    policies: PolicySet
    policy_engine: PolicyEngine
    remediation: RemediationEngine
    validators: ValidatorConfig
    evaluation_samples: int = 2
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
    latency_ms: dict[str, float] = field(default_factory=dict)
    """Observed latency per model (moving average), for the latency policies."""
    stop_reason: StopKind | None = None
    """Set once money or time ran out: no new task starts after that."""
    project_brief: str = ""
    """The project and its criteria, prepended to vague task prompts."""
    run_profile: RunProfile = FULL
    """How much machinery the run spends (``local`` for the embedded model)."""
    criteria: Criteria = field(default_factory=Criteria)
    """The criteria split into executable checks and prose (prose is for the evaluator)."""
    checks: CheckRunner = field(default_factory=CheckRunner)
    tasks: dict[str, Task] = field(default_factory=dict)
    """The run's tasks by id (a task's checks run after its code dependencies' code)."""

    def stop(self, kind: StopKind) -> None:
        self.stop_reason = self.stop_reason or kind

    def profile(self, model: str) -> ModelProfile:
        return ModelProfile.from_catalog(model, self.latency_ms.get(model))

    def observe_latency(self, model: str, latency_ms: float) -> None:
        seen = self.latency_ms.get(model)
        self.latency_ms[model] = latency_ms if seen is None else 0.7 * seen + 0.3 * latency_ms


class CallRefused(OrchestratorError):
    """Budget or time can no longer pay for the task's next call (nothing was sent)."""

    def __init__(self, reason: str, kind: StopKind) -> None:
        super().__init__(reason)
        self.kind: StopKind = kind
