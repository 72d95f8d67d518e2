"""A round's outcome, as a closed union the task loop handles with ``match``.

Why a union and not exceptions: a failed call, a refused call and a fallback that found
no model are normal outcomes the remediation engine decides on, not errors to unwind;
each variant carries exactly what that decision needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..governance.acceptance import CheckReport, CheckResult
from ..governance.remediation import Decision
from ..governance.validators import ValidationResult
from ..llm.client import LLMCallError
from .context import StopKind


@dataclass(frozen=True, slots=True)
class Round:
    """A completed round: the revised output, its score and whether it passed the validators.

    ``score`` is what the loop decides by (0 when a validator rejected the output; at
    least the task's threshold when its acceptance checks all passed);
    ``evaluator_score`` is the evaluator's own score of this output, None when no
    evaluator was asked (a rejected output, or checks that decided alone)."""

    output: str
    score: float
    passed_validators: bool
    reasons: str = ""
    model: str = ""
    failed: tuple[str, ...] = ()
    """The validators that rejected the output."""
    checks: tuple[CheckResult, ...] = ()
    """The acceptance checks' results on this output (when the task has checks)."""
    evaluator_score: float | None = None

    @property
    def checks_passed(self) -> int:
        return sum(1 for c in self.checks if c.passed)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the deterministic gate said about one output: the validators that rejected
    it (the acceptance checks count as the validator ``acceptance``) and, when the task
    has checks, each check's result."""

    failed: tuple[ValidationResult, ...] = ()
    report: CheckReport | None = None

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def checks(self) -> tuple[CheckResult, ...]:
        return self.report.results if self.report is not None else ()


@dataclass(frozen=True, slots=True)
class CallFailed:
    """A call of the round failed after the client's retries (and every reviewer fallback)."""

    error: LLMCallError


@dataclass(frozen=True, slots=True)
class Refused:
    """Budget or time refused a call of the round; nothing was sent."""

    kind: StopKind
    reason: str


@dataclass(frozen=True, slots=True)
class NoFallback:
    """``fallback_model`` found no usable, compliant model; the decision is asked again without it."""

    decision: Decision


RoundOutcome = Round | CallFailed | Refused | NoFallback
