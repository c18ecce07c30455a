"""Fixtures: one real Belfry server for the session, clients for it, and an `api` that runs each
call through the blocking client and, in a second run of the test, through the asyncio client."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import API_KEY, Server, running

import belfry


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("belfry")) as s:
        yield s


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, for tests that stop or restart it."""
    with running(tmp_path) as s:
        yield s


@pytest.fixture
def user() -> str:
    """A user id no other test uses (the session's server is shared)."""
    return f"u-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(server: Server) -> Iterator[belfry.Belfry]:
    with belfry.Belfry(server.url, API_KEY) as c:
        yield c


class Api:
    """Calls a client method by name, on `Belfry` or on `AsyncBelfry` (in a fresh event loop)."""

    def __init__(self, mode: str, url: str, api_key: str, **options: Any) -> None:
        self.mode = mode
        self.url = url
        self.api_key = api_key
        self.options = options

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if self.mode == "sync":
                with belfry.Belfry(self.url, self.api_key, **self.options) as c:
                    return getattr(c, name)(*args, **kwargs)

            async def run() -> Any:
                async with belfry.AsyncBelfry(self.url, self.api_key, **self.options) as c:
                    return await getattr(c, name)(*args, **kwargs)

            return asyncio.run(run())

        return call


@pytest.fixture(params=["sync", "async"])
def api_mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


@pytest.fixture
def api(server: Server, api_mode: str) -> Api:
    return Api(api_mode, server.url, API_KEY)


@pytest.fixture
def make_api(api_mode: str) -> Callable[..., Api]:
    def make(url: str, api_key: str = API_KEY, **options: Any) -> Api:
        return Api(api_mode, url, api_key, **options)

    return make
