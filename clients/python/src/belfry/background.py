"""Background sending for request handlers that must never fail because Belfry is down.

`Background(client)` has the client's routes as methods that return at once: the call joins a
bounded in-memory queue and one worker thread sends it, with the client's retries. The method
returns `True` when queued, `False` when dropped (queue full or closed); it never raises for
Belfry's sake and never blocks. It works from async code too (queuing takes a lock for
microseconds), so one implementation serves Django, Flask and FastAPI alike.

The loss window, exactly: a queued call is lost when
- the process dies before the worker sent it (crash, SIGKILL, OOM, a deploy without `close()`);
- `close(timeout)` returns before the queue drained (Belfry down during shutdown);
- the queue was full (`max_queue` calls waiting: Belfry down or slow for long);
- its retries ran out, or the server refused it (a 4xx: a bug in the call, not an outage).
Each loss is logged on the `belfry` logger, counted in `dropped` / `failed`, and passed to
`on_drop(call, reason)`. When nothing may be lost, write the notify request in your own database
transaction and let Belfry ingest it (the transactional outbox; see the README).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from . import routes
from ._core import Call
from .client import Belfry
from .errors import BelfryError

P = ParamSpec("P")
T = TypeVar("T")
logger = logging.getLogger("belfry")

DropHandler = Callable[[Call[Any], str], None]


def _queued_route(build: Callable[P, Call[T]]) -> Callable[Concatenate[Background, P], bool]:
    def method(self: Background, /, *args: P.args, **kwargs: P.kwargs) -> bool:
        return self.submit(build(*args, **kwargs))

    functools.update_wrapper(method, build)
    return method


class Background:
    """A bounded queue and one worker thread in front of a `Belfry` client.

    `close()` (also run at interpreter exit unless `close_at_exit=False`) sends what is queued,
    waiting at most `flush_timeout` seconds.
    """

    def __init__(
        self,
        client: Belfry,
        *,
        max_queue: int = 10_000,
        flush_timeout: float = 5.0,
        on_drop: DropHandler | None = None,
        close_at_exit: bool = True,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.client = client
        self.max_queue = max_queue
        self.flush_timeout = flush_timeout
        self.on_drop = on_drop
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._reset()
        if close_at_exit:
            atexit.register(self.close)

    def _reset(self) -> None:
        # Also after a fork (gunicorn --preload): the child gets its own queue and worker.
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._items: deque[Call[Any]] = deque()
        self._in_flight = 0
        self._closed = False
        self._worker: threading.Thread | None = None

    notify = _queued_route(routes.notify)
    notify_many = _queued_route(routes.notify_many)
    room_message = _queued_route(routes.room_message)
    set_preferences = _queued_route(routes.set_preferences)

    def submit(self, call: Call[Any]) -> bool:
        """Queues any call; `False` (and `on_drop`) when it was dropped instead."""
        if self._pid != os.getpid():
            self._reset()
        with self._cond:
            if self._closed:
                reason = "closed"
            elif len(self._items) >= self.max_queue:
                reason = "queue full"
            else:
                self._items.append(call)
                if self._worker is None:
                    self._worker = threading.Thread(
                        target=self._work, name="belfry-background", daemon=True
                    )
                    self._worker.start()
                self._cond.notify_all()
                return True
            self.dropped += 1
        self._lost(call, reason)
        return False

    def pending(self) -> int:
        """Calls queued or being sent."""
        with self._cond:
            return len(self._items) + self._in_flight

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until everything queued was sent (or given up); `False` on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._items and self._in_flight == 0, timeout=timeout
            )

    def close(self, timeout: float | None = None) -> None:
        """Sends what is queued (waiting at most `timeout`, default `flush_timeout`), then stops.

        What is still queued after that is dropped, logged and passed to `on_drop`.
        """
        deadline = time.monotonic() + (self.flush_timeout if timeout is None else timeout)
        self.flush(max(0.0, deadline - time.monotonic()))
        with self._cond:
            self._closed = True
            left = list(self._items)
            self._items.clear()
            self.dropped += len(left)
            self._cond.notify_all()
            worker = self._worker
        for call in left:
            self._lost(call, "closed before it was sent")
        if worker is not None:
            worker.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._items) or self._closed)
                if not self._items:
                    return
                call = self._items.popleft()
                self._in_flight = 1
            try:
                self.client.run(call)
                outcome = None
            except BelfryError as e:
                outcome = str(e)
            except Exception as e:  # the worker must survive anything a call raises
                outcome = f"unexpected {e!r}"
            with self._cond:
                self._in_flight = 0
                if outcome is None:
                    self.sent += 1
                else:
                    self.failed += 1
                self._cond.notify_all()
            if outcome is not None:
                self._lost(call, outcome)

    def _lost(self, call: Call[Any], reason: str) -> None:
        logger.error("belfry: dropped %s %s: %s", call.method, call.path, reason)
        if self.on_drop is not None:
            try:
                self.on_drop(call, reason)
            except Exception:
                logger.exception("belfry: on_drop raised")
