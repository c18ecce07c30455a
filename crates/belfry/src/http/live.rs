//! Live endpoints: WebSocket upgrade, SSE and long-poll. Each authenticates, then hands over to
//! the session code in `transport`.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::cors::{ForeignOrigin, check_ws_origin};
use super::error::ApiError;
use super::extract::{ApiQuery, CurrentUser, EventSourceUser};
use crate::app::AppState;
use crate::model::{Notification, Seq, StateVersion};
use crate::protocol::{CloseCode, ErrorCode, VERSION};
use crate::transport::ws::{Inbound, Outbound, Params};
use crate::transport::{self, Feed};

/// WebSocket query parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WsParams {
    /// The user's JWT (or send an `auth` frame first).
    token: Option<String>,
    /// Resume after this seq.
    since: Option<Seq>,
    /// Protocol version (1).
    v: Option<u32>,
}

/// Open a WebSocket (protocol in docs/protocol.md).
#[utoipa::path(get, path = "/v1/ws", tag = "live", params(WsParams),
    responses((status = 101, description = "Switching protocols"), (status = 400, body = super::error::ErrorBody),
        (status = 403, description = "The page's `Origin` is not in `ws.allowed_origins`", body = super::error::ErrorBody)))]
pub async fn ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<WsParams>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // Browsers send any page's cookies and let any page open a WebSocket: the Origin check is
    // what keeps a foreign page from using one (with a token it obtained elsewhere, or against
    // a deployment that authenticates by network position).
    if let Err(ForeignOrigin(origin)) =
        check_ws_origin(&headers, &state.config.ws, &state.config.http)
    {
        tracing::warn!(%origin, "websocket handshake from a foreign origin refused");
        let message = format!(
            "origin {origin} may not open a WebSocket; add it to ws.allowed_origins (or http.cors_allowed_origins)"
        );
        return ApiError::new(ErrorCode::Forbidden, message).into_response();
    }
    // A request that is no WebSocket handshake gets the same JSON error body as every other.
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let message = format!("not a WebSocket handshake: {}", rejection.body_text());
            return ApiError::new(ErrorCode::BadRequest, message).into_response();
        }
    };
    let supported = params.v.is_none_or(|v| v == VERSION);
    let tasks = state.tasks.clone();
    configure(upgrade, &state).on_upgrade(move |socket| {
        tasks.track_future(async move {
            if !supported {
                close_with(socket, CloseCode::UnsupportedVersion).await;
                return;
            }
            let params = Params {
                token: params.token,
                since: params.since,
            };
            let (sink, stream) = socket.split();
            let sink = sink.with(|out: Outbound| async move {
                Ok::<_, axum::Error>(match out {
                    Outbound::Text(text) => Message::Text((&*text).into()),
                    Outbound::Ping => Message::Ping(Bytes::new()),
                    Outbound::Close(code, reason) => close_message(code, &reason),
                })
            });
            let stream = stream.map(|message| match message {
                Ok(Message::Text(text)) => Inbound::Text(text.to_string()),
                Ok(Message::Close(_)) => Inbound::Closed,
                Ok(_) => Inbound::Activity,
                Err(e) if is_capacity_error(&e) => Inbound::TooBig,
                Err(_) => Inbound::Closed,
            });
            transport::ws::run(state, params, Box::pin(sink), Box::pin(stream)).await;
        })
    })
}

/// The socket settings of every WebSocket this server accepts (`/v1/ws`, and the conformance
/// echo): buffer sizes and frame limits.
pub(super) fn configure(upgrade: WebSocketUpgrade, state: &AppState) -> WebSocketUpgrade {
    let max = state.config.ws.max_frame_bytes;
    // Small buffers: tungstenite's defaults (128 KiB read buffer, zero-filled) made every idle
    // connection cost ~130 KiB of RSS; 4 KiB brings it to ~11 KiB (docs/benchmarks.md).
    upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(max.saturating_mul(2).max(1024))
        .max_frame_size(max.saturating_mul(2).max(1024))
}

fn close_message(code: CloseCode, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.code(),
        reason: reason.into(),
    }))
}

async fn close_with(mut socket: WebSocket, code: CloseCode) {
    let _ = socket.send(close_message(code, code.reason())).await;
}

fn is_capacity_error(e: &axum::Error) -> bool {
    let text = e.to_string();
    text.contains("Space limit exceeded") || text.contains("too long") || text.contains("Capacity")
}

/// SSE query parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SseParams {
    /// The user's JWT (EventSource cannot set headers).
    #[allow(dead_code)]
    token: Option<String>,
    /// Resume after this seq (`Last-Event-ID` wins when present).
    since: Option<Seq>,
}

/// Server-Sent Events stream of the same frames as the WebSocket.
#[utoipa::path(get, path = "/v1/sse", tag = "live", params(SseParams),
    security(("user_jwt" = [])),
    responses((status = 200, description = "text/event-stream"), (status = 401, body = super::error::ErrorBody)))]
pub async fn sse(
    State(state): State<AppState>,
    EventSourceUser(user): EventSourceUser,
    ApiQuery(params): ApiQuery<SseParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let since = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<Seq>().ok())
                .ok_or_else(|| {
                    ApiError::new(ErrorCode::BadRequest, "Last-Event-ID must be a seq")
                })?,
        ),
        None => params.since,
    };
    let heartbeat = Duration::from_secs(state.config.ws.heartbeat_interval_secs);
    let (feed, hello) = Feed::open(&state, &user.id, since).await?;
    let stream = transport::sse::stream(state, user.expires_at, feed, hello);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(heartbeat).text("ping"))
        .into_response())
}

/// Long-poll parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PollParams {
    /// Return notifications with a greater seq (default 0).
    after: Option<Seq>,
    /// Seconds to wait when there is nothing yet (default 25, at most `poll.max_timeout_secs`),
    /// and never past the token's `exp` (then 401 "token expired at …").
    timeout: Option<u64>,
    /// The `state_version` of the previous answer: a read-state or preferences change beyond
    /// it (from any tab or node) answers at once too.
    state_version: Option<StateVersion>,
}

/// A long-poll answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PollResponse {
    /// New notifications, oldest first (at most 100).
    notifications: Vec<Notification>,
    /// Pass as `after` next time.
    last_seq: Seq,
    /// Unread count now.
    unread_count: i64,
    /// The user's state version now; pass it as `state_version` next time.
    state_version: StateVersion,
}

/// Wait for notifications after a seq.
#[utoipa::path(get, path = "/v1/poll", tag = "live", params(PollParams),
    security(("user_jwt" = [])),
    responses((status = 200, body = PollResponse), (status = 401, body = super::error::ErrorBody)))]
pub async fn poll(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiQuery(params): ApiQuery<PollParams>,
) -> Result<axum::Json<PollResponse>, ApiError> {
    let max = state.config.poll.max_timeout_secs;
    let timeout = params
        .timeout
        .unwrap_or(state.config.poll.default_timeout_secs);
    if timeout > max {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("timeout".into(), format!("at most {max} seconds"));
        return Err(ApiError::validation(fields));
    }
    let outcome = transport::poll::poll(
        &state,
        &user,
        params.after.unwrap_or(0).max(0),
        params.state_version,
        Duration::from_secs(timeout),
    )
    .await?;
    Ok(axum::Json(PollResponse {
        notifications: outcome.notifications,
        last_seq: outcome.last_seq,
        unread_count: outcome.unread_count,
        state_version: outcome.state_version,
    }))
}
