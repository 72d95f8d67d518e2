"""Reading a catalog file (ours, shipped in the package, or the user's): TOML, checked
key by key, every problem one line naming file, key and reason.

The format (the same for both files)::

    [models."claude-sonnet-5-5"]
    provider = "anthropic"          # required for a model the other file does not have
    max_output_tokens = 64000
    tags = ["no_train"]

    [models."my-model"]
    provider = "server"             # reachable with --provider-url
    price = { input = 0.5, output = 1.5, cached_input = 0.05 }   # USD per 1M tokens
    context_window = 32768

    [routing]                        # a task type's (or the planner's) candidates, best first
    code_generation = ["my-model", "claude-sonnet-5-5"]

Why checked so strictly: a typo in a price key or a model name would otherwise silently
leave a model unpriced or a routing list empty; the CLI prints the line and exits 2.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..domain.errors import ConfigError, unknown
from ..domain.tasks import TaskType

PROVIDERS = ("local", "openai", "anthropic", "google", "deepseek", "kimi", "openrouter", "server")
"""Provider names a catalog entry may use (the adapters' names)."""

PLANNER = "planner"
ROUTING_KEYS = (*(t.value for t in TaskType), PLANNER)
MODEL_KEYS = ("provider", "display_name", "price", "price_ref", "context_window", "max_output_tokens",
              "region", "tags", "deprecated", "end_of_life", "replacement")
PRICE_KEYS = ("input", "output", "cached_input")
PRICE_REF_KEYS = ("provider", "model")
TOP_KEYS = ("models", "routing")


@dataclass(frozen=True)
class CatalogFile:
    """One file's content, checked: per model the keys it gives, and routing lists."""

    source: str
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    routing: dict[str, tuple[str, ...]] = field(default_factory=dict)


def read_catalog_file(path: str | Path) -> CatalogFile:
    """Read and check ``path``; :class:`ConfigError` (one line) on any problem."""
    source = str(path)
    file = Path(path)
    if not file.is_file():
        raise ConfigError("no such catalog file", source=source)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("not a UTF-8 text file", source=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read it ({exc.strerror or exc})", source=source) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=source) from None
    return parse_catalog(data, source)


def parse_catalog(data: Mapping[str, Any], source: str) -> CatalogFile:
    try:
        return _parse(data, source)
    except ConfigError as exc:
        raise exc.within(source=source) from None


def _parse(data: Mapping[str, Any], source: str) -> CatalogFile:
    for key in data:
        if key not in TOP_KEYS:
            raise ConfigError(unknown("key", key, TOP_KEYS), key=key)
    models_raw = data.get("models", {})
    if not isinstance(models_raw, Mapping):
        raise ConfigError('must be a table of models ([models."name"])', key="models")
    models = {}
    for name, entry in models_raw.items():
        key = model_key(name)
        if not str(name).strip():
            raise ConfigError("a model name must not be empty", key=key)
        if not isinstance(entry, Mapping):
            raise ConfigError("must be a table of the model's keys", key=key)
        models[str(name)] = {k: _model_value(k, v, f"{key}.{k}") for k, v in entry.items()}
    routing_raw = data.get("routing", {})
    if not isinstance(routing_raw, Mapping):
        raise ConfigError("must be a table of candidate lists per task type", key="routing")
    routing = {}
    for name, names in routing_raw.items():
        key = f"routing.{name}"
        if name not in ROUTING_KEYS:
            raise ConfigError(unknown("task type", name, ROUTING_KEYS), key=key)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise ConfigError("must be a non-empty list of model names", key=key)
        routing[str(name)] = tuple(dict.fromkeys(n.strip() for n in names))
    return CatalogFile(source, models, routing)


def model_key(name: Any) -> str:
    """``models.NAME`` as TOML writes it: quoted unless NAME is a bare key."""
    text = str(name)
    bare = bool(text) and text.replace("-", "").replace("_", "").isalnum() and text.isascii()
    return f"models.{text}" if bare else f'models."{text}"'


def _model_value(key: str, value: Any, where: str) -> Any:
    if key not in MODEL_KEYS:
        raise ConfigError(unknown("key", key, MODEL_KEYS), key=where)
    if key == "provider":
        if value not in PROVIDERS:
            raise ConfigError(unknown("provider", value, PROVIDERS), key=where)
        return value
    if key in ("display_name", "region", "replacement"):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError("must be a non-empty string", key=where)
        return value.strip()
    if key in ("context_window", "max_output_tokens"):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"must be a whole number of tokens > 0, got {value!r}", key=where)
        return value
    if key == "tags":
        if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
            raise ConfigError("must be a list of tag names", key=where)
        return tuple(t.strip() for t in value)
    if key == "deprecated":
        if not isinstance(value, bool):
            raise ConfigError(f"must be true or false, got {value!r}", key=where)
        return value
    if key == "end_of_life":
        return _date(value, where)
    if key == "price":
        return _price(value, where)
    return _price_ref(value, where)


def _date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"must be a date such as 2026-11-30, got {value!r}", key=where)


def _price(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ConfigError("must be a table such as { input = 0.5, output = 1.5 } (USD per 1M tokens)",
                          key=where)
    out = {}
    for name, amount in value.items():
        if name not in PRICE_KEYS:
            raise ConfigError(unknown("price key", name, PRICE_KEYS), key=f"{where}.{name}")
        if isinstance(amount, bool) or not isinstance(amount, int | float) or not amount >= 0 \
                or amount == float("inf"):
            raise ConfigError(f"must be a number >= 0 (USD per 1M tokens), got {amount!r}", key=f"{where}.{name}")
        out[str(name)] = float(amount)
    for required in ("input", "output"):
        if required not in out:
            raise ConfigError("is required (USD per 1M tokens)", key=f"{where}.{required}")
    return out


def _price_ref(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not value:
        raise ConfigError('must be a table such as { provider = "openai", model = "gpt-6.1-sol" }', key=where)
    out = {}
    for name, text in value.items():
        if name not in PRICE_REF_KEYS:
            raise ConfigError(unknown("key", name, PRICE_REF_KEYS), key=f"{where}.{name}")
        if not isinstance(text, str) or not text.strip():
            raise ConfigError("must be a non-empty string", key=f"{where}.{name}")
        out[str(name)] = text.strip()
    return out
