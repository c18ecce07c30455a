"""Minting the JWTs browsers present to Belfry, with exactly the claims the server reads
(crates/belfry/src/auth.rs, `Claims`): `sub` (the user id), `exp` and `iat`; `rooms` and
`rooms_read` (room patterns) in a user token; `room` and `publish` in a room token. `aud`, `iss`
and the header's `kid` are added when given, for servers that check `auth.audience` /
`auth.issuer` or find keys in a JWKS.

Signing: HS256 with the shared secret (`auth.jwt_secret`; `BELFRY_JWT_SECRET` by default), or
RS256 / ES256 (P-256) with a private key whose public half the server holds
(`auth.jwt_public_key` or `auth.jwks_url`). The algorithm follows the key unless named.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

import jwt

from .config import Settings

Algorithm = Literal["HS256", "RS256", "ES256"]
DEFAULT_TTL = timedelta(minutes=15)

_USER_ID = re.compile(r"^[^\s\x00-\x1f\x7f]{1,128}$")
_ROOM = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_PATTERN = re.compile(r"^(\*|[A-Za-z0-9._:-]{1,128}\*?)$")


def _seconds(ttl: int | float | timedelta) -> int:
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    if seconds <= 0:
        raise ValueError("ttl must be positive")
    return int(seconds)


def _check_user(user_id: str) -> None:
    if not isinstance(user_id, str) or not _USER_ID.match(user_id):
        raise ValueError(
            f"user_id {user_id!r}: 1-128 characters, no whitespace or control characters"
        )


def _check_patterns(name: str, patterns: Sequence[str]) -> list[str]:
    if isinstance(patterns, str):
        raise TypeError(f"{name} is a list of patterns, not one string")
    for p in patterns:
        if not _PATTERN.match(p):
            raise ValueError(f"{name}: {p!r} is not a room name or a prefix ending in *")
    return list(patterns)


def _key_and_algorithm(
    secret: str | bytes | None, private_key: Any, algorithm: Algorithm | None
) -> tuple[Any, Algorithm]:
    if secret is not None and private_key is not None:
        raise ValueError("give secret= or private_key=, not both")
    if private_key is None:
        if algorithm not in (None, "HS256"):
            raise ValueError(f"{algorithm} needs private_key=")
        key = secret if secret is not None else Settings.from_env().require_jwt_secret()
        return key, "HS256"
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    loaded = (
        load_pem_private_key(
            private_key.encode() if isinstance(private_key, str) else private_key, password=None
        )
        if isinstance(private_key, (str, bytes))
        else private_key
    )
    if isinstance(loaded, rsa.RSAPrivateKey):
        inferred: Algorithm = "RS256"
    elif isinstance(loaded, ec.EllipticCurvePrivateKey) and isinstance(loaded.curve, ec.SECP256R1):
        inferred = "ES256"
    else:
        raise ValueError("private_key must be an RSA key (RS256) or an EC P-256 key (ES256)")
    if algorithm not in (None, inferred):
        raise ValueError(f"a {inferred} key cannot sign {algorithm}")
    return loaded, inferred


def _sign(
    claims: dict[str, Any],
    *,
    secret: str | bytes | None,
    private_key: Any,
    algorithm: Algorithm | None,
    kid: str | None,
) -> str:
    key, alg = _key_and_algorithm(secret, private_key, algorithm)
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def _base_claims(
    user_id: str, ttl: int | float | timedelta, audience: str | None, issuer: str | None
) -> dict[str, Any]:
    _check_user(user_id)
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + _seconds(ttl)}
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    return claims


def user_token(
    user_id: str,
    *,
    ttl: int | float | timedelta = DEFAULT_TTL,
    rooms: Sequence[str] = (),
    rooms_read: Sequence[str] = (),
    secret: str | bytes | None = None,
    private_key: Any = None,
    algorithm: Algorithm | None = None,
    audience: str | None = None,
    issuer: str | None = None,
    kid: str | None = None,
) -> str:
    """A token for `user_id`'s browser: live connections and the `/v1/me/*` routes.

    `rooms` are patterns the user may join and publish to (`"doc:42"`, `"todo:*"`, `"*"`);
    `rooms_read` patterns they may join read-only. `ttl` is seconds or a `timedelta` (default 15
    minutes; the JS SDK asks for a fresh one before it expires).
    """
    claims = _base_claims(user_id, ttl, audience, issuer)
    if rooms:
        claims["rooms"] = _check_patterns("rooms", rooms)
    if rooms_read:
        claims["rooms_read"] = _check_patterns("rooms_read", rooms_read)
    return _sign(claims, secret=secret, private_key=private_key, algorithm=algorithm, kid=kid)


def room_token(
    user_id: str,
    room: str,
    *,
    publish: bool = False,
    ttl: int | float | timedelta = DEFAULT_TTL,
    secret: str | bytes | None = None,
    private_key: Any = None,
    algorithm: Algorithm | None = None,
    audience: str | None = None,
    issuer: str | None = None,
    kid: str | None = None,
) -> str:
    """A ticket that lets `user_id` join one `room` (the `token` of a `join` frame).

    `publish=True` lets them publish too. The connection must be `user_id`'s own.
    """
    if not _ROOM.match(room):
        raise ValueError(f"room {room!r}: 1-128 characters of [A-Za-z0-9._:-]")
    claims = _base_claims(user_id, ttl, audience, issuer)
    claims["room"] = room
    if publish:
        claims["publish"] = True
    return _sign(claims, secret=secret, private_key=private_key, algorithm=algorithm, kid=kid)
