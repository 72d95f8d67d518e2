"""The attributes of an ``llm_call`` span: OpenTelemetry GenAI semantic conventions
(``gen_ai.*``) and the OpenInference ones Arize Phoenix and MLflow classify by, next to
the seed's ``llm.*``; and the opt-in recording of prompt and completion text.

Kept apart from the tracing observer because it is a mapping (payload -> attributes)
that changes with the conventions, while the observer's span bookkeeping does not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import SpanKind

from .. import attributes as attr
from .. import events
from ..attributes import (
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OPERATION_NAME,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_OUTPUT_TYPE,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MAX_TOKENS,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_REQUEST_TEMPERATURE,
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_ID,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_SYSTEM_INSTRUCTIONS,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    SERVER_ADDRESS,
    SERVER_PORT,
)
from ..redaction import redact
from .base import apply_content_rule, copy_attributes, has_model_text, number, whole

__all__ = ["LlmSpanAttributes", "ContentCapture", "capture_content_from_env"]

_TRUTHY = {"1", "true", "yes", "on", "span_only", "span_and_event"}
_STATIC_CACHE_LIMIT = 512


def capture_content_from_env() -> bool:
    """``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` says to record content."""
    value = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "")
    return value.strip().lower() in _TRUTHY


LlmStart = tuple[str, SpanKind, dict[str, Any], Mapping[str, Any]]
"""An LLM span's name, kind and start attributes, and the payload attributes they come from."""
_MODEL_TEXT = events.ModelText
_CLIENT, _INTERNAL = SpanKind.CLIENT, SpanKind.INTERNAL


class LlmSpanAttributes:
    """Builds the start and finish attributes of LLM spans.

    The start attributes depend only on the call's model, type and parameters, of which
    a run uses a handful: they are built once per combination and shared (read-only) with
    the SDK, which copies what it keeps."""

    def __init__(self) -> None:
        self._starts: dict[tuple[Any, ...], LlmStart] = {}

    def start(self, p: events.LlmCallStarted, capture_content: bool = False) -> LlmStart:
        """(span name, span kind, start attributes, the payload attributes they were built
        from) of an ``llm_call`` span; the attributes may be shared between calls: copy
        them before changing them.

        Shared only when the payload's own attributes are the very object they were built
        from (``traced_llm_call`` hands every call of a model and call type the same
        read-only view), so a payload built by hand never gets another's attributes."""
        key = (
            p.model,
            p.call_type,
            p.provider,
            p.max_tokens,
            p.temperature,
            p.server_address,
            p.server_port,
            p.attempt,
            p.output_type,
        )
        found = self._starts.get(key)
        if found is not None and found[3] is p.attributes and not capture_content:
            return found
        if capture_content:
            return self._build(p, capture_content)  # with the prompt: built for this call alone
        if len(self._starts) >= _STATIC_CACHE_LIMIT:
            self._starts.clear()
        found = self._starts[key] = self._build(p)
        return found

    @staticmethod
    def _build(p: events.LlmCallStarted, capture_content: bool = False) -> LlmStart:
        attrs = copy_attributes(p.attributes)
        if has_model_text(attrs):
            apply_content_rule(attrs, capture_content)
        model = p.model
        attrs[GEN_AI_OPERATION_NAME] = "chat"
        attrs[GEN_AI_REQUEST_MODEL] = model
        attrs[attr.OPENINFERENCE_SPAN_KIND] = "LLM"
        attrs[attr.OI_LLM_MODEL_NAME] = model
        if p.provider:
            attrs[GEN_AI_PROVIDER_NAME] = attr.gen_ai_provider_name(p.provider)
            attrs[attr.OI_LLM_PROVIDER] = p.provider
        if p.max_tokens is not None:
            attrs[GEN_AI_REQUEST_MAX_TOKENS] = p.max_tokens
        if p.temperature is not None:
            attrs[GEN_AI_REQUEST_TEMPERATURE] = p.temperature
        attrs[attr.OI_LLM_INVOCATION_PARAMETERS] = json.dumps(
            {"max_tokens": p.max_tokens, "temperature": p.temperature}
        )
        if p.attempt != 1:
            attrs[attr.LLM_ATTEMPT] = p.attempt
        attrs[GEN_AI_OUTPUT_TYPE] = p.output_type
        if p.server_address:
            attrs[SERVER_ADDRESS] = p.server_address
            if p.server_port:
                attrs[SERVER_PORT] = p.server_port
        remote = bool(p.provider) and p.provider != "local"  # remote calls carry the trace context
        return "llm_call:" + p.call_type, _CLIENT if remote else _INTERNAL, attrs, p.attributes

    @staticmethod
    def finish(attrs: dict[str, Any], capture_content: bool) -> tuple[int, int, float]:
        """Turns a call's finish attributes (a dict of the caller's) into the span's: the
        content rule applied, the GenAI and OpenInference usage and response keys added.
        Returns the tokens the call consumed (0 when unknown, and for an answer replayed
        from the cache: its span keeps ``llm.tokens_*`` of the original call but gets no
        ``gen_ai.usage.*``, so a backend summing usage counts no tokens nobody processed)
        and its cost in USD."""
        if _MODEL_TEXT in map(type, attrs.values()):  # has_model_text, inlined
            apply_content_rule(attrs, capture_content)
        get = attrs.get
        tin, tout, cost_usd = get(_TOKENS_IN), get(_TOKENS_OUT), get(_COST)
        if type(cost_usd) is not float:
            cost_usd = number(cost_usd) or 0.0
        if type(tin) is not int:
            tin = whole(tin)
        if type(tout) is not int:
            tout = whole(tout)
        if get(_CACHED):  # replayed from the cache: no provider processed tokens
            return 0, 0, cost_usd
        if tin is not None and tout is not None:  # the common case
            attrs[GEN_AI_USAGE_INPUT_TOKENS] = attrs[_OI_PROMPT] = tin
            attrs[GEN_AI_USAGE_OUTPUT_TOKENS] = attrs[_OI_COMPLETION] = tout
            attrs[_OI_TOTAL] = tin + tout
        elif tin is not None:
            attrs[GEN_AI_USAGE_INPUT_TOKENS] = attrs[_OI_PROMPT] = tin
        elif tout is not None:
            attrs[GEN_AI_USAGE_OUTPUT_TOKENS] = attrs[_OI_COMPLETION] = tout
        response_model = get(_RESPONSE_MODEL)
        if response_model:
            attrs[GEN_AI_RESPONSE_MODEL] = response_model
        response_id = get(_RESPONSE_ID)
        if response_id:
            attrs[GEN_AI_RESPONSE_ID] = response_id
        finish_reason = get(_FINISH_REASON)
        if finish_reason and type(finish_reason) is str:
            attrs[GEN_AI_RESPONSE_FINISH_REASONS] = (finish_reason,)
        return tin or 0, tout or 0, cost_usd


_COST, _TOKENS_IN, _TOKENS_OUT, _CACHED = attr.LLM_COST_USD, attr.LLM_TOKENS_IN, attr.LLM_TOKENS_OUT, attr.LLM_CACHED
_RESPONSE_MODEL, _RESPONSE_ID, _FINISH_REASON = attr.LLM_RESPONSE_MODEL, attr.LLM_RESPONSE_ID, attr.LLM_FINISH_REASON
_OI_PROMPT, _OI_COMPLETION = attr.OI_TOKEN_COUNT_PROMPT, attr.OI_TOKEN_COUNT_COMPLETION
_OI_TOTAL = attr.OI_TOKEN_COUNT_TOTAL


class ContentCapture:
    """Prompt and completion text on spans, only when asked for; redacted and clipped.

    Where the system prompt goes follows the GenAI conventions: providers whose API takes
    it apart (Anthropic, Gemini) get ``gen_ai.system_instructions``; for chat APIs that
    send it as a message (OpenAI-compatible, the local chat template) it is the first of
    ``gen_ai.input.messages``.  When the adapter changed it (the JSON ladder appends the
    schema), what was really sent replaces it at the finish."""

    def __init__(self, enabled: bool, max_chars: int = 4000) -> None:
        self.enabled = enabled
        self.max_chars = max_chars
        self._inputs: dict[str, tuple[str, str]] = {}  # correlation id -> (provider, prompt) until finish

    def clip(self, text: str) -> str:
        text = redact(text)
        if len(text) <= self.max_chars:
            return text
        return text[: self.max_chars] + f"...[truncated {len(text) - self.max_chars} chars]"

    def add_input(self, p: events.LlmCallStarted, attrs: dict[str, Any]) -> None:
        self._inputs[p.correlation_id] = (p.provider, p.prompt or "")
        self._set_input(p.provider, p.prompt or "", p.system or "", attrs)

    def _set_input(self, provider: str, prompt_text: str, system_text: str, attrs: dict[str, Any]) -> None:
        prompt = self.clip(prompt_text)
        messages: list[dict[str, Any]] = [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]
        index = 0
        if system_text:
            system = self.clip(system_text)
            if provider in attr.SYSTEM_AS_INSTRUCTIONS:
                attrs[GEN_AI_SYSTEM_INSTRUCTIONS] = json.dumps([{"type": "text", "content": system}])
            else:
                messages.insert(0, {"role": "system", "parts": [{"type": "text", "content": system}]})
            attrs[attr.oi_input_message(0, "role")] = "system"
            attrs[attr.oi_input_message(0, "content")] = system
            index = 1
        attrs[GEN_AI_INPUT_MESSAGES] = json.dumps(messages)
        attrs[attr.oi_input_message(index, "role")] = "user"
        attrs[attr.oi_input_message(index, "content")] = prompt
        attrs[attr.OI_INPUT_VALUE] = prompt
        attrs[attr.OI_INPUT_MIME_TYPE] = "text/plain"

    def add_output(
        self, correlation_id: str, content: Mapping[str, str] | None, attrs: dict[str, Any], provider: str = ""
    ) -> None:
        """``content``: the call's ``completion`` and ``sent_system`` (either may be missing);
        ``provider``: the call's, when its start was not seen."""
        provider, prompt = self._inputs.pop(correlation_id, (provider, ""))
        if not content:
            return
        sent_system = content.get("sent_system")
        if sent_system is not None:
            self._set_input(provider, prompt, sent_system, attrs)
        completion = content.get("completion")
        if completion is None:
            return
        text = self.clip(completion)
        finish_reason = attrs.get(attr.LLM_FINISH_REASON) or "stop"
        message: Mapping[str, Any] = {
            "role": "assistant",
            "parts": [{"type": "text", "content": text}],
            "finish_reason": finish_reason,
        }
        attrs[GEN_AI_OUTPUT_MESSAGES] = json.dumps([message])
        attrs[attr.oi_output_message(0, "role")] = "assistant"
        attrs[attr.oi_output_message(0, "content")] = text
        attrs[attr.OI_OUTPUT_VALUE] = text
        attrs[attr.OI_OUTPUT_MIME_TYPE] = "text/plain"
