"""Builds the adapters a client uses by default, keyed by the catalog's provider names."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import replace
from urllib.parse import urlsplit

from ..catalog import CATALOG, ModelInfo
from ..catalog_build import SERVER_CONTEXT_WINDOW, SERVER_MAX_OUTPUT
from ..pricing import PriceSource, Pricing, flat_price
from .anthropic import AnthropicProvider
from .base import Provider
from .google import GoogleProvider
from .local import LocalProvider
from .openai_compat import PRESETS, OpenAICompatProvider
from .secrets import load_dotenv

SERVER_PROVIDER = "server"
"""Catalog provider name of models served by ``--provider-url`` (Ollama, vLLM, llama.cpp)."""

REMOTE_PRESETS = tuple(name for name in PRESETS if name != SERVER_PROVIDER)


def default_providers(
    local_model: str | None = None, *, server_url: str | None = None, dotenv: bool = True
) -> dict[str, Provider]:
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


def server_model_info(name: str, base_url: str) -> ModelInfo:
    """The catalog entry of a model served at ``base_url``.

    A name the catalog knows (ours, or the user's catalog file, e.g. with
    ``provider = "server"`` and a price) keeps its prices and window: a gateway in front
    of a paid model still costs money.  An unknown name on a loopback address runs on
    this machine: free, with an 8k window and the local model's tags and region.  An
    unknown name elsewhere has no known price, so a run under a USD budget refuses it
    until a catalog file gives it one (it is never silently free)."""
    loopback = (urlsplit(base_url).hostname or "") in {"127.0.0.1", "localhost", "::1"}
    known = CATALOG.get(name)
    if known is not None:
        return replace(known, provider=SERVER_PROVIDER)
    pricing = (
        Pricing(PriceSource.LOOPBACK, flat_price([("input", 0.0), ("output", 0.0)]))
        if loopback
        else Pricing(PriceSource.UNKNOWN)
    )
    free = 0.0 if loopback else None
    return ModelInfo(
        name,
        SERVER_PROVIDER,
        free,
        free,
        SERVER_CONTEXT_WINDOW,
        SERVER_MAX_OUTPUT,
        region="local" if loopback else "self-hosted",
        tags=("no_train", "pii_allowed", "offline") if loopback else (),
        display_name=name,
        pricing=pricing,
    )


def check_server_url(url: str) -> str:
    """``url`` normalised, or ValueError with a one-line reason (scheme, host)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--provider-url {url!r} is not an http(s) URL such as http://127.0.0.1:11434/v1")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"--provider-url {url!r} has an invalid port") from None
    return url.strip().rstrip("/")


def probe_server(base_url: str, timeout: float = 5.0) -> None:
    """ValueError (one line) when nothing answers at ``base_url``; any HTTP answer, even
    an error status, means a server is there.  Catches a typo'd port before a run."""
    request = urllib.request.Request(f"{base_url}/models", method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 - the user's own URL
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ValueError(f"--provider-url {base_url}: cannot connect ({reason})") from None
