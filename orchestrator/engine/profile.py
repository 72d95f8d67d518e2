"""Run profiles: how much machinery a run spends, fitted to the planner's model.

Why two: the full loop (a decomposition into up to 15 tasks, generate -> critique ->
revise -> evaluate, generous token caps) pays off on capable remote models; on the
embedded 135M model (SmolLM2: 512 output tokens, 8k context, a few dozen tokens per
second on a laptop core) it turned a one-function request into four tasks and four
minutes of rambling revisions.  The ``local`` profile keeps what a small model can do
well and lets the executable acceptance checks, not the model's self-grade, decide.

``auto`` (the default) picks ``local`` when the planner is the embedded model (no
provider key, or ``--model smollm2-135m``) and ``full`` otherwise; ``--profile``
overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ProfileName = Literal["local", "full"]
PROFILE_CHOICES = ("auto", "local", "full")


@dataclass(frozen=True, slots=True)
class RunProfile:
    name: ProfileName
    one_task_for_one_target: bool
    """A request naming one function, class or file is one task, without a planner call."""
    max_tasks: int
    """Upper bound of a decomposition (``--max-tasks`` overrides)."""
    decompose_max_tokens: int
    simple_schema: bool
    """A decomposition schema without dependencies, with short ids and prompts."""
    retry_decomposition_after_timeout: bool
    """Ask the planner again after its call timed out (on the same CPU it takes as long)."""
    decompose_timeout: float | None
    """Seconds for the decomposition call (None: the client's default)."""
    generate_max_tokens: int | None
    """Cap of generate and revise calls (None: the task type's and model's caps)."""
    single_target_max_tokens: int | None
    """Cap of generate and revise for a one-function/class/file task."""
    critique_max_tokens: int
    evaluate_max_tokens: int
    review_passing_draft: bool
    """Critique and revise a first draft that already passes the acceptance checks."""
    evaluate_passing_checks: bool
    """Ask the evaluator about an output whose checks all pass when no prose criterion is
    left to judge (its score is floored at the threshold either way)."""
    critique_from_checks: bool
    """When checks fail, their errors are the critique (no critic call)."""


LOCAL = RunProfile(
    name="local",
    one_task_for_one_target=True,
    max_tasks=3,
    decompose_max_tokens=384,
    simple_schema=True,
    retry_decomposition_after_timeout=False,
    decompose_timeout=90.0,
    generate_max_tokens=384,
    single_target_max_tokens=256,
    critique_max_tokens=160,
    evaluate_max_tokens=128,
    review_passing_draft=False,
    evaluate_passing_checks=False,
    critique_from_checks=True,
)
FULL = RunProfile(
    name="full",
    one_task_for_one_target=False,
    max_tasks=15,
    decompose_max_tokens=1500,
    simple_schema=False,
    retry_decomposition_after_timeout=True,
    decompose_timeout=None,
    generate_max_tokens=None,
    single_target_max_tokens=None,
    critique_max_tokens=400,
    evaluate_max_tokens=200,
    review_passing_draft=True,
    evaluate_passing_checks=True,
    critique_from_checks=False,
)
PROFILES: dict[str, RunProfile] = {"local": LOCAL, "full": FULL}


def resolve_profile(choice: str | RunProfile, planner_is_local: bool) -> RunProfile:
    """``auto`` -> ``local`` when the planner is the embedded model, else ``full``."""
    if isinstance(choice, RunProfile):
        return choice
    if choice == "auto":
        return LOCAL if planner_is_local else FULL
    try:
        return PROFILES[choice]
    except KeyError:
        raise ValueError(f"unknown profile {choice!r} (known: {', '.join(PROFILE_CHOICES)})") from None
