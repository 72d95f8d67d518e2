"""The catalog through the CLI: ``orchestrator models --json``, a user catalog file adding
models reachable through ``--provider-url`` and through a preset (the real openai SDK
against a loopback server), deprecated models named with ``--model``, bad catalog files
(one line, exit 2, also in a subprocess), ``--update-prices`` from a loopback server, and
the catalog's date (``ORCHESTRATOR_TODAY``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price

from orchestrator import cli, events
from orchestrator.domain.tasks import TaskType
from orchestrator.llm import catalog, clock
from orchestrator.llm.catalog import CATALOG, LOCAL_MODEL, ROUTING, get_model
from tests.fake_providers import BASE_URL_VARIABLES, KEY_VARIABLES, FakeServer

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str, name: str = "catalog.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _calls(recorded: list[events.Event]) -> list[events.LlmCallFinished]:
    return [p for p in recorded if isinstance(p, events.LlmCallFinished)]


def test_models_json_gives_every_model_and_the_routing(no_keys, capsys):
    assert cli.main(["models", "--json"]) == cli.EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["prices"].startswith("genai-prices ") and data["catalog_files"] == ["orchestrator/data/catalog.toml"]
    models = {m["name"]: m for m in data["models"]}
    assert set(models) == set(CATALOG)
    sol = models["gpt-6.1-sol"]
    assert sol == {
        **sol,
        "provider": "openai",
        "input_usd_per_1m": 2.0,
        "output_usd_per_1m": 10.0,
        "context_window": 1_050_000,
        "deprecated": False,
        "price_source": "database",
        "tiered": True,
        "usable": False,
        "why_not": "OPENAI_API_KEY not set",
    }
    assert all(m["price_source"] == "database" for n, m in models.items() if n != LOCAL_MODEL)
    assert models[LOCAL_MODEL]["input_usd_per_1m"] == 0.0 and models[LOCAL_MODEL]["price_source"] == "catalog"
    old = models["claude-sonnet-4-5"]
    assert old["deprecated"] and old["end_of_life"] == "2026-11-30" and old["replacement"] == "claude-sonnet-5-5"
    assert models["kimi-k2-thinking"]["deprecated"] and models["kimi-k2-thinking"]["replacement"] == "kimi-k3"
    assert data["routing"] == {t.value: list(ROUTING[t]) for t in TaskType}
    assert data["planner"] == list(catalog.PLANNER_CANDIDATES) and data["planner"][-1] == LOCAL_MODEL
    assert all(names[-1] == LOCAL_MODEL for names in data["routing"].values())


@pytest.mark.parametrize(
    "now, chat_price, sonnet",
    [
        ("2026-11-16T03:00", "0.27*", "no: deprecated: end of life 2026-11-30 (in 14 days)"),  # DeepSeek's peak
        ("2026-12-03T18:00", "0.135*", "no: past its end of life (2026-11-30)"),  # off-peak, after the end of life
    ],
)
def test_models_table_names_price_sources_and_deprecation(now, chat_price, sonnet, no_keys, capsys):
    with catalog.as_of(now):
        assert cli.main(["--list-models"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 5}
    assert set(CATALOG) <= set(lines)
    assert "genai-prices" in lines["gemini-2.5-pro"] and "1.25+" in lines["gemini-2.5-pro"]
    assert chat_price in lines["deepseek-chat"]
    assert (
        "end of life 2026-11-30" in lines["claude-sonnet-4-5"]
        and "use claude-sonnet-5-5" in lines["claude-sonnet-4-5"]
        and sonnet in lines["claude-sonnet-4-5"]
    )
    assert "genai-prices 0.2" in out  # the snapshot in the title
    assert f"as of {now.replace('T', ' ')} UTC" in out  # a pinned date is said


# -- a user catalog file ---------------------------------------------------------------------


def test_a_user_model_is_reachable_through_provider_url(no_keys, tmp_path, recorded):
    path = _write(
        tmp_path,
        '[models."house-llm"]\nprovider = "server"\nprice = { input = 0.5, output = 1.5 }\ncontext_window = 32768\n',
    )
    with FakeServer("openai") as srv:
        code = cli.main(
            [
                "-p",
                "Write add(a, b)",
                "--provider-url",
                srv.url,
                "--model",
                "house-llm",
                "--catalog",
                path,
                "--no-cache",
                "-q",
            ]
        )
    assert code in (cli.EXIT_OK, cli.EXIT_RUN_FAILED)
    assert srv.requests and {r.body["model"] for r in srv.requests} == {"house-llm"}
    calls = _calls(recorded)
    assert calls and all(c.model == "house-llm" for c in calls)
    for call in calls:  # the user's price, on the usage the server reported (120 in, 45 out)
        assert call.attributes["llm.cost_usd"] == pytest.approx((120 * 0.5 + 45 * 1.5) / 1e6)
    assert "house-llm" not in CATALOG  # the command put the catalog back


def test_a_user_model_is_reachable_through_a_preset(no_keys, tmp_path, recorded):
    """gpt-5.5 is in the database but not in our catalog: one line in the user file makes
    it a model of the openai preset, priced (tiers and all) by the database."""
    path = _write(
        tmp_path,
        '[models."gpt-5.5"]\nprovider = "openai"\nmax_output_tokens = 128000\n'
        '[routing]\ncode_generation = ["gpt-5.5", "gpt-6.1-sol"]\n',
    )
    with FakeServer("openai") as srv:
        no_keys.setenv("OPENAI_API_KEY", "sk-proj-catalog-preset-test-0000")
        no_keys.setenv("OPENAI_BASE_URL", srv.url)
        assert cli.main(["models", "--json", "--catalog", path]) == cli.EXIT_OK
        code = cli.main(["-p", "Write add(a, b)", "--model", "gpt-5.5", "--catalog", path, "--no-cache", "-q"])
    assert code in (cli.EXIT_OK, cli.EXIT_RUN_FAILED)
    assert srv.requests and {r.body["model"] for r in srv.requests} == {"gpt-5.5"}
    expected = float(
        calc_price(
            Usage(input_tokens=120, output_tokens=45),
            model_ref="gpt-5.5",
            provider_id="openai",
            genai_request_timestamp=clock.now(),
        ).total_price
    )
    calls = _calls(recorded)
    assert calls and all(c.attributes["llm.cost_usd"] == pytest.approx(expected) for c in calls)


def test_models_json_shows_the_user_files_models_prices_and_routing(no_keys, tmp_path, capsys):
    path = _write(
        tmp_path,
        '[models."gpt-5.5"]\nprovider = "openai"\n'
        '[models."gpt-6.1-sol"]\nprice = { input = 1.0, output = 4.0 }\n'
        '[routing]\ncode_generation = ["gpt-5.5", "smollm2-135m", "claude-sonnet-5-5"]\n',
    )
    assert cli.main(["models", "--json", "--catalog", path]) == cli.EXIT_OK
    data = json.loads(capsys.readouterr().out)
    models = {m["name"]: m for m in data["models"]}
    assert models["gpt-5.5"]["price_source"] == "database" and models["gpt-5.5"]["input_usd_per_1m"] == 5.0
    assert models["gpt-6.1-sol"]["price_source"] == "user" and models["gpt-6.1-sol"]["input_usd_per_1m"] == 1.0
    assert data["routing"]["code_generation"] == ["gpt-5.5", "claude-sonnet-5-5", LOCAL_MODEL]  # local last
    assert data["routing"]["summarization"] == list(ROUTING[TaskType.SUMMARIZATION])  # untouched
    assert data["catalog_files"][-1] == path


def test_the_default_user_catalog_location_is_read(no_keys, tmp_path, capsys):
    config = tmp_path / "xdg"
    no_keys.setenv("XDG_CONFIG_HOME", str(config))
    assert catalog.default_user_catalog() == config / "multi-llm-orchestrator" / "catalog.toml"
    catalog.default_user_catalog().parent.mkdir(parents=True)
    catalog.default_user_catalog().write_text('[models."kimi-k3.1-pro"]\ncontext_window = 500000\n')
    assert cli.main(["models", "--json"]) == cli.EXIT_OK
    models = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert models["kimi-k3.1-pro"]["context_window"] == 500_000
    assert get_model("kimi-k3.1-pro").context_window == 1_048_576  # put back after the command


# -- deprecated models -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, day, fragments",
    [
        (
            "claude-sonnet-4-5",
            "2026-11-16",
            ("is deprecated: end of life 2026-11-30 (in 14 days)", "use claude-sonnet-5-5 instead"),
        ),
        ("claude-sonnet-4-5", "2026-12-03", ("is past its end of life (2026-11-30)", "use claude-sonnet-5-5 instead")),
        ("kimi-k2-thinking", "2026-11-16", ("deprecated (genai-prices)", "use kimi-k3 instead")),
        ("kimi-k2-thinking", "2031-01-01", ("deprecated (genai-prices)", "use kimi-k3 instead")),
    ],
)
def test_a_deprecated_model_named_with_model_gives_one_clear_line(model, day, fragments, no_keys, capsys):
    no_keys.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-deprecated-test-0000000")
    no_keys.setenv("KIMI_API_KEY", "sk-kimi-deprecated-test-00000000000")
    with catalog.as_of(day):
        assert cli.main(["-p", "x", "--model", model, "--no-cache", "-q"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"--model {model} is" in err and all(f in err for f in fragments), err
    assert "deprecated = false" in err  # how to use it anyway


def test_a_user_file_can_keep_a_deprecated_model(no_keys, tmp_path, capsys):
    path = _write(tmp_path, '[models."claude-sonnet-4-5"]\ndeprecated = false\n')
    assert cli.main(["models", "--json", "--catalog", path]) == cli.EXIT_OK
    models = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert not models["claude-sonnet-4-5"]["deprecated"]
    assert models["claude-sonnet-4-5"]["why_not"] == "ANTHROPIC_API_KEY not set"


def test_a_user_routing_list_naming_a_deprecated_model_warns_and_skips_it(no_keys, tmp_path, capsys):
    path = _write(tmp_path, '[routing]\nplanner = ["claude-sonnet-4-5", "gpt-6.1-sol"]\n')
    with catalog.as_of("2026-11-29"):
        assert cli.main(["models", "--json", "--catalog", path]) == cli.EXIT_OK
    out, err = capsys.readouterr()
    assert (
        f"orchestrator: warning: {path}: routing.planner: claude-sonnet-4-5 is deprecated: end of life "
        "2026-11-30 (in 1 day)"
    ) in err and "use claude-sonnet-5-5 instead; it is skipped" in err
    assert json.loads(out)["planner"] == ["claude-sonnet-4-5", "gpt-6.1-sol", LOCAL_MODEL]


# -- bad catalog files ------------------------------------------------------------------------

BAD_FILES = [
    ("syntax.toml", '[models."x"\nprovider = "openai"\n', "not valid TOML"),
    ("top.toml", '[model."x"]\nprovider = "openai"\n', "model: unknown key 'model' (did you mean 'models'?"),
    ("key.toml", '[models."gpt-6.1-sol"]\ncontext = 5\n', 'models."gpt-6.1-sol".context: unknown key'),
    (
        "provider.toml",
        '[models."x"]\nprovider = "openia"\ncontext_window = 10\n',
        "models.x.provider: unknown provider 'openia' (did you mean 'openai'?",
    ),
    (
        "price.toml",
        '[models."gpt-6.1-sol"]\nprice = { input = -1, output = 2 }\n',
        'models."gpt-6.1-sol".price.input: must be a number >= 0',
    ),
    (
        "price_half.toml",
        '[models."gpt-6.1-sol"]\nprice = { input = 1 }\n',
        'models."gpt-6.1-sol".price.output: is required',
    ),
    (
        "window.toml",
        '[models."x"]\nprovider = "openai"\ncontext_window = "big"\n',
        "models.x.context_window: must be a whole number of tokens > 0",
    ),
    (
        "date.toml",
        '[models."gpt-6.1-sol"]\nend_of_life = "soon"\n',
        'models."gpt-6.1-sol".end_of_life: must be a date such as 2026-11-30',
    ),
    (
        "new.toml",
        '[models."gpt-8"]\ncontext_window = 5\n',
        "models.gpt-8.provider: a model the catalog does not have needs a provider",
    ),
    (
        "unknown_window.toml",
        '[models."gpt-8"]\nprovider = "openai"\n',
        "models.gpt-8.context_window: the price database does not know this model's context window",
    ),
    (
        "routing.toml",
        '[routing]\ncode_generation = ["gpt-6.1-soll"]\n',
        "routing.code_generation: unknown model 'gpt-6.1-soll' (did you mean 'gpt-6.1-sol'?",
    ),
    ("task_type.toml", '[routing]\ncoding = ["gpt-6.1-sol"]\n', "routing.coding: unknown task type 'coding'"),
    (
        "replacement.toml",
        '[models."gpt-4o"]\nreplacement = "gpt-9"\n',
        "models.gpt-4o.replacement: unknown model 'gpt-9'",
    ),
    (
        "price_ref.toml",
        '[models."mine"]\nprovider = "server"\nprice_ref = { provider = "openai", model = "gpt-99" }\n',
        "models.mine.price_ref: genai-prices has no model 'gpt-99' at provider 'openai'",
    ),
    ("local.toml", '[models."tiny"]\nprovider = "local"\n', "models.tiny.provider: the only local model"),
    ("missing.toml", None, "no such catalog file"),
]


@pytest.mark.parametrize("name, text, fragment", BAD_FILES, ids=[b[0] for b in BAD_FILES])
@pytest.mark.parametrize("command", [["models"], ["-p", "x", "-q"]], ids=["models", "run"])
def test_a_bad_catalog_file_is_one_line_and_exit_2(name, text, fragment, command, no_keys, tmp_path, capsys):
    path = _write(tmp_path, text, name) if text is not None else str(tmp_path / name)
    before = dict(CATALOG)
    assert cli.main([*command, "--catalog", path]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"orchestrator: error: {path}: ") and fragment in err, err
    assert CATALOG == before


def test_a_bad_catalog_file_through_the_real_cli(tmp_path):
    path = _write(tmp_path, '[models."gpt-6.1-sol"]\nprice = { input = "cheap", output = 2 }\n')
    env = {k: v for k, v in os.environ.items() if k not in (*KEY_VARIABLES, *BASE_URL_VARIABLES)}
    env["PYTHONPATH"] = str(ROOT)
    for argv in (["models", "--catalog", path], ["-p", "x", "--catalog", path]):
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=env,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == (
            f'orchestrator: error: {path}: models."gpt-6.1-sol".price.input: must be '
            "a number >= 0 (USD per 1M tokens), got 'cheap'"
        )
        assert proc.stdout == ""


def _cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (*KEY_VARIABLES, *BASE_URL_VARIABLES)}
    env.update(PYTHONPATH=str(ROOT), **extra)
    return env


def test_a_deprecated_model_through_the_real_cli(tmp_path):
    env = _cli_env(ANTHROPIC_API_KEY="sk-ant-api03-subprocess-deprecated-00", ORCHESTRATOR_TODAY="2026-12-01")
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "-p", "x", "--model", "claude-sonnet-4-5"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.strip() == (
        "orchestrator: error: --model claude-sonnet-4-5 is past its end of life "
        "(2026-11-30); use claude-sonnet-5-5 instead (to use it anyway, set "
        "deprecated = false for it in your catalog file)"
    )


# -- the catalog's date ------------------------------------------------------------------------


def test_orchestrator_today_asks_what_the_catalog_says_on_another_day(tmp_path):
    """``ORCHESTRATOR_TODAY`` in a real command line: gemini-3.8-flash's price doubles on
    2027-01-01 in the price data, claude-sonnet-4-5 is past its end of life."""
    seen = {}
    for day in ("2026-11-16", "2027-01-02"):
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator", "models", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=_cli_env(ORCHESTRATOR_TODAY=day),
        )
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        data = json.loads(proc.stdout)
        assert data["as_of"] == f"{day}T00:00:00+00:00"
        seen[day] = {m["name"]: m for m in data["models"]}
    before, after = seen["2026-11-16"], seen["2027-01-02"]
    assert (
        before["gemini-3.8-flash"]["input_usd_per_1m"] == 0.75 and after["gemini-3.8-flash"]["input_usd_per_1m"] == 1.5
    )
    assert before["claude-sonnet-4-5"]["why_not"].startswith("deprecated: end of life 2026-11-30 (in 14 days)")
    assert after["claude-sonnet-4-5"]["why_not"].startswith("past its end of life (2026-11-30)")


@pytest.mark.parametrize("value", ["soon", "2027-13-01", "01/06/2027", "2027-06-01T25:00"])
def test_a_bad_orchestrator_today_is_one_line_and_exit_2(value, tmp_path, no_keys, capsys):
    expected = (
        "orchestrator: error: ORCHESTRATOR_TODAY: must be a date such as 2027-06-01 or a UTC time such as "
        f"2027-06-01T14:30, got {value!r}"
    )
    for argv in (["models"], ["-p", "x", "-q"]) if value == "soon" else ():  # the real command line, once
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=_cli_env(ORCHESTRATOR_TODAY=value),
        )
        assert (proc.returncode, proc.stderr.strip(), proc.stdout) == (2, expected, ""), proc.stderr
    no_keys.setenv("ORCHESTRATOR_TODAY", value)  # in-process too, once nothing is pinned in Python
    with clock.pinned(None):
        assert cli.main(["models", "--json"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip() == expected


# -- updating prices ---------------------------------------------------------------------------


def _raw_snapshot(changed: str, input_mtok: float, output_mtok: float) -> list[dict]:
    """The price data genai-prices fetches (its raw JSON shape), made from the bundled
    snapshot for our providers' models, with one model's price changed."""
    providers: dict[str, dict] = {}
    from orchestrator.llm.pricing import database_model

    for info in CATALOG.values():
        if info.price.db_model is None:
            continue
        model = database_model(info.price.db_provider, info.price.db_model)
        rates = info.price.rates()
        entry = providers.setdefault(
            info.price.db_provider,
            {
                "id": info.price.db_provider,
                "name": info.provider,
                "api_pattern": f"https://{info.provider}.example",
                "models": [],
            },
        )
        price = (input_mtok, output_mtok) if info.name == changed else (rates.input, rates.output)
        entry["models"].append(
            {
                "id": model.id,
                "name": model.name,
                "match": {"equals": info.price.db_model},
                "context_window": model.context_window,
                "deprecated": model.deprecated,
                "prices": {"input_mtok": price[0], "output_mtok": price[1]},
            }
        )
    return list(providers.values())


@pytest.fixture
def price_server():
    body = json.dumps(_raw_snapshot("gpt-6.1-sol", 1.5, 7.5)).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            status = 200 if self.path == "/data.json" else 404
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body) if status == 200 else 0))
            self.end_headers()
            if status == 200:
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_update_prices_uses_the_fetched_data(how, price_server, no_keys, capsys):
    no_keys.setenv("ORCHESTRATOR_PRICES_URL", f"{price_server}/data.json")
    argv = ["models", "--json"]
    if how == "flag":
        argv.append("--update-prices")
    else:
        no_keys.setenv("ORCHESTRATOR_UPDATE_PRICES", "1")
    assert cli.main(argv) == cli.EXIT_OK
    out, err = capsys.readouterr()
    data = json.loads(out)
    models = {m["name"]: m for m in data["models"]}
    assert data["prices"].startswith("genai-prices data fetched ") and err == ""
    assert (models["gpt-6.1-sol"]["input_usd_per_1m"], models["gpt-6.1-sol"]["output_usd_per_1m"]) == (1.5, 7.5)
    assert models["gpt-6.1-sol"]["price_source_detail"] == data["prices"]
    assert get_model("gpt-6.1-sol").input_per_m == 2.0  # the bundled prices are back after the command
    no_keys.delenv("ORCHESTRATOR_UPDATE_PRICES", raising=False)
    assert cli.main(["models", "--json"]) == cli.EXIT_OK  # offline by default
    assert json.loads(capsys.readouterr().out)["prices"].startswith("genai-prices 0.")


def test_a_failed_price_update_is_a_warning_and_keeps_the_bundled_prices(price_server, no_keys, capsys):
    no_keys.setenv("ORCHESTRATOR_PRICES_URL", f"{price_server}/missing.json")
    assert cli.main(["models", "--json", "--update-prices"]) == cli.EXIT_OK
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("orchestrator: warning: could not update prices from ")
    assert "404" in err and "using the genai-prices 0." in err
    assert json.loads(out)["prices"].startswith("genai-prices 0.")
