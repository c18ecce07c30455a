"""The FastAPI, Django and Flask glue, each in a real app of its framework talking to the real
server: a handler notifies (directly and in the background), and the token endpoint mints a token
the server accepts."""

from typing import Any

import pytest
from support import API_KEY, JWT_SECRET, Server, wait_until
from wsclient import sse_events


@pytest.fixture
def belfry_env(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BELFRY_URL", server.url)
    monkeypatch.setenv("BELFRY_API_KEY", API_KEY)
    monkeypatch.setenv("BELFRY_JWT_SECRET", JWT_SECRET)


def assert_token_opens_sse(server: Server, token: str, user: str) -> None:
    with sse_events(server.url, token) as events:
        assert next(events)[1]["user_id"] == user


def test_fastapi_lifespan_dependencies_and_token_router(
    belfry_env: None, server: Server, user: str
) -> None:
    from fastapi import FastAPI, Header
    from fastapi.testclient import TestClient

    from belfry.fastapi import BelfryBackground, BelfryClient, belfry_lifespan, token_router

    def current_user(x_user: str | None = Header(default=None)) -> str | None:
        return x_user

    app = FastAPI(lifespan=belfry_lifespan())
    app.include_router(token_router(current_user, rooms=lambda uid: [f"post:{uid}:*"]))

    @app.post("/comments")
    async def comment(belfry: BelfryClient, later: BelfryBackground) -> dict[str, Any]:
        sent = await belfry.notify([user], "comment.created", {"post_id": 7})
        later.notify([user], "post.liked", group_key="post:7")
        return {"seq": sent.notifications[0].seq}

    with TestClient(app) as http:
        assert http.post("/comments").json() == {"seq": 1}
        refused = http.post("/belfry-token")
        assert refused.status_code == 401
        answer = http.post("/belfry-token", headers={"x-user": user}).json()
    # Leaving the TestClient ran the lifespan's shutdown: the background queue was flushed.
    assert sorted(n["type"] for n in server.inbox(user)) == ["comment.created", "post.liked"]
    assert_token_opens_sse(server, answer["token"], user)


def test_fastapi_dependencies_explain_a_missing_lifespan() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from belfry.fastapi import BelfryClient

    app = FastAPI()

    @app.get("/")
    async def index(belfry: BelfryClient) -> None:
        pass

    with TestClient(app) as http, pytest.raises(RuntimeError, match="belfry_lifespan"):
        http.get("/")


def test_flask_extension_and_token_blueprint(belfry_env: None, server: Server, user: str) -> None:
    from flask import Flask, request

    from belfry.flask import BelfryFlask

    app = Flask(__name__)
    belfry = BelfryFlask(app)
    app.register_blueprint(belfry.token_blueprint(lambda: request.headers.get("x-user")))

    @app.post("/comments")
    def comment() -> dict[str, Any]:
        belfry.background.notify([user], "comment.created")
        return {"seq": belfry.client.notify([user], "post.liked").notifications[0].seq}

    http = app.test_client()
    assert http.post("/comments").status_code == 200
    assert http.post("/belfry-token").status_code == 401
    token = http.post("/belfry-token", headers={"x-user": user}).get_json()["token"]
    belfry.background.close()
    assert len(server.inbox(user)) == 2
    assert_token_opens_sse(server, token, user)


def test_django_client_background_and_token_view(
    belfry_env: None, server: Server, user: str
) -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure(DEBUG=True, ALLOWED_HOSTS=["testserver"], DEFAULT_CHARSET="utf-8")
    from types import SimpleNamespace

    from django.test import RequestFactory

    from belfry import django as belfry_django

    belfry_django.client().notify([user], "comment.created")
    assert belfry_django.background().notify([user], "post.liked")
    wait_until(lambda: belfry_django.background().pending() == 0, what="the background send")
    assert len(server.inbox(user)) == 2

    factory = RequestFactory()
    anonymous = factory.post("/belfry-token")
    anonymous.user = SimpleNamespace(is_authenticated=False)  # type: ignore[assignment]
    assert belfry_django.token_view(anonymous).status_code == 401
    assert belfry_django.token_view(factory.get("/belfry-token")).status_code == 405
    signed_in = factory.post("/belfry-token")
    signed_in.user = SimpleNamespace(is_authenticated=True, pk=user)  # type: ignore[assignment]
    answer = belfry_django.token_view(signed_in)
    assert answer.status_code == 200
    import json

    assert_token_opens_sse(server, json.loads(answer.content)["token"], user)
