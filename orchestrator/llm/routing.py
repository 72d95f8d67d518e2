"""Model routing: which model does a task type get, and who critiques it.

Candidates come from the routing table, keeping only models the client can use now
(adapter present, key and SDK available, not out for the run), models cooling down
after repeated failures last.  ``only_model`` (the CLI's
``--model``) restricts everything to one model.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..domain.errors import OrchestratorError
from ..domain.tasks import TaskType
from .catalog import LOCAL_MODEL, PLANNER_CANDIDATES, ROUTING, get_model
from .client import UnifiedClient


class NoModelAvailable(OrchestratorError):
    """No candidate model is usable for a role."""


class Router:
    def __init__(self, client: UnifiedClient, only_model: str | None = None) -> None:
        self.client = client
        self.only_model = only_model

    def _usable(self, names: Iterable[str]) -> list[str]:
        if self.only_model:
            names = [self.only_model]
        seen: list[str] = []
        for name in names:
            if name not in seen and self.client.is_usable(name):
                seen.append(name)
        # a model whose circuit breaker is open stays usable (a task with no other model
        # waits for it) but goes after the healthy ones while it recovers; stable order
        return sorted(seen, key=self.client.cooling_down)

    def candidates(self, task_type: TaskType) -> list[str]:
        """Usable models for ``task_type``, best first; the local model is the last resort."""
        return self._usable((*ROUTING[task_type], LOCAL_MODEL))

    def planner_candidates(self) -> list[str]:
        return self._usable((*PLANNER_CANDIDATES, LOCAL_MODEL))

    def reviewer_candidates(self, model: str, task_type: TaskType) -> list[str]:
        """Usable models of other providers, best first, then ``model`` itself: the critic
        and evaluator of a task, with fallbacks when one fails."""
        provider = get_model(model).provider
        pool = self._usable((*ROUTING[task_type], *ROUTING[TaskType.EVALUATION], LOCAL_MODEL))
        return [name for name in pool if get_model(name).provider != provider] + [model]

    def reviewer_for(self, model: str, task_type: TaskType) -> str:
        """A usable model of another provider when there is one, else ``model`` itself."""
        return self.reviewer_candidates(model, task_type)[0]
