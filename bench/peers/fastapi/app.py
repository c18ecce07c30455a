"""The seed-style peer: a FastAPI notification server built the way the seed sketches build
theirs, so that `belfry-bench --peer fastapi` can measure Belfry against it in the same run.

What makes it "seed style" (see /work/shared/seeds and docs/benchmarks.md):
- a per-user ConnectionManager in process (user id -> set of WebSockets), `send_json` to each
  connection in turn, dead connections dropped on a failed send;
- a SQLAlchemy `Notification` table on SQLite (SQLAlchemy's defaults), written through an
  `AsyncSession` from `Depends(get_session)` (`await session.commit()`, as the second seed's
  mark-read route does), committed before the push;
- the user's HS256 JWT in the query string (`?token=`), checked with PyJWT before `accept()`;
- a 30 s ping task and a 60 s `receive_json` timeout per connection;
- no resume protocol: a client that reconnects fetches what it missed over HTTP ("fetch on
  mount"), `GET /api/notifications?after_id=`.

Additions for the benchmark, kept in the same style: a `hello` frame once a connection is
registered (so the bench knows when it may publish), an API key on the backend endpoints, a
batch endpoint (one commit for many notifications), the room endpoints of the third seed, an SSE
stream (second seed), and `/healthz`.

Configuration comes from the environment: PEER_DATABASE (SQLite file), PEER_JWT_SECRET,
PEER_API_KEY, PEER_SQLITE_JOURNAL (empty: SQLite's default rollback journal; `wal`: WAL).

Why not the first seed's synchronous `Session` inside `async def`: it blocks the event loop on
every commit, and under more than 15 concurrent requests it deadlocks (the 16th request waits,
on the event loop thread, for a pooled connection that only a teardown scheduled by that same
loop would return; requests then time out after SQLAlchemy's 30 s pool timeout). An earlier
version of this peer did that and stalled at 200 requests/s, which measured the deadlock, not the
design.
"""

import asyncio
import json
import logging
import os
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Dict, List, Set

import jwt
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from sqlalchemy import JSON, String, event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

logger = logging.getLogger("peer")

DATABASE = os.environ.get("PEER_DATABASE", "peer.db")
JWT_SECRET = os.environ.get("PEER_JWT_SECRET", "change-me")
API_KEY = os.environ.get("PEER_API_KEY", "change-me")
JOURNAL = os.environ.get("PEER_SQLITE_JOURNAL", "")

engine = create_async_engine(f"sqlite+aiosqlite:///{DATABASE}")
if JOURNAL:

    @event.listens_for(engine.sync_engine, "connect")
    def _journal_mode(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA journal_mode={JOURNAL}")
        cursor.close()


SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Notification(Base):
    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(String, index=True)
    type: Mapped[str]
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=lambda: datetime.now(timezone.utc))
    read_at: Mapped[datetime | None] = mapped_column(default=None)


async def get_session():
    async with SessionLocal() as session:
        yield session


def to_dict(n: Notification) -> dict:
    return {
        "id": n.id,
        "user_id": n.user_id,
        "type": n.type,
        "payload": n.payload,
        "created_at": n.created_at.isoformat(),
    }


class ConnectionManager:
    """Manage WebSocket (and SSE) connections per user, and rooms."""

    def __init__(self):
        self._connections: Dict[str, Set[WebSocket]] = {}
        self._streams: Dict[str, Set[asyncio.Queue]] = {}
        self._rooms: Dict[str, List[WebSocket]] = {}

    async def connect(self, websocket: WebSocket, user_id: str) -> None:
        await websocket.accept()
        self._connections.setdefault(user_id, set()).add(websocket)

    def disconnect(self, websocket: WebSocket, user_id: str) -> None:
        if user_id in self._connections:
            self._connections[user_id].discard(websocket)
            if not self._connections[user_id]:
                del self._connections[user_id]

    def open_stream(self, user_id: str) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue()
        self._streams.setdefault(user_id, set()).add(queue)
        return queue

    def close_stream(self, user_id: str, queue: asyncio.Queue) -> None:
        if user_id in self._streams:
            self._streams[user_id].discard(queue)
            if not self._streams[user_id]:
                del self._streams[user_id]

    async def send_to_user(self, user_id: str, message: dict) -> None:
        """Send message to all connections for a user."""
        for queue in self._streams.get(user_id, ()):
            queue.put_nowait(message)
        if user_id not in self._connections:
            return
        dead_connections = set()
        for websocket in list(self._connections[user_id]):
            try:
                await websocket.send_json(message)
            except Exception:
                dead_connections.add(websocket)
        for ws in dead_connections:
            self.disconnect(ws, user_id)

    async def join(self, room_id: str, websocket: WebSocket) -> None:
        await websocket.accept()
        self._rooms.setdefault(room_id, []).append(websocket)

    def leave(self, room_id: str, websocket: WebSocket) -> None:
        members = self._rooms.get(room_id)
        if members and websocket in members:
            members.remove(websocket)
            if not members:
                del self._rooms[room_id]

    async def broadcast(self, room_id: str, message: dict, exclude: WebSocket | None = None) -> None:
        """Send message to all clients in a room."""
        dead_connections = []
        for connection in list(self._rooms.get(room_id, ())):
            if connection is exclude:
                continue
            try:
                await connection.send_json(message)
            except Exception:
                dead_connections.append(connection)
        for conn in dead_connections:
            self.leave(room_id, conn)


manager = ConnectionManager()


@asynccontextmanager
async def lifespan(_app: FastAPI):
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


