"""The catalog on both sides of every date in the shipped data: each end of life (and the
start of its deprecation window) in ``orchestrator/data/catalog.toml`` and each price
start date the genai-prices snapshot has for our models, read from the data, so a new
date is covered the day it ships.

At every such day the catalog clock is pinned (``catalog.as_of``) and the paths that
depend on the date run: retirement wording, routing skipping retired models, naming a
retired model refused by the client and by ``--model``, ``orchestrator models --json``,
and what a call costs.  Expected values come from the data and the rules in docs/providers.md, not
from the code under test.  (Price variants - batch, service tiers - are not used by our
calls, so their dates are not boundaries of ours.)
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import Usage, calc_price
from genai_prices.types import StartDateConstraint

from orchestrator import cli
from orchestrator.domain.budget import Budget
from orchestrator.domain.tasks import TaskType
from orchestrator.llm import catalog, clock
from orchestrator.llm.catalog import LOCAL_MODEL, get_model, shipped_catalog
from orchestrator.llm.client import LLMCallError, UnifiedClient
from orchestrator.llm.model_info import RETIRING_WITHIN_DAYS
from orchestrator.llm.pricing import DATABASE_PROVIDER_IDS, database_model
from orchestrator.llm.routing import Router
from tests.fake_providers import clean_provider_env
from tests.scripted import ScriptedProvider

SHIPPED = shipped_catalog().models
NOON = dt.time(12, 0, tzinfo=dt.UTC)
USAGE = Usage(input_tokens=40_000, output_tokens=3_000)


def _db(name: str) -> Any:
    entry = SHIPPED[name]
    provider = DATABASE_PROVIDER_IDS.get(entry["provider"])
    ref = entry.get("price_ref", {})
    return database_model(ref.get("provider", provider), ref.get("model", name)) if provider else None


def _end_of_life_days() -> list[tuple[str, dt.date]]:
    """Each shipped end of life: the day before its deprecation window, the window's first
    day, the end-of-life day itself and the day after it."""
    days = []
    for name, entry in SHIPPED.items():
        eol = entry.get("end_of_life")
        if eol is not None:
            window = eol - dt.timedelta(days=RETIRING_WITHIN_DAYS)
            days += [(name, window - dt.timedelta(days=1)), (name, window), (name, eol), (name, eol + dt.timedelta(1))]
    return days


def _price_start_days() -> list[tuple[str, dt.date]]:
    """Each price start date of a shipped model in the snapshot, and the day before."""
    days = []
    for name in SHIPPED:
        model = _db(name)
        prices = model.prices if model is not None and isinstance(model.prices, list) else []
        for conditional in prices:
            if isinstance(conditional.constraint, StartDateConstraint):
                start = conditional.constraint.start_date
                days += [(name, start - dt.timedelta(days=1)), (name, start)]
    return days


END_OF_LIFE_DAYS = _end_of_life_days()
PRICE_DAYS = _price_start_days()


def test_the_shipped_data_has_dates_to_cross():
    """The lists below are read from the data: this fails if the reading breaks."""
    assert {name for name, _ in END_OF_LIFE_DAYS} >= {"claude-sonnet-4-5"}
    assert ("claude-sonnet-4-5", dt.date(2026, 12, 1)) in END_OF_LIFE_DAYS
    assert ("gemini-3.8-flash", dt.date(2027, 1, 1)) in PRICE_DAYS and len(PRICE_DAYS) >= 10


def _expected_retirement(name: str, day: dt.date) -> str | None:
    """The documented rule (docs/providers.md): past the end of life; within 30 days of it; else deprecated by our
    file or the database; a file's ``deprecated = false`` keeps it."""
    entry, db = SHIPPED[name], _db(name)
    flag = entry.get("deprecated", True if db is not None and db.deprecated else None)
    if flag is False:
        return None
    eol = entry.get("end_of_life")
    if eol is not None and day > eol:
        why = f"past its end of life ({eol})"
    elif eol is not None and (eol - day).days <= RETIRING_WITHIN_DAYS:
        left = (eol - day).days
        why = f"deprecated: end of life {eol} ({'today' if left == 0 else f'in {left} day' + 's' * (left != 1)})"
    elif flag:
        why = "deprecated (catalog file)" if "deprecated" in entry else "deprecated (genai-prices)"
    else:
        return None
    return f"{why}; use {entry['replacement']} instead" if entry.get("replacement") else why


def _base(price: Any) -> float | None:
    if price is None:
        return None
    return float(price.base if hasattr(price, "tiers") else Decimal(price))


def _clients() -> tuple[UnifiedClient, dict[str, ScriptedProvider]]:
    providers = {
        p: ScriptedProvider(name=p, tokens=(USAGE.input_tokens, USAGE.output_tokens))
        for p in ("local", "openai", "anthropic", "google", "deepseek", "kimi", "openrouter")
    }
    return UnifiedClient(providers, budget=Budget(10.0)), providers


