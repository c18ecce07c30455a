//! The WebSocket session: authenticate, send `hello`, then interleave the feed, client frames,
//! heartbeats and shutdown until the connection ends.
//!
//! The loop is generic over a `Sink<Outbound>` and a `Stream<Item = Inbound>`, so it does not
//! depend on axum; `http::live` adapts the real socket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{Sink, SinkExt, Stream, StreamExt};

use crate::app::AppState;
use crate::auth::{TokenError, User, expiry_deadline};
use crate::model::{NotificationId, Seq, StateChange, UserId};
use crate::protocol::{ClientFrame, CloseCode, ErrorCode, Event, ServerFrame};
use crate::rooms::Memberships;
use crate::transport::budget::FrameBudget;
use crate::transport::gate::Gated;
use crate::transport::{Feed, OpenError};

/// Longest a single socket write may take before the connection is given up as dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the peer's reply to our close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// What the session reads from the socket.
#[derive(Debug)]
pub enum Inbound {
    /// A text frame.
    Text(String),
    /// Any sign of life that is not a text frame (pong, ping, binary).
    Activity,
    /// A frame larger than allowed.
    TooBig,
    /// The peer closed or the socket failed.
    Closed,
}

/// What the session writes to the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A text frame.
    Text(Arc<str>),
    /// A WebSocket ping.
    Ping,
    /// A close frame with a code from the catalogue and its reason text (at most 123 bytes).
    Close(CloseCode, Arc<str>),
}

/// Longest close reason the WebSocket protocol allows, in bytes (RFC 6455 §5.5).
const MAX_CLOSE_REASON: usize = 123;

/// `text` cut to fit a close frame, at a character boundary.
fn close_reason(text: &str) -> Arc<str> {
    let mut end = text.len().min(MAX_CLOSE_REASON);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Arc::from(&text[..end])
}

/// Connection parameters from the upgrade request.
#[derive(Debug, Default, Clone)]
pub struct Params {
    /// Token from the query string, if any.
    pub token: Option<String>,
    /// Resume point from the query string, if any.
    pub since: Option<Seq>,
}

enum Stop {
    Close(CloseCode),
    /// The token was refused or expired: an `error` frame with the reason, then 4001 with it.
    Unauthorized(String),
    Gone,
}

/// Runs one WebSocket session to its end.
pub async fn run<S, R>(state: AppState, params: Params, mut sink: S, stream: R)
where
    S: Sink<Outbound> + Unpin + Send,
    R: Stream<Item = Inbound> + Unpin + Send,
{
    // The loop below wakes for every frame it sends; gated, the socket's read half is polled
    // only when it has something (see `gate`).
    let mut stream = Gated::new(stream);
    let outcome = session(&state, params, &mut sink, &mut stream).await;
    let close = match outcome {
        Stop::Gone => None,
        Stop::Close(code) => Some(Outbound::Close(code, Arc::from(code.reason()))),
        Stop::Unauthorized(message) => {
            let frame = error_frame(None, ErrorCode::Unauthorized, &message);
            let _ = send(&mut sink, Outbound::Text(frame.json)).await;
            Some(Outbound::Close(
                CloseCode::Unauthorized,
                close_reason(&message),
            ))
        }
    };
    if let Some(close) = close {
        let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.send(close)).await;
        // The closing handshake: read (and drop) until the peer's close, briefly. Closing the
        // socket with its frames unread would make the kernel reset the connection, and the
        // client could lose our close frame (a flooding client, closed with 4011, would).
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            while let Some(inbound) = stream.next().await {
                if matches!(inbound, Inbound::Closed) {
                    break;
                }
            }
        })
        .await;
    }
    let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
}

