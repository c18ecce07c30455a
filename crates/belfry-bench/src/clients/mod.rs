//! Clients: many authenticated live connections (WebSocket or SSE), one reader task each.
//!
//! Sockets are bound to a spread of loopback source addresses (127.0.0.1, 127.0.0.2, …) before
//! they connect, because one source address runs out of ephemeral ports near 28k connections.
//! Each reader parses frames in the server's dialect, times notifications against the send time
//! in their payload, and checks that nothing arrives twice and that the order key only
//! increases. With `reconnect`, a reader whose connection ends opens a new one, the way a real
//! client does: Belfry's with `since` = the last `seq` it saw, the peer's followed by an HTTP
//! fetch of what it missed.

mod conn;
mod seen;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use indicatif::ProgressBar;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use conn::Transport;
pub use seen::Record;

use crate::dialect::Dialect;
use crate::record::Recorder;
use crate::target::Target;
use crate::token::Minter;
use conn::{Conn, Endpoint, Next};
use seen::Seen;

/// Longest a TCP connect, handshake and `hello` may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Lifetime of the user tokens; longer than any phase.
const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Longest the polite close of one connection may take at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections one source address carries before the next address is used (Linux hands out
/// about 28k ephemeral ports per address).
const CONNS_PER_SOURCE: usize = 20_000;
/// First reconnect delay; it doubles per failed attempt, with full jitter.
const RECONNECT_FIRST: Duration = Duration::from_millis(50);
/// Longest reconnect delay.
const RECONNECT_MAX: Duration = Duration::from_millis(500);
/// Notifications per catch-up request of a client that fetches what it missed.
const CATCH_UP_PAGE: u32 = 1000;

/// How to connect (the same for every phase).
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// Handshakes in flight at once.
    pub concurrency: usize,
    /// Loopback source addresses to spread over (0: as many as the count needs).
    pub source_addrs: usize,
    /// WebSocket or SSE.
    pub transport: Transport,
}

/// What a phase's clients do besides reading.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Join this room once connected.
    pub room: Option<String>,
    /// Reconnect when a connection ends (the reconnect storm).
    pub reconnect: bool,
    /// Keep the arrival time of every notification (the reconnect storm).
    pub timed: bool,
}

/// A set of live connections.
pub struct Fleet {
    /// The user of each open connection, in connection order (a user may appear many times).
    pub users: Vec<String>,
    /// Connections that could not be opened, by reason.
    pub errors: Vec<String>,
    /// Time from the first connect to the last `hello`.
    pub connect_time: Duration,
    readers: Vec<JoinHandle<Record>>,
    stop: CancellationToken,
}

/// What every reader of a fleet shares.
struct Shared {
    server: SocketAddr,
    base: String,
    dialect: Dialect,
    transport: Transport,
    plan: Plan,
    /// One HTTP client per source address (SSE streams, catch-up fetches).
    http: Vec<reqwest::Client>,
    handshakes: Semaphore,
    recorder: Arc<Recorder>,
    stop: CancellationToken,
}

/// One client: a user, a token and a source address.
struct Client {
    user: String,
    token: String,
    source: SocketAddr,
    source_index: usize,
}

impl Shared {
    fn endpoint(&self, client: &Client) -> Endpoint<'_> {
        Endpoint {
            server: self.server,
            source: client.source,
            dialect: self.dialect,
            transport: self.transport,
            http: &self.http[client.source_index],
        }
    }

    /// One connection attempt, with the handshake limit and the connect timeout.
    async fn open(&self, client: &Client, since: Option<i64>) -> anyhow::Result<Conn> {
        let _slot = self.handshakes.acquire().await?;
        let at = self.endpoint(client);
        tokio::time::timeout(
            CONNECT_TIMEOUT,
            Conn::open(&at, &client.token, since, self.plan.room.as_deref()),
        )
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")))
    }
}

