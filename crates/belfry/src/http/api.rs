//! Backend API: `POST /v1/notifications` and its batch form. Handlers parse, call the notifier
//! and shape the answer; nothing else.

use std::collections::{BTreeMap, HashSet};

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{ApiJson, Backend};
use crate::app::AppState;
use crate::config::LimitsConfig;
use crate::model::{Key, NewNotification, NotificationRef, NotificationType, UserId, now};
use crate::store::Inserted;

/// One notification to one or many users.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyRequest {
    /// Recipient user ids (1–1000, duplicates collapsed).
    #[schema(value_type = Vec<RecipientId>, min_items = 1, max_items = 1000)]
    recipients: Vec<String>,
    /// Event type, 1–128 chars of `[A-Za-z0-9._:-]`.
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:-]+$")]
    kind: String,
    /// App data: a JSON object, at most `limits.max_data_bytes` serialised.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Value>,
    /// Optional grouping key.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1f\\x7f]+$")]
    group_key: Option<String>,
    /// Optional idempotency key: a repeat within the window creates nothing.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1f\\x7f]+$")]
    idempotency_key: Option<String>,
    /// Optional expiry (RFC 3339). Must be in the future: a time in the past is a 422.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<OffsetDateTime>,
}

/// A user id: 1–128 characters, no whitespace or control characters.
#[derive(ToSchema)]
#[schema(value_type = String, min_length = 1, max_length = 128, pattern = "^[^\\s\\x00-\\x1f\\x7f]+$")]
#[allow(dead_code)]
struct RecipientId(String);

/// Many notifications, stored all or nothing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The notifications.
    #[schema(min_items = 1, max_items = 1000)]
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

fn field(fields: &mut BTreeMap<String, String>, prefix: &str, name: &str, problem: impl ToString) {
    fields.insert(format!("{prefix}{name}"), problem.to_string());
}

/// Turns a request into a [`NewNotification`], or records every problem under `prefix`.
fn validate(
    request: NotifyRequest,
    limits: &LimitsConfig,
    prefix: &str,
    fields: &mut BTreeMap<String, String>,
) -> Option<NewNotification> {
    let before = fields.len();
    let mut seen = HashSet::new();
    let mut recipients = Vec::with_capacity(request.recipients.len());
    if request.recipients.is_empty() {
        field(fields, prefix, "recipients", "must not be empty");
    } else if request.recipients.len() > limits.max_recipients {
        field(
            fields,
            prefix,
            "recipients",
            format!("at most {} recipients", limits.max_recipients),
        );
    }
    for (i, raw) in request.recipients.into_iter().enumerate() {
        match UserId::parse(raw) {
            Ok(user) => {
                if seen.insert(user.clone()) {
                    recipients.push(user);
                }
            }
            Err(e) => field(fields, prefix, &format!("recipients[{i}]"), e),
        }
    }
    let kind = NotificationType::parse(request.kind)
        .map_err(|e| field(fields, prefix, "type", e))
        .ok();
    let data = request
        .data
        .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
    if !data.is_object() {
        field(fields, prefix, "data", "must be a JSON object");
    } else {
        let size = data.to_string().len();
        if size > limits.max_data_bytes {
            field(
                fields,
                prefix,
                "data",
                format!("is {size} bytes; at most {} allowed", limits.max_data_bytes),
            );
        }
    }
    let group_key = request
        .group_key
        .map(Key::parse)
        .transpose()
        .map_err(|e| field(fields, prefix, "group_key", e))
        .ok()
        .flatten();
    let idempotency_key = request
        .idempotency_key
        .map(Key::parse)
        .transpose()
        .map_err(|e| field(fields, prefix, "idempotency_key", e))
        .ok()
        .flatten();
    if let Some(at) = request.expires_at
        && at <= now()
    {
        field(fields, prefix, "expires_at", "must be in the future");
    }
    if fields.len() != before {
        return None;
    }
    Some(NewNotification {
        recipients,
        kind: kind?,
        data,
        group_key,
        idempotency_key,
        expires_at: request.expires_at,
    })
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
    let total: usize = request
        .notifications
        .iter()
        .map(|n| n.recipients.len())
        .sum();
    if total > limits.max_recipients {
        fields.insert(
            "notifications".into(),
            format!(
                "{total} recipients in all; at most {} per request",
                limits.max_recipients
            ),
        );
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
    axum::extract::Path(room): axum::extract::Path<String>,
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
