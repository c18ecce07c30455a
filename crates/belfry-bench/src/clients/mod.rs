//! WebSocket clients: many authenticated connections, one reader task each.
//!
//! Sockets are bound to a spread of loopback source addresses (127.0.0.1, 127.0.0.2, …) before
//! they connect, because one source address runs out of ephemeral ports near 28k connections.
//! Each reader parses `notification` frames, times them against the send time in `data`, and
//! checks per connection that no id arrives twice and that `seq` only increases.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use indicatif::ProgressBar;
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::record::Recorder;
use crate::target::Target;
use crate::token::Minter;

/// Longest a TCP connect, WebSocket handshake or `hello` may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Lifetime of the user tokens; longer than any phase.
const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Longest the polite close of one connection may take at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections one source address carries before the next address is used (Linux hands out
/// about 28k ephemeral ports per address).
const CONNS_PER_SOURCE: usize = 20_000;

/// How to connect.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// Handshakes in flight at once.
    pub concurrency: usize,
    /// Loopback source addresses to spread over (0: as many as the count needs).
    pub source_addrs: usize,
}

/// A set of live connections, one per user.
pub struct Fleet {
    /// Users whose connection is open, in connection order.
    pub users: Vec<String>,
    /// Connections that could not be opened, by reason.
    pub errors: Vec<String>,
    /// Time from the first connect to the last `hello`.
    pub connect_time: Duration,
    readers: Vec<JoinHandle<Vec<u64>>>,
    stop: CancellationToken,
}

impl Fleet {
    /// Opens one connection per user; failures are collected, not fatal.
    pub async fn connect(
        target: &Target,
        users: Vec<String>,
        options: ConnectOptions,
        recorder: &Arc<Recorder>,
        progress: &ProgressBar,
    ) -> anyhow::Result<Self> {
        let minter = Minter::new(&target.jwt_secret);
        let sources = match options.source_addrs {
            0 => users.len().div_ceil(CONNS_PER_SOURCE).max(1),
            n => n,
        };
        let mut jobs = Vec::with_capacity(users.len());
        for (i, user) in users.into_iter().enumerate() {
            let url = target.ws_url(&minter.mint(&user, TOKEN_TTL)?);
            jobs.push((source_addr(target.addr, i % sources)?, user, url));
        }
        let stop = CancellationToken::new();
        let server = target.addr;
        let started = Instant::now();
        let mut attempts = futures_util::stream::iter(jobs)
            .map(|(source, user, url)| async move {
                let opened = tokio::time::timeout(CONNECT_TIMEOUT, open_one(source, server, &url))
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
                (user, opened)
            })
            .buffer_unordered(options.concurrency.max(1));
        let mut fleet = Fleet {
            users: Vec::new(),
            errors: Vec::new(),
            connect_time: Duration::ZERO,
            readers: Vec::new(),
            stop: stop.clone(),
        };
        while let Some((user, opened)) = attempts.next().await {
            progress.inc(1);
            match opened {
                Ok(ws) => {
                    fleet
                        .readers
                        .push(tokio::spawn(read(ws, Arc::clone(recorder), stop.clone())));
                    fleet.users.push(user);
                }
                Err(e) => fleet.errors.push(format!("{e:#}")),
            }
        }
        fleet.connect_time = started.elapsed();
        Ok(fleet)
    }

    /// Closes every connection and returns the `s` values each one received.
    pub async fn close(self) -> Vec<Vec<u64>> {
        self.stop.cancel();
        let mut seen = Vec::with_capacity(self.readers.len());
        for reader in self.readers {
            // A reader ends within CLOSE_TIMEOUT of the stop; one that panicked has no record.
            if let Ok(record) = reader.await {
                seen.push(record);
            }
        }
        seen
    }
}

/// The `index`-th loopback source address for connections to `server`.
fn source_addr(server: SocketAddr, index: usize) -> anyhow::Result<SocketAddr> {
    match server.ip() {
        IpAddr::V4(_) => {
            let host = u8::try_from(index + 1)
                .ok()
                .filter(|h| *h < 255)
                .context("at most 254 source addresses")?;
            Ok(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)),
                0,
            ))
        }
        IpAddr::V6(_) => Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0)),
    }
}

type Socket = WebSocketStream<TcpStream>;

