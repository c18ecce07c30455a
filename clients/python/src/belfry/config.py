"""Configuration from the environment: `BELFRY_URL`, `BELFRY_API_KEY`, `BELFRY_JWT_SECRET`.

`BELFRY_JWT_SECRET` falls back to `BELFRY_AUTH__JWT_SECRET`, the variable the server itself reads
for `auth.jwt_secret`, so one environment can configure both. The API key has no such fallback:
the server takes a list (`BELFRY_AUTH__API_KEYS`) and a backend should hold exactly one key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class Settings:
    """What a backend needs to talk to Belfry."""

    url: str = DEFAULT_URL
    api_key: str | None = None
    jwt_secret: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            url=env.get("BELFRY_URL") or DEFAULT_URL,
            api_key=env.get("BELFRY_API_KEY") or None,
            jwt_secret=env.get("BELFRY_JWT_SECRET") or env.get("BELFRY_AUTH__JWT_SECRET") or None,
        )

    def require_api_key(self) -> str:
        if not self.api_key:
            raise ValueError("BELFRY_API_KEY is not set")
        return self.api_key

    def require_jwt_secret(self) -> str:
        if not self.jwt_secret:
            raise ValueError("BELFRY_JWT_SECRET is not set (nor BELFRY_AUTH__JWT_SECRET)")
        return self.jwt_secret
