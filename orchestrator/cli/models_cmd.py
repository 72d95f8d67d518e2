"""``orchestrator models`` / ``--list-models``: the catalog as a table (or JSON), with
where each price comes from, deprecation, and whether each model is usable now.

Why a table with reasons: a user who set a key and still sees the local model used
needs to know which variable is missing, which SDK is not installed, that a key was
rejected, that a model is deprecated (and what replaces it) or has no price; the same
``availability()`` the router uses answers here (with a USD budget, as in a run), so
the table never disagrees with routing.  ``--json`` gives scripts the same facts and
the routing candidates in order.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..domain.values import JsonObject
from ..llm import clock
from ..llm.catalog import CATALOG, PLANNER_CANDIDATES, ROUTING, ModelInfo, catalog_files
from ..llm.pricing import snapshot_label
from .errors import EXIT_OK, EXIT_USAGE, UsageError
from .parser import build_parser
from .wiring import build_providers, setup_catalog, setup_server

if TYPE_CHECKING:
    from rich.console import Console

    from ..llm.client import UnifiedClient

_SOURCE_COLUMN = {
    "database": "genai-prices",
    "catalog": "catalog file",
    "user": "user file",
    "loopback": "loopback (free)",
    "unknown": "unknown",
}


@dataclass(frozen=True)
class ModelFacts:
    """What ``orchestrator models`` says about one model."""

    info: ModelInfo
    usable: bool
    why_not: str
    retired: str | None

    def to_json(self) -> JsonObject:
        info = self.info
        rates = info.price.rates()
        return {
            "name": info.name,
            "provider": info.provider,
            "display_name": info.display_name or info.name,
            "input_usd_per_1m": info.input_per_m,
            "output_usd_per_1m": info.output_per_m,
            "cached_input_usd_per_1m": rates.cached_input if rates else None,
            "tiered": info.tiered,
            "time_of_day_pricing": info.time_of_day,
            "price_source": info.price.source.value,
            "price_source_detail": info.price_source,
            "context_window": info.context_window,
            "max_output_tokens": info.max_output_tokens,
            "deprecated": self.retired is not None,
            "end_of_life": info.end_of_life.isoformat() if info.end_of_life else None,
            "replacement": info.replacement,
            "usable": self.usable,
            "why_not": self.why_not or None,
        }


def model_facts(client: UnifiedClient) -> list[ModelFacts]:
    """Every catalog model, the local one first, then by provider and name."""
    infos = sorted(CATALOG.values(), key=lambda m: (m.provider != "local", m.provider, m.name))
    facts = []
    for info in infos:
        ok, why = client.availability(info.name)
        facts.append(ModelFacts(info, ok, "" if ok else why, info.retirement()))
    return facts


def catalog_json(client: UnifiedClient) -> JsonObject:
    return {
        "prices": snapshot_label(),
        "as_of": clock.now().isoformat(),
        "catalog_files": catalog_files(),
        "models": [f.to_json() for f in model_facts(client)],
        "routing": {task_type.value: list(names) for task_type, names in ROUTING.items()},
        "planner": list(PLANNER_CANDIDATES),
    }


def _money(value: float | None) -> str:
    if value is None:
        return "?"
    if value == 0:
        return "free"
    text = f"{value:.4f}".rstrip("0")
    return text + "0" * max(0, 2 - len(text.split(".")[1]))


def _status(facts: ModelFacts) -> str:
    info = facts.info
    parts = []
    if facts.retired is not None:
        parts.append(f"deprecated ({info.deprecated_by})" if info.deprecated_by else "deprecated")
    if info.end_of_life is not None:
        parts.append(f"end of life {info.end_of_life}")
    if facts.retired is None and info.deprecated is False and parts:
        parts.append("kept by a catalog file")
    if facts.retired is not None and info.replacement:
        parts.append(f"use {info.replacement}")
    return ", ".join(parts)


def print_models(client: UnifiedClient, console: Console) -> None:
    from rich.table import Table

    as_of = f", as of {clock.now():%Y-%m-%d %H:%M} UTC" if clock.is_pinned() else ""  # a what-if date
    table = Table(
        title=f"Model catalog: USD per 1M tokens at the base tier ({snapshot_label()}{as_of})",
        caption="+ a higher rate applies above a prompt-size tier; * the price depends on the time "
        "of day; ? no known price (refused under a USD budget)",
    )
    numeric = ("$ in", "$ out", "context")
    for col in ("model", "provider", "$ in", "$ out", "prices from", "context", "status", "available"):
        table.add_column(col, justify="right" if col in numeric else "left", overflow="fold", no_wrap=col == "model")
    for facts in model_facts(client):
        info = facts.info
        mark = ("+" if info.tiered else "") + ("*" if info.time_of_day else "")
        table.add_row(
            info.name,
            info.provider,
            _money(info.input_per_m) + mark,
            _money(info.output_per_m) + mark,
            _SOURCE_COLUMN[info.price.source.value],
            f"{info.context_window:,}",
            _status(facts),
            "yes" if facts.usable else f"no: {facts.why_not}",
        )
    console.print(table)


def models_main(argv: list[str]) -> int:
    """``orchestrator models [--json] [--catalog FILE] [--update-prices] [--provider-url URL
    --model NAME] [--local-model PATH]``."""
    from ..llm.catalog import preserved

    with preserved():
        return _models_command(argv)


def _models_command(argv: list[str]) -> int:
    try:
        args = build_parser("models").parse_args(argv)
        warnings = setup_catalog(args)
        setup_server(args)
    except (UsageError, ValueError) as exc:
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for warning in warnings:
        print(f"orchestrator: warning: {warning}", file=sys.stderr)
    from ..domain.budget import Budget
    from ..llm.client import UnifiedClient

    client = UnifiedClient(build_providers(args), budget=Budget())  # as in a run: a USD budget
    if args.json:
        print(json.dumps(catalog_json(client), indent=2))
        return EXIT_OK
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped: no folding of long model names and reasons
        console = Console(width=240)
    print_models(client, console)
    return EXIT_OK