async fn session<S, R>(state: &AppState, params: Params, sink: &mut S, stream: &mut R) -> Stop
where
    S: Sink<Outbound> + Unpin + Send,
    R: Stream<Item = Inbound> + Unpin + Send,
{
    let max_frame = state.config.ws.max_frame_bytes;
    let budget = FrameBudget::new(&state.config.ws);
    let (user, since) = match authenticate(state, params, stream, max_frame, &budget).await {
        Ok(found) => found,
        Err(stop) => return stop,
    };
    let heartbeat = Duration::from_secs(state.config.ws.heartbeat_interval_secs);
    let (mut feed, hello) = match Feed::open(state, &user.id, since).await {
        Ok(opened) => opened,
        Err(OpenError::Register(_)) => {
            return Stop::Close(CloseCode::TooManyConnections);
        }
        Err(OpenError::Store(e)) => {
            tracing::warn!(error = %e, "cannot open feed");
            return Stop::Close(CloseCode::Internal);
        }
    };
    if !send(sink, Outbound::Text(hello.json)).await {
        return Stop::Gone;
    }

    let slow = feed.slow_token();
    let mut user = user;
    // Declared after the feed, so dropped before it: rooms are left while still registered.
    let mut rooms = Memberships::new(state, &user.id, feed.conn_id());
    let mut last_heard = Instant::now();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    // Made once, not per iteration: each fresh `cancelled()` registers with (and each drop
    // unregisters from) its token, and each fresh `sleep` adds and removes a timer entry, for
    // every frame sent.
    let shutdown = state.shutdown.cancelled();
    let slowed = slow.cancelled();
    // Frames a client frame causes besides its reply (rooms left on a narrower refresh).
    let mut notices: Vec<Event> = Vec::new();
    let mut expires_at = user.expires_at;
    let expired = tokio::time::sleep_until(expiry_deadline(expires_at));
    tokio::pin!(shutdown, slowed, expired);
    loop {
        if user.expires_at != expires_at {
            expires_at = user.expires_at;
            expired.as_mut().reset(expiry_deadline(expires_at));
        }
        tokio::select! {
            biased;
            () = &mut shutdown => return Stop::Close(CloseCode::Shutdown),
            () = &mut slowed => return Stop::Close(CloseCode::Slow),
            () = &mut expired => {
                return Stop::Unauthorized(TokenError::expired_now(expires_at).to_string());
            }
            inbound = stream.next() => {
                last_heard = Instant::now();
                let text = match inbound {
                    None | Some(Inbound::Closed) => return Stop::Gone,
                    Some(_) if !budget.admit() => return Stop::Close(CloseCode::TooManyFrames),
                    Some(Inbound::TooBig) => return Stop::Close(CloseCode::MessageTooBig),
                    Some(Inbound::Activity) => continue,
                    Some(Inbound::Text(text)) => text,
                };
                if text.len() > max_frame {
                    return Stop::Close(CloseCode::MessageTooBig);
                }
                let reply = handle_frame(state, &mut user, &mut rooms, &text, &mut notices).await;
                for notice in notices.drain(..).chain(reply) {
                    if !send(sink, Outbound::Text(notice.json)).await {
                        return Stop::Gone;
                    }
                }
            }
            event = feed.next() => match event {
                Ok(Some(event)) => {
                    let is_notification = event.seq.is_some();
                    if !send(sink, Outbound::Text(Arc::clone(&event.json))).await {
                        return Stop::Gone;
                    }
                    if is_notification {
                        record_delivery(state, &event);
                    }
                }
                Ok(None) => return Stop::Close(CloseCode::Internal),
                Err(e) => {
                    tracing::warn!(error = %e, "feed read failed");
                    return Stop::Close(CloseCode::Internal);
                }
            },
            _ = ticker.tick() => {
                if last_heard.elapsed() > heartbeat * 2 {
                    return Stop::Close(CloseCode::HeartbeatTimeout);
                }
                if !send(sink, Outbound::Ping).await {
                    return Stop::Gone;
                }
            }
        }
    }
}

pub(crate) fn record_delivery(state: &AppState, event: &Event) {
    state.metrics.notifications_delivered.inc();
    if let Some(at) = event.published_at {
        state
            .metrics
            .delivery_latency
            .observe(at.elapsed().as_secs_f64());
    }
}

async fn send<S: Sink<Outbound> + Unpin>(sink: &mut S, frame: Outbound) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, sink.send(frame)).await,
        Ok(Ok(()))
    )
}

async fn authenticate<R>(
    state: &AppState,
    params: Params,
    stream: &mut R,
    max_frame: usize,
    budget: &FrameBudget,
) -> Result<(User, Option<Seq>), Stop>
where
    R: Stream<Item = Inbound> + Unpin + Send,
{
    let (token, since) = match params.token {
        Some(token) => (token, params.since),
        None => {
            // One deadline for the whole wait: pings or pongs do not extend it.
            let deadline = tokio::time::Instant::now()
                + Duration::from_secs(state.config.ws.auth_timeout_secs);
            let first = loop {
                match tokio::time::timeout_at(deadline, stream.next()).await {
                    Err(_) => return Err(Stop::Close(CloseCode::AuthTimeout)),
                    Ok(None | Some(Inbound::Closed)) => return Err(Stop::Gone),
                    Ok(Some(_)) if !budget.admit() => {
                        return Err(Stop::Close(CloseCode::TooManyFrames));
                    }
                    Ok(Some(Inbound::TooBig)) => return Err(Stop::Close(CloseCode::MessageTooBig)),
                    Ok(Some(Inbound::Activity)) => continue,
                    Ok(Some(Inbound::Text(text))) => break text,
                }
            };
            if first.len() > max_frame {
                return Err(Stop::Close(CloseCode::MessageTooBig));
            }
            match ClientFrame::parse(&first) {
                Ok(ClientFrame::Auth { token, since, .. }) => (token, since.or(params.since)),
                _ => return Err(Stop::Close(CloseCode::ProtocolError)),
            }
        }
    };
    match state.auth.verify(&token).await {
        Ok(user) => Ok((user, since)),
        Err(e) => {
            tracing::debug!(reason = %e, "websocket auth refused");
            Err(Stop::Unauthorized(e.to_string()))
        }
    }
}

