"""Checkpoints of a run: what the engine hands to a run store, and how a stopped run is
put back together from one.

The engine knows stores only through :class:`CheckpointStore` (three methods), so it
never depends on SQLite; the CLI gives it ``orchestrator.state.RunStore``.  Saving is
best effort for the run: a store that fails to write is reported once (a warning and a
note) and the run goes on, because losing the results in hand would be worse than losing
the ability to resume.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Protocol

from ..domain.budget import Budget
from ..domain.checkpoint import INTERRUPTED, SETTLED_STATUSES, Checkpoint, RootSpan
from ..domain.results import ProjectState, TaskResult
from ..governance.policy import PolicySet
from ..governance.remediation import RemediationEngine
from ..governance.validators import ValidatorConfig
from ..llm.catalog import CATALOG

logger = logging.getLogger("orchestrator.engine")


class CheckpointStore(Protocol):
    """Where checkpoints go.  ``claim`` must exclude every other claim of the same project
    (in this process or another) until its context exits, and raise
    :class:`~orchestrator.domain.checkpoint.ProjectBusyError` when it cannot."""

    def claim(self, project_id: str) -> AbstractContextManager[object]: ...

    def load(self, project_id: str) -> Checkpoint | None: ...

    def save(self, checkpoint: Checkpoint) -> None: ...


def package_version() -> str:
    try:
        from importlib.metadata import version

        return version("multi-llm-orchestrator")
    except Exception:  # noqa: BLE001 - running from a source tree that was never installed
        return "0"


def versions() -> dict[str, str]:
    """What a checkpoint records of the software and data that priced and routed the run."""
    from ..llm.pricing import snapshot_label

    return {"package": package_version(), "catalog": catalog_version(), "prices": snapshot_label()}


def catalog_version() -> str:
    """A short fingerprint of the model catalog (names, providers, prices, limits): a
    resumed run can tell when prices changed under it."""
    digest = hashlib.sha256()
    for name in sorted(CATALOG):
        m = CATALOG[name]
        digest.update(
            f"{m.name}|{m.provider}|{m.input_per_m}|{m.output_per_m}|{m.context_window}|"
            f"{m.max_output_tokens}\n".encode()
        )
    return digest.hexdigest()[:12]


def governance_settings(
    policies: PolicySet, remediation: RemediationEngine, validators: ValidatorConfig
) -> dict[str, object]:
    """The policies, remediation plans and validators in force, JSON-ready (file shape
    where there is one), for the record: ``orchestrator runs show`` prints them."""
    return {
        "policies": {
            "policies": [p.to_dict() for p in policies.global_policies],
            "task_types": {t.value: [p.to_dict() for p in v] for t, v in policies.by_task_type.items() if v},
            "tasks": {t: [p.to_dict() for p in v] for t, v in policies.by_task.items() if v},
        },
        "remediation": remediation.config.describe(),
        "validators": {
            "task_types": {t.value: [{s.name: dict(s.options)} for s in v] for t, v in validators.by_type.items()},
            "tasks": {t: [{s.name: dict(s.options)} for s in v] for t, v in validators.by_task.items()},
        },
    }


class Checkpointer:
    """Saves one attempt's checkpoints.  Without a store every call does nothing."""

    def __init__(
        self,
        store: CheckpointStore | None,
        state: ProjectState,
        *,
        settings: Mapping[str, object],
        previous: Checkpoint | None = None,
    ) -> None:
        self.store = store
        self.state = state
        self.settings = dict(settings)
        self.started_at = previous.started_at if previous is not None else time.time()
        self.roots: list[RootSpan] = list(previous.roots) if previous is not None else []
        self.result_attempts = dict(previous.result_attempts) if previous is not None else {}
        self.plan_notes: list[str] = list(previous.plan_notes) if previous is not None else []
        self._failed = False

    def root(self, carrier: Mapping[str, str]) -> None:
        """Remember this attempt's root span: the carrier a tracing observer filled with the
        configured propagator (nothing when the run is not traced).  ``traceparent`` is
        also kept on its own when the carrier has one, for readers that show trace ids."""
        if carrier:
            entry: RootSpan = {"attempt": self.state.attempt, "carrier": dict(carrier)}
            if carrier.get("traceparent"):
                entry["traceparent"] = carrier["traceparent"]
            self.roots.append(entry)

    def links(self) -> tuple[Mapping[str, str], ...]:
        """The carriers of the earlier attempts' roots, oldest first (a checkpoint saved
        before carriers were kept has only the ``traceparent``)."""
        out: list[Mapping[str, str]] = []
        for root in self.roots:
            carrier = root.get("carrier")
            if isinstance(carrier, Mapping) and carrier:
                out.append({str(k): str(v) for k, v in carrier.items()})
            elif root.get("traceparent"):
                out.append({"traceparent": str(root["traceparent"])})
        return tuple(out)

    def save(self, status: str) -> None:
        if self.store is None:
            return
        try:
            self.store.save(self.checkpoint(status))
        except Exception as exc:  # noqa: BLE001 - a store problem must not end the run
            if not self._failed:
                self._failed = True
                message = f"checkpoint not saved ({type(exc).__name__}: {exc}); this run may not be resumable"
                logger.warning("%s", message)
                self.state.notes.append(message)

    def checkpoint(self, status: str) -> Checkpoint:
        state, budget = self.state, self.state.budget
        results: dict[str, TaskResult] = {}
        for tid, result in state.results.items():
            if result.status in SETTLED_STATUSES:
                results[tid] = replace(result)  # a copy: the live one may change after this
                self.result_attempts.setdefault(tid, state.attempt)
                if tid not in state.restored:
                    self.result_attempts[tid] = state.attempt
        return Checkpoint(
            project_id=state.project_id,
            description=state.description,
            criteria=state.criteria,
            status=status,
            attempt=state.attempt,
            started_at=self.started_at,
            updated_at=time.time(),
            tasks=[replace(t, depends_on=list(t.depends_on)) for t in state.tasks.values()] if state.tasks else None,
            execution_order=list(state.execution_order),
            plan_notes=list(self.plan_notes),
            profile=state.profile,
            results=results,
            result_attempts={t: self.result_attempts[t] for t in results},
            max_usd=budget.max_usd,
            max_time_seconds=budget.max_time_seconds,
            spent_usd=budget.spent_usd,
            planning=replace(state.planning),
            phase_spend=dict(budget.phase_spend),
            elapsed_seconds=budget.elapsed_seconds,
            settings=self.settings,
            versions=versions(),
            roots=list(self.roots),
            notes=list(state.notes),
        )


