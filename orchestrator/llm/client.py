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
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping

from .. import events
from ..domain.budget import CALL_TYPE_PHASE, Budget, Phase
from ..domain.values import JsonSchema
from .budgeting import call_cost, reserve, reserve_shared, settle, settle_shared
from .cache import CachedAnswer, ResponseCache, cache_key
from .call_steps import APIResponse, Dispatch, backoff_seconds, cached_response, complete_once, finished_response
from .catalog import ModelInfo, get_model
from .clock import now
from .costing import worst_case_input_tokens
from .errors import BudgetExceededError, LLMCallError, TimeBudgetExceededError
from .health import DEFAULT_COOLDOWN, DEFAULT_COOLDOWN_MAX, DEFAULT_THRESHOLD, ModelHealth
from .providers.base import Provider, ProviderError, ProviderRequest, endpoint_of, queues_internally

__all__ = [
    "APIResponse",
    "BudgetExceededError",
    "LLMCallError",
    "TimeBudgetExceededError",
    "UnifiedClient",
    "worst_case_input_tokens",
]

logger = logging.getLogger("orchestrator.client")

PRICE_UNKNOWN = "no known price, so it cannot be budgeted: give it a price in a catalog file (--catalog FILE)"


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
        self.health = ModelHealth(
            threshold=unhealthy_after, cooldown=breaker_cooldown, cooldown_max=breaker_cooldown_max, sleep=sleep
        )

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
            raise LLMCallError(
                model, ProviderError(f"no adapter for provider {info.provider!r}", fatal_for_model=True), 0
            )
        refused = self.refusal(info)
        if refused is not None:  # skipped like an unhealthy model, with the reason (and replacement)
            self.mark_unhealthy(model, refused)
            raise LLMCallError(
                model, ProviderError(f"{model}: {refused}", fatal_for_model=True, error_type="ModelRefused"), 0
            )
        max_tokens = max(1, min(max_tokens, info.max_output_tokens))
        phase = CALL_TYPE_PHASE.get(call_type, Phase.GENERATION)
        key = None
        if self.cache is not None:
            key = cache_key(model, system, prompt, max_tokens, temperature, json_schema, variant)
            if not bypass_cache:
                hit = self.cache.get(key)
                if hit is not None:
                    return cached_response(
                        info, hit, key, call_type, max_tokens, temperature, prompt, system, json_schema is not None
                    )

        if model in self.unhealthy:  # e.g. its key was rejected: another request would fail the same way
            raise LLMCallError(
                model,
                ProviderError(
                    f"{model} is unhealthy ({self.unhealthy[model]})", fatal_for_model=True, error_type="ModelUnhealthy"
                ),
                0,
            )
        retries = self.default_retries if retries is None else retries
        timeout = self.default_timeout if timeout is None else timeout
        last_error: ProviderError | None = None
        budget = self.budget
        time_left = (lambda: budget.remaining_seconds) if budget is not None else None
        for attempt in itertools.count(1):  # ends at a success or at the break below
            try:
                response = await self.health.through(  # each attempt through the model's breaker
                    info.name,
                    time_left,
                    functools.partial(
                        self._attempt,
                        provider,
                        info,
                        prompt,
                        system,
                        max_tokens,
                        temperature,
                        timeout,
                        json_schema,
                        call_type,
                        phase,
                        attempt,
                    ),
                )
            except ProviderError as exc:
                last_error = exc
                allowed = retries if exc.max_retries is None else exc.max_retries
                if not exc.transient or attempt > allowed or model in self.unhealthy:
                    break
                delay = backoff_seconds(attempt, exc.retry_after, self.backoff_base, self.backoff_max)
                events.emit(
                    events.llm_retry, model=model, attempt=attempt, error_type=exc.error_type, delay_seconds=delay
                )
                if self.budget is not None and delay >= self.budget.remaining_seconds:
                    break
                await self._sleep(delay)
                continue
            if self.cache is not None and key is not None:
                self.cache.put(
                    key,
                    model,
                    CachedAnswer(
                        response.text, response.input_tokens, response.output_tokens, response.finish_reason, None
                    ),
                )
            return response
        assert last_error is not None
        raise LLMCallError(model, last_error, attempt)

    async def _attempt(
        self,
        provider: Provider,
        info: ModelInfo,
        prompt: str,
        system: str,
        max_tokens: int,
        temperature: float,
        timeout: float,
        json_schema: JsonSchema | None,
        call_type: str,
        phase: Phase,
        attempt: int,
    ) -> APIResponse:
        budget = self.budget
        sent_at = now()  # the reservation and the cost are priced at the same moment
        worst = (
            info.worst_case_cost(worst_case_input_tokens(system, prompt, json_schema), max_tokens, sent_at)
            if info.price_known
            else 0.0
        )
        ticket = None
        if budget is not None:
            reserve(budget, info.name, worst)
            ticket = await reserve_shared(budget, info.name, worst)  # a batch's ledger, when there is one
        cost = 0.0
        endpoint = endpoint_of(provider)
        try:
            with events.traced_llm_call(
                info.name,
                call_type,
                provider=info.provider,
                max_tokens=max_tokens,
                temperature=temperature,
                attempt=attempt,
                prompt=prompt,
                system=system,
                output_type="json" if json_schema is not None else "text",
                server_address=endpoint[0] if endpoint else None,
                server_port=endpoint[1] if endpoint else None,
            ) as handle:
                dispatch = Dispatch(info.name, handle)
                async with self._semaphore:  # waiting here is queueing: the span shows it apart
                    if budget is not None:
                        if budget.remaining_seconds < 1.0:
                            raise TimeBudgetExceededError(
                                f"{budget.remaining_seconds:.1f}s left of the time "
                                f"budget after queueing; {info.name} not called"
                            )
                        timeout = min(timeout, budget.remaining_seconds)
                    request = ProviderRequest(
                        info.name,
                        prompt,
                        system,
                        max_tokens,
                        temperature,
                        json_schema,
                        timeout,
                        dict(handle.carrier) or None,
                        dispatch.mark if queues_internally(provider) else None,
                    )
                    if not queues_internally(provider):
                        dispatch.mark()
                    raw = await complete_once(provider, request, handle)
                latency_ms = dispatch.elapsed_ms()
                cost = call_cost(info, raw, sent_at)
                response = finished_response(handle, info, raw, cost, latency_ms, attempt, dispatch.queue_ms)
        finally:
            if budget is not None:
                settle(budget, info.name, worst, cost, phase)
                settle_shared(budget, ticket, cost)
        return response
