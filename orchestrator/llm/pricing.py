"""What a call costs: the one place prices are applied.

Why one module: the cost on a span, the budget's worst-case reservation, the cost
policies' estimates and the ``orchestrator models`` table must agree, and a price change
must never need a code change.  Prices come from the maintained ``genai-prices``
database (its bundled snapshot, offline; :func:`update_prices` may fetch a newer one on
request), or from a catalog file for models the database does not know.

* **Actual cost** is ``genai_prices.calc_price`` of the usage the provider reported
  (input, output, cached-input reads and cache writes where reported), at the moment
  the call was admitted (its reservation, just before it queues and is sent), so
  prompt-size tiers (gemini-2.5-pro above 200k input tokens),
  dated price changes and time-of-day variants (DeepSeek's peak hours) are honoured.
* **Worst case** (what the budget reserves before a call) prices every input token at
  the highest input-direction rate the model has (plain, cache read or cache write) and
  every output token at the highest output rate (plain or reasoning), plus any
  per-request fee, each at the highest tier the request can reach
  (a tier whose threshold is below the request's worst-case input tokens), at the same
  timestamp the actual cost will use.  So the reservation is a true upper bound of the
  actual cost for a provider that reports honestly.
* A model with no known price is never treated as free: :attr:`Pricing.known` is false
  and the client refuses it under a USD budget.

Adapters know nothing of this: they report token counts, the client prices them here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, TypedDict

from .clock import now

if TYPE_CHECKING:
    from genai_prices.types import ModelInfo as PricedModel
    from genai_prices.types import ModelPrice


logger = logging.getLogger("orchestrator.pricing")

PER_MILLION = Decimal(1_000_000)

DATABASE_PROVIDER_IDS: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "google",
    "deepseek": "deepseek",
    "kimi": "moonshotai",
    "openrouter": "openrouter",
}
"""Our provider names -> genai-prices provider ids (``local`` and ``server`` have none)."""

UPDATE_ENV = "ORCHESTRATOR_UPDATE_PRICES"
"""Set to 1/true/yes: fetch a newer price snapshot before the command (like ``--update-prices``)."""
PRICES_URL_ENV = "ORCHESTRATOR_PRICES_URL"
"""Where :func:`update_prices` fetches from (default: genai-prices' own URL on GitHub)."""

_INPUT_KEYS = ("input_mtok", "cache_read_mtok", "cache_write_mtok")
_OUTPUT_KEYS = ("output_mtok", "output_reasoning_mtok")
_OUTPUT_KEY = "output_mtok"
_REQUEST_KEY = "requests_kcount"


class PriceSource(StrEnum):
    """Where a model's price comes from (``orchestrator models`` shows it)."""

    DATABASE = "database"
    """The genai-prices snapshot."""
    CATALOG = "catalog"
    """Our shipped catalog file."""
    USER = "user"
    """The user's catalog file."""
    LOOPBACK = "loopback"
    """A model served on this machine (``--provider-url`` on a loopback address): free."""
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens as the provider reported them.  ``input_tokens`` is the whole prompt,
    cached reads and cache writes included (they are parts of it, billed at their rates)."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True, slots=True)
class FlatPrice:
    """A price from a catalog file, USD per 1M tokens.  Cached input defaults to the
    input price (no discount assumed); cache writes are billed as input."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None

    def cost(self, usage: TokenUsage) -> Decimal:
        cached = self.input if self.cached_input is None else self.cached_input
        plain = max(0, usage.input_tokens - usage.cache_read_tokens)
        return (plain * self.input + usage.cache_read_tokens * cached + usage.output_tokens * self.output) / PER_MILLION

    def worst_case(self, input_tokens: int, output_tokens: int) -> Decimal:
        top = max(self.input, self.cached_input or Decimal(0))
        return (input_tokens * top + output_tokens * self.output) / PER_MILLION


@dataclass(frozen=True, slots=True)
class Rates:
    """Base-tier prices (USD per 1M tokens) of one moment, for display and comparisons."""

    input: float
    output: float
    cached_input: float | None = None
    tiered: bool = False
    """Higher rates apply above a prompt-size threshold."""
    time_of_day: bool = False
    """The price depends on the hour the request is sent (e.g. DeepSeek's peak hours)."""


@dataclass(frozen=True, slots=True)
class Pricing:
    """How one model is priced: a flat price from a catalog file, a database entry
    (``db_provider``/``db_model`` as genai-prices knows them), or unknown."""

    source: PriceSource
    flat: FlatPrice | None = None
    db_provider: str | None = None
    db_model: str | None = None

    @property
    def known(self) -> bool:
        return self.flat is not None or self.db_model is not None

    # -- the two numbers the budget needs ----------------------------------------------
    def cost(self, usage: TokenUsage, at: datetime | None = None) -> float:
        """USD of a finished call with ``usage``, priced at ``at`` (default now).
        ValueError when the price is unknown."""
        if self.flat is not None:
            return float(self.flat.cost(usage))
        if self.db_model is None:
            raise ValueError("no known price")
        from genai_prices import Usage, calc_price

        reported = Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens or None,
            cache_write_tokens=usage.cache_write_tokens or None,
        )
        result = calc_price(
            reported, model_ref=self.db_model, provider_id=self.db_provider, genai_request_timestamp=at or now()
        )
        return float(result.total_price)

    def worst_case(self, input_tokens: int, output_tokens: int, at: datetime | None = None) -> float:
        """An upper bound of :meth:`cost` for any usage with at most ``input_tokens`` in
        and ``output_tokens`` out, at the same ``at``.  ValueError when the price is unknown."""
        if self.flat is not None:
            return float(self.flat.worst_case(input_tokens, output_tokens))
        prices = self._db_prices(at)
        top_in = max((_reachable(getattr(prices, key, None), input_tokens) for key in _INPUT_KEYS), default=Decimal(0))
        top_out = max(_reachable(getattr(prices, key, None), input_tokens) for key in _OUTPUT_KEYS)
        per_request = _reachable(getattr(prices, _REQUEST_KEY, None), input_tokens) / 1000
        return float((input_tokens * top_in + output_tokens * top_out) / PER_MILLION + per_request)

    # -- what a table shows ------------------------------------------------------------
    def rates(self, at: datetime | None = None) -> Rates | None:
        """Base-tier rates at ``at`` (None when unknown)."""
        if self.flat is not None:
            cached = None if self.flat.cached_input is None else float(self.flat.cached_input)
            return Rates(float(self.flat.input), float(self.flat.output), cached)
        if self.db_model is None:
            return None
        model = database_model(self.db_provider, self.db_model)
        if model is None:
            return None
        prices = self._db_prices(at)
        base = {key: _base(getattr(prices, key, None)) for key in (*_INPUT_KEYS, _OUTPUT_KEY)}
        tiered = any(_is_tiered(getattr(prices, key, None)) for key in (*_INPUT_KEYS, _OUTPUT_KEY))
        return Rates(
            float(base["input_mtok"] or 0),
            float(base[_OUTPUT_KEY] or 0),
            None if base["cache_read_mtok"] is None else float(base["cache_read_mtok"]),
            tiered,
            _has_time_of_day(model),
        )

    def _db_prices(self, at: datetime | None) -> ModelPrice:
        model = database_model(self.db_provider, self.db_model)
        if model is None:
            raise ValueError(f"{self.db_model!r} is not in the price database")
        return model.get_prices(at or now())


def _base(price: object) -> Decimal | None:
    if price is None:
        return None
    from genai_prices.types import TieredPrices

    if isinstance(price, TieredPrices):
        return price.base
    assert isinstance(price, Decimal | int | float | str), price  # a ModelPrice's rate: Decimal or tiers
    return Decimal(price)


def _is_tiered(price: object) -> bool:
    return price is not None and bool(getattr(price, "tiers", None))


def _reachable(price: object, input_tokens: int) -> Decimal:
    """The highest rate of ``price`` a request of up to ``input_tokens`` can reach (a
    tier applies when the prompt has more tokens than its start)."""
    if price is None:
        return Decimal(0)
    from genai_prices.types import TieredPrices

    if not isinstance(price, TieredPrices):
        assert isinstance(price, Decimal | int | float | str), price
        return Decimal(price)
    rates: list[Decimal] = [price.base] + [tier.price for tier in price.tiers if input_tokens > tier.start]
    return max(rates)


def _has_time_of_day(model: PricedModel) -> bool:
    from genai_prices.types import TimeOfDateConstraint

    conditional = model.prices if isinstance(model.prices, list) else []
    return any(isinstance(c.constraint, TimeOfDateConstraint) for c in conditional)


# -- the database ------------------------------------------------------------------------


def database_model(provider_id: str | None, model_ref: str | None) -> PricedModel | None:
    """The genai-prices model entry for ``model_ref`` at ``provider_id``, or None."""
    if model_ref is None:
        return None
    from genai_prices import data_snapshot

    try:
        _, model = data_snapshot.get_snapshot().find_provider_model(model_ref, None, provider_id, None)
    except LookupError:
        return None
    return model


def has_token_prices(model: PricedModel, at: datetime | None = None) -> bool:
    """A database entry that prices input and output tokens (some list a model without)."""
    prices = model.get_prices(at or now())
    return getattr(prices, "input_mtok", None) is not None and getattr(prices, _OUTPUT_KEY, None) is not None


def snapshot_label() -> str:
    """Which price data is in use: the bundled snapshot (named by the package version:
    it carries no date of its own) or a fetched one (with the time it was fetched)."""
    from genai_prices import __version__, data_snapshot

    snapshot = data_snapshot.get_snapshot()
    if snapshot.from_auto_update:
        return f"genai-prices data fetched {snapshot.timestamp.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    return f"genai-prices {__version__} snapshot"


def update_requested(flag: bool) -> bool:
    """``--update-prices``, or ``ORCHESTRATOR_UPDATE_PRICES`` set to a true value."""
    return flag or os.environ.get(UPDATE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def update_prices(url: str | None = None, timeout: float = 10.0) -> str:
    """Fetch the newest price data and use it for the rest of the process.  Returns the
    new :func:`snapshot_label`; raises ValueError (one line) when the fetch fails, in
    which case the prices in use are unchanged."""
    import httpx2
    from genai_prices import data_snapshot
    from genai_prices.update_prices import DEFAULT_UPDATE_URL, UpdatePrices

    target = url or os.environ.get(PRICES_URL_ENV, "").strip() or DEFAULT_UPDATE_URL
    updater = UpdatePrices(url=target, request_timeout=httpx2.Timeout(timeout=timeout, connect=min(5.0, timeout)))
    try:
        snapshot = updater.fetch()
    except Exception as exc:  # noqa: BLE001 - network, HTTP status, bad JSON: all one line
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ValueError(f"could not update prices from {target}: {reason}") from None
    if snapshot is None or not snapshot.providers:
        raise ValueError(f"could not update prices from {target}: no provider in the answer")
    data_snapshot.set_custom_snapshot(snapshot)
    logger.info("prices updated from %s (%d providers)", target, len(snapshot.providers))
    return snapshot_label()


def use_bundled_prices() -> None:
    """Forget fetched price data (tests; a library user undoing :func:`update_prices`)."""
    from genai_prices import data_snapshot

    data_snapshot.set_custom_snapshot(None)


def flat_price(values: Iterable[tuple[str, float]]) -> FlatPrice:
    """A :class:`FlatPrice` from ``(key, USD per 1M)`` pairs: ``input``, ``output`` and
    optionally ``cached_input``."""
    given = {key: Decimal(str(value)) for key, value in values}
    return FlatPrice(given["input"], given["output"], given.get("cached_input"))


class PriceData(TypedDict):
    """The price data in use, as ``orchestrator doctor`` shows it."""

    label: str
    providers: int
    models: int
    newest_price_date: str | None
    fetched: bool


def price_data_summary() -> PriceData:
    """The price data in use, for ``orchestrator doctor``: its label, how many providers
    and models it prices, and the newest price start date in it (the bundled snapshot
    carries no date of its own; a fetched one carries the time it was fetched)."""
    from genai_prices import data_snapshot
    from genai_prices.types import StartDateConstraint

    snapshot = data_snapshot.get_snapshot()
    starts = [
        price.constraint.start_date
        for provider in snapshot.providers
        for model in provider.models
        if isinstance(model.prices, list)
        for price in model.prices
        if isinstance(price.constraint, StartDateConstraint)
    ]
    newest = max(starts).isoformat() if starts else None
    models = sum(len(provider.models) for provider in snapshot.providers)
    label = f"{snapshot_label()}: {len(snapshot.providers)} providers, {models} models"
    if newest:
        label += f", newest dated price {newest}"
    return {
        "label": label,
        "providers": len(snapshot.providers),
        "models": models,
        "newest_price_date": newest,
        "fetched": bool(snapshot.from_auto_update),
    }
