"""Typed exceptions, one per code of the server's error catalogue (crates/belfry/src/protocol.rs,
`ErrorCode`; docs/protocol.md lists them). A test compares `ERROR_CODES` with the server's list.

Every error body is `{"error": {"code", "message", "fields"?}}`; `error_from_response` turns one
into the matching exception. A body that is not Belfry's (a proxy's 502 page) becomes
`UnexpectedResponse`.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from typing import Any, ClassVar


class BelfryError(Exception):
    """Base of every error this package raises."""


class BelfryConnectionError(BelfryError):
    """Belfry could not be reached (connection refused, reset, timed out), retries included."""


class ApiError(BelfryError):
    """The server answered with an error body. `code` is the catalogue's wire text."""

    code: ClassVar[str] = ""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        fields: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.fields: dict[str, str] = dict(fields or {})
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.code or 'error'} ({self.status}): {self.message}"


class BadRequest(ApiError):
    """Malformed JSON, wrong types, unknown fields (400)."""

    code = "bad_request"


class ValidationError(ApiError):
    """Well-formed but invalid values (422); `fields` maps each field to its problem."""

    code = "validation"


class Unauthorized(ApiError):
    """Missing, invalid or expired credentials: for the backend API, a wrong API key (401)."""

    code = "unauthorized"


class Forbidden(ApiError):
    """Valid credentials that may not do this (403)."""

    code = "forbidden"


class NotFound(ApiError):
    """No such resource or route (404)."""

    code = "not_found"


class Conflict(ApiError):
    """An idempotency key reused with a different request (409)."""

    code = "conflict"


class MethodNotAllowed(ApiError):
    """The route does not serve this HTTP method (405)."""

    code = "method_not_allowed"


class RequestTimeout(ApiError):
    """The request's body did not arrive within the server's body read timeout (408)."""

    code = "request_timeout"


class PayloadTooLarge(ApiError):
    """A body or message over the server's limit (413)."""

    code = "payload_too_large"


class RateLimited(ApiError):
    """Slow down (429); `retry_after` is the server's `Retry-After` in seconds."""

    code = "rate_limited"


class LimitExceeded(ApiError):
    """A configured bound was reached (429)."""

    code = "limit_exceeded"


class Unavailable(ApiError):
    """The server's database is unreachable; nothing was stored (503)."""

    code = "unavailable"


class Internal(ApiError):
    """A server bug; details are in the server's log (500)."""

    code = "internal"


class BadFrame(ApiError):
    """A WebSocket frame the server does not know (live connections only)."""

    code = "bad_frame"


class UnexpectedResponse(ApiError):
    """An error answer without Belfry's error body (a proxy in between, an unknown code)."""

    code = ""


#: The catalogue, in the server's order (`ErrorCode::ALL`).
ERROR_CODES: dict[str, type[ApiError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        ValidationError,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        MethodNotAllowed,
        RequestTimeout,
        PayloadTooLarge,
        RateLimited,
        LimitExceeded,
        Unavailable,
        Internal,
        BadFrame,
    )
}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date; `None` if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            at = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = at.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> ApiError:
    """The exception for an error answer."""
    retry_after = parse_retry_after(headers.get("retry-after"))
    detail: Any = None
    try:
        detail = json.loads(body).get("error") if body else None
    except (ValueError, AttributeError):
        detail = None
    if not isinstance(detail, dict) or not isinstance(detail.get("code"), str):
        text = body[:200].decode("utf-8", "replace").strip()
        return UnexpectedResponse(
            f"HTTP {status}: {text or 'no body'}", status=status, retry_after=retry_after
        )
    cls = ERROR_CODES.get(detail["code"], UnexpectedResponse)
    raw_fields = detail.get("fields")
    fields = (
        {str(k): str(v) for k, v in raw_fields.items()} if isinstance(raw_fields, dict) else None
    )
    message = str(detail.get("message", ""))
    if cls is UnexpectedResponse:
        message = f"{detail['code']}: {message}"
    return cls(message, status=status, fields=fields, retry_after=retry_after)
