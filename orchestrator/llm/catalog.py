"""The model catalog: who serves a model, what it costs, how much it reads, whether it is
still to be used, and the routing preferences per task type.

Why it is data: models and prices change every month; a release or a price change must
not need a code change.  The catalog is assembled from three layers, the first that has
a value wins, key by key:

1. the user's catalog file (``--catalog FILE``, else ``catalog.toml`` in the user config
   directory), read by the CLI;
2. our catalog file, ``orchestrator/data/catalog.toml``, shipped in the package;
3. the genai-prices database (prices, context windows, display names, deprecation).

Our file gives only what the database lacks (a test checks it), so in practice prices
come from the database unless a user overrides them.  The engine, the client, the
policies and the CLI all read this one module; :mod:`.pricing` applies the prices.

The catalog is built for a moment (:mod:`.clock`: the wall clock unless pinned): base
rates shown and compared are those of that moment, and routing lists are checked for
retired models on that day.  :func:`as_of` gives the catalog of another day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from ..domain.errors import ConfigError
from ..domain.tasks import TaskType
from . import clock
from .catalog_build import build_catalog
from .catalog_file import CatalogFile, parse_catalog, read_catalog_file
from .clock import today
from .model_info import RETIRING_WITHIN_DAYS, ModelInfo

LOCAL_MODEL = "smollm2-135m"
APP_NAME = "multi-llm-orchestrator"

# The live catalog.  Mutated in place (never rebound) so every importer sees one table.
CATALOG: dict[str, ModelInfo] = {}
ROUTING: dict[TaskType, tuple[str, ...]] = {}
"""Ordered candidates per task type, the local model last: the first usable, healthy and
policy-compliant wins."""
PLANNER_CANDIDATES: list[str] = []
"""Planner (decomposition) preferences, the local model last."""
_USER_FILES: list[str] = []


def shipped_catalog() -> CatalogFile:
    """Our catalog file, from the package data."""
    import tomllib

    text = resources.files("orchestrator").joinpath("data", "catalog.toml").read_text(encoding="utf-8")
    return parse_catalog(tomllib.loads(text), "orchestrator/data/catalog.toml")


def default_user_catalog() -> Path:
    """``catalog.toml`` in the user config directory (e.g. ``~/.config/multi-llm-orchestrator``)."""
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME)) / "catalog.toml"


def use_catalog_files(paths: Sequence[str | Path] = ()) -> list[str]:
    """Rebuild the catalog from our file plus the user files ``paths`` (later ones win)
    and the price database; ConfigError (one line) on a bad file, leaving the catalog as
    it was.  Built for the catalog clock's now (a bad ``ORCHESTRATOR_TODAY`` is a
    ConfigError too).  Returns the warnings (e.g. a deprecated model in a user routing list)."""
    at = clock.now()
    files = [shipped_catalog(), *(read_catalog_file(p) for p in paths)]
    built = build_catalog(files, LOCAL_MODEL, at)
    CATALOG.clear()
    CATALOG.update(built.models)
    ROUTING.clear()
    ROUTING.update(built.routing)
    PLANNER_CANDIDATES[:] = built.planner
    _USER_FILES[:] = [str(p) for p in paths]
    return built.warnings


def catalog_files() -> list[str]:
    """The files the catalog was built from: ours, then the user's."""
    return ["orchestrator/data/catalog.toml", *_USER_FILES]


def reload() -> list[str]:
    """Rebuild with the same files, e.g. after :func:`pricing.update_prices`."""
    return use_catalog_files(list(_USER_FILES))


@contextmanager
def preserved() -> Iterator[None]:
    """Put the catalog (and the price data in use) back as it was afterwards: a command
    run in-process (tests, a library caller) leaves nothing behind."""
    from genai_prices import data_snapshot

    saved = (dict(CATALOG), dict(ROUTING), list(PLANNER_CANDIDATES), list(_USER_FILES), data_snapshot._custom_snapshot)  # noqa: SLF001 - genai-prices has no getter for it
    try:
        yield
    finally:
        CATALOG.clear()
        CATALOG.update(saved[0])
        ROUTING.clear()
        ROUTING.update(saved[1])
        PLANNER_CANDIDATES[:] = saved[2]
        _USER_FILES[:] = saved[3]
        data_snapshot.set_custom_snapshot(saved[4])


@contextmanager
def as_of(moment: dt.date | dt.datetime | str) -> Iterator[None]:
    """The catalog as it is at ``moment`` (a date means 00:00 UTC): the clock pinned
    there and the catalog rebuilt from the same files, so retirement, routing, base rates
    and costs are those of that day; both are put back afterwards.  For what-if questions
    and tests."""
    with preserved(), clock.pinned(moment):
        reload()
        yield


def register_model(info: ModelInfo) -> ModelInfo | None:
    """Add (or replace) a catalog entry, e.g. a model served by a local server; returns
    the entry it replaced (None if new), so a caller can put it back after the run."""
    previous = CATALOG.get(info.name)
    CATALOG[info.name] = info
    return previous


def unregister_model(name: str, previous: ModelInfo | None = None) -> None:
    """Undo :func:`register_model`: restore ``previous`` or drop the entry."""
    if previous is None:
        CATALOG.pop(name, None)
    else:
        CATALOG[name] = previous


def get_model(name: str) -> ModelInfo:
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(CATALOG))}") from None


__all__ = [
    "CATALOG",
    "LOCAL_MODEL",
    "ModelInfo",
    "PLANNER_CANDIDATES",
    "ROUTING",
    "RETIRING_WITHIN_DAYS",
    "as_of",
    "catalog_files",
    "default_user_catalog",
    "today",
    "get_model",
    "preserved",
    "register_model",
    "reload",
    "unregister_model",
    "use_catalog_files",
]

try:
    use_catalog_files()
except ConfigError:  # only a bad ORCHESTRATOR_TODAY fails here: the wall clock's catalog until a
    with clock.pinned(clock.wall_clock()):  # command reads the catalog and reports it in one line
        use_catalog_files()
