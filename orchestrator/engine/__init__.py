"""The engine: plan a project into tasks, schedule the DAG, run each task's rounds.

Modules: ``orchestrator`` (the run), ``planning`` (decomposition and sanitising),
``scheduling`` (the DAG), ``model_choice`` (candidates, policies, reviewers),
``task_runner`` (one task's loop), ``rounds`` (one round's calls), ``remedies``
(carrying out remediation decisions), ``prompts``, ``context`` (what a run shares),
``outcomes`` (a round's typed outcome), ``task_state`` (one task's loop state).

Talks to the outside only through the client (``orchestrator.llm``) and the event bus
(``orchestrator.events``); never imports an observer or OpenTelemetry.
"""

from __future__ import annotations

from .orchestrator import Orchestrator
from .planning import sanitize_tasks
from .scheduling import topological_order

__all__ = ["Orchestrator", "sanitize_tasks", "topological_order"]