def authenticate(token: str | None) -> str | None:
    if not token:
        return None
    try:
        payload = jwt.decode(token, JWT_SECRET, algorithms=["HS256"])
    except jwt.InvalidTokenError:
        return None
    return payload.get("sub")


def require_api_key(authorization: str = Header(default="")) -> None:
    if authorization != f"Bearer {API_KEY}":
        raise HTTPException(status_code=401, detail="bad api key")


def current_user(authorization: str = Header(default=""), token: str | None = Query(default=None)) -> str:
    if authorization.startswith("Bearer "):
        token = authorization[len("Bearer ") :]
    user_id = authenticate(token)
    if not user_id:
        raise HTTPException(status_code=401, detail="bad token")
    return user_id


class NotificationCreate(BaseModel):
    user_id: str
    type: str
    payload: dict = {}


class NotificationBatch(BaseModel):
    notifications: List[NotificationCreate]


class RoomMessage(BaseModel):
    data: dict = {}


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}


@app.post("/api/notifications", status_code=201, dependencies=[Depends(require_api_key)])
async def create_notification(data: NotificationCreate, session: AsyncSession = Depends(get_session)):
    notification = Notification(user_id=data.user_id, type=data.type, payload=data.payload)
    session.add(notification)
    await session.commit()
    body = to_dict(notification)
    await manager.send_to_user(data.user_id, {"type": "new_notification", "payload": body})
    return {"id": body["id"]}


@app.post("/api/notifications/batch", status_code=201, dependencies=[Depends(require_api_key)])
async def create_notifications(data: NotificationBatch, session: AsyncSession = Depends(get_session)):
    rows = [Notification(user_id=n.user_id, type=n.type, payload=n.payload) for n in data.notifications]
    session.add_all(rows)
    await session.commit()
    bodies = [to_dict(n) for n in rows]
    for body in bodies:
        await manager.send_to_user(body["user_id"], {"type": "new_notification", "payload": body})
    return {"ids": [b["id"] for b in bodies]}


@app.get("/api/notifications")
async def list_notifications(
    after_id: int = 0,
    limit: int = Query(default=100, le=1000),
    user_id: str = Depends(current_user),
    session: AsyncSession = Depends(get_session),
):
    rows = await session.scalars(
        select(Notification)
        .where(Notification.user_id == user_id, Notification.id > after_id)
        .order_by(Notification.id)
        .limit(limit)
    )
    return [to_dict(n) for n in rows.all()]


@app.post("/api/rooms/{room_id}/messages", status_code=202, dependencies=[Depends(require_api_key)])
async def room_message(room_id: str, message: RoomMessage):
    await manager.broadcast(
        room_id,
        {
            "type": "message",
            "room": room_id,
            "payload": message.data,
            "timestamp": datetime.now(timezone.utc).isoformat(),
        },
    )
    return JSONResponse({"status": "sent"}, status_code=202)


@app.websocket("/ws/notifications")
async def websocket_notifications(websocket: WebSocket):
    user_id = authenticate(websocket.query_params.get("token"))
    if not user_id:
        await websocket.close(code=4001, reason="Unauthorized")
        return
    await manager.connect(websocket, user_id)
    ping_task = asyncio.create_task(_ping_loop(websocket))
    try:
        await websocket.send_json({"type": "hello", "user_id": user_id})
        while True:
            try:
                data = await asyncio.wait_for(websocket.receive_json(), timeout=60.0)
                _handle_message(user_id, data)
            except asyncio.TimeoutError:
                await websocket.send_json({"type": "ping", "payload": {}})
    except WebSocketDisconnect:
        pass
    except Exception as e:
        logger.error(f"WebSocket error: {e}")
    finally:
        ping_task.cancel()
        manager.disconnect(websocket, user_id)


@app.websocket("/ws/rooms/{room_id}")
async def websocket_room(websocket: WebSocket, room_id: str, token: str | None = Query(default=None)):
    user_id = authenticate(token)
    if not user_id:
        await websocket.close(code=4001, reason="Unauthorized")
        return
    await manager.join(room_id, websocket)
    try:
        await websocket.send_json({"type": "hello", "user_id": user_id, "room": room_id})
        while True:
            data = await websocket.receive_json()
            await manager.broadcast(
                room_id,
                {
                    "type": data.get("type"),
                    "user_id": user_id,
                    "payload": data.get("payload"),
                    "timestamp": datetime.now(timezone.utc).isoformat(),
                },
                exclude=websocket,
            )
    except WebSocketDisconnect:
        pass
    except Exception as e:
        logger.error(f"WebSocket error: {e}")
    finally:
        manager.leave(room_id, websocket)


@app.get("/events/notifications")
async def notification_events(request: Request, token: str | None = Query(default=None)):
    user_id = authenticate(token)
    if not user_id:
        raise HTTPException(status_code=401, detail="bad token")
    queue = manager.open_stream(user_id)

    async def event_stream():
        try:
            yield f"event: hello\ndata: {json.dumps({'type': 'hello', 'user_id': user_id})}\n\n"
            while True:
                message = await queue.get()
                if await request.is_disconnected():
                    break
                yield f"event: {message['type']}\ndata: {json.dumps(message)}\n\n"
        finally:
            manager.close_stream(user_id, queue)

    return StreamingResponse(event_stream(), media_type="text/event-stream")


async def _ping_loop(websocket: WebSocket):
    while True:
        await asyncio.sleep(30)
        try:
            await websocket.send_json({"type": "ping", "payload": {}})
        except Exception:
            break


def _handle_message(user_id: str, data: dict):
    msg_type = data.get("type")
    if msg_type not in ("pong", "ping"):
        logger.warning(f"Unknown message type: {msg_type}")
