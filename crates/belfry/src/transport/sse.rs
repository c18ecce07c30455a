//! The Server-Sent Events session: the same feed as the WebSocket, one SSE event per frame,
//! `id: <seq>` on notifications so the browser's `Last-Event-ID` resumes exactly.

use std::convert::Infallible;
use std::pin::Pin;

use axum::response::sse::Event as SseEvent;
use futures_util::Stream;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::app::AppState;
use crate::protocol::Event;
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

/// The event stream of one SSE connection: `hello`, then the feed, until shutdown, a slow
/// outbox or a store failure ends it (the browser then reconnects with `Last-Event-ID`).
pub fn stream(
    state: AppState,
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
    }
    let session = Session {
        shutdown: Box::pin(state.shutdown.clone().cancelled_owned()),
        slowed: Box::pin(feed.slow_token().cancelled_owned()),
        state,
        feed,
        hello: Some(hello),
    };
    futures_util::stream::unfold(session, |mut s| async move {
        if let Some(hello) = s.hello.take() {
            return Some((Ok(to_sse(&hello)), s));
        }
        let next = tokio::select! {
            biased;
            () = &mut s.shutdown => None,
            () = &mut s.slowed => None,
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
