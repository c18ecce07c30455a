//! Web Push endpoints: the VAPID public key, and a user's push subscriptions.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{ApiJson, CurrentUser};
use crate::app::AppState;
use crate::protocol::ErrorCode;
use crate::push::{PushError, PushSubscription, Pusher};

impl From<PushError> for ApiError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::Disabled => ApiError::new(ErrorCode::NotFound, e.to_string()),
            PushError::Invalid(problem) => {
                let (field, message) = problem
                    .split_once(": ")
                    .unwrap_or(("subscription", problem));
                ApiError::validation(BTreeMap::from([(field.to_owned(), message.to_owned())]))
            }
            PushError::BadKey(_) => {
                tracing::error!(error = %e, "push misconfigured");
                ApiError::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

fn pusher(state: &AppState) -> Result<&Pusher, ApiError> {
    Ok(state.pusher.as_deref().ok_or(PushError::Disabled)?)
}

/// The VAPID public key.
#[derive(Debug, Serialize, ToSchema)]
pub struct VapidKey {
    /// Base64url, uncompressed P-256 point: pass it as `applicationServerKey`.
    public_key: String,
}

/// The key browsers subscribe with.
#[utoipa::path(get, path = "/v1/push/vapid-public-key", tag = "push",
    responses((status = 200, body = VapidKey), (status = 404, description = "Push is not configured", body = super::error::ErrorBody)))]
pub async fn vapid_public_key(
    State(state): State<AppState>,
) -> Result<axum::Json<VapidKey>, ApiError> {
    Ok(axum::Json(VapidKey {
        public_key: pusher(&state)?.public_key().to_owned(),
    }))
}

/// Save a browser's push subscription for the current user. A user keeps at most
/// `push.max_subscriptions_per_user`: saving one more removes their least recently saved.
#[utoipa::path(post, path = "/v1/me/push-subscriptions", tag = "push",
    request_body = PushSubscription,
    security(("user_jwt" = [])),
    responses(
        (status = 408, description = "Body not received within http.body_read_timeout_secs", body = super::error::ErrorBody),
        (status = 201, description = "Saved"),
        (status = 400, body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 404, description = "Push is not configured", body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody),
    ))]
pub async fn subscribe(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(subscription): ApiJson<PushSubscription>,
) -> Result<StatusCode, ApiError> {
    let pusher = pusher(&state)?;
    pusher.validate(&subscription)?;
    let removed = state
        .store
        .add_push_subscription(&user.id, &subscription, pusher.max_subscriptions_per_user())
        .await?;
    if removed > 0 {
        tracing::debug!(
            removed,
            "push: least recently saved subscriptions removed (over the cap)"
        );
    }
    Ok(StatusCode::CREATED)
}

/// Which subscription to remove: its endpoint. The whole `PushSubscription` JSON is accepted
/// too (its other fields are ignored), so a browser can send `subscription.toJSON()`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Unsubscribe {
    /// The subscription's endpoint.
    endpoint: String,
}

/// Remove one of the current user's push subscriptions.
#[utoipa::path(delete, path = "/v1/me/push-subscriptions", tag = "push",
    request_body = Unsubscribe,
    security(("user_jwt" = [])),
    responses(
        (status = 408, description = "Body not received within http.body_read_timeout_secs", body = super::error::ErrorBody),
        (status = 204, description = "Removed"),
        (status = 400, body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 422, description = "The endpoint is not a valid push endpoint (control characters, too long)", body = super::error::ErrorBody),
    ))]
pub async fn unsubscribe(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<Unsubscribe>,
) -> Result<StatusCode, ApiError> {
    if body.endpoint.chars().any(char::is_control) {
        return Err(ApiError::validation(BTreeMap::from([(
            "endpoint".to_owned(),
            "must not contain control characters".to_owned(),
        )])));
    }
    if state
        .store
        .remove_push_subscription(Some(&user.id), &body.endpoint)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}
