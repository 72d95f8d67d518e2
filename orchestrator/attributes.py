"""Attribute keys of spans, metrics and events, as constants in one place.

Why one module: the same key is written by an emitter (the client sets ``llm.cost_usd``
on its handle) and read by several observers (spans, metrics, logs, the dev tree); a
typo in one of them would silently split a series.  This module imports nothing, so
emitters may use it without pulling in OpenTelemetry.

Three families:

* the seed's own keys (``project.*``, ``task.*``, ``llm.*``, ``policy.*``,
  ``remediation.*``) and our extensions (``orchestrator.*``);
* the OpenInference keys Arize Phoenix and MLflow classify spans by;
* the few general OpenTelemetry semantic-convention keys an *emitter* sets
  (``error.type``, ``http.response.status_code``, ``server.address``/``server.port``):
  emitters cannot import ``opentelemetry-semantic-conventions``; a test checks these
  equal its constants.  The GenAI keys (``gen_ai.*``), set only by observers, are at the
  end: the package has them only in private modules.
"""

from __future__ import annotations

from typing import Final

# -- run_project ------------------------------------------------------------------------
PROJECT_ID: Final = "project.id"
PROJECT_DESCRIPTION: Final = "project.description"
PROJECT_STATUS: Final = "project.status"
PROJECT_BUDGET_USD: Final = "project.budget_usd"
PROJECT_COST_USD: Final = "project.cost_usd"
PROJECT_TOKENS_IN: Final = "project.tokens_in"
PROJECT_TOKENS_OUT: Final = "project.tokens_out"
PROJECT_TASK_COUNT: Final = "project.task_count"
PROJECT_LLM_CALLS: Final = "project.llm_calls"
PROJECT_CACHED_CALLS: Final = "project.cached_calls"
ORCHESTRATOR_ATTEMPT: Final = "orchestrator.attempt"
"""1 for a first run, 2.. for a resumed one (run_project)."""
ORCHESTRATOR_RESUMED_FROM: Final = "orchestrator.resumed_from"
"""On a resumed run's root: the project id whose checkpoint it went on from."""
ORCHESTRATOR_ORIGINAL_TRACE_ID: Final = "orchestrator.original_trace_id"
"""On a resumed run's root: the trace id of the first traced attempt (also a span link)."""
ORCHESTRATOR_LINK: Final = "orchestrator.link"
"""On a span link: why it links (``resumed_from``; ``batch`` on a batch project's root)."""
ORCHESTRATOR_BATCH_ID: Final = "orchestrator.batch_id"
"""On the root of a project run by ``orchestrator batch``: the batch's id."""
ORCHESTRATOR_BATCH_TRACE_ID: Final = "orchestrator.batch_trace_id"
"""On a batch project's root: the batch span's trace id (also a span link), for backends
that do not show links (Phoenix)."""
ORCHESTRATOR_PROFILE: Final = "orchestrator.profile"
"""On run_project: the run profile used (``local`` or ``full``)."""
ORCHESTRATOR_SANDBOX: Final = "orchestrator.sandbox"
"""On run_project: the isolation model-written code ran under (``bwrap``, ``unshare``, ``none``)."""

# -- run_batch (the root of a batch: its projects are traces of their own, linked to it) ----
BATCH_ID: Final = "batch.id"
BATCH_PROJECT_COUNT: Final = "batch.project_count"
BATCH_BUDGET_USD: Final = "batch.budget_usd"
BATCH_MAX_PARALLEL: Final = "batch.max_parallel"
BATCH_BACKEND: Final = "batch.backend"
BATCH_STATUS: Final = "batch.status"
BATCH_PROJECTS_DONE: Final = "batch.projects_done"
"""Projects that ended (any status) in this attempt of the batch or an earlier one."""
BATCH_PROJECTS_FAILED: Final = "batch.projects_failed"
BATCH_COST_USD: Final = "batch.cost_usd"
"""The sum of the projects' ``project.cost_usd``."""
BATCH_SPENT_USD: Final = "batch.spent_usd"
"""What the batch ledger booked: every call of every attempt, work that ran again included."""
BATCH_TOKENS_IN: Final = "batch.tokens_in"
BATCH_TOKENS_OUT: Final = "batch.tokens_out"
BATCH_LLM_CALLS: Final = "batch.llm_calls"
BATCH_CACHED_CALLS: Final = "batch.cached_calls"

# -- task:<id> --------------------------------------------------------------------------
TASK_ID: Final = "task.id"
TASK_TYPE: Final = "task.type"
TASK_DESCRIPTION: Final = "task.description"
TASK_STATUS: Final = "task.status"
TASK_SCORE: Final = "task.score"
"""The evaluator's score of the kept output; absent when no evaluator scored it."""
TASK_THRESHOLD: Final = "task.threshold"
"""The score the task had to reach (its type's default or its own)."""
TASK_ITERATIONS: Final = "task.iterations"
TASK_MODEL: Final = "task.model"
TASK_REVIEWER_MODEL: Final = "task.reviewer_model"
TASK_COST_USD: Final = "task.cost_usd"
TASK_TOKENS_IN: Final = "task.tokens_in"
TASK_TOKENS_OUT: Final = "task.tokens_out"
TASK_FALLBACK_COUNT: Final = "task.fallback_count"
TASK_LLM_CALLS: Final = "task.llm_calls"
TASK_CACHED_CALLS: Final = "task.cached_calls"
TASK_CHECKS_TOTAL: Final = "task.checks_total"
TASK_CHECKS_PASSED: Final = "task.checks_passed"

