"""A browser's side of Belfry, for tests: a WebSocket that joins a room, and an SSE stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from support import DEADLINE
from websockets.sync.client import ClientConnection, connect


class Member:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    def next_frame(self, kind: str) -> dict[str, Any]:
        """The next frame of `type` `kind`, skipping others, within the deadline."""
        while True:
            frame: dict[str, Any] = json.loads(self.ws.recv(timeout=DEADLINE))
            if frame["type"] == kind:
                return frame
            if frame["type"] == "error":
                raise AssertionError(f"error frame: {frame}")

    def next_message(self) -> dict[str, Any]:
        return self.next_frame("message")


@contextmanager
def room_member(
    base: str, token: str, room: str, room_token: str | None = None
) -> Iterator[Member]:
    """A WebSocket of the token's user that has joined `room` (with a room token when given)."""
    url = base.replace("http://", "ws://") + "/v1/ws"
    with connect(url, additional_headers={}, open_timeout=DEADLINE) as ws:
        member = Member(ws)
        ws.send(json.dumps({"type": "auth", "token": token}))
        member.next_frame("hello")
        join: dict[str, Any] = {"type": "join", "room": room, "ref": 1}
        if room_token is not None:
            join["token"] = room_token
        ws.send(json.dumps(join))
        member.next_frame("joined")
        yield member


@contextmanager
def sse_events(base: str, token: str) -> Iterator[Iterator[tuple[str, dict[str, Any]]]]:
    """`(event, data)` pairs of `GET /v1/sse?token=…`; fails on a refused token."""
    with (
        httpx.Client(timeout=httpx.Timeout(DEADLINE)) as http,
        http.stream("GET", f"{base}/v1/sse", params={"token": token}) as response,
    ):
        if response.status_code != 200:
            response.read()
            from belfry.errors import error_from_response

            raise error_from_response(response.status_code, response.headers, response.content)

        def events() -> Iterator[tuple[str, dict[str, Any]]]:
            event, data = "message", ""
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif line == "" and data:
                    yield event, json.loads(data)
                    event, data = "message", ""

        yield events()
