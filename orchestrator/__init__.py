"""multi-llm-orchestrator: decompose a project into tasks and run them across LLM
providers with critique, scoring, budgets and observable events.

Public names are imported on first use, so ``import orchestrator`` stays light and never
imports OpenTelemetry::

    from orchestrator import Orchestrator, Budget, TracingConfig, configure_tracing
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # engine and domain
    "Orchestrator": "engine",
    "UnifiedClient": "llm.client",
    "APIResponse": "llm.client",
    "OrchestratorError": "domain.errors",
    "BudgetExceededError": "llm.client",
    "LLMCallError": "llm.client",
    "ResponseCache": "llm.cache",
    "Budget": "domain.budget",
    "Task": "domain.tasks",
    "TaskType": "domain.tasks",
    "TaskStatus": "domain.results",
    "TaskResult": "domain.results",
    "ProjectState": "domain.results",
    "ProjectStatus": "domain.results",
    # tracing (the seed's API)
    "TracingConfig": "tracing",
    "configure_tracing": "tracing",
    "get_tracer": "tracing",
    "shutdown_tracing": "tracing",
    # observers
    "Observer": "observers.base",
    "TracingObserver": "observers.tracing",
    "MetricsObserver": "observers.metrics",
    "LoggingObserver": "observers.logging",
    "ProgressObserver": "observers.progress",
    "EventRecorder": "observers.recorder",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
