"""FastAPI glue: a lifespan that opens and closes the clients, dependencies to reach them, and a
ready router for the browser's token endpoint.

    app = FastAPI(lifespan=belfry_lifespan())
    app.include_router(token_router(current_user_id))

    @app.post("/posts/{post_id}/comments")
    async def comment(post_id: int, belfry: BelfryClient) -> ...:
        await belfry.notify([author_id], "comment.created", {"post_id": post_id})

`BelfryClient` raises when Belfry is down (the request fails); `BelfryBackground` never does (see
`belfry.background` for the loss window).
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request

from ._core import RetryPolicy
from .background import Background
from .client import DEFAULT_TIMEOUT, AsyncBelfry, Belfry
from .config import Settings
from .tokens import DEFAULT_TTL, user_token

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def belfry_lifespan(
    *,
    settings: Settings | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int | RetryPolicy = 3,
    max_queue: int = 10_000,
    flush_timeout: float = 5.0,
    then: Lifespan | None = None,
) -> Lifespan:
    """A lifespan opening an `AsyncBelfry` and a `Background` (from `BELFRY_*` unless `settings`)
    and closing both on shutdown, the background queue flushed for at most `flush_timeout`
    seconds. `then` is your own lifespan, run inside; its state (a dict) is merged in."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        s = settings or Settings.from_env()
        key = s.require_api_key()
        async with AsyncBelfry(s.url, key, timeout=timeout, retries=retries) as client:
            with Belfry(s.url, key, timeout=timeout, retries=retries) as blocking:
                background = Background(
                    blocking, max_queue=max_queue, flush_timeout=flush_timeout, close_at_exit=False
                )
                state: dict[str, Any] = {
                    "belfry": client,
                    "belfry_background": background,
                    "belfry_settings": s,
                }
                try:
                    if then is None:
                        yield state
                    else:
                        async with then(app) as inner:
                            yield {**state, **(inner or {})}
                finally:
                    await asyncio.to_thread(background.close)

    return lifespan


def _state(request: Request, name: str) -> Any:
    try:
        return getattr(request.state, name)
    except AttributeError:
        raise RuntimeError(
            "Belfry is not set up: create the app with FastAPI(lifespan=belfry_lifespan())"
        ) from None


def get_client(request: Request) -> AsyncBelfry:
    """Dependency: the app's `AsyncBelfry`."""
    client: AsyncBelfry = _state(request, "belfry")
    return client


def get_background(request: Request) -> Background:
    """Dependency: the app's `Background` sender."""
    background: Background = _state(request, "belfry_background")
    return background


BelfryClient = Annotated[AsyncBelfry, Depends(get_client)]
BelfryBackground = Annotated[Background, Depends(get_background)]


def token_router(
    user_id: Callable[..., Any],
    *,
    path: str = "/belfry-token",
    ttl: int | timedelta = DEFAULT_TTL,
    rooms: Callable[[str], Sequence[str]] | None = None,
    rooms_read: Callable[[str], Sequence[str]] | None = None,
    secret: str | None = None,
) -> APIRouter:
    """`POST {path}` → `{"token": "…", "expires_in": seconds}` for the signed-in user.

    `user_id` is your dependency returning the signed-in user's id (or `None`: 401). `rooms` /
    `rooms_read` map that id to the room patterns the token grants. Signed with `secret`, else
    `BELFRY_JWT_SECRET`. The JS SDK's `getToken` is `() => fetch(path, {method: "POST"})
    .then(r => r.json()).then(j => j.token)`.
    """
    router = APIRouter()
    seconds = int(ttl.total_seconds()) if isinstance(ttl, timedelta) else int(ttl)

    @router.post(path, tags=["belfry"])
    def belfry_token(request: Request, uid: Annotated[Any, Depends(user_id)]) -> dict[str, Any]:
        if uid is None:
            raise HTTPException(status_code=401, detail="not signed in")
        uid = str(uid)
        settings: Settings = getattr(request.state, "belfry_settings", None) or Settings.from_env()
        token = user_token(
            uid,
            ttl=seconds,
            rooms=rooms(uid) if rooms else (),
            rooms_read=rooms_read(uid) if rooms_read else (),
            secret=secret or settings.require_jwt_secret(),
        )
        return {"token": token, "expires_in": seconds}

    return router
