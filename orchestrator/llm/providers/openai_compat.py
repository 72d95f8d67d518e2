"""Any OpenAI-compatible chat-completions endpoint, through the official ``openai`` SDK.

One adapter class, several presets (the catalog's provider names):

========== ================================= ================================ ============
preset     key variable(s)                   base URL (override variable)     JSON first
========== ================================= ================================ ============
openai     OPENAI_API_KEY                    SDK default (OPENAI_BASE_URL)    json_schema
deepseek   DEEPSEEK_API_KEY                  api.deepseek.com (DEEPSEEK_BASE_URL) json_object
kimi       KIMI_API_KEY or MOONSHOT_API_KEY  api.moonshot.ai/v1 (KIMI_BASE_URL) json_object
openrouter OPENROUTER_API_KEY                openrouter.ai/api/v1 (OPENROUTER_BASE_URL) json_schema
server     none needed (ORCHESTRATOR_SERVER_API_KEY if the server wants one)
                                             ``--provider-url``               json_schema
========== ================================= ================================ ============

JSON answers: servers differ in what ``response_format`` they accept, so the adapter
walks down a ladder and remembers, per model, the first rung the endpoint accepted:

1. ``{"type": "json_schema", "json_schema": {"name", "schema", "strict": false}}`` (OpenAI,
   OpenRouter, vLLM, Ollama, recent llama.cpp);
2. ``{"type": "json_object", "schema": ...}`` (llama-cpp-python's server and vLLM: the
   schema becomes a grammar);
3. ``{"type": "json_object"}`` (DeepSeek, Kimi: valid JSON, shape asked in the prompt);
4. no ``response_format``: the schema is put in the system prompt and the JSON value is
   extracted from the answer (code fences and surrounding prose removed).

A rung is abandoned only when the endpoint rejects the parameter: HTTP 400 or 422, or
another error status whose message names ``response_format``/``json_schema``
(llama-cpp-python's server reports its request validation errors as 500); any other
error is reported as usual.  From rung 2 on the schema is also
described in the system prompt, because JSON mode alone does not say which JSON.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ... import events
from ...domain.values import JsonSchema
from . import errors
from .base import ProviderError, ProviderRequest, ProviderResponse
from .remote import RemoteProvider
from .secrets import Secret

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletionMessageParam

logger = logging.getLogger("orchestrator.providers")

JSON_LADDER = ("json_schema", "json_object_schema", "json_object", "prompt")
_REJECTED_PARAMETER = frozenset({400, 422})
_FINISH = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "eos": "stop",
}


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    key_envs: tuple[str, ...]
    base_url_envs: tuple[str, ...]
    default_base_url: str | None
    json_mode: str = "json_schema"
    key_required: bool = True
    max_tokens_param: str = "max_tokens"


PRESETS: dict[str, Preset] = {
    "openai": Preset(
        "openai", ("OPENAI_API_KEY",), ("OPENAI_BASE_URL",), None, max_tokens_param="max_completion_tokens"
    ),
    "deepseek": Preset(
        "deepseek", ("DEEPSEEK_API_KEY",), ("DEEPSEEK_BASE_URL",), "https://api.deepseek.com", json_mode="json_object"
    ),
    "kimi": Preset(
        "kimi",
        ("KIMI_API_KEY", "MOONSHOT_API_KEY"),
        ("KIMI_BASE_URL", "MOONSHOT_BASE_URL"),
        "https://api.moonshot.ai/v1",
        json_mode="json_object",
    ),
    "openrouter": Preset(
        "openrouter", ("OPENROUTER_API_KEY",), ("OPENROUTER_BASE_URL",), "https://openrouter.ai/api/v1"
    ),
    "server": Preset("server", ("ORCHESTRATOR_SERVER_API_KEY",), (), None, key_required=False),
}


def _rejects_format(error: ProviderError) -> bool:
    """The endpoint refused the ``response_format`` itself: a 400/422, or any error status
    whose message names it (llama-cpp-python's server answers its validation errors with
    500, and would otherwise be retried to no end)."""
    if error.status_code in _REJECTED_PARAMETER:
        return True
    message = str(error)
    return error.status_code is not None and ("response_format" in message or "json_schema" in message)


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def schema_instruction(schema: JsonSchema) -> str:
    return "Answer only with one JSON value that matches this JSON schema, no prose, no code fence:\n" + json.dumps(
        schema, separators=(",", ":")
    )


def extract_json(text: str) -> str:
    """The JSON value inside ``text`` (fences and prose removed); ``text`` when none parses."""
    stripped = text.strip()
    candidates = [stripped]
    if "```" in stripped:
        for block in stripped.split("```")[1::2]:
            candidates.append(block.split("\n", 1)[1] if block[:4].lower() == "json" else block)
    for open_, close in (("{", "}"), ("[", "]")):
        start, end = stripped.find(open_), stripped.rfind(close)
        if 0 <= start < end:
            candidates.append(stripped[start : end + 1])
    for candidate in candidates:
        try:
            json.loads(candidate)
        except ValueError:
            continue
        return candidate.strip()
    return text


class OpenAICompatProvider(RemoteProvider["AsyncOpenAI"]):
    """Adapter for one OpenAI-compatible endpoint (a preset, or a server by URL)."""

    sdk_module = "openai"
    sdk_package = "openai"

    def __init__(
        self, preset: str | Preset = "openai", *, api_key: str | None = None, base_url: str | None = None
    ) -> None:
        self.preset = PRESETS[preset] if isinstance(preset, str) else preset
        self.name = self.preset.name
        self.key_envs = self.preset.key_envs
        self.base_url_envs = self.preset.base_url_envs
        self.default_base_url = self.preset.default_base_url
        self.key_required = self.preset.key_required
        super().__init__(api_key=api_key, base_url=base_url)
        self._json_mode: dict[str, str] = {}

    @classmethod
    def for_server(cls, base_url: str, name: str = "server") -> OpenAICompatProvider:
        """A local or self-hosted server (Ollama, vLLM, llama.cpp) at ``base_url``."""
        preset = PRESETS["server"] if name == "server" else Preset(name, (), (), None, key_required=False)
        return cls(preset, base_url=base_url)

    def _new_client(self, key: Secret | None, timeout: float) -> AsyncOpenAI:
        from openai import AsyncOpenAI

        # a keyless server still needs a non-empty key for the SDK; nothing is sent that matters
        return AsyncOpenAI(
            api_key=key.reveal() if key else "not-needed", base_url=self.base_url, max_retries=0, timeout=timeout
        )

    async def _close_client(self, client: AsyncOpenAI) -> None:
        await client.close()

    @property
    def default_host(self) -> str:
        return "api.openai.com" if self.preset.name == "openai" else ""

    def json_mode(self, model: str) -> str:
        """The rung of the JSON ladder currently used for ``model``."""
        return self._json_mode.get(model, self.preset.json_mode)

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        if request.json_schema is None:
            return await self._send(request, None)
        mode = self.json_mode(request.model)
        while True:
            try:
                response = await self._send(request, mode)
            except ProviderError as exc:
                if _rejects_format(exc) and mode != JSON_LADDER[-1]:
                    # the rejected rung stays visible on the call's span
                    events.emit(
                        events.json_mode_rejected,
                        model=request.model,
                        mode=mode,
                        status_code=exc.status_code,
                        error_type=exc.error_type,
                    )
                    mode = JSON_LADDER[JSON_LADDER.index(mode) + 1]
                    self._json_mode[request.model] = mode
                    continue
                raise
            if mode != "json_schema":
                response = replace(response, text=extract_json(response.text))
            return response

    async def _send(self, request: ProviderRequest, mode: str | None) -> ProviderResponse:
        messages: list[ChatCompletionMessageParam] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        sent_system: str | None = None
        kwargs: dict[str, Any] = {}
        schema = request.json_schema
        if schema is not None and mode is not None:
            if mode == "json_schema":
                kwargs["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": schema, "strict": False},
                }
            else:
                instruction = schema_instruction(schema)
                system = f"{request.system}\n\n{instruction}" if request.system else instruction
                messages = [{"role": "system", "content": system}, messages[-1]]
                sent_system = system
                if mode == "json_object_schema":
                    kwargs["response_format"] = {"type": "json_object", "schema": schema}
                elif mode == "json_object":
                    kwargs["response_format"] = {"type": "json_object"}
        kwargs[self.preset.max_tokens_param] = request.max_tokens
        client = self.client(request.timeout)
        try:
            raw = await client.chat.completions.create(
                model=request.model,
                messages=messages,
                temperature=request.temperature,
                extra_headers=request.headers or None,
                timeout=request.timeout,
                **kwargs,
            )
        except Exception as exc:  # noqa: BLE001 - every SDK failure becomes a ProviderError
            raise self._map_error(request, exc) from None
        response = self._read(request, raw)
        return replace(response, sent_system=sent_system) if sent_system is not None else response

    def _read(self, request: ProviderRequest, raw: Any) -> ProviderResponse:
        model = request.model
        try:
            choice = raw.choices[0]
            text = choice.message.content or ""
            finish = _FINISH.get(str(choice.finish_reason or "stop"), str(choice.finish_reason))
        except (AttributeError, IndexError, TypeError):
            raise errors.malformed(self.name, model, f"no choices in a {type(raw).__name__}") from None
        usage = getattr(raw, "usage", None)
        tokens_in = getattr(usage, "prompt_tokens", None)
        tokens_out = getattr(usage, "completion_tokens", None)
        if not isinstance(tokens_in, int) or not isinstance(tokens_out, int):
            # some servers omit usage: estimate (4 characters a token) rather than call it free
            logger.warning("%s %s sent no token usage; estimating it from the text length", self.name, model)
            tokens_in = estimate_tokens(request.system) + estimate_tokens(request.prompt)
            tokens_out = estimate_tokens(text)
        response_id = getattr(raw, "id", None)
        cache_read, cache_write = cached_tokens(usage)
        return ProviderResponse(
            text,
            tokens_in,
            tokens_out,
            finish,
            getattr(raw, "model", None) or model,
            response_id if isinstance(response_id, str) and response_id else None,
            cache_read_tokens=min(cache_read, tokens_in),
            cache_write_tokens=min(cache_write, tokens_in),
        )


def cached_tokens(usage: Any) -> tuple[int, int]:
    """(prompt tokens read from the cache, written to it) as the endpoint reported them:
    ``prompt_tokens_details.cached_tokens`` / ``.cache_write_tokens`` (OpenAI, Kimi,
    OpenRouter), else DeepSeek's ``prompt_cache_hit_tokens``; 0 when not reported."""
    details = getattr(usage, "prompt_tokens_details", None)
    read = getattr(details, "cached_tokens", None)
    if not isinstance(read, int):
        read = getattr(usage, "prompt_cache_hit_tokens", None)
    write = getattr(details, "cache_write_tokens", None)
    return (read if isinstance(read, int) and read > 0 else 0, write if isinstance(write, int) and write > 0 else 0)