impl Fleet {
    /// Opens one connection per entry of `users`; failures are collected, not fatal.
    pub async fn connect(
        target: &Target,
        users: Vec<String>,
        options: ConnectOptions,
        plan: Plan,
        recorder: &Arc<Recorder>,
        progress: &ProgressBar,
    ) -> anyhow::Result<Self> {
        let minter = Minter::new(&target.jwt_secret);
        let sources = match options.source_addrs {
            0 => users.len().div_ceil(CONNS_PER_SOURCE).max(1),
            n => n,
        };
        let rooms: Vec<String> = plan.room.iter().cloned().collect();
        let mut clients = Vec::with_capacity(users.len());
        for (i, user) in users.into_iter().enumerate() {
            let token = minter.mint(&user, TOKEN_TTL, &rooms)?;
            let source_index = i % sources;
            clients.push(Client {
                user,
                token,
                source: source_addr(target.addr, source_index)?,
                source_index,
            });
        }
        let mut http = Vec::with_capacity(sources);
        for index in 0..sources {
            http.push(
                reqwest::Client::builder()
                    .local_address(source_addr(target.addr, index)?.ip())
                    .connect_timeout(CONNECT_TIMEOUT)
                    .pool_max_idle_per_host(0)
                    .tcp_nodelay(true)
                    .build()?,
            );
        }
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            server: target.addr,
            base: target.base.clone(),
            dialect: target.dialect,
            transport: options.transport,
            plan,
            http,
            handshakes: Semaphore::new(options.concurrency.max(1)),
            recorder: Arc::clone(recorder),
            stop: stop.clone(),
        });
        let started = Instant::now();
        let mut attempts = futures_util::stream::iter(clients)
            .map(|client| {
                let shared = Arc::clone(&shared);
                async move {
                    let opened = shared.open(&client, None).await;
                    (client, opened)
                }
            })
            .buffer_unordered(options.concurrency.max(1));
        let mut fleet = Fleet {
            users: Vec::new(),
            errors: Vec::new(),
            connect_time: Duration::ZERO,
            readers: Vec::new(),
            stop,
        };
        while let Some((client, opened)) = attempts.next().await {
            progress.inc(1);
            match opened {
                Ok(conn) => {
                    let hello_at = shared.recorder.now_us();
                    fleet.users.push(client.user.clone());
                    fleet.readers.push(tokio::spawn(read(
                        Arc::clone(&shared),
                        client,
                        conn,
                        hello_at,
                    )));
                }
                Err(e) => fleet.errors.push(format!("{e:#}")),
            }
        }
        fleet.connect_time = started.elapsed();
        Ok(fleet)
    }

    /// Closes every connection and returns what each reader saw.
    pub async fn close(self) -> Vec<Record> {
        self.stop.cancel();
        let mut records = Vec::with_capacity(self.readers.len());
        for reader in self.readers {
            // A reader ends within CLOSE_TIMEOUT of the stop; one that panicked has no record.
            if let Ok(record) = reader.await {
                records.push(record);
            }
        }
        records
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

/// Reads one client's connections until the fleet stops.
async fn read(shared: Arc<Shared>, client: Client, mut conn: Conn, hello_at: u64) -> Record {
    let recorder = &shared.recorder;
    let mut seen = Seen::new(shared.plan.timed);
    seen.hellos.push(hello_at);
    loop {
        let next = tokio::select! {
            biased;
            () = shared.stop.cancelled() => break,
            next = conn.next() => next,
        };
        match next {
            Next::Text(text) => seen.frame(shared.dialect.parse(&text), recorder),
            Next::Closed(why) if !shared.plan.reconnect => {
                recorder.disconnect(why);
                seen.flush(recorder);
                return seen.into_record(client.user);
            }
            Next::Closed(why) => {
                seen.closes.push(recorder.now_us());
                recorder.reconnects.fetch_add(1, Ordering::Relaxed);
                drop(why);
                let Some(fresh) = reconnect(&shared, &client, &mut seen).await else {
                    seen.flush(recorder);
                    return seen.into_record(client.user);
                };
                conn = fresh;
            }
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.close()).await;
    seen.flush(recorder);
    seen.into_record(client.user)
}

/// Opens a new connection after one ended, with backoff, resuming where the last one stopped;
/// `None` when the fleet stopped first.
async fn reconnect(shared: &Shared, client: &Client, seen: &mut Seen) -> Option<Conn> {
    let since = match shared.dialect {
        Dialect::Belfry => Some(seen.last_seq),
        Dialect::Seed => None,
    };
    let mut delay = RECONNECT_FIRST;
    loop {
        let jittered = delay.mul_f64(jitter());
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => return None,
            () = tokio::time::sleep(jittered) => {}
        }
        let opened = tokio::select! {
            biased;
            () = shared.stop.cancelled() => return None,
            opened = shared.open(client, since) => opened,
        };
        match opened {
            Ok(conn) => {
                seen.hellos.push(shared.recorder.now_us());
                if shared.dialect.fetches_on_reconnect() {
                    catch_up(shared, client, seen).await;
                }
                return Some(conn);
            }
            Err(e) => {
                shared.recorder.reconnect_failed(format!("{e:#}"));
                delay = (delay * 2).min(RECONNECT_MAX);
            }
        }
    }
}

/// The peer's "fetch on mount": lists what arrived after the last notification seen, page by
/// page, over HTTP with the user's token.
async fn catch_up(shared: &Shared, client: &Client, seen: &mut Seen) {
    loop {
        let Some(path) = shared.dialect.catch_up_path(seen.last_seq, CATCH_UP_PAGE) else {
            return;
        };
        let http = &shared.http[client.source_index];
        let answer = http
            .get(format!("{}{path}", shared.base))
            .bearer_auth(&client.token)
            .send()
            .await;
        let text = match answer {
            Ok(response) if response.status().is_success() => {
                response.text().await.unwrap_or_default()
            }
            _ => {
                shared
                    .recorder
                    .catch_up_failures
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let frames = shared.dialect.parse_catch_up(&text);
        let full = frames.len() >= CATCH_UP_PAGE as usize;
        for frame in frames {
            seen.frame(frame, &shared.recorder);
        }
        if !full {
            return;
        }
    }
}

/// A factor in [0, 1) for full jitter, from the clock (good enough to spread reconnects).
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // A multiplicative hash spreads consecutive readings over the range.
    let mixed = nanos.wrapping_mul(2_654_435_761);
    f64::from(mixed) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }
}
