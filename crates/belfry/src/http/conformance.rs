//! `/v1/ws/echo`, served only with `ws.echo_endpoint = true`: an unauthenticated WebSocket that
//! echoes every text and binary message, for the Autobahn conformance cases
//! (`scripts/hardening.sh`). It uses the same socket settings as `/v1/ws` ([`super::live`]),
//! so the cases exercise the framing, UTF-8 checks, fragmentation, control frames and closing
//! handshake that real clients get; Belfry's own frames and limits are tested elsewhere.

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;

use crate::app::AppState;

/// Echoes messages until the peer closes. Tracked like every session, so shutdown waits for it.
pub async fn echo(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    let tasks = state.tasks.clone();
    let stop = state.shutdown.clone();
    super::live::configure(upgrade, &state).on_upgrade(move |socket| {
        tasks.track_future(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = echo_until_closed(socket) => {}
            }
        })
    })
}

async fn echo_until_closed(mut socket: WebSocket) {
    // Pings are answered and closes replied to inside tungstenite; keep reading until it
    // reports the end, so its reply to a close frame is written before the socket drops.
    while let Some(Ok(message)) = socket.recv().await {
        if matches!(message, Message::Text(_) | Message::Binary(_))
            && socket.send(message).await.is_err()
        {
            return;
        }
    }
}
