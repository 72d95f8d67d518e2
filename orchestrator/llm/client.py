"""UnifiedClient: one call interface over every provider, with the cross-cutting rules.

Everything that must be the same whatever the provider lives here: the response cache,
budget reservation, per-call timeouts, retries with backoff, model health, cost (the
catalog's prices, applied by :mod:`.pricing` to the usage the provider reported), and
the ``llm_call`` event pair around every attempt (cached answers included).

A model the catalog marks deprecated (or near or past its end of life) is never called:
it is reported unusable with the replacement to use, and a direct call marks it
unhealthy.  A model with no known price is refused under a USD budget (it cannot be
budgeted) rather than treated as free.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from .. import attributes as attr
from .. import events
from ..domain.budget import CALL_TYPE_PHASE, Budget, Phase
from ..domain.values import JsonSchema
from ..redaction import redact
from .budgeting import call_cost, reserve, reserve_shared, settle, settle_shared
from .cache import CachedAnswer, ResponseCache, cache_key
from .catalog import ModelInfo, get_model
from .clock import now
from .costing import worst_case_input_tokens
from .errors import BudgetExceededError, LLMCallError, TimeBudgetExceededError
from .health import DEFAULT_COOLDOWN, DEFAULT_COOLDOWN_MAX, DEFAULT_THRESHOLD, CircuitOpen, ModelHealth
from .providers.base import (
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    endpoint_of,
    queues_internally,
)

__all__ = ["APIResponse", "BudgetExceededError", "LLMCallError", "TimeBudgetExceededError", "UnifiedClient",
           "worst_case_input_tokens"]

logger = logging.getLogger("orchestrator.client")

PRICE_UNKNOWN = ("no known price, so it cannot be budgeted: give it a price in a catalog file "
                 "(--catalog FILE)")

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


class UnifiedClient:
    """Routes calls to provider adapters by the catalog's provider name.

    ``providers`` maps a provider name of the catalog (``local``, ``openai``,
    ``anthropic``, ...) to its adapter.  When omitted, the default adapters are built.
    """

    def __init__(
        self,
        providers: Mapping[str, Provider] | None = None,
        *,
        cache: ResponseCache | None = None,
        concurrency: int = 8,
        budget: Budget | None = None,
        default_timeout: float = 120.0,
        default_retries: int = 2,
        unhealthy_after: int = DEFAULT_THRESHOLD,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        local_model: str | None = None,
        breaker_cooldown: float = DEFAULT_COOLDOWN,
        breaker_cooldown_max: float = DEFAULT_COOLDOWN_MAX,
    ) -> None:
        """``unhealthy_after`` transient failures in a row open a model's circuit breaker
        for ``breaker_cooldown`` seconds (doubling after each failed probe, up to
        ``breaker_cooldown_max``); see :mod:`.health`."""
        if providers is None:
            from .providers.registry import default_providers

            providers = default_providers(local_model=local_model)
        self.providers: dict[str, Provider] = dict(providers)
        self.cache = cache
        self.concurrency = concurrency
        self._semaphore = asyncio.Semaphore(concurrency)
        self.budget = budget
        self.default_timeout = default_timeout
        self.default_retries = default_retries
        self.unhealthy_after = unhealthy_after
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._sleep = sleep
        self.health = ModelHealth(threshold=unhealthy_after, cooldown=breaker_cooldown,
                                  cooldown_max=breaker_cooldown_max, sleep=sleep)

    @property
    def unhealthy(self) -> dict[str, str]:
        """Models out for the rest of the run (a permanent error), with the reason."""
        return self.health.unhealthy

    def cooling_down(self, model: str) -> bool:
        """The model's circuit breaker is open: usable, but after the healthy candidates."""
        return self.health.cooling_down(model)

    # -- routing helpers -------------------------------------------------------------
    def provider_for(self, model: str | ModelInfo) -> Provider | None:
        info = model if isinstance(model, ModelInfo) else get_model(model)
        return self.providers.get(info.provider)

    def availability(self, model: str) -> tuple[bool, str]:
        """(usable, reason when not) for a catalog model, health included."""
        try:
            info = get_model(model)
        except KeyError as exc:
            return False, str(exc.args[0])
        provider = self.providers.get(info.provider)
        if provider is None:
            return False, f"no adapter for provider {info.provider!r}"
        if model in self.unhealthy:
            return False, f"unhealthy: {self.unhealthy[model]}"
        refused = self.refusal(info)
        if refused is not None:
            return False, refused
        return provider.availability(model)

    def refusal(self, info: ModelInfo) -> str | None:
        """Why the catalog forbids calling ``info`` now (deprecated or retiring, or no
        known price under a USD budget); None when it may be called."""
        retired = info.retirement()
        if retired is not None:
            return retired
        if self.budget is not None and not info.price_known:
            return PRICE_UNKNOWN
        return None

    def is_usable(self, model: str) -> bool:
        return self.availability(model)[0]

    def mark_unhealthy(self, model: str, reason: str) -> None:
        self.health.mark_unhealthy(model, reason)

    async def aclose(self) -> None:
        """Close the providers' connections of the running loop (a later call opens new
        ones).  Why: an SDK client left to the garbage collector closes itself on whatever
        loop runs then, which fails once its own loop is closed."""
        for provider in self.providers.values():
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()

    # -- the call --------------------------------------------------------------------
    async def call(
        self,
        model: str,
        prompt: str,
        system: str = "",
        max_tokens: int = 1024,
        temperature: float = 0.3,
        timeout: float | None = None,
        retries: int | None = None,
        bypass_cache: bool = False,
        json_schema: JsonSchema | None = None,
        *,
        call_type: str = "generate",
        variant: int = 0,
    ) -> APIResponse:
        """Answer ``prompt`` with ``model``.

        Raises :class:`BudgetExceededError` / :class:`TimeBudgetExceededError` when the
        call cannot be paid for (nothing is sent), :class:`LLMCallError` when every
        attempt failed.  ``variant`` makes an otherwise identical call a distinct cache
        entry (second evaluation sample, retry after an unusable answer).
        """
        info = get_model(model)
        provider = self.providers.get(info.provider)
        if provider is None:
            raise LLMCallError(model, ProviderError(f"no adapter for provider {info.provider!r}",
                                                    fatal_for_model=True), 0)
        refused = self.refusal(info)
        if refused is not None:  # skipped like an unhealthy model, with the reason (and replacement)
            self.mark_unhealthy(model, refused)
            raise LLMCallError(model, ProviderError(f"{model}: {refused}", fatal_for_model=True,
                                                    error_type="ModelRefused"), 0)
        max_tokens = max(1, min(max_tokens, info.max_output_tokens))
        phase = CALL_TYPE_PHASE.get(call_type, Phase.GENERATION)
        key = None
        if self.cache is not None:
            key = cache_key(model, system, prompt, max_tokens, temperature, json_schema, variant)
            if not bypass_cache:
                hit = self.cache.get(key)
                if hit is not None:
                    return self._answer_from_cache(info, hit, key, call_type, max_tokens, temperature,
                                                   prompt, system, json_schema is not None)

        if model in self.unhealthy:  # e.g. its key was rejected: another request would fail the same way
            raise LLMCallError(model, ProviderError(f"{model} is unhealthy ({self.unhealthy[model]})",
                                                    fatal_for_model=True, error_type="ModelUnhealthy"), 0)
        retries = self.default_retries if retries is None else retries
        timeout = self.default_timeout if timeout is None else timeout
        last_error: ProviderError | None = None
        for attempt in itertools.count(1):  # ends at a success or at the break below
            try:
                response = await self._guarded_attempt(provider, info, prompt, system, max_tokens, temperature,
                                                       timeout, json_schema, call_type, phase, attempt)
            except ProviderError as exc:
                last_error = exc
                allowed = retries if exc.max_retries is None else exc.max_retries
                if not exc.transient or attempt > allowed or model in self.unhealthy:
                    break
                delay = self._backoff(attempt, exc.retry_after)
                events.emit(events.llm_retry, model=model, attempt=attempt,
                            error_type=exc.error_type, delay_seconds=delay)
                if self.budget is not None and delay >= self.budget.remaining_seconds:
                    break
                await self._sleep(delay)
                continue
            if self.cache is not None and key is not None:
                self.cache.put(key, model, CachedAnswer(response.text, response.input_tokens,
                                                        response.output_tokens, response.finish_reason,
                                                        None))
            return response
        assert last_error is not None
        raise LLMCallError(model, last_error, attempt)

    def _answer_from_cache(self, info: ModelInfo, hit: CachedAnswer, key: str, call_type: str,
                           max_tokens: int, temperature: float, prompt: str, system: str,
                           json_answer: bool) -> APIResponse:
        with events.traced_llm_call(info.name, call_type, provider=info.provider, max_tokens=max_tokens,
                                    temperature=temperature, prompt=prompt, system=system,
                                    output_type="json" if json_answer else "text") as handle:
            events.emit(events.cache_hit, model=info.name, call_type=call_type, cache_key=key[:16])
            handle.set_attributes({
                attr.LLM_TOKENS_IN: hit.input_tokens, attr.LLM_TOKENS_OUT: hit.output_tokens,
                attr.LLM_COST_USD: 0.0, attr.LLM_LATENCY_MS: 0.0, attr.LLM_CACHED: True,
                attr.LLM_FINISH_REASON: hit.finish_reason,
            })
            handle.set_completion(hit.text)
        return APIResponse(hit.text, hit.input_tokens, hit.output_tokens, info.name, 0.0, True, 0.0,
                           hit.finish_reason, 0, info.provider)

    async def _guarded_attempt(self, provider: Provider, info: ModelInfo, prompt: str, system: str,
                               max_tokens: int, temperature: float, timeout: float,
                               json_schema: JsonSchema | None, call_type: str, phase: Phase,
                               attempt: int) -> APIResponse:
        """One attempt through the model's circuit breaker: wait while it is open (the
        half-open probe goes alone), and tell it the outcome."""
        budget = self.budget
        try:
            probe = await self.health.admit(info.name, (lambda: budget.remaining_seconds) if budget else None)
        except CircuitOpen as exc:
            raise ProviderError(str(exc), transient=True, error_type="CircuitOpen") from None
        told = False
        try:
            response = await self._attempt(provider, info, prompt, system, max_tokens, temperature, timeout,
                                           json_schema, call_type, phase, attempt)
            told = True
            self.health.succeeded(info.name, probe)
            return response
        except ProviderError as exc:
            told = True
            self.health.failed(info.name, transient=exc.transient, fatal=exc.fatal_for_model,
                               reason=f"{exc.error_type}: {exc}", probe=probe)
            raise
        finally:
            if not told:  # refused for money or time, or cancelled: no news of the model
                self.health.abandoned(info.name, probe)

    async def _attempt(self, provider: Provider, info: ModelInfo, prompt: str, system: str,
                       max_tokens: int, temperature: float, timeout: float,
                       json_schema: JsonSchema | None, call_type: str, phase: Phase,
                       attempt: int) -> APIResponse:
        budget = self.budget
        sent_at = now()  # the reservation and the cost are priced at the same moment
        worst = (info.worst_case_cost(worst_case_input_tokens(system, prompt, json_schema), max_tokens, sent_at)
                 if info.price_known else 0.0)
        ticket = None
        if budget is not None:
            reserve(budget, info.name, worst)
            ticket = await reserve_shared(budget, info.name, worst)  # a batch's ledger, when there is one
        cost = 0.0
        endpoint = endpoint_of(provider)
        try:
            with events.traced_llm_call(info.name, call_type, provider=info.provider, max_tokens=max_tokens,
                                        temperature=temperature, attempt=attempt, prompt=prompt, system=system,
                                        output_type="json" if json_schema is not None else "text",
                                        server_address=endpoint[0] if endpoint else None,
                                        server_port=endpoint[1] if endpoint else None) as handle:
                dispatch = _Dispatch(info.name, handle)
                async with self._semaphore:  # waiting here is queueing: the span shows it apart
                    if budget is not None:
                        if budget.remaining_seconds < 1.0:
                            raise TimeBudgetExceededError(f"{budget.remaining_seconds:.1f}s left of the time "
                                                          f"budget after queueing; {info.name} not called")
                        timeout = min(timeout, budget.remaining_seconds)
                    request = ProviderRequest(info.name, prompt, system, max_tokens, temperature, json_schema,
                                              timeout, dict(handle.carrier) or None,
                                              dispatch.mark if queues_internally(provider) else None)
                    if not queues_internally(provider):
                        dispatch.mark()
                    raw = await self._complete(provider, request, handle)
                latency_ms = dispatch.elapsed_ms()
                cost = call_cost(info, raw, sent_at)
                handle.set_attributes({
                    attr.LLM_TOKENS_IN: raw.input_tokens, attr.LLM_TOKENS_OUT: raw.output_tokens,
                    attr.LLM_COST_USD: cost, attr.LLM_LATENCY_MS: round(latency_ms, 3), attr.LLM_CACHED: False,
                    attr.LLM_FINISH_REASON: raw.finish_reason,
                    attr.LLM_RESPONSE_MODEL: raw.response_model or info.name,
                })
                if raw.response_id:
                    handle.set_attribute(attr.LLM_RESPONSE_ID, raw.response_id)
                if not info.price_known:  # its cost of 0 is "unknown", not "free"
                    handle.set_attribute(attr.ORCHESTRATOR_UNPRICED, True)
                handle.set_completion(raw.text)
                if raw.sent_system is not None:
                    handle.set_sent_system(raw.sent_system)
        finally:
            if budget is not None:
                settle(budget, info.name, worst, cost, phase)
                settle_shared(budget, ticket, cost)
        return APIResponse(raw.text, raw.input_tokens, raw.output_tokens, info.name, latency_ms, False, cost,
                           raw.finish_reason, attempt, info.provider, dispatch.queue_ms, raw.response_id)

    @staticmethod
    async def _complete(provider: Provider, request: ProviderRequest, handle: events.PairContext) -> ProviderResponse:
        try:
            # the adapter enforces the timeout itself; this is the safety net
            return await asyncio.wait_for(provider.complete(request), request.timeout + 5.0)
        except TimeoutError:
            # a remote timeout may pass; the local model on the same CPU would take as long again
            raise ProviderError(f"{request.model} timed out after {request.timeout:.1f}s",
                                transient=not get_model(request.model).is_local, error_type="TimeoutError") from None
        except ProviderError as exc:
            handle.set_attribute(attr.ERROR_TYPE, exc.error_type)
            if exc.status_code is not None:
                handle.set_attribute(attr.HTTP_RESPONSE_STATUS_CODE, exc.status_code)
            raise
        except Exception as exc:  # an adapter bug fails this call, never the project
            logger.warning("%s adapter raised %s (an adapter bug): %s", provider.name, type(exc).__name__,
                           redact(str(exc)), exc_info=logger.isEnabledFor(logging.DEBUG))
            handle.set_attribute(attr.ERROR_TYPE, type(exc).__name__)
            raise ProviderError(f"{request.model}: the {provider.name} adapter failed: {type(exc).__name__}: "
                                f"{redact(str(exc))[:300]}", transient=False,
                                error_type=type(exc).__name__) from None

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; ``Retry-After`` wins when the server sends it."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)


class _Dispatch:
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
