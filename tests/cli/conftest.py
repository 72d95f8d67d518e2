"""Fixtures of the command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fake_providers import clean_provider_env


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No provider key or base URL from the developer's environment, and no stray ``.env``
    (the working directory is the test's own)."""
    clean_provider_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    return monkeypatch
