"""The public names users import: pinned, so an internal move cannot break them silently.

Adding a name is a conscious change of this list; removing one is a breaking change."""

from __future__ import annotations

import importlib
import inspect

import pytest

PUBLIC = {
    "orchestrator": {
        "APIResponse",
        "Budget",
        "BudgetExceededError",
        "EventRecorder",
        "LLMCallError",
        "LoggingObserver",
        "MetricsObserver",
        "Observer",
        "Orchestrator",
        "OrchestratorError",
        "ProgressObserver",
        "ProjectState",
        "ProjectStatus",
        "ResponseCache",
        "Task",
        "TaskResult",
        "TaskStatus",
        "TaskType",
        "TracingConfig",
        "TracingObserver",
        "UnifiedClient",
        "configure_tracing",
        "get_tracer",
        "shutdown_tracing",
        "__version__",
    },
    "orchestrator.events": {
        "BusSignal",
        "Event",
        "PairStart",
        "PairFinish",
        "PointEvent",
        "PairContext",
        "PairReceiver",
        "ProjectStarted",
        "ProjectFinished",
        "TaskStarted",
        "TaskFinished",
        "LlmCallStarted",
        "LlmCallFinished",
        "PolicyCheckStarted",
        "PolicyChecked",
        "RemediationStarted",
        "RemediationFinished",
        "BudgetWarning",
        "CacheHit",
        "ValidationFailed",
        "DecompositionFallback",
        "ModelUnhealthy",
        "TaskSkipped",
        "IterationScored",
        "LlmRetry",
        "TasksPlanned",
        "AcceptanceCheck",
        "TaskRestored",
        "LocalModelLoaded",
        "local_model_loaded",
        "project_started",
        "project_finished",
        "task_started",
        "task_finished",
        "llm_call_started",
        "llm_call_finished",
        "policy_check_started",
        "policy_checked",
        "remediation_started",
        "remediation_finished",
        "budget_warning",
        "cache_hit",
        "validation_failed",
        "decomposition_fallback",
        "model_unhealthy",
        "task_skipped",
        "iteration_scored",
        "llm_retry",
        "tasks_planned",
        "LlmCallDispatched",
        "JsonModeRejected",
        "llm_call_dispatched",
        "json_mode_rejected",
        "ModelText",
        "acceptance_check",
        "task_restored",
        "ALL_SIGNALS",
        "PAIRS",
        "POINT_SIGNALS",
        "SIGNALS_BY_NAME",
        "CONTENT_FIELDS",
        "traced_project",
        "traced_task",
        "traced_llm_call",
        "traced_policy_check",
        "traced_remediation",
        "emit",
        "is_active",
        "current_ids",
        "new_correlation_id",
        "BatchStarted",
        "BatchFinished",
        "BatchProgress",
        "batch_started",
        "batch_finished",
        "batch_progress",
        "traced_batch",
        "batch_scope",
        "current_batch",
    },
    "orchestrator.observers": {
        "EventRecorder",
        "LoggingObserver",
        "MetricsObserver",
        "Observer",
        "ObserverLoadError",
        "ProgressObserver",
        "TracingObserver",
        "load_observer",
        "read_jsonl",
        "redact",
        "BatchProgressObserver",
    },
}

# the seed's tracing API: name -> parameters it must accept
SEED_TRACING = {
    "TracingConfig": ("enabled", "service_name", "otlp_endpoint", "sample_rate"),
    "configure_tracing": ("cfg",),
    "get_tracer": (),
    "shutdown_tracing": ("timeout_s",),
    "traced_task": ("task_id", "task_type"),
    "traced_llm_call": ("model", "call_type"),
    "traced_policy_check": ("policy_count",),
    "traced_remediation": ("strategy", "trigger"),
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_are_pinned(module):
    mod = importlib.import_module(module)
    assert set(mod.__all__) == PUBLIC[module]
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{module}.{name} does not resolve"


@pytest.mark.parametrize("name", sorted(SEED_TRACING))
def test_the_seed_tracing_api_keeps_its_signatures(name):
    tracing = importlib.import_module("orchestrator.tracing")
    target = getattr(tracing, name)
    params = list(inspect.signature(target).parameters)
    assert params[: len(SEED_TRACING[name])] == list(SEED_TRACING[name])


def test_tracing_config_keeps_the_seed_defaults():
    from orchestrator.tracing import TracingConfig

    cfg = TracingConfig()
    assert (cfg.enabled, cfg.service_name, cfg.otlp_endpoint, cfg.sample_rate) == (
        False,
        "multi-llm-orchestrator",
        None,
        1.0,
    )


def test_importing_the_package_imports_no_opentelemetry():
    import subprocess
    import sys

    code = (
        "import sys, orchestrator, orchestrator.tracing, orchestrator.engine, orchestrator.cli; "
        "from orchestrator import Orchestrator, Budget, UnifiedClient; "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_our_convention_keys_match_opentelemetry_semantic_conventions():
    """Emitters cannot import the semantic-conventions package; the keys they set by hand
    must still be the official ones."""
    from opentelemetry.semconv.attributes import (
        error_attributes,
        exception_attributes,
        http_attributes,
        server_attributes,
    )

    from orchestrator import attributes as attr

    assert attr.ERROR_TYPE == error_attributes.ERROR_TYPE
    assert attr.HTTP_RESPONSE_STATUS_CODE == http_attributes.HTTP_RESPONSE_STATUS_CODE
    assert attr.SERVER_ADDRESS == server_attributes.SERVER_ADDRESS
    assert attr.SERVER_PORT == server_attributes.SERVER_PORT
    assert attr.EXCEPTION_MESSAGE == exception_attributes.EXCEPTION_MESSAGE
    assert attr.EXCEPTION_STACKTRACE == exception_attributes.EXCEPTION_STACKTRACE
