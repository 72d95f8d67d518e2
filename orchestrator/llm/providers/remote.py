"""What every SDK-backed adapter shares: key lookup, availability, one SDK client per loop.

Why:

* availability must say *why not* (SDK missing, which variable to set, key rejected) so
  ``orchestrator models`` and ``--model`` errors are actionable;
* an SDK's async HTTP client belongs to the event loop it first ran on; a process may
  run several loops (tests, a library user calling ``asyncio.run`` twice), so clients
  are kept per loop, in a weak map that forgets closed loops;
* a 401 means the key is wrong for every model of the provider, not only the one
  called: after one, the adapter reports itself unavailable, so routing stops trying
  the provider's other models (the client still marks the failing model unhealthy and
  sends the event);
* SDK clients are built with ``max_retries=0``: the orchestrator's client retries, so
  that every attempt is its own ``llm_call`` pair with its own backoff.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import weakref
from typing import Generic, TypeVar
from urllib.parse import urlsplit

from . import errors
from .base import ProviderError, ProviderRequest
from .secrets import Secret, key_from_env, scrub

logger = logging.getLogger("orchestrator.providers")

INSTALL_HINT = "pip install 'multi-llm-orchestrator[providers]'"


ClientT = TypeVar("ClientT")
"""The SDK's async client type (``AsyncOpenAI``, ``AsyncAnthropic``, ``genai.Client``)."""


class RemoteProvider(Generic[ClientT]):
    """Base of the HTTP adapters; subclasses implement ``_new_client``, ``_close_client``
    and ``complete``."""

    name: str = "remote"
    sdk_module: str = ""
    sdk_package: str = ""
    key_envs: tuple[str, ...] = ()
    base_url_envs: tuple[str, ...] = ()
    default_base_url: str | None = None
    key_required: bool = True

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None) -> None:
        self._explicit_key = Secret(api_key) if api_key else None
        self._explicit_base_url = base_url
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ClientT] = weakref.WeakKeyDictionary()
        self._auth_failure: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    # -- configuration ----------------------------------------------------------------
    def _key(self) -> tuple[str | None, Secret | None]:
        if self._explicit_key is not None:
            return "api_key", self._explicit_key
        return key_from_env(*self.key_envs)

    @property
    def base_url(self) -> str | None:
        if self._explicit_base_url:
            return self._explicit_base_url
        for name in self.base_url_envs:
            value = os.environ.get(name, "").strip()
            if value:
                return value
        return self.default_base_url

    @property
    def default_host(self) -> str:
        """Host the SDK talks to when no base URL is configured ("": none known)."""
        return ""

    def endpoint(self) -> tuple[str, int] | None:
        """(host, port) of the service, for ``server.address``/``server.port``."""
        url = self.base_url
        if not url:
            return (self.default_host, 443) if self.default_host else None
        parts = urlsplit(url)
        if not parts.hostname:
            return None
        try:
            port = parts.port
        except ValueError:
            port = None
        return parts.hostname, port or (443 if parts.scheme == "https" else 80)

    def sdk_installed(self) -> bool:
        return importlib.util.find_spec(self.sdk_module) is not None

    def availability(self, model: str) -> tuple[bool, str]:
        if not self.sdk_installed():
            return False, f"the {self.sdk_package!r} SDK is not installed: {INSTALL_HINT}"
        if self.key_required and self._key()[1] is None:
            return False, f"{' or '.join(self.key_envs)} not set"
        if self._auth_failure:
            return False, self._auth_failure
        return True, ""

    # -- SDK clients ------------------------------------------------------------------
    def client(self, timeout: float) -> ClientT:
        """The SDK client of the running loop (built on first use)."""
        loop = asyncio.get_running_loop()
        existing = self._clients.get(loop)
        if existing is None:
            _, key = self._key()
            existing = self._new_client(key, timeout)
            self._clients[loop] = existing
        return existing

    def _new_client(self, key: Secret | None, timeout: float) -> ClientT:  # pragma: no cover - abstract
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the running loop's SDK client (its connections belong to that loop).
        Closing is best effort: a failure is logged, never raised."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is None:
            return
        try:
            await self._close_client(client)
        except Exception as exc:  # noqa: BLE001 - closing never fails a run
            logger.debug("closing the %s client failed: %s", self.name, type(exc).__name__)

    async def _close_client(self, client: ClientT) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- errors -----------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return scrub(text, self._key()[1])

    def _map_error(self, request: ProviderRequest, exc: Exception) -> ProviderError:
        """An SDK exception as a ProviderError: HTTP statuses by the shared table (with
        Retry-After), transport failures as transient, anything else as a malformed
        answer; messages scrubbed of the key.  (The openai and anthropic SDKs share the
        ``status_code``/``response`` shape; Google's adapter overrides this.)"""
        status = getattr(exc, "status_code", None)
        if isinstance(status, int):
            detail = self._scrub(errors.sdk_detail(exc))
            response = getattr(exc, "response", None)
            return self._note(
                errors.from_status(self.name, request.model, status, detail, headers=getattr(response, "headers", None))
            )
        mapped = errors.transport_error(self.name, request.model, exc, request.timeout)
        if mapped is not None:
            return mapped
        return errors.malformed(self.name, request.model, self._scrub(f"{type(exc).__name__}: {exc}"))

    def _note(self, error: ProviderError) -> ProviderError:
        """Remember a rejected key so the provider's other models are skipped too."""
        if error.status_code == 401:
            self._auth_failure = f"key rejected by {self.name} (HTTP 401)"
        return error