# -- llm_call:<type> --------------------------------------------------------------------
LLM_MODEL: Final = "llm.model"
LLM_CALL_TYPE: Final = "llm.call_type"
LLM_TOKENS_IN: Final = "llm.tokens_in"
LLM_TOKENS_OUT: Final = "llm.tokens_out"
LLM_COST_USD: Final = "llm.cost_usd"
LLM_LATENCY_MS: Final = "llm.latency_ms"
LLM_CACHED: Final = "llm.cached"
LLM_FINISH_REASON: Final = "llm.finish_reason"
LLM_RESPONSE_MODEL: Final = "llm.response_model"
LLM_ATTEMPT: Final = "llm.attempt"
LLM_RESPONSE_ID: Final = "llm.response_id"
ORCHESTRATOR_QUEUE_MS: Final = "orchestrator.queue_ms"
"""Time an LLM call waited (concurrency limit, local generation lock) before it was sent."""
ORCHESTRATOR_UNPRICED: Final = "orchestrator.unpriced"
"""True on an LLM call of a model with no known price: its ``llm.cost_usd`` of 0 is not a price."""

# -- policy_check -----------------------------------------------------------------------
POLICY_COUNT: Final = "policy.count"
POLICY_MODEL: Final = "policy.model"
POLICY_PASSED: Final = "policy.passed"
POLICY_VIOLATIONS: Final = "policy.violations"
POLICY_MODE: Final = "policy.mode"
POLICY_NAMES: Final = "policy.names"
POLICY_REASONS: Final = "policy.reasons"

# -- remediation ------------------------------------------------------------------------
REMEDIATION_STRATEGY: Final = "remediation.strategy"
REMEDIATION_TRIGGER: Final = "remediation.trigger"
REMEDIATION_SUCCESS: Final = "remediation.success"
REMEDIATION_ATTEMPT: Final = "remediation.attempt"
REMEDIATION_DETAIL: Final = "remediation.detail"
REMEDIATION_FROM_MODEL: Final = "remediation.from_model"
REMEDIATION_TO_MODEL: Final = "remediation.to_model"
REMEDIATION_THRESHOLD: Final = "remediation.threshold"
REMEDIATION_SKIPPED_VALIDATORS: Final = "remediation.skipped_validators"

# -- roll-ups on enclosing spans: <prefix>.tokens_in, ... (never gen_ai.usage.*) ----------
ROLLUP_TOKENS_IN: Final = "tokens_in"
ROLLUP_TOKENS_OUT: Final = "tokens_out"
ROLLUP_COST_USD: Final = "cost_usd"
ROLLUP_LLM_CALLS: Final = "llm_calls"


def rollup_key(prefix: str, measure: str) -> str:
    """``task.tokens_in`` and the like: the roll-up ``measure`` on a ``prefix`` span."""
    return f"{prefix}.{measure}"


#: catalog provider name -> ``gen_ai.provider.name`` (the registry's well-known values;
#: OpenAI-compatible endpoints are ``openai`` with ``server.address`` telling which)
GEN_AI_PROVIDER_NAMES: Final = {
    "openai": "openai",
    "server": "openai",
    "openrouter": "openai",
    "kimi": "moonshot_ai",
    "deepseek": "deepseek",
    "anthropic": "anthropic",
    "google": "gcp.gemini",
    "local": "llama_cpp",
}
#: providers whose API takes the system prompt apart from the chat messages
SYSTEM_AS_INSTRUCTIONS: Final = frozenset({"anthropic", "google"})


def gen_ai_provider_name(provider: str) -> str:
    return GEN_AI_PROVIDER_NAMES.get(provider, provider)


# -- metrics ----------------------------------------------------------------------------
ORCHESTRATOR_CALL_TYPE: Final = "orchestrator.call_type"

# -- general OpenTelemetry conventions set by emitters ------------------------------------
ERROR_TYPE: Final = "error.type"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"

# -- OpenInference (Arize Phoenix, MLflow) ------------------------------------------------
OPENINFERENCE_SPAN_KIND: Final = "openinference.span.kind"
OI_LLM_MODEL_NAME: Final = "llm.model_name"
OI_LLM_PROVIDER: Final = "llm.provider"
OI_LLM_INVOCATION_PARAMETERS: Final = "llm.invocation_parameters"
OI_TOKEN_COUNT_PROMPT: Final = "llm.token_count.prompt"
OI_TOKEN_COUNT_COMPLETION: Final = "llm.token_count.completion"
OI_TOKEN_COUNT_TOTAL: Final = "llm.token_count.total"
OI_INPUT_VALUE: Final = "input.value"
OI_INPUT_MIME_TYPE: Final = "input.mime_type"
OI_OUTPUT_VALUE: Final = "output.value"
OI_OUTPUT_MIME_TYPE: Final = "output.mime_type"


def oi_input_message(index: int, field: str) -> str:
    """``llm.input_messages.<index>.message.<field>`` (``role`` or ``content``)."""
    return f"llm.input_messages.{index}.message.{field}"


def oi_output_message(index: int, field: str) -> str:
    """``llm.output_messages.<index>.message.<field>`` (``role`` or ``content``)."""
    return f"llm.output_messages.{index}.message.{field}"


# -- OpenTelemetry GenAI semantic conventions (observers set these) ----------------------
# Kept here rather than imported: ``opentelemetry-semantic-conventions`` ships the GenAI
# keys only in its private ``_incubating`` modules, which a release may move.  These are
# the values of the conventions our spans declare (schema 1.37.0); a test checks they
# equal the installed package's.
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
#: metric names
GEN_AI_CLIENT_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
GEN_AI_CLIENT_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
