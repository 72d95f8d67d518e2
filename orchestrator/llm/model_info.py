"""One catalog entry: who serves a model, what it costs, how much it reads and writes,
and whether it is still to be used (deprecation, end of life)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from .clock import today
from .pricing import PriceSource, Pricing, TokenUsage, flat_price, snapshot_label

RETIRING_WITHIN_DAYS = 30
"""A model whose end of life is this close (or past) counts as deprecated: routing skips
it and naming it is refused, so a run never starts on a model about to disappear."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model.  ``input_per_m``/``output_per_m``: base-tier USD per 1M tokens when the
    catalog was built (None: no known price); actual costs go through :attr:`pricing`."""

    name: str
    provider: str
    input_per_m: float | None
    output_per_m: float | None
    context_window: int
    max_output_tokens: int = 4096
    region: str = "us"
    tags: tuple[str, ...] = ()
    display_name: str = ""
    deprecated: bool | None = None
    """True: deprecated (by the database or a file); False: a file says use it anyway;
    None: nobody said."""
    deprecated_by: str = ""
    end_of_life: dt.date | None = None
    replacement: str | None = None
    pricing: Pricing | None = field(default=None, compare=False)
    tiered: bool = False
    time_of_day: bool = False

    def __post_init__(self) -> None:
        if self.pricing is None:  # built in Python with plain prices: a flat price of its own
            known = self.input_per_m is not None and self.output_per_m is not None
            price = flat_price([("input", self.input_per_m or 0.0), ("output", self.output_per_m or 0.0)])
            object.__setattr__(
                self,
                "pricing",
                Pricing(PriceSource.CATALOG if known else PriceSource.UNKNOWN, price if known else None),
            )

    # -- money ---------------------------------------------------------------------------
    @property
    def price(self) -> Pricing:
        assert self.pricing is not None  # set in __post_init__
        return self.pricing

    @property
    def price_known(self) -> bool:
        return self.price.known

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        *,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        at: dt.datetime | None = None,
    ) -> float:
        """USD of a call that used these tokens (ValueError when the price is unknown)."""
        return self.price.cost(TokenUsage(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens), at)

    def worst_case_cost(self, input_tokens: int, output_tokens: int, at: dt.datetime | None = None) -> float:
        """Upper bound of :meth:`cost` for at most these tokens (highest reachable tier)."""
        return self.price.worst_case(input_tokens, output_tokens, at)

    @property
    def price_source(self) -> str:
        """Where the price comes from, for people."""
        return _SOURCE_LABELS[self.price.source]()

    # -- lifecycle -------------------------------------------------------------------------
    def retirement(self, on: dt.date | None = None) -> str | None:
        """Why this model must not be used ``on`` that day (default: the catalog clock's
        today; deprecated, end of life past or within :data:`RETIRING_WITHIN_DAYS`), naming
        the replacement; None when it may be used."""
        if self.deprecated is False:
            return None
        on = on or today()
        eol = self.end_of_life
        if eol is not None and eol < on:
            why = f"past its end of life ({eol})"
        elif eol is not None and (eol - on).days <= RETIRING_WITHIN_DAYS:
            days = (eol - on).days
            when = "today" if days == 0 else f"in {days} day{'' if days == 1 else 's'}"
            why = f"deprecated: end of life {eol} ({when})"
        elif self.deprecated:
            why = f"deprecated ({self.deprecated_by})" if self.deprecated_by else "deprecated"
        else:
            return None
        return f"{why}; use {self.replacement} instead" if self.replacement else why

    @property
    def is_local(self) -> bool:
        return self.provider == "local"


def _fixed(text: str) -> Callable[[], str]:
    return lambda: text


_SOURCE_LABELS: dict[PriceSource, Callable[[], str]] = {
    PriceSource.DATABASE: snapshot_label,
    PriceSource.CATALOG: _fixed("catalog file"),
    PriceSource.USER: _fixed("user catalog file"),
    PriceSource.LOOPBACK: _fixed("loopback server (free)"),
    PriceSource.UNKNOWN: _fixed("unknown"),
}
