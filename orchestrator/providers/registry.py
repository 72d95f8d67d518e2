"""Builds the adapters a client uses by default, keyed by the catalog's provider names."""

from __future__ import annotations

from .base import Provider
from .local import LocalProvider


def default_providers(local_model: str | None = None) -> dict[str, Provider]:
    """Adapters for every provider family; remote ones report themselves unavailable
    when their key or SDK is missing, so routing simply skips them."""
    return {"local": LocalProvider(local_model)}
