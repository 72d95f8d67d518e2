"""Anthropic's Messages API through the official ``anthropic`` SDK (``AsyncAnthropic``).

Key: ``ANTHROPIC_API_KEY``; base URL: ``ANTHROPIC_BASE_URL`` (a gateway, or a loopback
test server), else the SDK's default.

JSON answers: the Messages API has no JSON mode, so the schema becomes the input schema
of one tool, ``answer``, and ``tool_choice`` forces the model to call it; the tool call's
``input`` is the JSON value (Anthropic's documented way to get schema-shaped output).
Tool inputs must be objects, so a schema whose top level is not an object is wrapped in
``{"value": ...}`` and unwrapped again.

Usage: ``input_tokens`` (plus cache-creation and cache-read tokens when the API reports
them, since they are billed input too, each also reported on its own so the client
prices them at their rates) and ``output_tokens``; ``stop_reason`` becomes the finish
reason (``max_tokens`` -> ``length``).

Temperature: the SDK no longer takes ``temperature`` (the newest Claude models reject
sampling parameters), so it is sent as an extra body field; a model that answers 400
about it is called without it from then on.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ...domain.values import JsonSchema
from . import errors
from .base import ProviderRequest, ProviderResponse
from .remote import RemoteProvider
from .secrets import Secret

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

TOOL_NAME = "answer"
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
    "pause_turn": "stop",
}


def tool_schema(schema: JsonSchema) -> tuple[JsonSchema, bool]:
    """(input schema of the answer tool, whether the value was wrapped)."""
    if schema.get("type") == "object":
        return schema, False
    return {"type": "object", "properties": {"value": schema}, "required": ["value"]}, True


class AnthropicProvider(RemoteProvider["AsyncAnthropic"]):
    name = "anthropic"
    sdk_module = "anthropic"
    sdk_package = "anthropic"
    key_envs = ("ANTHROPIC_API_KEY",)
    base_url_envs = ("ANTHROPIC_BASE_URL",)
    default_host = "api.anthropic.com"

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None) -> None:
        super().__init__(api_key=api_key, base_url=base_url)
        self._no_temperature: set[str] = set()

    def _new_client(self, key: Secret | None, timeout: float) -> AsyncAnthropic:
        from anthropic import AsyncAnthropic

        assert key is not None  # availability() checked it
        return AsyncAnthropic(api_key=key.reveal(), base_url=self.base_url, max_retries=0, timeout=timeout)

    async def _close_client(self, client: AsyncAnthropic) -> None:
        await client.close()

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        kwargs: dict[str, Any] = {}
        if request.system:
            kwargs["system"] = request.system
        wrapped = False
        if request.json_schema is not None:
            input_schema, wrapped = tool_schema(request.json_schema)
            kwargs["tools"] = [
                {
                    "name": TOOL_NAME,
                    "description": "Give the answer as this tool's input.",
                    "input_schema": input_schema,
                }
            ]
            kwargs["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
        client = self.client(request.timeout)
        while True:
            # recent SDKs dropped ``temperature`` from the signature (newer models reject it);
            # models that take it get it as an extra body field, until one answers 400 about it
            sample = {} if request.model in self._no_temperature else {"temperature": request.temperature}
            try:
                raw = await client.messages.create(
                    model=request.model,
                    max_tokens=request.max_tokens,
                    messages=[{"role": "user", "content": request.prompt}],
                    extra_body=sample or None,
                    extra_headers=request.headers or None,
                    timeout=request.timeout,
                    **kwargs,
                )
            except Exception as exc:  # noqa: BLE001 - every SDK failure becomes a ProviderError
                error = self._map_error(request, exc)
                if sample and error.status_code == 400 and "temperature" in str(error):
                    self._no_temperature.add(request.model)
                    continue
                raise error from None
            return self._read(request, raw, wrapped)

    def _read(self, request: ProviderRequest, raw: Any, wrapped: bool) -> ProviderResponse:
        model = request.model
        try:
            blocks = list(raw.content)
            usage = raw.usage
            tokens_in = int(usage.input_tokens)
            tokens_out = int(usage.output_tokens)
        except (AttributeError, TypeError, ValueError):
            raise errors.malformed(self.name, model, f"unreadable {type(raw).__name__}") from None
        cache_write = getattr(usage, "cache_creation_input_tokens", None)
        cache_read = getattr(usage, "cache_read_input_tokens", None)
        cache_write = cache_write if isinstance(cache_write, int) and cache_write > 0 else 0
        cache_read = cache_read if isinstance(cache_read, int) and cache_read > 0 else 0
        tokens_in += cache_write + cache_read  # the API's input_tokens leaves them out
        if request.json_schema is not None:
            tool = next((b for b in blocks if getattr(b, "type", None) == "tool_use"), None)
            if tool is None:
                text = "".join(getattr(b, "text", "") or "" for b in blocks)  # the engine extracts JSON
            else:
                value = tool.input.get("value") if wrapped and isinstance(tool.input, dict) else tool.input
                text = json.dumps(value)
        else:
            text = "".join(getattr(b, "text", "") or "" for b in blocks if getattr(b, "type", None) == "text")
        stop = str(getattr(raw, "stop_reason", None) or "end_turn")
        return ProviderResponse(
            text,
            tokens_in,
            tokens_out,
            _FINISH.get(stop, stop),
            getattr(raw, "model", None) or model,
            _text_or_none(getattr(raw, "id", None)),
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
        )


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
