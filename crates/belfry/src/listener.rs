//! The accept loop: serves the router over HTTP/1.1 (with WebSocket upgrades) on every accepted
//! TCP connection, with a header-read and a body-read timeout, until the shutdown token is
//! cancelled.
//!
//! `axum::serve` has no timeout at all, so a client that opens a connection and sends its
//! request headers one byte at a time (slowloris), or nothing, would hold its socket for ever.
//! Here hyper's `header_read_timeout` bounds the time from a connection's start (and from each
//! response on a keep-alive connection) to a request's last header line, and [`DeadlineBody`]
//! the time from there to the body's last byte. HTTP/2 cleartext (prior knowledge) is not
//! served: no browser speaks it, and hyper's version sniffing before the first request has no
//! timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::map_request_body::MapRequestBody;

/// The answer of a connection over `http.max_connections`, in the JSON error body.
const TOO_MANY_CONNECTIONS: &str = "HTTP/1.1 429 Too Many Requests\r\n\
    content-type: application/json\r\nretry-after: 1\r\nconnection: close\r\n\
    content-length: 92\r\n\r\n\
    {\"error\":{\"code\":\"rate_limited\",\"message\":\"too many connections to this node; retry later\"}}";

/// Pause after an accept error that is not about one connection (out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// How the accepted connections are served.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections open at once (API requests, WebSocket and SSE streams, and clients still
    /// sending headers or a body alike); beyond it a connection is answered 429 and closed.
    pub max_connections: usize,
    /// Longest wait for a request's complete headers (also the keep-alive idle time).
    pub header_read: Duration,
    /// Longest wait, from a request's headers, for its complete body.
    pub body_read: Duration,
    /// Longest wait, after shutdown began, for in-flight requests to finish.
    pub drain: Duration,
}

/// Serves `router` on `listener` until `stop` is cancelled; then stops accepting, lets every
/// connection finish its in-flight request (idle keep-alive connections close at once) and
/// waits for them up to `limits.drain`.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, stop: CancellationToken) {
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                tracing::error!(error = %e, "cannot accept connections; retrying");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Best effort: the socket is fresh, so the answer fits its send buffer.
            let _ = stream.try_write(TOO_MANY_CONNECTIONS.as_bytes());
            tracing::debug!("http connection refused: at http.max_connections");
            continue;
        };
        let body_read = limits.body_read;
        let service = TowerToHyperService::new(MapRequestBody::new(
            router.clone(),
            move |body: Incoming| DeadlineBody::new(body, Instant::now() + body_read),
        ));
        let stop = stop.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read);
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                // Timeouts, resets and malformed requests: the peer's doing, not ours.
                tracing::debug!(error = %e, "http connection ended");
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(limits.drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = connections.len(),
            "http connections still open after the drain timeout"
        );
    }
}

/// Errors of one incoming connection (it was reset before we took it), as opposed to errors of
/// the listening socket.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// The error of a request body that did not arrive in time; `http::error` answers it with 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body-read timeout")]
pub struct BodyTimeout;

/// A request body that must arrive whole by a deadline fixed when its headers were read.
/// tower-http's `TimeoutBody` restarts its timer at every frame, so a client sending one byte
/// per interval would hold its connection and task for as long as it liked; a deadline does not
/// move. The timer is only created when a handler first reads the body.
struct DeadlineBody {
    body: Incoming,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    fn new(body: Incoming, deadline: Instant) -> Self {
        Self {
            body,
            deadline,
            sleep: None,
        }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        Pin::new(&mut this.body).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_refusal_is_a_complete_http_answer_with_the_json_error_body() {
        let (head, body) = super::TOO_MANY_CONNECTIONS.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            body["error"]["code"],
            crate::protocol::ErrorCode::RateLimited.as_str()
        );
    }
}
