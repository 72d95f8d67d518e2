"""``orchestrator models`` / ``--list-models``: the catalog as a table, with availability.

Why a table with reasons: a user who set a key and still sees the local model used
needs to know which variable is missing, which SDK is not installed, or that a key was
rejected; the same ``availability()`` the router uses answers here, so the table never
disagrees with routing.
"""

from __future__ import annotations

import sys
from typing import Any

from ..llm.catalog import CATALOG, ModelInfo
from .errors import EXIT_OK, EXIT_USAGE, UsageError
from .parser import build_parser
from .wiring import build_providers, setup_server


def _price(value: float) -> str:
    return "free" if value == 0 else f"{value:.2f}"


def catalog_rows(client: Any) -> list[tuple[str, str, str, str, str, str]]:
    """(model, provider, $ in / 1M, $ out / 1M, context, available or why not), by provider."""
    rows = []
    infos: list[ModelInfo] = sorted(CATALOG.values(), key=lambda m: (m.provider != "local", m.provider, m.name))
    for info in infos:
        ok, why = client.availability(info.name)
        rows.append((info.name, info.provider, _price(info.input_per_m), _price(info.output_per_m),
                     f"{info.context_window:,}", "yes" if ok else f"no: {why}"))
    return rows


def print_models(client: Any, console: Any) -> None:
    from rich.table import Table

    table = Table(title="Model catalog (USD per 1M tokens)")
    for col in ("model", "provider", "$ in", "$ out", "context", "available"):
        table.add_column(col, justify="right" if col in ("$ in", "$ out", "context") else "left",
                         overflow="fold", no_wrap=col == "model")
    for row in catalog_rows(client):
        table.add_row(*row)
    console.print(table)


def models_main(argv: list[str]) -> int:
    """``orchestrator models [--provider-url URL --model NAME] [--local-model PATH]``."""
    try:
        args = build_parser().parse_args(argv)
        setup_server(args)
    except (UsageError, ValueError) as exc:
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from rich.console import Console

    from ..llm.client import UnifiedClient

    console = Console()
    if not console.is_terminal:  # piped: no folding of long model names and reasons
        console = Console(width=200)
    print_models(UnifiedClient(build_providers(args)), console)
    return EXIT_OK
