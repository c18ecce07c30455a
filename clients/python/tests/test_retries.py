"""Retries against real failures: Belfry's own rate limit (429 + Retry-After), a load balancer
shedding load (503 + Retry-After), an answer lost after Belfry stored the notification, and a
server restart in the middle of a call."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Api
from support import (
    API_KEY,
    DEADLINE,
    TEST_DATABASE_URL,
    Proxy,
    Server,
    postgres_server,
    psql,
    running,
)

import belfry

FAST = belfry.RetryPolicy(retries=3, backoff=0.01, max_backoff=0.05)


def test_a_rate_limited_call_waits_for_retry_after_then_succeeds(
    make_api: Callable[..., Api], tmp_path: Path, user: str
) -> None:
    limits = {"rate_limits": {"api_key_per_minute": 60, "api_key_burst": 1}}
    with running(tmp_path, limits) as limited:
        api = make_api(limited.url, retries=FAST)
        api.notify([user], "first")
        started = time.monotonic()
        result = api.notify([user], "second")
        waited = time.monotonic() - started
        assert result.notifications[0].seq == 2
        assert waited >= 0.9, f"retried after {waited:.2f} s, before Retry-After: 1"
        assert len(limited.inbox(user)) == 2


def test_a_503_with_retry_after_is_retried_with_the_same_idempotency_key(
    make_api: Callable[..., Api], server: Server, user: str
) -> None:
    with Proxy(server.url, ["503"], retry_after="1") as proxy:
        started = time.monotonic()
        result = make_api(proxy.url, retries=FAST).notify([user], "t")
        waited = time.monotonic() - started
    assert waited >= 0.9
    assert result.replayed is False
    first, second = (body for _, _, body in proxy.requests)
    assert first == second and result.idempotency_key.encode() in first
    assert len(server.inbox(user)) == 1


def test_a_retry_after_beyond_the_policy_fails_at_once_with_its_value(
    make_api: Callable[..., Api], server: Server, user: str
) -> None:
    policy = belfry.RetryPolicy(retries=3, max_retry_after=5)
    with Proxy(server.url, ["503"], retry_after="120") as proxy:
        with pytest.raises(belfry.Unavailable) as raised:
            make_api(proxy.url, retries=policy).notify([user], "t")
    assert raised.value.retry_after == 120
    assert len(proxy.requests) == 1


def test_an_answer_lost_after_the_store_is_retried_and_stored_once(
    make_api: Callable[..., Api], server: Server, user: str
) -> None:
    with Proxy(server.url, ["lose"]) as proxy:
        result = make_api(proxy.url, retries=FAST).notify([user], "t", {"n": 1})
    assert len(proxy.requests) == 2
    assert result.replayed is True
    assert len(server.inbox(user)) == 1


def test_a_lost_room_message_is_not_resent(
    make_api: Callable[..., Api], server: Server, user: str
) -> None:
    with Proxy(server.url, ["lose"]) as proxy:
        with pytest.raises(belfry.BelfryConnectionError):
            make_api(proxy.url, retries=FAST).room_message(f"r-{user}", {})
    assert len(proxy.requests) == 1


def test_a_call_rides_through_a_server_restart(
    api_mode: str, fresh_server: Server, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    policy = belfry.RetryPolicy(retries=200, backoff=0.02, max_backoff=0.1)
    first_retry = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "retry" in record.getMessage():
                first_retry.set()

    watch = Watch()
    logging.getLogger("belfry").addHandler(watch)
    outcome: list[object] = []
    try:
        fresh_server.stop()
        api = Api(api_mode, fresh_server.url, API_KEY, retries=policy)
        caller = threading.Thread(target=lambda: outcome.append(api.notify([user], "t")))
        caller.start()
        assert first_retry.wait(DEADLINE), "the client never retried"
        fresh_server.start()
        caller.join(DEADLINE)
    finally:
        logging.getLogger("belfry").removeHandler(watch)
    [result] = outcome
    assert isinstance(result, belfry.NotifyResult)
    assert len(fresh_server.inbox(user)) == 1


def test_jittered_backoff_stays_under_its_ceiling_and_varies() -> None:
    policy = belfry.RetryPolicy(backoff=0.1, max_backoff=1.0)
    delays = [policy.jittered(n) for n in range(8) for _ in range(20)]
    assert all(0 <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 100
    assert max(policy.jittered(0) for _ in range(50)) <= 0.1


@pytest.mark.skipif(
    not postgres_server(),
    reason=f"needs PostgreSQL: set {TEST_DATABASE_URL} (python-tests.sh does)",
)
def test_with_the_database_down_calls_raise_unavailable_and_retries_ride_it_out(
    api_mode: str, fresh_server: Server, user: str
) -> None:
    database = fresh_server.database
    assert database is not None
    Api(api_mode, fresh_server.url, API_KEY).notify([user], "before")

    def allow(allowed: bool) -> None:
        psql(f"ALTER DATABASE {database} WITH ALLOW_CONNECTIONS {str(allowed).lower()}")
        if not allowed:
            psql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{database}'"
            )

    allow(False)
    try:
        with pytest.raises(belfry.Unavailable) as raised:
            Api(api_mode, fresh_server.url, API_KEY, retries=0).notify([user], "refused")
        assert raised.value.status == 503

        first_retry = threading.Event()

        class Watch(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if "HTTP 503" in record.getMessage():
                    first_retry.set()

        watch = Watch()
        logging.getLogger("belfry").addHandler(watch)
        outcome: list[object] = []
        policy = belfry.RetryPolicy(retries=20, backoff=0.05, max_backoff=0.2)
        api = Api(api_mode, fresh_server.url, API_KEY, retries=policy)
        caller = threading.Thread(target=lambda: outcome.append(api.notify([user], "after")))
        caller.start()
        try:
            assert first_retry.wait(DEADLINE), "the client never retried the 503"
        finally:
            allow(True)
            logging.getLogger("belfry").removeHandler(watch)
        caller.join(DEADLINE)
    finally:
        allow(True)
    [result] = outcome
    assert isinstance(result, belfry.NotifyResult)
    assert [n["type"] for n in fresh_server.inbox(user)] == ["after", "before"]
