"""One task's loop state, grouped by what changes together.

* :class:`Assignment` - the model in use and what was derived from it (reviewers,
  prompt, system prompt, output cap); replaced whole when the model changes.
* :class:`CandidateState` - which candidates were tried, failed, or policy-checked.
* :class:`PendingRound` - the steps of the round in flight, kept across an
  ``auto_retry`` so a retried round resumes after what already succeeded.
* :class:`TaskRun` - the above plus the best and last rounds and how the loop ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..domain.results import TaskResult
from ..domain.tasks import Task
from ..governance.policy import Policy, PolicyResult
from ..governance.remediation import TaskRemediation
from .context import StopKind
from .outcomes import Round, Verdict


@dataclass
class Assignment:
    model: str = ""
    reviewers: list[str] = field(default_factory=list)
    """Critic/evaluator candidates, best first; the task's own model is the last."""
    prompt: str = ""
    system: str = ""
    max_tokens: int = 0


@dataclass
class CandidateState:
    names: list[str]
    tried: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    """Models a call of which failed in this task (not asked to review their replacement)."""
    checked: dict[str, PolicyResult] = field(default_factory=dict)


@dataclass
class PendingRound:
    draft: str | None = None
    critique: str | None = None
    revised: str | None = None
    revised_by: str = ""
    instruction: str = ""
    """adjust_prompt: the failure spelled out for the next revise."""
    draft_verdict: Verdict | None = None
    """The gate's verdict on a fresh draft (tasks with acceptance checks)."""

    def clear(self) -> None:
        self.draft = self.critique = self.revised = None
        self.draft_verdict = None
        self.revised_by = self.instruction = ""


@dataclass(frozen=True, slots=True)
class Unanswered:
    """The failed or refused call a remediation must answer, else the task stops with it."""

    error: str
    stop_kind: StopKind | None = None


@dataclass
class TaskRun:
    task: Task
    context: Mapping[str, str]
    result: TaskResult
    policies: tuple[Policy, ...]
    remediation: TaskRemediation
    candidates: CandidateState
    threshold: float
    """Lowered by degrade_threshold."""
    use: Assignment = field(default_factory=Assignment)
    pending: PendingRound = field(default_factory=PendingRound)
    best: Round | None = None
    last: Round | None = None
    skipped_validators: set[str] = field(default_factory=set)
    accepted: bool = False
    """degrade_threshold accepted the best output."""
    aborted: str | None = None
    stopped: bool = False
    """A failure nothing remedied, or money/time ran out."""
    unanswered: Unanswered | None = None
    last_round_cost: float = 0.0

    @property
    def rounds_left(self) -> int:
        return max(0, self.task.iterations_cap - self.result.iterations)

    @property
    def done(self) -> bool:
        best = self.best
        return bool(
            self.accepted
            or self.aborted
            or self.stopped
            or (best is not None and best.passed_validators and best.score >= self.threshold)
        )

    def record(self, current: Round) -> Round:
        """Keep ``current`` as the last round and, when better, as the best; returns the best."""
        best = self.best
        if (
            best is None
            or current.score > best.score
            or (not best.passed_validators and current.passed_validators)
            or (current.score == best.score and current.checks_passed > best.checks_passed)
        ):
            self.best = best = current
        self.last = current
        return best
