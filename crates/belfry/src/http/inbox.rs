//! Client API: a user's own inbox (`/v1/me/...`). Every route acts on the token's user only;
//! another user's ids behave as if they did not exist.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery, CurrentUser};
use crate::app::AppState;
use crate::model::{
    Notification, NotificationId, NotificationType, Seq, StateChange, StateVersion,
};
use crate::notifier::StateOutcome;
use crate::store::ListQuery;

/// List filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Page size, 1–100 (default 20).
    limit: Option<u32>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
    /// Only unread notifications.
    unread: Option<bool>,
    /// Only this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// Archived notifications only.
    archived: Option<bool>,
    /// Accepted and ignored (the token may come in the query for EventSource parity).
    #[param(ignore)]
    #[allow(dead_code)]
    token: Option<String>,
}

/// One page of notifications, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page {
    /// The notifications.
    notifications: Vec<Notification>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
    /// Unread count now.
    unread_count: i64,
    /// The user's highest seq: connect live with `since` set to it.
    last_seq: Seq,
    /// The user's state version (see docs/protocol.md, "State versions").
    state_version: StateVersion,
}

/// Unread count.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadCount {
    /// Unread, unarchived, unexpired notifications.
    unread_count: i64,
    /// The user's highest seq.
    last_seq: Seq,
    /// The user's state version (see docs/protocol.md, "State versions").
    state_version: StateVersion,
}

/// Notification ids.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ids {
    /// Notification ids (UUIDs).
    #[schema(value_type = Vec<IdText>, max_items = 1000)]
    ids: Vec<String>,
}

/// A notification id in its text form.
#[derive(ToSchema)]
#[schema(value_type = String, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
#[allow(dead_code)]
struct IdText(String);

/// The result of a state change.
#[derive(Debug, Serialize, ToSchema)]
pub struct Changed {
    /// How many notifications changed.
    changed: u64,
    /// Unread count afterwards.
    unread_count: i64,
}

impl From<StateOutcome> for Changed {
    fn from(o: StateOutcome) -> Self {
        Self {
            changed: o.changed,
            unread_count: o.unread_count,
        }
    }
}

/// A user's notifications, newest first, cursor-paginated.
#[utoipa::path(
    get, path = "/v1/me/notifications", tag = "inbox",
    params(ListParams),
    security(("user_jwt" = [])),
    responses(
        (status = 200, body = Page),
        (status = 400, body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<axum::Json<Page>, ApiError> {
    let mut fields = BTreeMap::new();
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        fields.insert("limit".into(), "must be between 1 and 100".into());
    }
    let before = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => match c.parse::<Seq>() {
            Ok(seq) if seq > 0 => Some(seq),
            _ => {
                fields.insert("cursor".into(), "is not a cursor this server issued".into());
                None
            }
        },
    };
    if let Some(kind) = params.kind.as_deref()
        && let Err(e) = NotificationType::parse(kind)
    {
        fields.insert("type".into(), e.to_string());
    }
    if !fields.is_empty() {
        return Err(ApiError::validation(fields));
    }
    let query = ListQuery {
        before,
        limit,
        unread_only: params.unread.unwrap_or(false),
        kind: params.kind,
        archived: params.archived.unwrap_or(false),
    };
    let notifications = state.store.list(&user.id, &query).await?;
    let counts = state.store.counts(&user.id).await?;
    let next_cursor = (notifications.len() == limit as usize)
        .then(|| notifications.last().map(|n| n.seq.to_string()))
        .flatten();
    Ok(axum::Json(Page {
        notifications,
        next_cursor,
        unread_count: counts.unread,
        last_seq: counts.last_seq,
        state_version: counts.state_version,
    }))
}

