"""Belfry for Python backends: a typed client (blocking and asyncio), background sending, and
the tokens browsers present to Belfry. See clients/python/README.md."""

from ._core import Call, RetryPolicy
from .background import Background
from .client import AsyncBelfry, Belfry
from .config import Settings
from .errors import (
    ERROR_CODES,
    ApiError,
    BadFrame,
    BadRequest,
    BelfryConnectionError,
    BelfryError,
    Conflict,
    Forbidden,
    Internal,
    LimitExceeded,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    Unauthorized,
    Unavailable,
    UnexpectedResponse,
    ValidationError,
)
from .models import (
    BatchResult,
    Channels,
    NewNotification,
    NotificationRef,
    NotifyResult,
    Preferences,
    TypeChannels,
)
from .routes import new_idempotency_key
from .tokens import room_token, user_token

__all__ = [
    "ERROR_CODES",
    "ApiError",
    "AsyncBelfry",
    "Background",
    "BadFrame",
    "BadRequest",
    "BatchResult",
    "Belfry",
    "BelfryConnectionError",
    "BelfryError",
    "Call",
    "Channels",
    "Conflict",
    "Forbidden",
    "Internal",
    "LimitExceeded",
    "MethodNotAllowed",
    "NewNotification",
    "NotFound",
    "NotificationRef",
    "NotifyResult",
    "PayloadTooLarge",
    "Preferences",
    "RateLimited",
    "RequestTimeout",
    "RetryPolicy",
    "Settings",
    "TypeChannels",
    "Unauthorized",
    "Unavailable",
    "UnexpectedResponse",
    "ValidationError",
    "new_idempotency_key",
    "room_token",
    "user_token",
]
__version__ = "0.1.0"
