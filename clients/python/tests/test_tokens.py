"""Tokens minted here, judged by the real server: accepted (a live connection receives what the
backend sends), refused when signed with the wrong key, and carrying exactly Belfry's claims."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from support import JWT_SECRET, Server, running
from wsclient import room_member, sse_events

import belfry


def test_a_user_token_opens_sse_and_receives_a_notification(
    server: Server, client: belfry.Belfry, user: str
) -> None:
    token = belfry.user_token(user, secret=JWT_SECRET)
    with sse_events(server.url, token) as events:
        kind, hello = next(events)
        assert (kind, hello["user_id"]) == ("hello", user)
        sent = client.notify([user], "comment.created", {"post_id": 7})
        kind, frame = next(e for e in events if e[0] == "notification")
    assert frame["notification"]["id"] == sent.notifications[0].id
    assert frame["notification"]["data"] == {"post_id": 7}


def test_a_token_signed_with_another_secret_is_refused(server: Server, user: str) -> None:
    token = belfry.user_token(user, secret="not-the-server-secret-but-long-enough")
    with pytest.raises(belfry.Unauthorized) as raised, sse_events(server.url, token):
        pass
    assert "signature does not verify" in raised.value.message


def test_an_expired_token_is_refused(server: Server, user: str) -> None:
    claims = {"sub": user, "exp": 1_000_000}
    token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    with pytest.raises(belfry.Unauthorized), sse_events(server.url, token):
        pass


def test_a_room_token_lets_its_user_join_that_room_only(
    server: Server, client: belfry.Belfry, user: str
) -> None:
    token = belfry.user_token(user, secret=JWT_SECRET)
    room = f"doc:{user}"
    ticket = belfry.room_token(user, room, secret=JWT_SECRET)
    with room_member(server.url, token, room, room_token=ticket) as member:
        client.room_message(room, {"op": "saved"})
        assert member.next_message()["data"] == {"op": "saved"}
    with pytest.raises(AssertionError, match="forbidden"):
        with room_member(server.url, token, room + "-other", room_token=ticket):
            pass


def test_user_tokens_carry_exactly_the_claims_belfry_reads(user: str) -> None:
    token = belfry.user_token(
        user, ttl=60, rooms=["todo:*"], rooms_read=["doc:42"], secret=JWT_SECRET
    )
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"])
    assert set(claims) == {"sub", "iat", "exp", "rooms", "rooms_read"}
    assert claims["exp"] - claims["iat"] == 60
    assert (claims["rooms"], claims["rooms_read"]) == (["todo:*"], ["doc:42"])
    ticket = belfry.room_token(user, "doc:42", publish=True, secret=JWT_SECRET)
    assert set(jwt.decode(ticket, JWT_SECRET, algorithms=["HS256"])) == {
        "sub",
        "iat",
        "exp",
        "room",
        "publish",
    }


def test_bad_arguments_are_refused_before_signing() -> None:
    with pytest.raises(ValueError):
        belfry.user_token("has space", secret=JWT_SECRET)
    with pytest.raises(ValueError):
        belfry.user_token("u", rooms=["bad room"], secret=JWT_SECRET)
    with pytest.raises(TypeError):
        belfry.user_token("u", rooms="todo:*", secret=JWT_SECRET)
    with pytest.raises(ValueError):
        belfry.room_token("u", "bad room!", secret=JWT_SECRET)
    with pytest.raises(ValueError):
        belfry.user_token("u", secret=JWT_SECRET, algorithm="RS256")


@pytest.mark.parametrize("kind", ["ES256", "RS256"])
def test_tokens_signed_with_a_private_key_are_accepted_by_a_server_holding_the_public_key(
    kind: str, tmp_path: Path, user: str
) -> None:
    key = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "ES256"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with running(tmp_path, {"auth": {"jwt_public_key": public.decode()}}) as server:
        token = belfry.user_token(user, private_key=pem)
        assert jwt.get_unverified_header(token)["alg"] == kind
        with sse_events(server.url, token) as events:
            assert next(events)[1]["user_id"] == user
        wrong = (
            ec.generate_private_key(ec.SECP256R1())
            if kind == "ES256"
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        with (
            pytest.raises(belfry.Unauthorized),
            sse_events(server.url, belfry.user_token(user, private_key=wrong)),
        ):
            pass
