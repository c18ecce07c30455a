"""Typed requests and results of the backend API, as frozen dataclasses.

Each result has `from_json` (the server's answer → the dataclass, ignoring fields it does not know,
so a newer server does not break an older client) and each request `to_json` (→ the body the
server takes; `None` fields are left out, as the server's defaults apply).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


def _rfc3339(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("datetimes sent to Belfry must be timezone-aware (e.g. UTC)")
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


_FRACTION = re.compile(r"\.(\d+)")


def _parse_time(text: str | None) -> datetime | None:
    """RFC 3339 as the server writes it (`Z`, 0-9 fractional digits); Python 3.10's
    `fromisoformat` takes only 3 or 6 digits, so the fraction is normalised to 6 first."""
    if text is None:
        return None
    text = text.replace("Z", "+00:00").replace("z", "+00:00")
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class NewNotification:
    """One notification to one or many users: the body of `POST /v1/notifications`.

    `idempotency_key` is filled in by the client when left `None`, so a retry never stores twice.
    """

    recipients: Sequence[str]
    type: str
    data: Mapping[str, Any] | None = None
    group_key: str | None = None
    actor: str | None = None
    idempotency_key: str | None = None
    expires_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        if isinstance(self.recipients, str):
            raise TypeError("recipients is a list of user ids, not one string")
        body: dict[str, Any] = {"recipients": list(self.recipients), "type": self.type}
        if self.data is not None:
            body["data"] = dict(self.data)
        for name in ("group_key", "actor", "idempotency_key"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.expires_at is not None:
            body["expires_at"] = _rfc3339(self.expires_at)
        return body


@dataclass(frozen=True)
class NotificationRef:
    """Where one stored notification went."""

    id: str
    user_id: str
    seq: int
    muted: bool = False

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> NotificationRef:
        return cls(
            id=str(raw["id"]),
            user_id=str(raw["user_id"]),
            seq=int(raw["seq"]),
            muted=bool(raw.get("muted", False)),
        )


@dataclass(frozen=True)
class NotifyResult:
    """The answer to a notify: one ref per recipient (none for a muted one under `drop`).

    `replayed` is true when the idempotency key had been seen: nothing new was stored and these
    are the first request's refs. `idempotency_key` is the key that was sent.
    """

    notifications: tuple[NotificationRef, ...]
    replayed: bool
    idempotency_key: str

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], idempotency_key: str) -> NotifyResult:
        return cls(
            notifications=tuple(NotificationRef.from_json(n) for n in raw["notifications"]),
            replayed=bool(raw.get("replayed", False)),
            idempotency_key=idempotency_key,
        )


@dataclass(frozen=True)
class BatchResult:
    """The answer to a batch: one `NotifyResult` per item, in order."""

    results: tuple[NotifyResult, ...]


@dataclass(frozen=True)
class TypeChannels:
    """One type's channels; `None` follows `Preferences.channels`."""

    in_app: bool | None = None
    web_push: bool | None = None

    def to_json(self) -> dict[str, bool]:
        out: dict[str, bool] = {}
        if self.in_app is not None:
            out["in_app"] = self.in_app
        if self.web_push is not None:
            out["web_push"] = self.web_push
        return out


@dataclass(frozen=True)
class Channels:
    """Each channel for every type: live delivery (`in_app`) and Web Push."""

    in_app: bool = True
    web_push: bool = True


@dataclass(frozen=True)
class Preferences:
    """A user's preferences (docs/api.md, "Preferences"). The defaults mute nothing."""

    muted: bool = False
    mute_until: datetime | None = None
    channels: Channels = field(default_factory=Channels)
    types: Mapping[str, TypeChannels] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Preferences:
        channels = raw.get("channels") or {}
        return cls(
            muted=bool(raw.get("muted", False)),
            mute_until=_parse_time(raw.get("mute_until")),
            channels=Channels(
                in_app=bool(channels.get("in_app", True)),
                web_push=bool(channels.get("web_push", True)),
            ),
            types={
                name: TypeChannels(in_app=c.get("in_app"), web_push=c.get("web_push"))
                for name, c in (raw.get("types") or {}).items()
            },
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "muted": self.muted,
            "mute_until": None if self.mute_until is None else _rfc3339(self.mute_until),
            "channels": {"in_app": self.channels.in_app, "web_push": self.channels.web_push},
            "types": {name: c.to_json() for name, c in self.types.items()},
        }
