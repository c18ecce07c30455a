//! The one place where errors become HTTP responses. Every error body is
//! `{"error":{"code","message","fields"?}}`; internal details are logged, never returned.

use std::collections::BTreeMap;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthError;
use crate::protocol::ErrorCode;
use crate::ratelimit::Limited;
use crate::store::StoreError;
use crate::transport::OpenError;
use crate::transport::poll::PollError;

/// Most entries of `fields` in one error body; the message gives the full count.
pub(crate) const MAX_LISTED_FIELDS: usize = 20;

/// Marks a response refused because the store was unavailable (counted in metrics).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unavailable;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    fields: BTreeMap<String, String>,
    retry_after: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// The error object of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// Machine-readable code (see docs/protocol.md).
    #[schema(value_type = String)]
    code: ErrorCode,
    /// Human-readable explanation.
    message: String,
    /// Per-field problems, for `validation`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    fields: BTreeMap<String, String>,
}

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            fields: BTreeMap::new(),
            retry_after: None,
        }
    }

    /// A 422 naming the fields at fault: the first [`MAX_LISTED_FIELDS`] of them (in key order),
    /// so the answer stays small however many a request got wrong.
    pub fn validation(fields: BTreeMap<String, String>) -> Self {
        let message = match fields.iter().next() {
            Some((field, problem)) if fields.len() == 1 => format!("{field}: {problem}"),
            _ if fields.len() > MAX_LISTED_FIELDS => format!(
                "{} fields are invalid; the first {MAX_LISTED_FIELDS} are listed",
                fields.len()
            ),
            _ => format!("{} fields are invalid", fields.len()),
        };
        Self {
            code: ErrorCode::Validation,
            message,
            fields: fields.into_iter().take(MAX_LISTED_FIELDS).collect(),
            retry_after: None,
        }
    }

    /// 404.
    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "not found")
    }

    fn status_code(&self) -> StatusCode {
        match self.code {
            ErrorCode::BadRequest | ErrorCode::BadFrame => StatusCode::BAD_REQUEST,
            ErrorCode::Validation => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited | ErrorCode::LimitExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                fields: self.fields,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.extensions_mut().insert(Unavailable);
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::IdempotencyConflict(key) => Self::new(
                ErrorCode::Conflict,
                format!("idempotency_key `{key}` was already used for a different request"),
            ),
            StoreError::Unavailable(_) | StoreError::Closed => {
                tracing::warn!(error = %e, "store unavailable");
                Self::new(
                    ErrorCode::Unavailable,
                    "the database is unavailable; nothing was stored",
                )
            }
            StoreError::Rejected(_) => {
                // The edge validates every text input; reaching here means it missed one.
                tracing::warn!(error = %e, "the store refused a value validation let through");
                Self::new(
                    ErrorCode::BadRequest,
                    "the request holds a value that cannot be stored (such as a NUL character)",
                )
            }
            StoreError::Bug(_) | StoreError::Corrupt(_) | StoreError::Migrate(_) => {
                tracing::error!(error = %e, "store failure");
                Self::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

impl From<Limited> for ApiError {
    fn from(limited: Limited) -> Self {
        let secs = limited.retry_after.as_secs_f64().ceil() as u64;
        Self {
            retry_after: Some(secs.max(1)),
            ..Self::new(
                ErrorCode::RateLimited,
                format!("rate limit reached for {}; retry in {secs} s", limited.what),
            )
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Config(_) => {
                tracing::error!(error = %e, "auth misconfigured");
                Self::new(ErrorCode::Internal, "internal error")
            }
            other => Self::new(ErrorCode::Unauthorized, other.to_string()),
        }
    }
}

impl From<OpenError> for ApiError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Register(r) => Self::new(ErrorCode::RateLimited, r.to_string()),
            OpenError::Store(s) => s.into(),
        }
    }
}

impl From<PollError> for ApiError {
    fn from(e: PollError) -> Self {
        match e {
            PollError::Register(r) => Self::new(ErrorCode::RateLimited, r.to_string()),
            PollError::Store(s) => s.into(),
            PollError::Expired(e) => AuthError::Token(e).into(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let timed_out = std::iter::successors(
            Some(&rejection as &(dyn std::error::Error + 'static)),
            |e| e.source(),
        )
        .any(|e| e.is::<crate::listener::BodyTimeout>());
        if timed_out {
            return Self::new(
                ErrorCode::RequestTimeout,
                "the request body did not arrive in time",
            );
        }
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(ErrorCode::PayloadTooLarge, "request body is too large");
        }
        if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            return Self::new(
                ErrorCode::BadRequest,
                "expected `Content-Type: application/json`",
            );
        }
        let message = match rejection {
            JsonRejection::JsonDataError(e) => e.body_text(),
            JsonRejection::JsonSyntaxError(e) => e.body_text(),
            other => other.body_text(),
        };
        Self::new(ErrorCode::BadRequest, message)
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(ErrorCode::BadRequest, rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(ErrorCode::BadRequest, rejection.body_text())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn status(e: StoreError) -> StatusCode {
        ApiError::from(e).into_response().status()
    }

    #[test]
    fn only_an_unreachable_store_is_a_503() {
        let error = || Arc::new(sqlx::Error::Protocol("test".into()));
        assert_eq!(status(StoreError::Unavailable(error())), 503);
        assert_eq!(status(StoreError::Closed), 503);
        assert_eq!(status(StoreError::Rejected(error())), 400);
        assert_eq!(status(StoreError::Bug(error())), 500);
        assert_eq!(status(StoreError::Corrupt("row".into())), 500);
    }
}
