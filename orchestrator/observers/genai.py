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
from .base import whole

__all__ = ["LlmSpanAttributes", "ContentCapture", "capture_content_from_env"]

_TRUTHY = {"1", "true", "yes", "on", "span_only", "span_and_event"}
_STATIC_CACHE_LIMIT = 512


def capture_content_from_env() -> bool:
    """``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` says to record content."""
    value = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "")
    return value.strip().lower() in _TRUTHY


class LlmSpanAttributes:
    """Builds the start and finish attributes of LLM spans."""

    def __init__(self) -> None:
        self._static: dict[tuple[str, str, int | None, float | None], dict[str, Any]] = {}

    def start(self, p: events.LlmCallStarted) -> dict[str, Any]:
        attrs = {**p.attributes, **self._static_for(p.provider, p.model, p.max_tokens, p.temperature)}
        if p.attempt != 1:
            attrs[attr.LLM_ATTEMPT] = p.attempt
        attrs[GEN_AI_OUTPUT_TYPE] = p.output_type
        if p.server_address:
            attrs[SERVER_ADDRESS] = p.server_address
            if p.server_port:
                attrs[SERVER_PORT] = p.server_port
        return attrs

    def _static_for(self, provider: str, model: str, max_tokens: int | None,
                    temperature: float | None) -> dict[str, Any]:
        """The start attributes that depend only on provider, model and parameters
        (cached: a run uses a handful of combinations)."""
        key = (provider, model, max_tokens, temperature)
        static = self._static.get(key)
        if static is None:
            static = {GEN_AI_OPERATION_NAME: "chat", GEN_AI_REQUEST_MODEL: model,
                      attr.OPENINFERENCE_SPAN_KIND: "LLM", attr.OI_LLM_MODEL_NAME: model}
            if provider:
                static[GEN_AI_PROVIDER_NAME] = attr.gen_ai_provider_name(provider)
                static[attr.OI_LLM_PROVIDER] = provider
            if max_tokens is not None:
                static[GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
            if temperature is not None:
                static[GEN_AI_REQUEST_TEMPERATURE] = temperature
            static[attr.OI_LLM_INVOCATION_PARAMETERS] = json.dumps({"max_tokens": max_tokens,
                                                                    "temperature": temperature})
            if len(self._static) >= _STATIC_CACHE_LIMIT:
                self._static.clear()
            self._static[key] = static
        return static

    @staticmethod
    def finish(p: events.LlmCallFinished) -> tuple[dict[str, Any], int, int]:
        """The finish attributes, and the tokens the call consumed (0 when unknown, and for
        an answer replayed from the cache: its span keeps ``llm.tokens_*`` of the original
        call but gets no ``gen_ai.usage.*``, so a backend summing usage counts no tokens
        nobody processed)."""
        attrs = dict(p.attributes)
        tin = whole(attrs.get(attr.LLM_TOKENS_IN))
        tout = whole(attrs.get(attr.LLM_TOKENS_OUT))
        if attrs.get(attr.LLM_CACHED):  # replayed from the cache: no provider processed tokens
            return attrs, 0, 0
        if tin is not None:
            attrs[GEN_AI_USAGE_INPUT_TOKENS] = tin
            attrs[attr.OI_TOKEN_COUNT_PROMPT] = tin
        if tout is not None:
            attrs[GEN_AI_USAGE_OUTPUT_TOKENS] = tout
            attrs[attr.OI_TOKEN_COUNT_COMPLETION] = tout
        if tin is not None and tout is not None:
            attrs[attr.OI_TOKEN_COUNT_TOTAL] = tin + tout
        response_model = attrs.get(attr.LLM_RESPONSE_MODEL)
        if response_model:
            attrs[GEN_AI_RESPONSE_MODEL] = response_model
        response_id = attrs.get(attr.LLM_RESPONSE_ID)
        if response_id:
            attrs[GEN_AI_RESPONSE_ID] = response_id
        finish_reason = attrs.get(attr.LLM_FINISH_REASON)
        if isinstance(finish_reason, str) and finish_reason:
            attrs[GEN_AI_RESPONSE_FINISH_REASONS] = (finish_reason,)
        return attrs, tin or 0, tout or 0


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
        return text[:self.max_chars] + f"...[truncated {len(text) - self.max_chars} chars]"

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

    def add_output(self, p: events.LlmCallFinished, attrs: dict[str, Any]) -> None:
        provider, prompt = self._inputs.pop(p.correlation_id, (p.provider, ""))
        if p.sent_system is not None:
            self._set_input(provider, prompt, p.sent_system, attrs)
        if p.completion is None:
            return
        text = self.clip(p.completion)
        finish_reason = attrs.get(attr.LLM_FINISH_REASON) or "stop"
        message: Mapping[str, Any] = {"role": "assistant", "parts": [{"type": "text", "content": text}],
                                      "finish_reason": finish_reason}
        attrs[GEN_AI_OUTPUT_MESSAGES] = json.dumps([message])
        attrs[attr.oi_output_message(0, "role")] = "assistant"
        attrs[attr.oi_output_message(0, "content")] = text
        attrs[attr.OI_OUTPUT_VALUE] = text
        attrs[attr.OI_OUTPUT_MIME_TYPE] = "text/plain"
