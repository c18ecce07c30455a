"""Django glue: one client and one background sender per process, configured from Django's
settings (`BELFRY_URL`, `BELFRY_API_KEY`, `BELFRY_JWT_SECRET`, falling back to the environment),
and a view for the browser's token endpoint.

    # urls.py
    from belfry.django import token_view
    urlpatterns = [path("belfry-token", token_view)]

    # views.py
    from belfry.django import background
    background().notify([str(post.author_id)], "comment.created", {"post_id": post.id})

The background sender flushes at interpreter exit (at most `BELFRY_FLUSH_TIMEOUT` seconds,
default 5); see `belfry.background` for the loss window.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings as django_settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from .background import Background
from .client import Belfry
from .config import Settings
from .tokens import DEFAULT_TTL, user_token

_lock = threading.Lock()
_client: Belfry | None = None
_background: Background | None = None


def belfry_settings() -> Settings:
    env = Settings.from_env()
    return Settings(
        url=getattr(django_settings, "BELFRY_URL", None) or env.url,
        api_key=getattr(django_settings, "BELFRY_API_KEY", None) or env.api_key,
        jwt_secret=getattr(django_settings, "BELFRY_JWT_SECRET", None) or env.jwt_secret,
    )


def client() -> Belfry:
    """This process's `Belfry` client (thread-safe; made on first use)."""
    global _client
    with _lock:
        if _client is None:
            s = belfry_settings()
            _client = Belfry(
                s.url,
                s.require_api_key(),
                timeout=float(getattr(django_settings, "BELFRY_TIMEOUT", 10.0)),
                retries=int(getattr(django_settings, "BELFRY_RETRIES", 3)),
            )
        return _client


def background() -> Background:
    """This process's `Background` sender, for views that must not fail when Belfry is down."""
    global _background
    shared = client()
    with _lock:
        if _background is None:
            _background = Background(
                shared,
                max_queue=int(getattr(django_settings, "BELFRY_MAX_QUEUE", 10_000)),
                flush_timeout=float(getattr(django_settings, "BELFRY_FLUSH_TIMEOUT", 5.0)),
            )
        return _background


def make_token_view(
    *,
    user_id: Callable[[HttpRequest], str | None] | None = None,
    ttl: int = int(DEFAULT_TTL.total_seconds()),
    rooms: Callable[[str], Sequence[str]] | None = None,
    rooms_read: Callable[[str], Sequence[str]] | None = None,
) -> Callable[[HttpRequest], HttpResponse]:
    """A view answering `POST` with `{"token", "expires_in"}` for the signed-in user (401 when
    nobody is). By default the user id is `str(request.user.pk)`."""

    def default_user_id(request: HttpRequest) -> str | None:
        user: Any = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        return str(user.pk)

    find_user = user_id or default_user_id

    def view(request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return JsonResponse({"error": "use POST"}, status=405, headers={"Allow": "POST"})
        uid = find_user(request)
        if uid is None:
            return JsonResponse({"error": "not signed in"}, status=401)
        token = user_token(
            uid,
            ttl=ttl,
            rooms=rooms(uid) if rooms else (),
            rooms_read=rooms_read(uid) if rooms_read else (),
            secret=belfry_settings().require_jwt_secret(),
        )
        return JsonResponse({"token": token, "expires_in": ttl})

    return view


token_view = make_token_view()