/// The user's unread count.
#[utoipa::path(
    get, path = "/v1/me/unread-count", tag = "inbox",
    security(("user_jwt" = [])),
    responses((status = 200, body = UnreadCount), (status = 401, body = super::error::ErrorBody))
)]
pub async fn unread_count(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<axum::Json<UnreadCount>, ApiError> {
    let counts = state.store.counts(&user.id).await?;
    Ok(axum::Json(UnreadCount {
        unread_count: counts.unread,
        last_seq: counts.last_seq,
        state_version: counts.state_version,
    }))
}

fn parse_ids(state: &AppState, ids: &[String]) -> Result<Vec<NotificationId>, ApiError> {
    let max = state.config.limits.max_ids_per_request;
    if ids.len() > max {
        // Refused on the count alone: validating each of a million ids costs what the limit
        // exists to bound.
        return Err(ApiError::validation(BTreeMap::from([(
            "ids".to_owned(),
            format!("{} ids; at most {max} allowed", ids.len()),
        )])));
    }
    let mut fields = BTreeMap::new();
    let mut parsed = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        match NotificationId::parse(id) {
            Ok(id) => parsed.push(id),
            Err(e) => {
                fields.insert(format!("ids[{i}]"), e.to_string());
            }
        }
    }
    if fields.is_empty() {
        Ok(parsed)
    } else {
        Err(ApiError::validation(fields))
    }
}

async fn change(
    state: &AppState,
    user: &CurrentUser,
    ids: &[String],
    change: StateChange,
) -> Result<axum::Json<Changed>, ApiError> {
    let ids = parse_ids(state, ids)?;
    let outcome = state
        .notifier
        .change_state(&user.0.id, &ids, change)
        .await?;
    Ok(axum::Json(outcome.into()))
}

/// Mark notifications read.
#[utoipa::path(post, path = "/v1/me/notifications/read", tag = "inbox", request_body = Ids,
    security(("user_jwt" = [])),
    responses((status = 200, body = Changed), (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody), (status = 408, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn read(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<Ids>,
) -> Result<axum::Json<Changed>, ApiError> {
    change(&state, &user, &body.ids, StateChange::Read).await
}

/// Mark notifications unread.
#[utoipa::path(post, path = "/v1/me/notifications/unread", tag = "inbox", request_body = Ids,
    security(("user_jwt" = [])),
    responses((status = 200, body = Changed), (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody), (status = 408, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn unread(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<Ids>,
) -> Result<axum::Json<Changed>, ApiError> {
    change(&state, &user, &body.ids, StateChange::Unread).await
}

/// Mark notifications seen.
#[utoipa::path(post, path = "/v1/me/notifications/seen", tag = "inbox", request_body = Ids,
    security(("user_jwt" = [])),
    responses((status = 200, body = Changed), (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody), (status = 408, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn seen(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<Ids>,
) -> Result<axum::Json<Changed>, ApiError> {
    change(&state, &user, &body.ids, StateChange::Seen).await
}

/// Archive notifications.
#[utoipa::path(post, path = "/v1/me/notifications/archive", tag = "inbox", request_body = Ids,
    security(("user_jwt" = [])),
    responses((status = 200, body = Changed), (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody), (status = 408, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn archive(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<Ids>,
) -> Result<axum::Json<Changed>, ApiError> {
    change(&state, &user, &body.ids, StateChange::Archived).await
}

/// Mark every notification read.
#[utoipa::path(post, path = "/v1/me/notifications/read-all", tag = "inbox",
    security(("user_jwt" = [])),
    responses((status = 200, body = Changed), (status = 401, body = super::error::ErrorBody)))]
pub async fn read_all(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<axum::Json<Changed>, ApiError> {
    Ok(axum::Json(
        state.notifier.mark_all_read(&user.id).await?.into(),
    ))
}

/// Delete one notification.
#[utoipa::path(delete, path = "/v1/me/notifications/{id}", tag = "inbox",
    params(("id" = String, Path, description = "Notification id")),
    security(("user_jwt" = [])),
    responses((status = 204), (status = 401, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = NotificationId::parse(&id).map_err(|_| ApiError::not_found())?;
    let outcome = state
        .notifier
        .change_state(&user.id, &[id], StateChange::Deleted)
        .await?;
    if outcome.changed == 0 {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}
