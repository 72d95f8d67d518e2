"""The model catalog: who serves a model, what it costs, how much it reads, and the
routing preferences per task type.

The engine, the client, the policies and the CLI read this one source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..domain.tasks import TaskType


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model: who serves it, what it costs (USD per 1M tokens), how much it reads."""

    name: str
    provider: str
    input_per_m: float
    output_per_m: float
    context_window: int
    max_output_tokens: int = 4096
    region: str = "us"
    tags: tuple[str, ...] = ()

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_m + output_tokens * self.output_per_m) / 1_000_000

    @property
    def is_local(self) -> bool:
        return self.provider == "local"


LOCAL_MODEL = "smollm2-135m"

# Prices in USD per 1M tokens (input, output), list prices of November 2026.
CATALOG: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo(LOCAL_MODEL, "local", 0.0, 0.0, 8192, 512, region="local",
                  tags=("no_train", "pii_allowed", "offline")),
        ModelInfo("gpt-4o", "openai", 2.50, 10.00, 128_000, 16_384, tags=("no_train",)),
        ModelInfo("gpt-4o-mini", "openai", 0.15, 0.60, 128_000, 16_384, tags=("no_train",)),
        ModelInfo("gpt-4.1", "openai", 2.00, 8.00, 1_047_576, 32_768, tags=("no_train",)),
        ModelInfo("gpt-4.1-mini", "openai", 0.40, 1.60, 1_047_576, 32_768, tags=("no_train",)),
        ModelInfo("claude-sonnet-4-5", "anthropic", 3.00, 15.00, 200_000, 64_000, tags=("no_train",)),
        ModelInfo("claude-haiku-4-5", "anthropic", 1.00, 5.00, 200_000, 64_000, tags=("no_train",)),
        ModelInfo("claude-opus-4-1", "anthropic", 15.00, 75.00, 200_000, 32_000, tags=("no_train",)),
        ModelInfo("gemini-2.5-pro", "google", 1.25, 10.00, 1_048_576, 65_536),
        ModelInfo("gemini-2.5-flash", "google", 0.30, 2.50, 1_048_576, 65_536),
        ModelInfo("deepseek-chat", "deepseek", 0.28, 0.42, 128_000, 8_192, region="cn"),
        ModelInfo("deepseek-reasoner", "deepseek", 0.28, 0.42, 128_000, 65_536, region="cn"),
        ModelInfo("kimi-k2-0905-preview", "kimi", 0.60, 2.50, 262_144, 16_384, region="cn"),
        ModelInfo("kimi-k2-turbo-preview", "kimi", 1.15, 8.00, 262_144, 16_384, region="cn"),
        ModelInfo("kimi-k2-thinking", "kimi", 0.60, 2.50, 262_144, 32_768, region="cn"),
        # OpenRouter ids are "<upstream>/<model>"; it bills the upstream's list price
        ModelInfo("openai/gpt-4o-mini", "openrouter", 0.15, 0.60, 128_000, 16_384),
        ModelInfo("anthropic/claude-sonnet-4.5", "openrouter", 3.00, 15.00, 1_000_000, 64_000),
        ModelInfo("google/gemini-2.5-flash", "openrouter", 0.30, 2.50, 1_048_576, 65_535),
        ModelInfo("meta-llama/llama-3.3-70b-instruct", "openrouter", 0.13, 0.40, 131_072, 16_384),
    )
}


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


# Ordered candidates per task type: the first available, healthy and policy-compliant wins.
ROUTING: dict[TaskType, tuple[str, ...]] = {
    TaskType.CODE_GENERATION: ("claude-sonnet-4-5", "gpt-4.1", "deepseek-chat", "gemini-2.5-pro",
                               "kimi-k2-0905-preview", "gpt-4o-mini", "anthropic/claude-sonnet-4.5", LOCAL_MODEL),
    TaskType.CODE_REVIEW: ("gpt-4.1", "claude-sonnet-4-5", "gemini-2.5-pro", "deepseek-chat",
                           "gpt-4o-mini", "google/gemini-2.5-flash", LOCAL_MODEL),
    TaskType.COMPLEX_REASONING: ("claude-opus-4-1", "gpt-4.1", "gemini-2.5-pro", "deepseek-reasoner",
                                 "claude-sonnet-4-5", "anthropic/claude-sonnet-4.5", LOCAL_MODEL),
    TaskType.CREATIVE_WRITING: ("claude-sonnet-4-5", "gpt-4o", "gemini-2.5-flash", "kimi-k2-0905-preview",
                                "anthropic/claude-sonnet-4.5", LOCAL_MODEL),
    TaskType.DATA_EXTRACTION: ("gpt-4o-mini", "gemini-2.5-flash", "claude-haiku-4-5", "deepseek-chat",
                               "openai/gpt-4o-mini", LOCAL_MODEL),
    TaskType.SUMMARIZATION: ("gemini-2.5-flash", "gpt-4o-mini", "claude-haiku-4-5", "deepseek-chat",
                             "google/gemini-2.5-flash", LOCAL_MODEL),
    TaskType.EVALUATION: ("gpt-4.1-mini", "claude-haiku-4-5", "gemini-2.5-flash", "deepseek-chat",
                          "openai/gpt-4o-mini", LOCAL_MODEL),
}

# Planner (decomposition) and evaluator preferences.
PLANNER_CANDIDATES: tuple[str, ...] = ("claude-sonnet-4-5", "gpt-4.1", "gemini-2.5-pro", "deepseek-chat",
                                       "gpt-4o-mini", "anthropic/claude-sonnet-4.5", LOCAL_MODEL)
