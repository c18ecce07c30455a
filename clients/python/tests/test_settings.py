"""Configuration from the environment, with the server's own variable as the secret's fallback."""

from __future__ import annotations

import pytest

import belfry


def test_settings_read_belfry_variables_with_defaults() -> None:
    s = belfry.Settings.from_env({"BELFRY_API_KEY": "k", "BELFRY_AUTH__JWT_SECRET": "server"})
    assert (s.url, s.api_key, s.jwt_secret) == ("http://127.0.0.1:8080", "k", "server")
    s = belfry.Settings.from_env(
        {"BELFRY_URL": "http://b:1", "BELFRY_JWT_SECRET": "mine", "BELFRY_AUTH__JWT_SECRET": "x"}
    )
    assert (s.url, s.jwt_secret) == ("http://b:1", "mine")


def test_missing_credentials_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BELFRY_API_KEY", "BELFRY_JWT_SECRET", "BELFRY_AUTH__JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="BELFRY_API_KEY"):
        belfry.Belfry.from_env()
    with pytest.raises(ValueError, match="BELFRY_JWT_SECRET"):
        belfry.user_token("42")
    with pytest.raises(ValueError, match="API key"):
        belfry.Belfry("http://127.0.0.1:1", "")
