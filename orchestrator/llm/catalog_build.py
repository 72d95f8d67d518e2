"""Assembling the catalog from the catalog files and the price database.

For every key of every model the first layer that has a value wins: the user's file,
then ours, then the genai-prices database.  Problems that only show once the layers meet
(a routing list naming a model nobody defines, a new model without a provider, a
context window nobody knows) are one-line :class:`ConfigError` naming the file that
caused them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..domain.errors import ConfigError, unknown
from ..domain.tasks import TaskType
from .catalog_file import PLANNER, CatalogFile, model_key
from .model_info import ModelInfo
from .pricing import DATABASE_PROVIDER_IDS, PriceSource, Pricing, database_model, flat_price, has_token_prices

SERVER_CONTEXT_WINDOW = 8192
SERVER_MAX_OUTPUT = 2048
DEFAULT_MAX_OUTPUT = 4096


@dataclass(frozen=True)
class BuiltCatalog:
    models: dict[str, ModelInfo]
    routing: dict[TaskType, tuple[str, ...]]
    planner: tuple[str, ...]
    warnings: list[str]


Slot = dict[str, tuple[Any, int]]
"""A model's merged keys: value and the index of the file that gave it."""


def build_catalog(files: Sequence[CatalogFile], local_model: str, at: dt.datetime) -> BuiltCatalog:
    """``files[0]`` is ours, later ones the user's (the last wins).  ``at``: the moment
    the base rates are read at and routing lists are checked for retired models."""
    slots: dict[str, Slot] = {}
    origin: dict[str, int] = {}
    for index, file in enumerate(files):
        for name, entry in file.models.items():
            key = model_key(name)
            if name not in slots:
                if "provider" not in entry:
                    raise ConfigError(
                        "a model the catalog does not have needs a provider", key=f"{key}.provider", source=file.source
                    )
                if entry["provider"] == "local" and name != local_model:
                    raise ConfigError(
                        f"the only local model is the embedded {local_model}; run another GGUF "
                        "file with --local-model PATH",
                        key=f"{key}.provider",
                        source=file.source,
                    )
                origin[name] = index
            slot = slots.setdefault(name, {})
            slot.update({k: (v, index) for k, v in entry.items()})
    if slots.get(local_model, {}).get("provider", (None,))[0] != "local":
        raise ConfigError(
            f'the local model {local_model} must be defined with provider "local"',
            key=model_key(local_model),
            source=files[0].source,
        )
    models = {name: _model(name, slot, files, origin[name], at) for name, slot in slots.items()}
    for name, slot in slots.items():
        if "replacement" in slot and slot["replacement"][0] not in models:
            value, index = slot["replacement"]
            raise ConfigError(
                unknown("model", value, sorted(models)),
                key=f"{model_key(name)}.replacement",
                source=files[index].source,
            )
    routing, warnings = _routing(files, models, local_model, at.date())
    planner = routing.pop(PLANNER)
    return BuiltCatalog(models, {TaskType(k): v for k, v in routing.items()}, planner, warnings)


def _label(index: int) -> PriceSource:
    return PriceSource.CATALOG if index == 0 else PriceSource.USER


def _model(name: str, slot: Slot, files: Sequence[CatalogFile], first: int, at: dt.datetime) -> ModelInfo:
    key = model_key(name)
    provider: str = slot["provider"][0]
    db_provider = DATABASE_PROVIDER_IDS.get(provider)
    db_model: str | None = name if db_provider else None
    if "price_ref" in slot:
        ref, index = slot["price_ref"]
        db_provider, db_model = ref.get("provider", db_provider), ref.get("model", name)
        if database_model(db_provider, db_model) is None:
            raise ConfigError(
                f"genai-prices has no model {db_model!r} at provider {db_provider!r}",
                key=f"{key}.price_ref",
                source=files[index].source,
            )
    db = database_model(db_provider, db_model)
    if "price" in slot:
        value, index = slot["price"]
        pricing = Pricing(_label(index), flat_price(value.items()))
    elif db is not None and has_token_prices(db, at):
        pricing = Pricing(PriceSource.DATABASE, db_provider=db_provider, db_model=db_model)
    else:
        pricing = Pricing(PriceSource.UNKNOWN)
    rates = pricing.rates(at)
    window = _get(slot, "context_window") or (db.context_window if db is not None else None)
    if window is None:
        if provider != "server":
            raise ConfigError(
                "the price database does not know this model's context window: give one",
                key=f"{key}.context_window",
                source=files[first].source,
            )
        window = SERVER_CONTEXT_WINDOW
    deprecated, deprecated_by = None, ""
    if "deprecated" in slot:
        deprecated, index = slot["deprecated"]
        deprecated_by = "catalog file" if index == 0 else "user catalog file"
    elif db is not None and db.deprecated:
        deprecated, deprecated_by = True, "genai-prices"
    default_output = SERVER_MAX_OUTPUT if provider == "server" else DEFAULT_MAX_OUTPUT
    return ModelInfo(
        name,
        provider,
        rates.input if rates else None,
        rates.output if rates else None,
        int(window),
        int(_get(slot, "max_output_tokens") or default_output),
        _get(slot, "region") or "us",
        tuple(_get(slot, "tags") or ()),
        _get(slot, "display_name") or (db.name if db is not None else None) or name,
        deprecated,
        deprecated_by,
        _get(slot, "end_of_life"),
        _get(slot, "replacement"),
        pricing,
        bool(rates and rates.tiered),
        bool(rates and rates.time_of_day),
    )


def _get(slot: Slot, key: str) -> Any:
    return slot[key][0] if key in slot else None


def _routing(
    files: Sequence[CatalogFile], models: dict[str, ModelInfo], local_model: str, on: dt.date
) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    chosen: dict[str, tuple[tuple[str, ...], int]] = {}
    for index, file in enumerate(files):
        for key, names in file.routing.items():
            for name in names:
                if name not in models:
                    raise ConfigError(unknown("model", name, sorted(models)), key=f"routing.{key}", source=file.source)
            chosen[key] = (names, index)
    warnings = []
    routing = {}
    for key in (*(t.value for t in TaskType), PLANNER):
        if key not in chosen:
            raise ConfigError(
                "missing: every task type and the planner need candidates", key=f"routing.{key}", source=files[0].source
            )
        names, index = chosen[key]
        for name in names:
            why = models[name].retirement(on)
            if why is not None:
                warnings.append(f"{files[index].source}: routing.{key}: {name} is {why}; it is skipped")
        routing[key] = (*(n for n in names if n != local_model), local_model)
    return routing, warnings