/// Handles one client frame; returns the reply to send, if any, and pushes onto `notices` the
/// frames to send before it.
async fn handle_frame(
    state: &AppState,
    session_user: &mut User,
    rooms: &mut Memberships,
    text: &str,
    notices: &mut Vec<Event>,
) -> Option<Event> {
    let user = &session_user.id.clone();
    let frame = match ClientFrame::parse(text) {
        Ok(frame) => frame,
        Err(message) => {
            return Some(error_frame(None, ErrorCode::BadFrame, &message));
        }
    };
    let reference = frame.reference();
    let result = match frame {
        ClientFrame::Ping { reference } => {
            return Some(ServerFrame::Pong { reference }.encode());
        }
        ClientFrame::Auth { token, .. } => match state.auth.verify(&token).await {
            Ok(fresh) if &fresh.id == user => {
                // The new token's grants rule from now on: a room the old one granted and the
                // new one does not is left, and the client told with an `error` frame.
                for room in rooms.regrant(&fresh.grants).await {
                    let message =
                        format!("left room `{room}`: the refreshed token does not grant it");
                    notices.push(error_frame(None, ErrorCode::Forbidden, &message));
                }
                *session_user = fresh;
                Ok(())
            }
            Ok(_) => Err((ErrorCode::Forbidden, "token is for another user".to_owned())),
            Err(e) => Err((ErrorCode::Unauthorized, e.to_string())),
        },
        ClientFrame::MarkRead { ids, .. } => change(state, user, &ids, StateChange::Read).await,
        ClientFrame::MarkUnread { ids, .. } => change(state, user, &ids, StateChange::Unread).await,
        ClientFrame::MarkSeen { ids, .. } => change(state, user, &ids, StateChange::Seen).await,
        ClientFrame::Join { room, token, .. } => {
            return Some(
                match rooms.join(session_user, &room, token.as_deref()).await {
                    Ok(members) => ServerFrame::Joined {
                        room: &room,
                        members: &members,
                        reference,
                    }
                    .encode(),
                    Err(e) => error_frame(reference, e.code, &e.message),
                },
            );
        }
        ClientFrame::Leave { room, .. } => {
            rooms.leave(&room).await.map_err(|e| (e.code, e.message))
        }
        ClientFrame::Publish { room, data, .. } => rooms
            .publish(&room, &data)
            .await
            .map_err(|e| (e.code, e.message)),
        ClientFrame::MarkAllRead { .. } => state
            .notifier
            .mark_all_read(user)
            .await
            .map(drop)
            .map_err(|e| {
                tracing::warn!(error = %e, "mark_all_read failed");
                (ErrorCode::Unavailable, "store unavailable".to_owned())
            }),
    };
    match (result, reference) {
        (Ok(()), Some(reference)) => Some(ServerFrame::Ack { reference }.encode()),
        (Ok(()), None) => None,
        (Err((code, message)), reference) => Some(error_frame(reference, code, &message)),
    }
}

async fn change(
    state: &AppState,
    user: &UserId,
    ids: &[String],
    change: StateChange,
) -> Result<(), (ErrorCode, String)> {
    let max = state.config.limits.max_ids_per_request;
    if ids.len() > max {
        return Err((
            ErrorCode::Validation,
            format!("at most {max} ids per frame"),
        ));
    }
    let parsed: Vec<NotificationId> = ids
        .iter()
        .filter_map(|id| NotificationId::parse(id).ok())
        .collect();
    state
        .notifier
        .change_state(user, &parsed, change)
        .await
        .map(drop)
        .map_err(|e| {
            tracing::warn!(error = %e, "state change failed");
            (ErrorCode::Unavailable, "store unavailable".to_owned())
        })
}

fn error_frame(reference: Option<u64>, code: ErrorCode, message: &str) -> Event {
    ServerFrame::Error {
        reference,
        code,
        message,
    }
    .encode()
}
