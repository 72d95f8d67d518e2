"""``orchestrator models`` / ``--list-models``: the catalog as a table, with availability.

Why a table with reasons: a user who set a key and still sees the local model used
needs to know which variable is missing, which SDK is not installed, or that a key was
rejected; the same ``availability()`` the router uses answers here, so the table never
disagrees with routing.
"""

from __future__ import annotations

from typing import Any

from .models import CATALOG, ModelInfo


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
