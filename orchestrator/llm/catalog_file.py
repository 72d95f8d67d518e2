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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from ..config import convert, key_text, read_document
from ..config.fields import FINITE, NAME_PATTERN
from ..domain.errors import ConfigError, unknown
from ..domain.tasks import TaskType

PROVIDERS = ("local", "openai", "anthropic", "google", "deepseek", "kimi", "openrouter", "server")
"""Provider names a catalog entry may use (the adapters' names)."""

PLANNER = "planner"
ROUTING_KEYS = (*(t.value for t in TaskType), PLANNER)

Provider = Annotated[
    Literal["local", "openai", "anthropic", "google", "deepseek", "kimi", "openrouter", "server"],
    Meta(extra={"noun": "provider"}),
]
PerMillion = Annotated[float, Meta(ge=0, le=FINITE, extra={"expected": "a number >= 0 (USD per 1M tokens)"})]
Tokens = Annotated[int, Meta(gt=0, extra={"expected": "a whole number of tokens > 0"})]
NonEmpty = Annotated[str, Meta(pattern=NAME_PATTERN, extra={"expected": "a non-empty string"})]
TagNames = Annotated[tuple[NonEmpty, ...], Meta(extra={"expected": "a list of tag names"})]
ModelNames = Annotated[list[NonEmpty], Meta(min_length=1, extra={"expected": "a non-empty list of model names"})]


class Price(Struct, frozen=True, forbid_unknown_fields=True):
    described_as: ClassVar[str] = "a table such as { input = 0.5, output = 1.5 } (USD per 1M tokens)"
    unknown_key_noun: ClassVar[str] = "price key"

    input: PerMillion
    output: PerMillion
    cached_input: PerMillion | UnsetType = UNSET


class PriceRef(Struct, frozen=True, forbid_unknown_fields=True):
    described_as: ClassVar[str] = 'a table such as { provider = "openai", model = "gpt-6.1-sol" }'

    provider: NonEmpty | UnsetType = UNSET
    model: NonEmpty | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.provider is UNSET and self.model is UNSET:
            raise ConfigError(f"must be {self.described_as}")


class ModelEntry(Struct, frozen=True, forbid_unknown_fields=True):
    """A model's keys in one file; the keys it leaves out come from the next layer."""

    described_as: ClassVar[str] = "a table of the model's keys"

    provider: Provider | UnsetType = UNSET
    display_name: NonEmpty | UnsetType = UNSET
    price: Price | UnsetType = UNSET
    price_ref: PriceRef | UnsetType = UNSET
    context_window: Tokens | UnsetType = UNSET
    max_output_tokens: Tokens | UnsetType = UNSET
    region: NonEmpty | UnsetType = UNSET
    tags: TagNames | UnsetType = UNSET
    deprecated: bool | UnsetType = UNSET
    end_of_life: dt.date | UnsetType = UNSET
    replacement: NonEmpty | UnsetType = UNSET

    def given(self) -> dict[str, Any]:
        """The keys given, prices as ``{input: 0.5, ...}`` mappings (what the catalog builder merges)."""
        out: dict[str, Any] = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, Price | PriceRef):
                value = {k: v for k in value.__struct_fields__ if (v := getattr(value, k)) is not UNSET}
            if value is not UNSET:
                out[name] = value
        return out


class CatalogShape(Struct, frozen=True, forbid_unknown_fields=True):
    """A catalog file: models by name, and candidate lists per task type (and the planner)."""

    models: dict[str, ModelEntry] = {}
    routing: dict[str, ModelNames] = {}

    def __post_init__(self) -> None:
        for name in self.models:
            if not name.strip():
                raise ConfigError("a model name must not be empty", key=model_key(name))
        for name in self.routing:
            if name not in ROUTING_KEYS:
                raise ConfigError(unknown("task type", name, ROUTING_KEYS), key=f"routing.{key_text(name)}")


@dataclass(frozen=True)
class CatalogFile:
    """One file's content, checked: per model the keys it gives, and routing lists."""

    source: str
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    routing: dict[str, tuple[str, ...]] = field(default_factory=dict)


def read_catalog_file(path: str | Path) -> CatalogFile:
    """Read and check ``path`` (TOML) through the loader; :class:`ConfigError` (one line) on any problem."""
    return parse_catalog(read_document(path, what="catalog", fmt="toml"), str(path))


def parse_catalog(data: object, source: str) -> CatalogFile:
    shape: CatalogShape = convert(data, CatalogShape, source=source)
    return CatalogFile(
        source,
        {name: entry.given() for name, entry in shape.models.items()},
        {name: tuple(dict.fromkeys(names)) for name, names in shape.routing.items()},
    )


def model_key(name: object) -> str:
    """``models.NAME`` as TOML writes it: quoted unless NAME is a bare key."""
    return f"models.{key_text(name)}"
