//! The Server-Sent Events session: the same feed as the WebSocket, one SSE event per frame,
//! `id: <seq>` on notifications so the browser's `Last-Event-ID` resumes exactly. A stream
//! never outlives its token: at `exp` it sends an `error` frame (`unauthorized`, "token expired
//! at …") and ends; the client reconnects with a fresh token.

use std::convert::Infallible;
use std::pin::Pin;

use axum::response::sse::Event as SseEvent;
use futures_util::Stream;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::app::AppState;
use crate::auth::{TokenError, expiry_deadline};
use crate::protocol::{ErrorCode, Event, ServerFrame};
use crate::transport::Feed;

fn to_sse(event: &Event) -> SseEvent {
    let sse = SseEvent::default()
        .event(event.kind.as_str())
        .data(&*event.json);
    match event.seq {
        Some(seq) => sse.id(seq.to_string()),
        None => sse,
    }
}

/// The frame sent when the token expires, before the stream ends.
fn expired_frame(expires_at: u64) -> Event {
    let message = TokenError::expired_now(expires_at).to_string();
    ServerFrame::Error {
        reference: None,
        code: ErrorCode::Unauthorized,
        message: &message,
    }
    .encode()
}

/// The event stream of one SSE connection: `hello`, then the feed, until the token expires
/// (`expires_at`, Unix seconds), shutdown, a slow outbox or a store failure ends it (the browser then reconnects with
/// `Last-Event-ID`).
pub fn stream(
    state: AppState,
    expires_at: u64,
    feed: Feed,
    hello: Event,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send {
    // The two cancellation futures live as long as the stream: made per event, each would
    // register with and unregister from its token for every event sent.
    struct Session {
        state: AppState,
        feed: Feed,
        hello: Option<Event>,
        shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
        slowed: Pin<Box<WaitForCancellationFutureOwned>>,
        expired: Pin<Box<tokio::time::Sleep>>,
        expires_at: u64,
        /// Set once the expiry frame went out: the stream ends next.
        ended: bool,
    }
    let session = Session {
        shutdown: Box::pin(state.shutdown.clone().cancelled_owned()),
        slowed: Box::pin(feed.slow_token().cancelled_owned()),
        expired: Box::pin(tokio::time::sleep_until(expiry_deadline(expires_at))),
        expires_at,
        ended: false,
        state,
        feed,
        hello: Some(hello),
    };
    futures_util::stream::unfold(session, |mut s| async move {
        if s.ended {
            return None;
        }
        if let Some(hello) = s.hello.take() {
            return Some((Ok(to_sse(&hello)), s));
        }
        let next = tokio::select! {
            biased;
            () = &mut s.shutdown => None,
            () = &mut s.slowed => None,
            () = &mut s.expired => {
                s.ended = true;
                let frame = expired_frame(s.expires_at);
                return Some((Ok(to_sse(&frame)), s));
            }
            event = s.feed.next() => match event {
                Ok(Some(event)) => Some(event),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "sse feed read failed");
                    None
                }
            },
        }?;
        if next.seq.is_some() {
            super::ws::record_delivery(&s.state, &next);
        }
        let sse = to_sse(&next);
        Some((Ok(sse), s))
    })
}
