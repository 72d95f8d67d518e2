"""The one interface every provider adapter implements, and the errors they raise.

Adapters translate a :class:`ProviderRequest` into their SDK's call and the SDK's answer
into a :class:`ProviderResponse`; everything else (retries, cache, cost, budget, events)
lives in the client so it is the same for every provider.  Adapters know no price: they
report token counts, the client prices them (:mod:`orchestrator.llm.pricing`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ...domain.errors import OrchestratorError
from ...domain.values import JsonSchema


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    model: str
    prompt: str
    system: str = ""
    max_tokens: int = 1024
    temperature: float = 0.3
    json_schema: JsonSchema | None = None
    timeout: float = 60.0
    headers: dict[str, str] | None = None
    """Extra HTTP headers (trace context propagation); adapters of HTTP APIs send them."""
    on_dispatch: Callable[[], None] | None = None
    """Adapters that queue internally (the local model's generation lock) call this when
    the request really starts, so waiting is told apart from working."""


@dataclass(frozen=True, slots=True)
class ProviderResponse:
    """The answer and the usage the provider reported.  ``input_tokens`` is the whole
    prompt; ``cache_read_tokens`` / ``cache_write_tokens`` are the parts of it the
    provider reported as read from / written to its prompt cache (billed at their own
    rates; 0 when not reported)."""

    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str = "stop"
    response_model: str | None = None
    response_id: str | None = None
    sent_system: str | None = None
    """The system instructions really sent, when the adapter changed them (the JSON ladder
    adds the schema); None when they were sent as given."""
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


class ProviderError(OrchestratorError):
    """A provider call failed.

    ``transient`` errors (timeouts, connection errors, 429, 5xx, overloaded) are retried;
    permanent ones (400, 401, 403, 404) are not.  ``fatal_for_model`` marks errors after
    which the model is useless for the rest of the run (auth, not found).  The message
    must never contain a secret: adapters build it from status and error type only.
    ``max_retries``, when set, bounds how often the client retries after this error,
    whatever the caller's ``retries`` (a crashed local worker: once).
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        status_code: int | None = None,
        retry_after: float | None = None,
        fatal_for_model: bool = False,
        error_type: str | None = None,
        max_retries: int | None = None,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.status_code = status_code
        self.retry_after = retry_after
        self.fatal_for_model = fatal_for_model
        self.error_type = error_type or type(self).__name__
        self.max_retries = max_retries


class ProviderUnavailable(ProviderError):
    """The provider cannot be used at all here (SDK or extra missing, no key, no model file)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False, fatal_for_model=True, error_type="ProviderUnavailable")


@runtime_checkable
class Provider(Protocol):
    """An adapter for one provider family."""

    name: str

    def availability(self, model: str) -> tuple[bool, str]:
        """(usable, reason when not): key present, SDK installed, model file found."""
        ...

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        """One attempt; raise :class:`ProviderError` on failure."""
        ...


def endpoint_of(provider: object) -> tuple[str, int] | None:
    """(host, port) the provider sends requests to, when it is a network service (for
    ``server.address``/``server.port``); None for in-process models."""
    endpoint = getattr(provider, "endpoint", None)
    return endpoint() if callable(endpoint) else None


def queues_internally(provider: object) -> bool:
    """True when the adapter calls ``request.on_dispatch`` itself (it waits before sending)."""
    return bool(getattr(provider, "queues_internally", False))
