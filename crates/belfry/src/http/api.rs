//! Backend API: `POST /v1/notifications` and its batch form. Handlers parse, call the notifier
//! and shape the answer; nothing else.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Backend};
use crate::app::AppState;
use crate::intake::{NotifyRequest, validate};
use crate::model::NotificationRef;
use crate::store::Inserted;

/// Many notifications, stored all or nothing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The notifications.
    #[schema(min_items = 1, max_items = 1000)]
    #[serde(deserialize_with = "crate::json::objects")]
    notifications: Vec<NotifyRequest>,
}

/// Where the notifications of one request were stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotifyResponse {
    /// One entry per recipient.
    notifications: Vec<NotificationRef>,
    /// True when an earlier request with the same idempotency key was replayed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replayed: bool,
}

/// One entry per batch item, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// Results.
    results: Vec<NotifyResponse>,
}

fn respond(inserted: Inserted) -> NotifyResponse {
    NotifyResponse {
        notifications: inserted.refs(),
        replayed: matches!(inserted, Inserted::Replayed(_)),
    }
}

/// Notify one or many users.
#[utoipa::path(
    post, path = "/v1/notifications", tag = "backend",
    request_body = NotifyRequest,
    security(("api_key" = [])),
    responses(
        (status = 408, description = "Body not received within http.body_read_timeout_secs", body = super::error::ErrorBody),
        (status = 201, description = "Stored", body = NotifyResponse),
        (status = 200, description = "Idempotent replay of an earlier request", body = NotifyResponse),
        (status = 400, description = "Malformed body", body = super::error::ErrorBody),
        (status = 401, description = "Bad API key", body = super::error::ErrorBody),
        (status = 409, description = "Idempotency key reused", body = super::error::ErrorBody),
        (status = 413, description = "Body too large", body = super::error::ErrorBody),
        (status = 422, description = "Invalid values", body = super::error::ErrorBody),
        (status = 429, description = "Rate limited; see Retry-After", body = super::error::ErrorBody),
        (status = 503, description = "Database unavailable; nothing stored", body = super::error::ErrorBody),
    )
)]
pub async fn notify(
    State(state): State<AppState>,
    _backend: Backend,
    ApiJson(request): ApiJson<NotifyRequest>,
) -> Result<Response, ApiError> {
    let mut fields = BTreeMap::new();
    let Some(new) = validate(request, &state.config.limits, "", &mut fields) else {
        return Err(ApiError::validation(fields));
    };
    state.rate_limits.recipients(&new.recipients)?;
    let inserted = state
        .notifier
        .notify(vec![new])
        .await?
        .pop()
        .ok_or_else(|| ApiError::new(crate::protocol::ErrorCode::Internal, "internal error"))?;
    let replayed = matches!(inserted, Inserted::Replayed(_));
    let body = axum::Json(respond(inserted));
    Ok(if replayed {
        (
            StatusCode::OK,
            [(
                HeaderName::from_static("idempotent-replayed"),
                HeaderValue::from_static("true"),
            )],
            body,
        )
            .into_response()
    } else {
        (StatusCode::CREATED, body).into_response()
    })
}

/// Store many notifications at once, all or nothing.
#[utoipa::path(
    post, path = "/v1/notifications/batch", tag = "backend",
    request_body = BatchRequest,
    security(("api_key" = [])),
    responses(
        (status = 408, description = "Body not received within http.body_read_timeout_secs", body = super::error::ErrorBody),
        (status = 201, description = "Stored", body = BatchResponse),
        (status = 400, description = "Malformed body", body = super::error::ErrorBody),
        (status = 401, description = "Bad API key", body = super::error::ErrorBody),
        (status = 409, description = "Idempotency key reused", body = super::error::ErrorBody),
        (status = 422, description = "Invalid values; nothing stored", body = super::error::ErrorBody),
        (status = 429, description = "Rate limited; see Retry-After", body = super::error::ErrorBody),
        (status = 503, description = "Database unavailable; nothing stored", body = super::error::ErrorBody),
    )
)]
pub async fn batch(
    State(state): State<AppState>,
    _backend: Backend,
    ApiJson(request): ApiJson<BatchRequest>,
) -> Result<(StatusCode, axum::Json<BatchResponse>), ApiError> {
    let limits = &state.config.limits;
    let mut fields = BTreeMap::new();
    if request.notifications.is_empty() {
        fields.insert("notifications".into(), "must not be empty".into());
    }
    // Counts are refused before any item is validated. Each valid item has a recipient, so more
    // items than `max_recipients` cannot be valid either.
    let max = limits.max_recipients;
    let items = request.notifications.len();
    let total: usize = request
        .notifications
        .iter()
        .map(|n| n.recipients.len())
        .sum();
    if items > max || total > max {
        let problem = if items > max {
            format!("{items} notifications; at most {max} per request")
        } else {
            format!("{total} recipients in all; at most {max} per request")
        };
        return Err(ApiError::validation(BTreeMap::from([(
            "notifications".to_owned(),
            problem,
        )])));
    }
    let mut batch = Vec::with_capacity(request.notifications.len());
    for (i, item) in request.notifications.into_iter().enumerate() {
        if let Some(new) = validate(item, limits, &format!("notifications[{i}]."), &mut fields) {
            batch.push(new);
        }
    }
    if !fields.is_empty() {
        return Err(ApiError::validation(fields));
    }
    state
        .rate_limits
        .recipients(batch.iter().flat_map(|n| &n.recipients))?;
    let results = state.notifier.notify(batch).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(BatchResponse {
            results: results.into_iter().map(respond).collect(),
        }),
    ))
}

/// A message from the app backend to a room.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoomMessageRequest {
    /// The message: any JSON value, at most `rooms.max_message_bytes` serialised.
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

/// Send a message to every member of a room, on every node.
#[utoipa::path(
    post, path = "/v1/rooms/{room}/messages", tag = "backend",
    params(("room" = String, Path, description = "Room name, 1–128 chars of [A-Za-z0-9._:-]")),
    request_body = RoomMessageRequest,
    security(("api_key" = [])),
    responses(
        (status = 408, description = "Body not received within http.body_read_timeout_secs", body = super::error::ErrorBody),
        (status = 202, description = "Sent to the members connected now (rooms keep no history)"),
        (status = 400, description = "Malformed body", body = super::error::ErrorBody),
        (status = 401, description = "Bad API key", body = super::error::ErrorBody),
        (status = 413, description = "Message too large", body = super::error::ErrorBody),
        (status = 422, description = "Bad room name", body = super::error::ErrorBody),
    )
)]
pub async fn room_message(
    State(state): State<AppState>,
    _backend: Backend,
    ApiPath(room): ApiPath<String>,
    ApiJson(request): ApiJson<RoomMessageRequest>,
) -> Result<StatusCode, ApiError> {
    let room = crate::model::RoomName::parse(room)
        .map_err(|e| ApiError::validation(BTreeMap::from([("room".to_owned(), e.to_string())])))?;
    crate::rooms::check_size(&request.data, state.config.rooms.max_message_bytes)
        .map_err(|e| ApiError::new(e.code, e.message))?;
    let event = crate::rooms::message_event(&room, None, &request.data);
    crate::rooms::broadcast(&state.hub, &state.broker, &room, event, None).await;
    Ok(StatusCode::ACCEPTED)
}
