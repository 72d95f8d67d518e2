"""Everything about talking to models: the :class:`UnifiedClient` (cache, budget
reservation, retries, health, the ``llm_call`` events), the response cache, routing,
the model catalog, and the provider adapters (``providers/``).

Imports only :mod:`orchestrator.events` and :mod:`orchestrator.domain` of the rest.
"""

from __future__ import annotations

from .cache import ResponseCache
from .catalog import CATALOG, LOCAL_MODEL, ModelInfo, get_model, register_model
from .client import APIResponse, BudgetExceededError, LLMCallError, TimeBudgetExceededError, UnifiedClient
from .routing import Router

__all__ = [
    "APIResponse",
    "BudgetExceededError",
    "CATALOG",
    "LLMCallError",
    "LOCAL_MODEL",
    "ModelInfo",
    "ResponseCache",
    "Router",
    "TimeBudgetExceededError",
    "UnifiedClient",
    "get_model",
    "register_model",
]
