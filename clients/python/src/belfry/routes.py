"""The backend API, one function per route. Each takes the route's arguments and returns a `Call`:
the request and how to read its answer. Both clients expose every function here as a method (see
`client.py`), so adding a route is one function here and one line in each client.

Keys are made here, once per call, so every retry of the call sends the same key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from ._core import Call
from .models import BatchResult, NewNotification, NotifyResult, Preferences


def new_idempotency_key() -> str:
    """A fresh idempotency key (a random UUID)."""
    return str(uuid.uuid4())


def _with_key(item: NewNotification) -> NewNotification:
    if item.idempotency_key is not None:
        return item
    return NewNotification(
        recipients=item.recipients,
        type=item.type,
        data=item.data,
        group_key=item.group_key,
        actor=item.actor,
        idempotency_key=new_idempotency_key(),
        expires_at=item.expires_at,
    )


def _segment(value: str) -> str:
    return quote(value, safe="")


def notify(
    recipients: Sequence[str],
    type: str,
    data: Mapping[str, Any] | None = None,
    *,
    group_key: str | None = None,
    actor: str | None = None,
    idempotency_key: str | None = None,
    expires_at: datetime | None = None,
) -> Call[NotifyResult]:
    """Notify one or many users (`POST /v1/notifications`).

    The notification is durable when this returns. Without `idempotency_key` a random one is
    made, so a retry after a lost answer stores nothing twice (`replayed` is then true).
    """
    item = _with_key(
        NewNotification(
            recipients=recipients,
            type=type,
            data=data,
            group_key=group_key,
            actor=actor,
            idempotency_key=idempotency_key,
            expires_at=expires_at,
        )
    )
    key = item.idempotency_key or ""
    return Call(
        "POST",
        "/v1/notifications",
        parse=lambda raw: NotifyResult.from_json(raw, key),
        json=item.to_json(),
    )


def notify_many(notifications: Iterable[NewNotification]) -> Call[BatchResult]:
    """Store many notifications in one request, all or nothing (`POST /v1/notifications/batch`).

    Each item without an idempotency key gets its own, so the batch is safe to retry.
    """
    items = [_with_key(n) for n in notifications]
    keys = [n.idempotency_key or "" for n in items]

    def parse(raw: Any) -> BatchResult:
        return BatchResult(
            results=tuple(
                NotifyResult.from_json(r, key) for r, key in zip(raw["results"], keys, strict=True)
            )
        )

    return Call(
        "POST",
        "/v1/notifications/batch",
        parse=parse,
        json={"notifications": [n.to_json() for n in items]},
    )


def room_message(room: str, data: Any) -> Call[None]:
    """Send `data` to every member of `room` connected now (`POST /v1/rooms/{room}/messages`).

    Rooms keep no history. Not idempotent: it is resent only when the request surely never left
    (connection refused) or the server refused it before acting (429, 503).
    """
    return Call(
        "POST",
        f"/v1/rooms/{_segment(room)}/messages",
        parse=lambda _raw: None,
        json={"data": data},
        idempotent=False,
    )


def get_preferences(user_id: str) -> Call[Preferences]:
    """A user's preferences, the defaults when never saved (`GET /v1/users/{id}/preferences`)."""
    return Call("GET", f"/v1/users/{_segment(user_id)}/preferences", parse=Preferences.from_json)


def set_preferences(
    user_id: str, preferences: Preferences | Mapping[str, Any]
) -> Call[Preferences]:
    """Replace a user's preferences; returns what was stored (`PUT /v1/users/{id}/preferences`).

    A plain mapping is sent as it is (missing fields take their defaults on the server).
    """
    body = preferences.to_json() if isinstance(preferences, Preferences) else dict(preferences)
    return Call(
        "PUT",
        f"/v1/users/{_segment(user_id)}/preferences",
        parse=Preferences.from_json,
        json=body,
    )