async fn open_one(source: SocketAddr, server: SocketAddr, url: &str) -> anyhow::Result<Socket> {
    let socket = match server {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket
        .bind(source)
        .with_context(|| format!("bind {source}"))?;
    let stream = socket.connect(server).await.context("connect")?;
    stream.set_nodelay(true)?;
    // Small buffers: thousands of mostly idle clients share this process.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .context("handshake")?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Frame<'_> = serde_json::from_str(text.as_str())?;
                if frame.kind == "hello" {
                    return Ok(ws);
                }
                bail!("expected hello, got {}", frame.kind);
            }
            Some(Ok(Message::Close(close))) => {
                bail!(
                    "closed before hello: {}",
                    close.map_or_else(|| "no code".into(), |c| c.code.to_string())
                )
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e).context("before hello"),
            None => bail!("closed before hello"),
        }
    }
}

/// A server frame, as much of it as the bench reads.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    seq: Option<i64>,
    #[serde(default, borrow)]
    notification: Option<Body<'a>>,
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default)]
    data: Option<Payload>,
}

/// The bench's own `data`: sequence and send time.
#[derive(Deserialize)]
struct Payload {
    s: Option<u64>,
    t: Option<u64>,
}

/// What one connection saw, checked as frames arrive.
#[derive(Default)]
struct Seen {
    ids: HashSet<u128>,
    last_seq: i64,
    values: Vec<u64>,
}

impl Seen {
    fn frame(&mut self, text: &str, recorder: &Recorder) {
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(text) else {
            return;
        };
        let (Some(body), Some(seq)) = (frame.notification, frame.seq) else {
            return;
        };
        let id = uuid::Uuid::parse_str(&body.id).map_or(0, |u| u.as_u128());
        if !self.ids.insert(id) {
            recorder.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if seq <= self.last_seq {
            recorder.reordered.fetch_add(1, Ordering::Relaxed);
        }
        self.last_seq = self.last_seq.max(seq);
        let payload = body.data.unwrap_or(Payload { s: None, t: None });
        if let Some(s) = payload.s {
            self.values.push(s);
        }
        recorder.deliver(payload.t);
    }
}

async fn read(mut ws: Socket, recorder: Arc<Recorder>, stop: CancellationToken) -> Vec<u64> {
    let mut seen = Seen::default();
    let stopped = loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break true,
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => seen.frame(text.as_str(), &recorder),
                Some(Ok(Message::Close(close))) => {
                    let code = close.map_or_else(|| "close".into(), |c| format!("close {}", c.code));
                    recorder.disconnect(code);
                    break false;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    recorder.disconnect(format!("error: {e}"));
                    break false;
                }
                None => {
                    recorder.disconnect("eof".into());
                    break false;
                }
            },
        }
    };
    if stopped {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(None)).await;
    }
    seen.values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(id: &str, seq: i64, s: u64) -> String {
        format!(
            r#"{{"type":"notification","seq":{seq},"notification":{{"id":"{id}","seq":{seq},"user_id":"u","type":"bench.tick","data":{{"s":{s},"t":0}},"group_key":null}}}}"#
        )
    }

    const A: &str = "01935f1e-7c1a-7b3e-9d2a-3f0c8a4b5e61";
    const B: &str = "01935f1e-7c1a-7b3e-9d2a-3f0c8a4b5e62";

    #[test]
    fn a_repeated_id_is_a_duplicate_and_a_lower_seq_a_reorder() {
        let recorder = Recorder::new().unwrap();
        let mut seen = Seen::default();
        seen.frame(&notification(A, 2, 10), &recorder);
        seen.frame(&notification(A, 2, 10), &recorder);
        seen.frame(&notification(B, 1, 11), &recorder);
        seen.frame(r#"{"type":"state","change":"read"}"#, &recorder);
        assert_eq!(recorder.delivered.load(Ordering::Relaxed), 2);
        assert_eq!(recorder.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(recorder.reordered.load(Ordering::Relaxed), 1);
        assert_eq!(seen.values, vec![10, 11]);
    }

    #[test]
    fn source_addresses_spread_over_loopback() {
        let server: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            source_addr(server, 0).unwrap().ip().to_string(),
            "127.0.0.1"
        );
        assert_eq!(
            source_addr(server, 3).unwrap().ip().to_string(),
            "127.0.0.4"
        );
        assert!(source_addr(server, 300).is_err());
    }
}