@pytest.fixture
def no_keys(monkeypatch, tmp_path):
    clean_provider_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.mark.parametrize("name, day", END_OF_LIFE_DAYS, ids=[f"{n}@{d}" for n, d in END_OF_LIFE_DAYS])
async def test_retirement_on_both_sides_of_every_end_of_life(name, day, tmp_path, no_keys, capsys):
    moment = dt.datetime.combine(day, NOON)
    expected = _expected_retirement(name, day)
    routing = tmp_path / "routing.toml"  # a user file putting the model first everywhere it could go
    routing.write_text(
        "[routing]\n" + "".join(f'{t.value} = ["{name}"]\n' for t in TaskType) + f'planner = ["{name}"]\n'
    )
    with catalog.as_of(moment):
        assert clock.today() == day
        assert get_model(name).retirement() == expected
        # routing: a retired model is skipped with a warning, a usable one offered first
        warnings = catalog.use_catalog_files([routing])
        client, providers = _clients()
        router = Router(client)
        if expected is None:
            assert warnings == [] and router.candidates(TaskType.CODE_GENERATION)[0] == name
        else:
            assert len(warnings) == len(TaskType) + 1 and all(
                f"{name} is {expected}; it is skipped" in w for w in warnings
            )
            assert router.candidates(TaskType.CODE_GENERATION) == [LOCAL_MODEL]
            assert router.planner_candidates() == [LOCAL_MODEL]
        # naming it: the client refuses a retired model before sending anything
        provider = providers[get_model(name).provider]
        if expected is None:
            await client.call(name, "hi")
            assert len(provider.requests) == 1
        else:
            assert client.availability(name) == (False, expected)
            with pytest.raises(LLMCallError) as refused:
                await client.call(name, "hi")
            assert expected in str(refused.value) and provider.requests == []
            # and --model refuses it in one line, before any work
            assert cli.main(["-p", "x", "--model", name, "--no-cache", "-q"]) == cli.EXIT_USAGE
            assert f"--model {name} is {expected}" in capsys.readouterr().err
        # what orchestrator models says
        assert cli.main(["models", "--json"]) == cli.EXIT_OK
        data = json.loads(capsys.readouterr().out)
        assert data["as_of"] == moment.isoformat()
        (shown,) = [m for m in data["models"] if m["name"] == name]
        assert shown["deprecated"] == (expected is not None)
        assert shown["end_of_life"] == SHIPPED[name]["end_of_life"].isoformat()
        if expected is not None:
            assert shown["why_not"] == expected and not shown["usable"]


@pytest.mark.parametrize("name, day", PRICE_DAYS, ids=[f"{n}@{d}" for n, d in PRICE_DAYS])
async def test_prices_on_both_sides_of_every_price_start_date(name, day, no_keys, capsys):
    moment = dt.datetime.combine(day, NOON)
    model = _db(name)
    prices = model.get_prices(moment)
    in_rate, out_rate = _base(prices.input_mtok), _base(prices.output_mtok)
    entry = SHIPPED[name]
    db_provider = DATABASE_PROVIDER_IDS[entry["provider"]]
    expected = float(
        calc_price(USAGE, model_ref=name, provider_id=db_provider, genai_request_timestamp=moment).total_price
    )
    with catalog.as_of(moment):
        info = get_model(name)
        # the catalog's base rates are the day's
        assert (info.input_per_m, info.output_per_m) == (in_rate, out_rate)
        # a cost priced "now" is priced at the pinned moment
        assert info.cost(USAGE.input_tokens, USAGE.output_tokens) == pytest.approx(expected)
        # a call through the client costs the day's price, within its reservation
        client, _ = _clients()
        answer = await client.call(name, "hi", max_tokens=USAGE.output_tokens)
        assert answer.cost_usd == pytest.approx(expected)
        assert info.worst_case_cost(USAGE.input_tokens, USAGE.output_tokens) >= expected
        # orchestrator models shows the day's rates
        assert cli.main(["models", "--json"]) == cli.EXIT_OK
        (shown,) = [m for m in json.loads(capsys.readouterr().out)["models"] if m["name"] == name]
        assert (shown["input_usd_per_1m"], shown["output_usd_per_1m"]) == (in_rate, out_rate)


def test_the_price_start_dates_change_what_a_call_costs():
    """The dates above are real boundaries: on most of them the price changes from one day
    to the next, and the catalog follows the database across each."""
    changed = 0
    for name, day in PRICE_DAYS[1::2]:  # (day before, start day) pairs
        before, on = (dt.datetime.combine(d, NOON) for d in (day - dt.timedelta(days=1), day))
        costs = []
        for moment in (before, on):
            with catalog.as_of(moment):
                costs.append(get_model(name).cost(USAGE.input_tokens, USAGE.output_tokens))
        model = _db(name)
        assert (costs[0] != costs[1]) == (model.get_prices(before) != model.get_prices(on)), (name, day)
        changed += costs[0] != costs[1]
    assert changed >= len(PRICE_DAYS) // 4