def resumed_budget(cp: Checkpoint, max_usd: float | None = None, max_time_seconds: float | None = None) -> Budget:
    """The budget of a resumed run: the original caps (a higher one when given; a lower
    one is refused), what was spent, and the time the earlier attempts ran."""
    usd = cp.max_usd if max_usd is None else float(max_usd)
    seconds = cp.max_time_seconds if max_time_seconds is None else float(max_time_seconds)
    if usd < cp.max_usd:
        raise ValueError(f"a resume can only raise the budget: ${usd:g} is below the original ${cp.max_usd:g}")
    if seconds < cp.max_time_seconds:
        raise ValueError(
            f"a resume can only raise the time cap: {seconds:g}s is below the original {cp.max_time_seconds:g}s"
        )
    budget = Budget(usd, seconds)
    budget.restore_spend(cp.spent_usd, cp.phase_spend)
    budget.restart_clock(cp.elapsed_seconds)
    return budget


def restored_state(cp: Checkpoint, budget: Budget, *, next_attempt: bool = True) -> ProjectState:
    """The run as the checkpoint left it.  For a new attempt only completed and degraded
    results are kept (every other task runs again); otherwise (a finished run, shown as
    is) every saved result."""
    state = ProjectState(
        project_id=cp.project_id,
        description=cp.description,
        criteria=cp.criteria,
        budget=budget,
        attempt=cp.attempt + 1 if next_attempt else cp.attempt,
    )
    if cp.tasks is not None:
        state.tasks = {t.id: replace(t, depends_on=list(t.depends_on)) for t in cp.tasks}
        state.execution_order = list(cp.execution_order) or list(state.tasks)
    if cp.tasks is not None:
        state.planning = replace(cp.planning)
        state.profile = cp.profile
    results = cp.kept if next_attempt else cp.results
    for tid, result in results.items():
        if tid in state.tasks:
            state.results[tid] = replace(result)
            if next_attempt or cp.result_attempts.get(tid, cp.attempt) != cp.attempt:
                state.restored[tid] = cp.result_attempts.get(tid, cp.attempt)
    state.notes = list(cp.plan_notes) if next_attempt else list(cp.notes)
    now = versions()
    changed = [f"{k} {cp.versions[k]} -> {v}" for k, v in now.items() if cp.versions.get(k, v) != v]
    if next_attempt and changed:
        state.notes.append(f"resumed with other versions than the checkpoint's ({', '.join(changed)})")
    if next_attempt and cp.rerun_usd > 1e-12:
        state.notes.append(
            f"resumed: ${cp.rerun_usd:.6f} of the ${cp.spent_usd:.6f} spent before went to work that "
            "stopped unfinished and runs again (it stays in the budget)"
        )
    if not next_attempt and cp.status not in (INTERRUPTED,):
        from ..domain.results import ProjectStatus

        try:
            state.status = ProjectStatus(cp.status)
        except ValueError:
            state.status = None
    return state
