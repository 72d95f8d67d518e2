"""Google Gemini through the official ``google-genai`` SDK, async client
(``client.aio.models.generate_content``).

Key: ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY`` (the SDK's own precedence); base URL:
``GOOGLE_GEMINI_BASE_URL`` (the SDK's variable), else Google's endpoint.

JSON answers: ``response_mime_type="application/json"`` with ``response_json_schema``
(the schema as JSON Schema, which Gemini constrains decoding to).

Usage: ``usage_metadata.prompt_token_count`` in (``cached_content_token_count`` of it
read from the context cache), ``candidates_token_count`` plus ``thoughts_token_count``
out (Gemini bills thinking tokens as output).

Errors: the API says "API key not valid" with HTTP 400 ``INVALID_ARGUMENT``; that is
treated as the 401 it means, so the model is marked unhealthy.  A 429's
``google.rpc.RetryInfo.retryDelay`` is honoured like a ``Retry-After`` header.
The SDK's own retries are off (``HttpRetryOptions(attempts=1)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import errors
from .base import ProviderError, ProviderRequest, ProviderResponse
from .remote import RemoteProvider
from .secrets import Secret

if TYPE_CHECKING:
    from google import genai

_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "BLOCKLIST": "content_filter",
    "SPII": "content_filter",
}


def _retry_delay(details: Any) -> float | None:
    """Seconds of a ``google.rpc.RetryInfo`` detail ("30s"), if the error body has one."""
    try:
        items = details.get("error", details).get("details", [])
    except AttributeError:
        return None
    for item in items if isinstance(items, list) else []:
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(0.0, float(delay[:-1]))
            except ValueError:
                return None
    return None


class GoogleProvider(RemoteProvider["genai.Client"]):
    name = "google"
    sdk_module = "google.genai"
    sdk_package = "google-genai"
    key_envs = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    base_url_envs = ("GOOGLE_GEMINI_BASE_URL",)
    default_host = "generativelanguage.googleapis.com"

    def sdk_installed(self) -> bool:
        try:
            return super().sdk_installed()
        except ModuleNotFoundError:  # the ``google`` namespace itself is missing
            return False

    def _new_client(self, key: Secret | None, timeout: float) -> genai.Client:
        import httpx
        from google import genai
        from google.genai import types

        assert key is not None  # availability() checked it
        # httpx always, like every other adapter: without a transport of its own the SDK
        # switches to aiohttp whenever aiohttp happens to be installed (another package's
        # dependency), and the calls would behave differently from one install to the next
        options = types.HttpOptions(
            base_url=self.base_url,
            timeout=int(timeout * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
            async_client_args={"transport": httpx.AsyncHTTPTransport()},
        )
        return genai.Client(api_key=key.reveal(), vertexai=False, http_options=options)

    async def _close_client(self, client: genai.Client) -> None:
        await client.aio.aclose()

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        from google.genai import types

        config: dict[str, Any] = {
            "temperature": request.temperature,
            "max_output_tokens": request.max_tokens,
            "http_options": types.HttpOptions(headers=dict(request.headers or {}), timeout=int(request.timeout * 1000)),
        }
        if request.system:
            config["system_instruction"] = request.system
        if request.json_schema is not None:
            config["response_mime_type"] = "application/json"
            config["response_json_schema"] = request.json_schema
        client = self.client(request.timeout)
        try:
            raw = await client.aio.models.generate_content(
                model=request.model, contents=request.prompt, config=types.GenerateContentConfig(**config)
            )
        except Exception as exc:  # noqa: BLE001 - every SDK failure becomes a ProviderError
            raise self._map_error(request, exc) from None
        return self._read(request.model, raw)

    def _map_error(self, request: ProviderRequest, exc: Exception) -> ProviderError:
        code = getattr(exc, "code", None)
        if isinstance(code, int) and code >= 400:
            detail = self._scrub(str(getattr(exc, "message", "") or getattr(exc, "status", "") or ""))
            details = getattr(exc, "details", None)
            if code == 400 and ("API_KEY_INVALID" in str(details) or "API key not valid" in detail):
                code = 401
            response = getattr(exc, "response", None)
            error = errors.from_status(
                self.name, request.model, code, detail, headers=getattr(response, "headers", None)
            )
            if error.transient and error.retry_after is None:
                error.retry_after = _retry_delay(details)
            return self._note(error)
        mapped = errors.transport_error(self.name, request.model, exc, request.timeout)
        if mapped is not None:
            return mapped
        return errors.malformed(self.name, request.model, self._scrub(f"{type(exc).__name__}: {exc}"))

    def _read(self, model: str, raw: Any) -> ProviderResponse:
        try:
            candidate = raw.candidates[0]
            parts = (candidate.content.parts if candidate.content is not None else None) or []
            text = "".join(p.text for p in parts if getattr(p, "text", None) and not getattr(p, "thought", False))
            usage = raw.usage_metadata
            tokens_in = int(usage.prompt_token_count or 0)
            tokens_out = int(usage.candidates_token_count or 0) + int(usage.thoughts_token_count or 0)
            cached = int(getattr(usage, "cached_content_token_count", None) or 0)
        except (AttributeError, IndexError, TypeError, ValueError):
            raise errors.malformed(self.name, model, f"unreadable {type(raw).__name__}") from None
        reason = getattr(candidate.finish_reason, "value", candidate.finish_reason) or "STOP"
        response_id = getattr(raw, "response_id", None)
        return ProviderResponse(
            text,
            tokens_in,
            tokens_out,
            _FINISH.get(str(reason), str(reason).lower()),
            getattr(raw, "model_version", None) or model,
            response_id if isinstance(response_id, str) and response_id else None,
            cache_read_tokens=min(max(cached, 0), tokens_in),
        )
