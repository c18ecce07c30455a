"""Configuration and argument checks: the environment, bad arguments refused before sending, and
an httpx client of the caller's own."""

from __future__ import annotations

import pytest
from support import API_KEY, Server

import belfry
import belfry.routes


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


def test_one_string_as_recipients_is_refused_before_sending() -> None:
    with pytest.raises(TypeError, match="recipients"):
        belfry.routes.notify("42", "t")  # a str is a Sequence[str]: only a runtime check catches it


def test_a_naive_datetime_is_refused_before_sending() -> None:
    from datetime import datetime

    with pytest.raises(ValueError, match="timezone"):
        belfry.routes.notify(["42"], "t", expires_at=datetime(2030, 1, 1))


def test_an_own_httpx_client_is_used_with_the_api_key(server: Server, user: str) -> None:
    import httpx

    seen: list[httpx.Request] = []
    http = httpx.Client(event_hooks={"request": [seen.append]})
    with belfry.Belfry(server.url + "/", API_KEY, http=http) as client:
        assert client.get_preferences(f"{user}:a/b") == belfry.Preferences()
    assert seen[0].url.raw_path.decode().endswith(f"/v1/users/{user}%3Aa%2Fb/preferences")
    assert seen[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert http.is_closed


def test_server_times_parse_with_any_number_of_fractional_digits() -> None:
    from datetime import datetime, timezone

    from belfry.models import _parse_time

    expected = datetime(2026, 12, 4, 20, 57, 20, 700000, tzinfo=timezone.utc)
    assert _parse_time("2026-12-04T20:57:20.7Z") == expected
    assert _parse_time("2026-12-04T20:57:20.700000001Z") == expected
    assert _parse_time("2030-01-01T00:00:00Z") == datetime(2030, 1, 1, tzinfo=timezone.utc)
