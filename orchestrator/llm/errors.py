"""Why a call was not answered: the budget or the clock refused it (nothing was sent),
or every attempt failed."""

from __future__ import annotations

from ..domain.errors import OrchestratorError
from .providers.base import ProviderError


class BudgetExceededError(OrchestratorError):
    """The remaining budget cannot pay for the worst case of the call; nothing was sent."""


class TimeBudgetExceededError(OrchestratorError):
    """The remaining wall-clock budget is too short for the call; nothing was sent."""


class LLMCallError(OrchestratorError):
    """Every attempt of a call failed; ``last`` is the last provider error."""

    def __init__(self, model: str, last: ProviderError, attempts: int) -> None:
        super().__init__(f"{model}: {last} (after {attempts} attempt{'s' if attempts != 1 else ''})")
        self.model = model
        self.last = last
        self.attempts = attempts
        self.error_type = last.error_type
