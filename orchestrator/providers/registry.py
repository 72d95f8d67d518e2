"""Builds the adapters a client uses by default, keyed by the catalog's provider names."""

from __future__ import annotations

from .anthropic import AnthropicProvider
from .base import Provider
from .google import GoogleProvider
from .local import LocalProvider
from .openai_compat import PRESETS, OpenAICompatProvider
from .secrets import load_dotenv

SERVER_PROVIDER = "server"
"""Catalog provider name of models served by ``--provider-url`` (Ollama, vLLM, llama.cpp)."""

REMOTE_PRESETS = tuple(name for name in PRESETS if name != SERVER_PROVIDER)


def default_providers(local_model: str | None = None, *, server_url: str | None = None,
                      dotenv: bool = True) -> dict[str, Provider]:
    """Adapters for every provider family; remote ones report themselves unavailable
    when their key or SDK is missing, so routing simply skips them.

    ``server_url`` adds the ``server`` adapter (an OpenAI-compatible server by URL).
    ``dotenv`` first loads ``./.env`` (variables already set win)."""
    if dotenv:
        load_dotenv()
    providers: dict[str, Provider] = {"local": LocalProvider(local_model)}
    for preset in REMOTE_PRESETS:
        providers[preset] = OpenAICompatProvider(preset)
    providers["anthropic"] = AnthropicProvider()
    providers["google"] = GoogleProvider()
    if server_url:
        providers[SERVER_PROVIDER] = OpenAICompatProvider.for_server(server_url)
    return providers
