//! Extractors: JSON and query parsing with Belfry's error bodies, and the two principals
//! (a backend holding an API key, a user holding a JWT).

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::app::AppState;
use crate::auth::{AuthError, User};
use crate::json::Object;

/// `axum::Json` whose rejection is an [`ApiError`] body, and which accepts a JSON object only
/// (see [`crate::json`]).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(Object(value)) =
            axum::Json::<Object<T>>::from_request(request, state).await?;
        Ok(ApiJson(value))
    }
}

/// `axum::extract::Path` whose rejection is an [`ApiError`] body (a segment that is not UTF-8).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query` whose rejection is an [`ApiError`] body.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A caller holding a valid backend API key.
pub struct Backend;

impl FromRequestParts<AppState> for Backend {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = bearer(parts).ok_or(AuthError::Missing)?;
        state.auth.check_api_key(key)?;
        state.rate_limits.api_key(key)?;
        Ok(Backend)
    }
}

#[derive(Deserialize)]
struct TokenParam {
    token: Option<String>,
}

fn query_token(parts: &Parts) -> Option<String> {
    Query::<TokenParam>::try_from_uri(&parts.uri)
        .ok()
        .and_then(|q| q.0.token)
}

/// A user authenticated by a JWT in `Authorization: Bearer`. A `?token=` is refused with a 401
/// saying to use the header: tokens in URLs end up in proxy logs and browser history, so only
/// the routes a browser cannot give a header (EventSource: [`EventSourceUser`]; the WebSocket
/// handshake) take one.
pub struct CurrentUser(pub User);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if query_token(parts).is_some() {
            return Err(AuthError::TokenInQuery.into());
        }
        let token = bearer(parts).ok_or(AuthError::Missing)?;
        Ok(CurrentUser(state.auth.verify(token).await?))
    }
}

/// A user authenticated by `Authorization: Bearer` or, because `EventSource` cannot send
/// headers, by `?token=` (the header wins when both are given).
pub struct EventSourceUser(pub User);

impl FromRequestParts<AppState> for EventSourceUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = match bearer(parts) {
            Some(token) => token.to_owned(),
            None => query_token(parts).ok_or(AuthError::Missing)?,
        };
        Ok(EventSourceUser(state.auth.verify(&token).await?))
    }
}
