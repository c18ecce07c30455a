"""`Belfry` and `AsyncBelfry`: two drivers of one implementation.

Each client only moves bytes: it runs `_core.exchange` (retries, errors, idempotency) with its own
httpx client and sleep. The routes come from `routes.py`; `_sync_route` / `_async_route` turn a
route function into a method with the route's own signature and docstring, so the two clients
cannot drift apart.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import httpx

from . import routes
from ._core import Call, Reply, RetryPolicy, Send, Sleep, exchange
from .config import Settings

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
_USER_AGENT = "belfry-python/0.1"


def _policy(retries: int | RetryPolicy) -> RetryPolicy:
    return retries if isinstance(retries, RetryPolicy) else RetryPolicy(retries=retries)


def _headers(api_key: str) -> dict[str, str]:
    if not api_key:
        raise ValueError("an API key is required (Belfry(url, api_key) or BELFRY_API_KEY)")
    return {"Authorization": f"Bearer {api_key}", "User-Agent": _USER_AGENT}


def _reply(response: httpx.Response) -> Reply:
    return Reply(response.status_code, response.headers, response.content)


class _SyncRunner(Protocol):
    def run(self, call: Call[T]) -> T: ...


class _AsyncRunner(Protocol):
    async def run(self, call: Call[T]) -> T: ...


def _sync_route(build: Callable[P, Call[T]]) -> Callable[Concatenate[_SyncRunner, P], T]:
    def method(self: _SyncRunner, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.run(build(*args, **kwargs))

    functools.update_wrapper(method, build)
    return method


def _async_route(
    build: Callable[P, Call[T]],
) -> Callable[Concatenate[_AsyncRunner, P], Coroutine[Any, Any, T]]:
    async def method(self: _AsyncRunner, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.run(build(*args, **kwargs))

    functools.update_wrapper(method, build)
    return method


class Belfry:
    """The blocking client, for Django, Flask, scripts and workers.

    `retries` is how many times a failed call is tried again (or a `RetryPolicy`); `timeout` is
    per attempt, in seconds. `http` is your own `httpx.Client` (proxies, TLS, transports; its own
    timeout then applies); the client closes it too. Use it as a context manager or call
    `close()`. Thread-safe.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int | RetryPolicy = 3,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.policy = _policy(retries)
        self._headers = _headers(api_key)
        self._http = http or httpx.Client(timeout=timeout)

    @classmethod
    def from_env(cls, **options: Any) -> Belfry:
        """A client configured from `BELFRY_URL` and `BELFRY_API_KEY`."""
        settings = Settings.from_env()
        return cls(settings.url, settings.require_api_key(), **options)

    def run(self, call: Call[T]) -> T:
        """Sends one call, retrying as the policy says; any route is `client.run(routes.x(...))`."""
        steps = exchange(call, self.policy)
        step = next(steps)
        while True:
            try:
                if isinstance(step, Send):
                    try:
                        outcome: Reply | httpx.TransportError = _reply(
                            self._http.request(
                                step.method,
                                self.url + step.path,
                                json=step.json,
                                headers=self._headers,
                            )
                        )
                    except httpx.TransportError as e:
                        outcome = e
                    step = steps.send(outcome)
                elif isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    step = steps.send(None)
            except StopIteration as done:
                result: T = done.value
                return result

    # The backend API (routes.py). A new route is one line here and one in AsyncBelfry.
    notify = _sync_route(routes.notify)
    notify_many = _sync_route(routes.notify_many)
    room_message = _sync_route(routes.room_message)
    get_preferences = _sync_route(routes.get_preferences)
    set_preferences = _sync_route(routes.set_preferences)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Belfry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncBelfry:
    """The asyncio client, for FastAPI and other async frameworks. Same methods, awaited."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int | RetryPolicy = 3,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.policy = _policy(retries)
        self._headers = _headers(api_key)
        self._http = http or httpx.AsyncClient(timeout=timeout)

    @classmethod
    def from_env(cls, **options: Any) -> AsyncBelfry:
        """A client configured from `BELFRY_URL` and `BELFRY_API_KEY`."""
        settings = Settings.from_env()
        return cls(settings.url, settings.require_api_key(), **options)

    async def run(self, call: Call[T]) -> T:
        """Sends one call, retrying as the policy says."""
        steps = exchange(call, self.policy)
        step = next(steps)
        while True:
            try:
                if isinstance(step, Send):
                    try:
                        outcome: Reply | httpx.TransportError = _reply(
                            await self._http.request(
                                step.method,
                                self.url + step.path,
                                json=step.json,
                                headers=self._headers,
                            )
                        )
                    except httpx.TransportError as e:
                        outcome = e
                    step = steps.send(outcome)
                elif isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    step = steps.send(None)
            except StopIteration as done:
                result: T = done.value
                return result

    notify = _async_route(routes.notify)
    notify_many = _async_route(routes.notify_many)
    room_message = _async_route(routes.room_message)
    get_preferences = _async_route(routes.get_preferences)
    set_preferences = _async_route(routes.set_preferences)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncBelfry:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
