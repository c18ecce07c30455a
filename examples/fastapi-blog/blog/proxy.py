"""Same-origin access to Belfry for the page: `/v1/*` (HTTP, SSE, long-poll and WebSocket) is
forwarded to BELFRY_URL. Belfry sends no CORS headers, so a page served by this app reaches it
through its own origin; in production a reverse proxy (nginx `location /v1/`) does this instead.
This is deployment plumbing, not Belfry glue: the app would be the same behind nginx."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import websockets
from fastapi import APIRouter, Request, WebSocket
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}


def belfry_proxy(belfry_url: str) -> APIRouter:
    router = APIRouter()
    upstream = httpx.AsyncClient(base_url=belfry_url, timeout=httpx.Timeout(10.0, read=None))

    @router.api_route("/v1/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def forward(path: str, request: Request) -> StreamingResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        sent = upstream.build_request(
            request.method,
            f"/v1/{path}",
            params=request.query_params,
            headers=headers,
            content=await request.body(),
        )
        answer = await upstream.send(sent, stream=True)
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            headers={k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP},
            background=BackgroundTask(answer.aclose),
        )

    @router.websocket("/v1/ws")
    async def forward_ws(socket: WebSocket) -> None:
        target = belfry_url.replace("http", "ws", 1) + "/v1/ws"
        if socket.url.query:
            target += "?" + socket.url.query
        await socket.accept()
        async with websockets.connect(target, max_size=None) as belfry:

            async def up() -> None:
                while True:
                    message = await socket.receive()
                    if message["type"] == "websocket.disconnect":
                        return
                    await belfry.send(message.get("text") or message.get("bytes") or "")

            async def down() -> None:
                async for frame in belfry:
                    await socket.send_text(frame if isinstance(frame, str) else frame.decode())

            tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
            with contextlib.suppress(Exception):
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            code = belfry.close_code or 1000
        with contextlib.suppress(Exception):
            await socket.close(code=code)

    return router
