"""The sans-IO heart of both clients: a call, the retry policy, and the exchange that drives them.

Nothing here touches a socket or a clock. `exchange` is a generator that yields what it wants done
(`Send` a request, `Sleep` a while) and is sent what happened (a `Reply`, or the transport error
that was raised). `Belfry` drives it with `httpx.Client` and `time.sleep`, `AsyncBelfry` with
`httpx.AsyncClient` and `asyncio.sleep`: the retry, idempotency and error rules exist once.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from .errors import BelfryConnectionError, error_from_response, parse_retry_after

T = TypeVar("T")
logger = logging.getLogger("belfry")

#: Statuses retried for every call: the server refused before doing anything.
RETRY_ALWAYS = frozenset({429, 503})
#: Statuses retried only for calls that are safe to repeat (a proxy may have forwarded them).
RETRY_IF_IDEMPOTENT = frozenset({502, 504})


@dataclass(frozen=True)
class Call(Generic[T]):
    """One backend API call: the request to send and how to read a successful answer.

    `idempotent` says whether sending it twice is harmless (an idempotency key, a GET, a PUT): only
    such calls are retried after a failure that may have happened after the server acted.
    """

    method: str
    path: str
    parse: Callable[[Any], T]
    json: Any = None
    idempotent: bool = True


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a call again.

    The delay before retry `n` (0-based) is drawn uniformly from `[0, min(max_backoff,
    backoff * 2**n)]` ("full jitter"), so many clients that failed together do not come back
    together. A `Retry-After` from the server replaces that delay (plus up to 10 % jitter); when
    it asks for more than `max_retry_after` seconds the call fails at once with the error, whose
    `retry_after` says how long the server asked for.
    """

    retries: int = 3
    backoff: float = 0.2
    max_backoff: float = 5.0
    max_retry_after: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def jittered(self, attempt: int) -> float:
        """The delay before retry `attempt` (0-based) when the server gave no `Retry-After`."""
        ceiling = min(self.max_backoff, self.backoff * (2**attempt))
        return self.rng.uniform(0.0, ceiling)

    def honour(self, retry_after: float) -> float:
        """The delay for a server's `Retry-After`, with a little jitter on top."""
        return retry_after + self.rng.uniform(0.0, retry_after * 0.1)


@dataclass(frozen=True)
class Send:
    """Ask the driver to send this request (relative `path`, JSON body)."""

    method: str
    path: str
    json: Any


@dataclass(frozen=True)
class Sleep:
    """Ask the driver to wait this many seconds."""

    seconds: float


@dataclass(frozen=True)
class Reply:
    """What came back: status, headers and the raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Step = Send | Sleep
Outcome = Reply | httpx.TransportError | None


def _sent_nothing(error: httpx.TransportError) -> bool:
    """True when the request certainly never reached the server (safe to resend anything)."""
    return isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def exchange(call: Call[T], policy: RetryPolicy) -> Generator[Step, Outcome, T]:
    """Runs `call` to its end: a parsed result, or the typed error of its last attempt."""
    attempt = 0
    while True:
        outcome = yield Send(call.method, call.path, call.json)
        if isinstance(outcome, Reply):
            if 200 <= outcome.status < 300:
                return call.parse(outcome.json())
            error = error_from_response(outcome.status, outcome.headers, outcome.body)
            retry_after = parse_retry_after(outcome.headers.get("retry-after"))
            retryable = outcome.status in RETRY_ALWAYS or (
                call.idempotent and outcome.status in RETRY_IF_IDEMPOTENT
            )
            if not retryable or attempt >= policy.retries:
                raise error
            if retry_after is not None and retry_after > policy.max_retry_after:
                raise error
            delay = (
                policy.honour(retry_after) if retry_after is not None else policy.jittered(attempt)
            )
            reason = f"HTTP {outcome.status}"
        elif isinstance(outcome, httpx.TransportError):
            retryable = call.idempotent or _sent_nothing(outcome)
            if not retryable or attempt >= policy.retries:
                raise BelfryConnectionError(
                    f"{call.method} {call.path} failed after {attempt + 1} attempt(s): {outcome!r}"
                ) from outcome
            delay = policy.jittered(attempt)
            reason = repr(outcome)
        else:
            raise RuntimeError("the driver sent no outcome")
        logger.warning(
            "belfry: %s %s failed (%s); retry %d of %d in %.2f s",
            call.method,
            call.path,
            reason,
            attempt + 1,
            policy.retries,
            delay,
        )
        attempt += 1
        yield Sleep(delay)
