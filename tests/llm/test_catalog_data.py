"""The catalog as data: our file agrees with what the SDKs announce, a user file layers
on top key by key, deprecated models are skipped by routing and refused when called."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from orchestrator import events
from orchestrator.domain.budget import Budget
from orchestrator.domain.tasks import TaskType
from orchestrator.llm import catalog
from orchestrator.llm.catalog import CATALOG, LOCAL_MODEL, ROUTING, get_model
from orchestrator.llm.client import LLMCallError, UnifiedClient
from orchestrator.llm.model_info import ModelInfo
from orchestrator.llm.pricing import PriceSource
from orchestrator.llm.routing import Router
from tests.scripted import ScriptedProvider

MONTHS = {
    m: i
    for i, m in enumerate(
        (
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ),
        start=1,
    )
}


def _sdk_date(text: str) -> dt.date:
    month, day, year = re.fullmatch(r"(\w+) (\d+)\w*, (\d{4})", text).groups()
    return dt.date(int(year), MONTHS[month], int(day))


def test_end_of_life_dates_agree_with_the_anthropic_sdk():
    """The Anthropic SDK warns about the models it deprecates; every one of ours it names
    has that end-of-life date in our file (a newer SDK with new dates fails this test)."""
    deprecated_models = pytest.importorskip("anthropic._data.deprecated_models").DEPRECATED_MODELS
    ours = {name: info for name, info in CATALOG.items() if info.provider == "anthropic"}
    named = [name for name in ours if name in deprecated_models]
    assert named, "the SDK names none of our models: check this test still reads its list"
    for name in named:
        assert ours[name].end_of_life == _sdk_date(deprecated_models[name]), name
        assert ours[name].replacement in CATALOG and ours[name].retirement() is not None


def test_retirement_counts_the_days_to_the_end_of_life():
    sonnet = get_model("claude-sonnet-4-5")
    # more than 30 days ahead it is still deprecated (the SDK says so, our file records it)
    assert sonnet.retirement(dt.date(2026, 10, 1)) == "deprecated (catalog file); use claude-sonnet-5-5 instead"
    assert get_model("claude-sonnet-5-5").retirement(dt.date(2027, 6, 1)) is None
    assert sonnet.retirement(dt.date(2026, 11, 25)) == (
        "deprecated: end of life 2026-11-30 (in 5 days); use claude-sonnet-5-5 instead"
    )
    assert sonnet.retirement(dt.date(2026, 11, 29)).startswith("deprecated: end of life 2026-11-30 (in 1 day);")
    assert sonnet.retirement(dt.date(2026, 11, 30)).startswith("deprecated: end of life 2026-11-30 (today)")
    assert sonnet.retirement(dt.date(2026, 12, 1)) == (
        "past its end of life (2026-11-30); use claude-sonnet-5-5 instead"
    )


@pytest.fixture
def restored():
    with catalog.preserved():
        yield


def test_a_user_file_layers_on_ours_key_by_key(tmp_path, restored):
    path = tmp_path / "mine.toml"
    path.write_text(
        '[models."gpt-6.1-sol"]\nprice = { input = 1.0, output = 4.0, cached_input = 0.1 }\n'
        'tags = ["no_train", "eu_contract"]\n'
        '[models."house-llm"]\nprovider = "server"\nprice_ref = { provider = "openai", model = "gpt-6-luna" }\n'
        '[routing]\nsummarization = ["house-llm", "gpt-6-luna"]\n'
    )
    warnings = catalog.use_catalog_files([path])
    assert warnings == []
    sol = get_model("gpt-6.1-sol")
    assert sol.price.source == PriceSource.USER and (sol.input_per_m, sol.output_per_m) == (1.0, 4.0)
    assert sol.context_window == 1_050_000 and sol.max_output_tokens == 128_000  # database / our file
    assert sol.tags == ("no_train", "eu_contract")
    assert sol.cost(1_000_000, 0, cache_read_tokens=500_000) == pytest.approx(0.55)
    house = get_model("house-llm")  # a gateway model: priced (and sized) as the database has gpt-6-luna
    assert house.price.source == PriceSource.DATABASE and house.context_window == 1_050_000
    assert house.max_output_tokens == 2048  # a server model's default
    assert house.cost(10_000, 1_000) == get_model("gpt-6-luna").cost(10_000, 1_000)
    assert ROUTING[TaskType.SUMMARIZATION] == ("house-llm", "gpt-6-luna", LOCAL_MODEL)
    assert ROUTING[TaskType.CODE_GENERATION][0] == "claude-sonnet-5-5"  # other lists stay ours
    assert catalog.catalog_files()[-1] == str(path)


def test_preserved_puts_everything_back(tmp_path):
    before = (dict(CATALOG), dict(ROUTING), list(catalog.PLANNER_CANDIDATES))
    path = tmp_path / "mine.toml"
    path.write_text('[routing]\nplanner = ["gpt-6.1-sol"]\n[models."gpt-6.1-sol"]\nprice = { input = 9, output = 9 }\n')
    with catalog.preserved():
        catalog.use_catalog_files([path])
        catalog.register_model(ModelInfo("extra", "server", 0.0, 0.0, 1000))
        assert catalog.PLANNER_CANDIDATES == ["gpt-6.1-sol", LOCAL_MODEL]
    assert (dict(CATALOG), dict(ROUTING), list(catalog.PLANNER_CANDIDATES)) == before
    assert get_model("gpt-6.1-sol").input_per_m == 2.0


def test_a_model_built_in_python_keeps_its_flat_price():
    info = ModelInfo("mine", "server", 0.5, 1.5, 4096)
    assert info.price.source == PriceSource.CATALOG and info.cost(1_000_000, 1_000_000) == pytest.approx(2.0)
    assert ModelInfo("free", "server", 0.0, 0.0, 4096).cost(10, 10) == 0.0
    assert not ModelInfo("unpriced", "server", None, None, 4096).price_known


# -- deprecated models at run time ------------------------------------------------------------


def _all_usable() -> dict[str, ScriptedProvider]:
    return {
        name: ScriptedProvider(name=name)
        for name in ("local", "openai", "anthropic", "google", "deepseek", "kimi", "openrouter")
    }


@pytest.mark.parametrize("day", ["2026-09-01", "2026-12-01"])  # deprecated before its end of life, and after
def test_routing_never_offers_a_deprecated_model_even_when_a_user_list_puts_it_first(day, tmp_path, restored):
    path = tmp_path / "mine.toml"
    path.write_text('[routing]\ncode_generation = ["claude-sonnet-4-5", "kimi-k2-0905-preview", "gpt-6.1-sol"]\n')
    with catalog.as_of(day):
        warnings = catalog.use_catalog_files([path])
        assert len(warnings) == 2 and "use kimi-k2.7-code instead; it is skipped" in warnings[1]
        router = Router(UnifiedClient(_all_usable()))
        assert router.candidates(TaskType.CODE_GENERATION) == ["gpt-6.1-sol", LOCAL_MODEL]
        for task_type in TaskType:  # and no reviewer is deprecated either
            for name in router.reviewer_candidates("gpt-6.1-sol", task_type):
                assert get_model(name).retirement() is None


@pytest.mark.parametrize(
    "day, why",
    [
        ("2026-09-01", "deprecated (catalog file)"),
        ("2026-11-30", "deprecated: end of life 2026-11-30 (today)"),
        ("2026-12-01", "past its end of life (2026-11-30)"),
    ],
)
async def test_calling_a_deprecated_model_marks_it_unhealthy_with_the_replacement(day, why, recorded):
    provider = ScriptedProvider(name="anthropic")
    client = UnifiedClient({"anthropic": provider}, budget=Budget(1.0))
    with catalog.as_of(day), pytest.raises(LLMCallError, match="use claude-sonnet-5-5 instead"):
        await client.call("claude-sonnet-4-5", "hi")
    assert provider.requests == []
    (unhealthy,) = [p for p in recorded if isinstance(p, events.ModelUnhealthy)]
    assert unhealthy.model == "claude-sonnet-4-5" and unhealthy.reason.startswith(why)
    assert "claude-sonnet-5-5" in unhealthy.reason
    assert client.availability("claude-sonnet-4-5")[0] is False


def test_only_model_naming_a_deprecated_model_leaves_no_candidate():
    router = Router(UnifiedClient(_all_usable()), only_model="kimi-k2-thinking")
    assert router.candidates(TaskType.COMPLEX_REASONING) == [] and router.planner_candidates() == []
