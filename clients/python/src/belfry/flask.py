"""Flask glue: an extension holding one client and one background sender, configured from
`app.config` (`BELFRY_URL`, `BELFRY_API_KEY`, `BELFRY_JWT_SECRET`, falling back to the
environment), and a blueprint for the browser's token endpoint.

    belfry = BelfryFlask(app)
    app.register_blueprint(belfry.token_blueprint(lambda: session.get("user_id")))

    @app.post("/comments")
    def comment():
        belfry.background.notify([author_id], "comment.created", {"post_id": 7})
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flask import Blueprint, Flask, jsonify

from .background import Background
from .client import Belfry
from .config import Settings
from .tokens import DEFAULT_TTL, user_token


class BelfryFlask:
    """`app.extensions["belfry"]`: `.client` (raises when Belfry is down) and `.background`
    (never does; flushed at interpreter exit)."""

    def __init__(self, app: Flask | None = None) -> None:
        self._client: Belfry | None = None
        self._background: Background | None = None
        self.settings = Settings()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        env = Settings.from_env()
        self.settings = Settings(
            url=app.config.get("BELFRY_URL") or env.url,
            api_key=app.config.get("BELFRY_API_KEY") or env.api_key,
            jwt_secret=app.config.get("BELFRY_JWT_SECRET") or env.jwt_secret,
        )
        self._client = Belfry(
            self.settings.url,
            self.settings.require_api_key(),
            timeout=float(app.config.get("BELFRY_TIMEOUT", 10.0)),
            retries=int(app.config.get("BELFRY_RETRIES", 3)),
        )
        self._background = Background(
            self._client,
            max_queue=int(app.config.get("BELFRY_MAX_QUEUE", 10_000)),
            flush_timeout=float(app.config.get("BELFRY_FLUSH_TIMEOUT", 5.0)),
        )
        app.extensions["belfry"] = self

    @property
    def client(self) -> Belfry:
        if self._client is None:
            raise RuntimeError("BelfryFlask.init_app(app) was not called")
        return self._client

    @property
    def background(self) -> Background:
        if self._background is None:
            raise RuntimeError("BelfryFlask.init_app(app) was not called")
        return self._background

    def token_blueprint(
        self,
        user_id: Callable[[], str | None],
        *,
        url: str = "/belfry-token",
        ttl: int = int(DEFAULT_TTL.total_seconds()),
        rooms: Callable[[str], Sequence[str]] | None = None,
        rooms_read: Callable[[str], Sequence[str]] | None = None,
    ) -> Blueprint:
        """`POST {url}` → `{"token", "expires_in"}` for the user `user_id()` names (401 if none)."""
        blueprint = Blueprint("belfry", __name__)

        @blueprint.post(url)
        def belfry_token() -> Any:
            uid = user_id()
            if uid is None:
                return jsonify(error="not signed in"), 401
            uid = str(uid)
            token = user_token(
                uid,
                ttl=ttl,
                rooms=rooms(uid) if rooms else (),
                rooms_read=rooms_read(uid) if rooms_read else (),
                secret=self.settings.require_jwt_secret(),
            )
            return jsonify(token=token, expires_in=ttl)

        return blueprint
