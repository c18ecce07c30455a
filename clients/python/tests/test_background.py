"""Background sending: queued calls reach the real server, a dead Belfry never raises into the
caller, the queue is bounded, and close() flushes what is queued."""

from __future__ import annotations

from typing import Any

from support import API_KEY, Proxy, Server, free_port, wait_until

import belfry

FAST = belfry.RetryPolicy(retries=2, backoff=0.01, max_backoff=0.02)


def test_queued_notifications_are_sent_and_flushed(server: Server, user: str) -> None:
    with belfry.Belfry(server.url, API_KEY) as client:
        background = belfry.Background(client, close_at_exit=False)
        assert background.notify([user], "a") is True
        assert background.notify_many([belfry.NewNotification([user], "b")]) is True
        assert background.flush(10) is True
        background.close()
    assert background.sent == 2 and background.failed == 0
    assert sorted(n["type"] for n in server.inbox(user)) == ["a", "b"]


def test_a_dead_belfry_never_raises_and_each_loss_is_reported(user: str) -> None:
    lost: list[tuple[str, str]] = []
    with belfry.Belfry(f"http://127.0.0.1:{free_port()}", API_KEY, retries=FAST) as client:
        background = belfry.Background(
            client, close_at_exit=False, on_drop=lambda call, why: lost.append((call.path, why))
        )
        assert background.notify([user], "t") is True
        assert background.flush(10)
        background.close()
    assert background.failed == 1
    [(path, why)] = lost
    assert path == "/v1/notifications" and "failed after 3 attempt" in why


def test_the_queue_is_bounded_and_close_drops_what_it_could_not_send(
    server: Server, user: str
) -> None:
    lost: list[Any] = []
    with Proxy(server.url, []) as proxy, belfry.Belfry(proxy.url, API_KEY) as client:
        proxy.hold.clear()
        background = belfry.Background(
            client, max_queue=2, close_at_exit=False, on_drop=lambda c, why: lost.append(why)
        )
        assert background.notify([user], "in-flight")
        wait_until(lambda: len(proxy.requests) == 1, what="the first call in flight")
        assert background.notify([user], "queued-1")
        assert background.notify([user], "queued-2")
        assert background.notify([user], "over") is False
        assert background.dropped == 1 and lost == ["queue full"]
        background.close(timeout=0.2)
        assert background.dropped == 3
        assert background.notify([user], "late") is False
        proxy.hold.set()
        wait_until(lambda: background.pending() == 0, what="the call in flight to finish")
    assert lost[1:] == ["closed before it was sent"] * 2 + ["closed"]
    assert background.sent == 1
    assert [n["type"] for n in server.inbox(user)] == ["in-flight"]
