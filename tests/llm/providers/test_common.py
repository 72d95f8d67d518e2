"""Rules shared by every remote adapter: the error policy, Retry-After, keys and .env,
secrets kept out of reprs and messages, the catalog's provider entries."""

from __future__ import annotations

import email.utils
import time

import pytest

from orchestrator.llm.catalog import CATALOG, get_model
from orchestrator.llm.providers import errors
from orchestrator.llm.providers.registry import check_server_url, default_providers, probe_server, server_model_info
from orchestrator.llm.providers.secrets import Secret, key_from_env, load_dotenv, parse_dotenv, scrub
from tests.fake_providers import FakeServer, clean_provider_env


@pytest.mark.parametrize(
    "status, transient, fatal, name",
    [
        (400, False, False, "BadRequest"),
        (401, False, True, "AuthenticationError"),
        (403, False, True, "PermissionDenied"),
        (404, False, True, "NotFound"),
        (422, False, False, "UnprocessableEntity"),
        (429, True, False, "RateLimited"),
        (500, True, False, "InternalServerError"),
        (502, True, False, "BadGateway"),
        (503, True, False, "ServiceUnavailable"),
        (504, True, False, "GatewayTimeout"),
        (529, True, False, "Overloaded"),
    ],
)
def test_status_policy(status, transient, fatal, name):
    err = errors.from_status("openai", "gpt-4o", status, "detail", headers={"retry-after": "5"})
    assert (err.transient, err.fatal_for_model, err.error_type, err.status_code) == (transient, fatal, name, status)
    assert err.retry_after == (5.0 if transient else None)
    assert str(err) == f"openai gpt-4o: HTTP {status} {name}: detail"


def test_retry_after_forms():
    assert errors.parse_retry_after({"retry-after": "12"}) == 12.0
    assert errors.parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= errors.parse_retry_after({"retry-after": date}) <= 31
    assert errors.parse_retry_after({"retry-after": "soon"}) is None
    assert errors.parse_retry_after({}) is None and errors.parse_retry_after(None) is None


def test_transport_errors_by_kind():
    import httpx

    req = httpx.Request("POST", "http://x")
    assert errors.transport_error("p", "m", httpx.ReadTimeout("t", request=req), 3).error_type == "TimeoutError"
    assert errors.transport_error("p", "m", httpx.ConnectError("c", request=req), 3).error_type == "ConnectionError"
    assert errors.transport_error("p", "m", ValueError("x"), 3) is None


def test_dotenv_parsing():
    text = "# comment\nexport A_API_KEY=\"quoted value\"\nB=plain # trailing\nC='single'\nnot a line\nD = spaced\n"
    assert parse_dotenv(text) == {"A_API_KEY": "quoted value", "B": "plain", "C": "single", "D": "spaced"}


def test_dotenv_in_the_current_directory_is_loaded_without_overriding(tmp_path, monkeypatch):
    clean_provider_env(monkeypatch)
    monkeypatch.setenv("OPENAI_API_KEY", "from-environment-123")
    (tmp_path / ".env").write_text("OPENAI_API_KEY=from-file-123\nANTHROPIC_API_KEY=sk-ant-from-file-456\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "")  # recorded, so the value loaded below is undone after the test
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    providers = default_providers()
    assert providers["anthropic"].availability("claude-haiku-4-5") == (True, "")
    assert key_from_env("ANTHROPIC_API_KEY")[1].reveal() == "sk-ant-from-file-456"
    assert key_from_env("OPENAI_API_KEY")[1].reveal() == "from-environment-123"
    assert load_dotenv(tmp_path / ".env") == []  # read once per process


def test_dotenv_values_are_restored_after_the_test_above():
    import os

    assert os.environ.get("ANTHROPIC_API_KEY") != "sk-ant-from-file-456"


def test_secret_never_prints_itself():
    secret = Secret("sk-proj-abcdefghijklmnop1234")
    assert "abcdef" not in repr(secret) and "abcdef" not in str(secret) and "abcdef" not in f"{secret}"
    assert secret.reveal() == "sk-proj-abcdefghijklmnop1234"


def test_scrub_removes_the_value_and_key_shapes():
    assert scrub("key=mysecretvalue!", Secret("mysecretvalue")) == "key=[REDACTED]!"
    assert "sk-ant-" not in scrub("got sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAA here")
    assert "AIza" not in scrub("key AIzaSyA1234567890123456789012345678901")
    assert scrub("Authorization: Bearer abcdefghijklmnop") == "Authorization: [REDACTED]"


def test_catalog_has_every_remote_family_with_prices():
    providers = {m.provider for m in CATALOG.values()}
    assert {"openai", "anthropic", "google", "deepseek", "kimi", "openrouter", "local"} <= providers
    for info in CATALOG.values():
        if info.provider not in ("local", "server"):
            assert info.input_per_m > 0 and info.output_per_m > 0, info.name
    assert set(default_providers(dotenv=False)) >= providers - {"server"}


def test_server_urls_are_checked():
    assert check_server_url("http://127.0.0.1:11434/v1/") == "http://127.0.0.1:11434/v1"
    for bad in ("ftp://host/v1", "127.0.0.1:8080", "http://", "http://host:notaport/v1"):
        with pytest.raises(ValueError) as info:
            check_server_url(bad)
        assert "--provider-url" in str(info.value)


def test_probe_tells_a_dead_port_from_a_server():
    with FakeServer("openai") as srv:
        probe_server(srv.url)  # answers (501 for GET): a server is there
        url = srv.url
    with pytest.raises(ValueError, match="cannot connect"):
        probe_server(url, timeout=2)


def test_server_model_entries():
    fresh = server_model_info("llama3.2", "http://127.0.0.1:11434/v1")
    assert (fresh.provider, fresh.input_per_m, fresh.output_per_m, fresh.region) == ("server", 0, 0, "local")
    assert "pii_allowed" in fresh.tags
    remote = server_model_info("my-model", "https://gpu.example.com/v1")
    assert remote.region == "self-hosted" and remote.tags == ()
    proxied = server_model_info("gpt-4o-mini", "http://127.0.0.1:4000/v1")  # e.g. a LiteLLM proxy
    assert proxied.provider == "server" and proxied.input_per_m == get_model("gpt-4o-mini").input_per_m
