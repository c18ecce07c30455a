"""Every client method against the real server, once through `Belfry` and once through
`AsyncBelfry` (the `api` fixture), and every error the backend API can answer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import Api
from support import Server, running
from wsclient import room_member

import belfry


def test_notify_stores_every_field_and_returns_one_ref_per_recipient(
    api: Api, server: Server, user: str
) -> None:
    other = user + "-b"
    expires = datetime.now(timezone.utc) + timedelta(hours=1)
    result = api.notify(
        [user, other],
        "comment.created",
        {"post_id": 7},
        group_key="post:7",
        actor="alice",
        expires_at=expires,
    )
    assert isinstance(result, belfry.NotifyResult)
    assert [r.user_id for r in result.notifications] == [user, other]
    assert all(r.seq == 1 and not r.muted for r in result.notifications)
    assert result.replayed is False
    uuid.UUID(result.idempotency_key)
    [stored] = server.inbox(user)
    assert stored["id"] == result.notifications[0].id
    assert stored["type"] == "comment.created"
    assert stored["data"] == {"post_id": 7}
    assert stored["group_key"] == "post:7"
    assert stored["actors"] == ["alice"]
    stored_expiry = datetime.fromisoformat(stored["expires_at"].replace("Z", "+00:00"))
    assert abs(stored_expiry - expires) < timedelta(seconds=1)


def test_a_repeated_idempotency_key_stores_once_and_says_replayed(
    api: Api, server: Server, user: str
) -> None:
    first = api.notify([user], "t", idempotency_key=f"k-{user}")
    again = api.notify([user], "t", idempotency_key=f"k-{user}")
    assert again.replayed is True
    assert again.notifications == first.notifications
    assert len(server.inbox(user)) == 1


def test_notify_many_stores_each_item_in_order_with_its_own_key(
    api: Api, server: Server, user: str
) -> None:
    batch = api.notify_many(
        [
            belfry.NewNotification([user], "a", {"n": 1}),
            belfry.NewNotification([user], "b", {"n": 2}, actor="bob"),
        ]
    )
    assert isinstance(batch, belfry.BatchResult)
    assert [r.notifications[0].seq for r in batch.results] == [1, 2]
    keys = {r.idempotency_key for r in batch.results}
    assert len(keys) == 2
    assert [n["type"] for n in server.inbox(user)] == ["b", "a"]


def test_room_message_reaches_a_member_of_the_room(api: Api, server: Server, user: str) -> None:
    room = f"chat:{user}"
    token = belfry.user_token(user, rooms_read=["chat:*"], secret=server_secret())
    with room_member(server.url, token, room) as member:
        assert api.room_message(room, {"text": "hello"}) is None
        message = member.next_message()
    assert message["type"] == "message"
    assert message["data"] == {"text": "hello"}
    assert "from" not in message


def test_preferences_round_trip_and_mute_what_they_say(api: Api, server: Server, user: str) -> None:
    assert api.get_preferences(user) == belfry.Preferences()
    until = datetime(2030, 1, 1, tzinfo=timezone.utc)
    wanted = belfry.Preferences(
        mute_until=until,
        channels=belfry.Channels(web_push=False),
        types={"post.liked": belfry.TypeChannels(in_app=False)},
    )
    assert api.set_preferences(user, wanted) == wanted
    assert api.get_preferences(user) == wanted
    api.set_preferences(user, {"types": {"post.liked": {"in_app": False}}})
    [muted] = api.notify([user], "post.liked").notifications
    [live] = api.notify([user], "comment.created").notifications
    assert muted.muted and not live.muted


def server_secret() -> str:
    from support import JWT_SECRET

    return JWT_SECRET


# Errors: each one the backend API can answer, as its typed exception.


def test_invalid_values_raise_validation_error_naming_each_field(api: Api, user: str) -> None:
    with pytest.raises(belfry.ValidationError) as raised:
        api.notify_many(
            [belfry.NewNotification([user], "ok"), belfry.NewNotification([], "bad type!")]
        )
    assert raised.value.status == 422
    assert set(raised.value.fields) == {"notifications[1].recipients", "notifications[1].type"}


def test_a_wrong_api_key_raises_unauthorized(
    make_api: Callable[..., Api], server: Server, user: str
) -> None:
    with pytest.raises(belfry.Unauthorized) as raised:
        make_api(server.url, "not-the-key").notify([user], "t")
    assert raised.value.status == 401


def test_wrong_json_types_raise_bad_request(api: Api, user: str) -> None:
    with pytest.raises(belfry.BadRequest) as raised:
        api.set_preferences(user, {"muted": "yes"})
    assert raised.value.status == 400


def test_a_key_reused_for_another_request_raises_conflict(api: Api, user: str) -> None:
    api.notify([user], "first", idempotency_key=f"c-{user}")
    with pytest.raises(belfry.Conflict):
        api.notify([user], "second", idempotency_key=f"c-{user}")


def test_an_oversized_room_message_raises_payload_too_large(api: Api, user: str) -> None:
    with pytest.raises(belfry.PayloadTooLarge) as raised:
        api.room_message(f"r-{user}", {"text": "x" * 20_000})
    assert raised.value.status == 413


def test_an_unknown_route_raises_not_found(
    make_api: Callable[..., Api], server: Server, user: str
) -> None:
    with pytest.raises(belfry.NotFound):
        make_api(server.url + "/nowhere").get_preferences(user)


def test_the_rate_limit_raises_rate_limited_with_retry_after_when_retries_are_off(
    make_api: Callable[..., Api], tmp_path: Path, user: str
) -> None:
    limits = {"rate_limits": {"api_key_per_minute": 60, "api_key_burst": 1}}
    with running(tmp_path, limits) as limited:
        api = make_api(limited.url, retries=0)
        api.notify([user], "t")
        with pytest.raises(belfry.RateLimited) as raised:
            api.notify([user], "t")
    assert raised.value.status == 429
    assert raised.value.retry_after == 1


def test_an_unreachable_server_raises_connection_error(
    make_api: Callable[..., Api], user: str
) -> None:
    from support import free_port

    dead = make_api(f"http://127.0.0.1:{free_port()}", retries=1)
    with pytest.raises(belfry.BelfryConnectionError):
        dead.notify([user], "t")
