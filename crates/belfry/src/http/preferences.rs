//! Preferences routes: a user's own (`/v1/me/preferences`, user JWT) and any user's for the app
//! backend (`/v1/users/{user_id}/preferences`, API key). Both take and return the same document.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Backend, CurrentUser};
use crate::app::AppState;
use crate::model::UserId;
use crate::preferences::{Preferences, PreferencesInput};

fn document(preferences: Arc<Preferences>) -> axum::Json<Preferences> {
    axum::Json(Arc::unwrap_or_clone(preferences))
}

fn path_user(raw: String) -> Result<UserId, ApiError> {
    UserId::parse(raw)
        .map_err(|e| ApiError::validation(BTreeMap::from([("user_id".to_owned(), e.to_string())])))
}

async fn replace(
    state: &AppState,
    user: &UserId,
    input: PreferencesInput,
) -> Result<axum::Json<Preferences>, ApiError> {
    let preferences = input.parse().map_err(ApiError::validation)?;
    Ok(document(
        state.notifier.set_preferences(user, preferences).await?,
    ))
}

/// The user's preferences (the defaults when never set).
#[utoipa::path(
    get, path = "/v1/me/preferences", tag = "inbox",
    security(("user_jwt" = [])),
    responses(
        (status = 200, body = Preferences),
        (status = 401, body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody),
    )
)]
pub async fn mine(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<axum::Json<Preferences>, ApiError> {
    Ok(document(state.notifier.preferences(&user.id).await?))
}

/// Replaces the user's preferences; every tab of the user gets a `preferences` frame.
#[utoipa::path(
    put, path = "/v1/me/preferences", tag = "inbox",
    request_body = PreferencesInput,
    security(("user_jwt" = [])),
    responses(
        (status = 408, description = "Body not received within http.body_read_timeout_secs", body = super::error::ErrorBody),
        (status = 200, body = Preferences),
        (status = 400, body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody),
    )
)]
pub async fn replace_mine(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(input): ApiJson<PreferencesInput>,
) -> Result<axum::Json<Preferences>, ApiError> {
    replace(&state, &user.id, input).await
}

/// A user's preferences, for the app backend.
#[utoipa::path(
    get, path = "/v1/users/{user_id}/preferences", tag = "backend",
    params(("user_id" = String, Path, description = "User id, 1–128 characters, no whitespace")),
    security(("api_key" = [])),
    responses(
        (status = 200, body = Preferences),
        (status = 401, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody),
    )
)]
pub async fn of_user(
    State(state): State<AppState>,
    _backend: Backend,
    ApiPath(user): ApiPath<String>,
) -> Result<axum::Json<Preferences>, ApiError> {
    let user = path_user(user)?;
    Ok(document(state.notifier.preferences(&user).await?))
}

/// Replaces a user's preferences, for the app backend; the user's tabs get a `preferences` frame.
#[utoipa::path(
    put, path = "/v1/users/{user_id}/preferences", tag = "backend",
    params(("user_id" = String, Path, description = "User id, 1–128 characters, no whitespace")),
    request_body = PreferencesInput,
    security(("api_key" = [])),
    responses(
        (status = 408, description = "Body not received within http.body_read_timeout_secs", body = super::error::ErrorBody),
        (status = 200, body = Preferences),
        (status = 400, body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody),
    )
)]
pub async fn replace_of_user(
    State(state): State<AppState>,
    _backend: Backend,
    ApiPath(user): ApiPath<String>,
    ApiJson(input): ApiJson<PreferencesInput>,
) -> Result<axum::Json<Preferences>, ApiError> {
    let user = path_user(user)?;
    replace(&state, &user, input).await
}
