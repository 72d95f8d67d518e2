"""The steps of one provider call that need none of the client's state: the response
type, the moment a request really left (:class:`Dispatch`), the answer from the cache, the
adapter call with its safety net, what an answered call puts on its span, and the backoff
between attempts.  :class:`~.client.UnifiedClient` strings them together with the budget,
the circuit breakers and the retries."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

from .. import attributes as attr
from .. import events
from ..redaction import redact
from .cache import CachedAnswer
from .catalog import ModelInfo, get_model
from .providers.base import Provider, ProviderError, ProviderRequest, ProviderResponse

__all__ = ["APIResponse", "Dispatch", "backoff_seconds", "cached_response", "complete_once", "finished_response"]

logger = logging.getLogger("orchestrator.client")


@dataclass(frozen=True, slots=True)
class APIResponse:
    text: str
    input_tokens: int
    output_tokens: int
    model: str
    latency_ms: float = 0.0
    cached: bool = False
    cost_usd: float = 0.0
    finish_reason: str = "stop"
    attempts: int = 1
    provider: str = ""
    queue_ms: float = 0.0
    """Time spent waiting for the concurrency limit or the local model before the call left."""
    response_id: str | None = None


class Dispatch:
    """When a request really left: marks the end of queueing (the client's concurrency
    limit, the local model's generation lock) with an attribute and a point event."""

    __slots__ = ("model", "handle", "opened", "sent", "queue_ms")

    def __init__(self, model: str, handle: events.PairContext) -> None:
        self.model = model
        self.handle = handle
        self.opened = time.perf_counter()
        self.sent: float | None = None
        self.queue_ms = 0.0

    def mark(self) -> None:
        if self.sent is not None:
            return
        self.sent = time.perf_counter()
        self.queue_ms = round((self.sent - self.opened) * 1000, 3)
        self.handle.set_attribute(attr.ORCHESTRATOR_QUEUE_MS, self.queue_ms)
        events.emit(events.llm_call_dispatched, model=self.model, queue_ms=self.queue_ms)

    def elapsed_ms(self) -> float:
        """The call itself, from dispatch to answer."""
        return (time.perf_counter() - (self.sent if self.sent is not None else self.opened)) * 1000


def cached_response(
    info: ModelInfo,
    hit: CachedAnswer,
    key: str,
    call_type: str,
    max_tokens: int,
    temperature: float,
    prompt: str,
    system: str,
    json_answer: bool,
) -> APIResponse:
    """A call answered from the cache: an ``llm_call`` pair of its own (cached, cost 0) with
    a ``cache_hit`` event, so a run read from its spans still shows every call."""
    with events.traced_llm_call(
        info.name,
        call_type,
        provider=info.provider,
        max_tokens=max_tokens,
        temperature=temperature,
        prompt=prompt,
        system=system,
        output_type="json" if json_answer else "text",
    ) as handle:
        events.emit(events.cache_hit, model=info.name, call_type=call_type, cache_key=key[:16])
        handle.set_attributes(
            {
                attr.LLM_TOKENS_IN: hit.input_tokens,
                attr.LLM_TOKENS_OUT: hit.output_tokens,
                attr.LLM_COST_USD: 0.0,
                attr.LLM_LATENCY_MS: 0.0,
                attr.LLM_CACHED: True,
                attr.LLM_FINISH_REASON: hit.finish_reason,
            }
        )
        handle.set_completion(hit.text)
    return APIResponse(
        hit.text, hit.input_tokens, hit.output_tokens, info.name, 0.0, True, 0.0, hit.finish_reason, 0, info.provider
    )


async def complete_once(provider: Provider, request: ProviderRequest, handle: events.PairContext) -> ProviderResponse:
    """One adapter call, with a safety-net timeout over the adapter's own; any failure
    becomes a ``ProviderError`` with its type on the span (an adapter bug fails the call,
    never the project)."""
    try:
        # the adapter enforces the timeout itself; this is the safety net
        return await asyncio.wait_for(provider.complete(request), request.timeout + 5.0)
    except TimeoutError:
        # a remote timeout may pass; the local model on the same CPU would take as long again
        raise ProviderError(
            f"{request.model} timed out after {request.timeout:.1f}s",
            transient=not get_model(request.model).is_local,
            error_type="TimeoutError",
        ) from None
    except ProviderError as exc:
        handle.set_attribute(attr.ERROR_TYPE, exc.error_type)
        if exc.status_code is not None:
            handle.set_attribute(attr.HTTP_RESPONSE_STATUS_CODE, exc.status_code)
        raise
    except Exception as exc:  # an adapter bug fails this call, never the project
        logger.warning(
            "%s adapter raised %s (an adapter bug): %s",
            provider.name,
            type(exc).__name__,
            redact(str(exc)),
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )
        handle.set_attribute(attr.ERROR_TYPE, type(exc).__name__)
        raise ProviderError(
            f"{request.model}: the {provider.name} adapter failed: {type(exc).__name__}: {redact(str(exc))[:300]}",
            transient=False,
            error_type=type(exc).__name__,
        ) from None


def finished_response(
    handle: events.PairContext,
    info: ModelInfo,
    raw: ProviderResponse,
    cost: float,
    latency_ms: float,
    attempt: int,
    queue_ms: float,
) -> APIResponse:
    """What an answered call puts on its span (tokens, cost, latency, finish reason, the
    response's model and id, the completion; unpriced marked, never shown as free), and
    the response the caller gets."""
    handle.set_attributes(
        {
            attr.LLM_TOKENS_IN: raw.input_tokens,
            attr.LLM_TOKENS_OUT: raw.output_tokens,
            attr.LLM_COST_USD: cost,
            attr.LLM_LATENCY_MS: round(latency_ms, 3),
            attr.LLM_CACHED: False,
            attr.LLM_FINISH_REASON: raw.finish_reason,
            attr.LLM_RESPONSE_MODEL: raw.response_model or info.name,
        }
    )
    if raw.response_id:
        handle.set_attribute(attr.LLM_RESPONSE_ID, raw.response_id)
    if not info.price_known:  # its cost of 0 is "unknown", not "free"
        handle.set_attribute(attr.ORCHESTRATOR_UNPRICED, True)
    handle.set_completion(raw.text)
    if raw.sent_system is not None:
        handle.set_sent_system(raw.sent_system)
    return APIResponse(
        raw.text,
        raw.input_tokens,
        raw.output_tokens,
        info.name,
        latency_ms,
        False,
        cost,
        raw.finish_reason,
        attempt,
        info.provider,
        queue_ms,
        raw.response_id,
    )


def backoff_seconds(attempt: int, retry_after: float | None, base: float, ceiling_max: float) -> float:
    """Exponential backoff with full jitter; ``Retry-After`` wins when the server sends it."""
    if retry_after is not None and retry_after >= 0:
        return min(retry_after, ceiling_max)
    ceiling = min(ceiling_max, base * (2 ** (attempt - 1)))
    return random.uniform(ceiling / 2, ceiling)
