//! Logs and metrics. Metrics live in a per-`App` registry (no global recorder), so two servers
//! in one test process count separately. `docs/operations.md` explains each metric.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogConfig;

/// Crates that log what passes through them at `trace` (tungstenite: every frame received, and
/// an `auth` frame holds a token): never logged below `debug`, whatever the filter says.
const CAPPED_AT_DEBUG: [&str; 5] = [
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
];

/// Whether an event or span of `meta` is below the cap of its crate. (Records of the `log`
/// crate, which tungstenite uses, are filtered with their own target when they are bridged.)
fn capped(meta: &Metadata<'_>) -> bool {
    *meta.level() == Level::TRACE
        && CAPPED_AT_DEBUG.iter().any(|name| {
            meta.target()
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// Installs the global `tracing` subscriber (the binary calls this once; tests do not).
pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = filter.and(filter_fn(|meta| !capped(meta)));
    // Colour codes only for a terminal: redirected to a file or a journal they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let layer = if config.format == "json" {
        layer.json().with_filter(filter).boxed()
    } else {
        layer.with_filter(filter).boxed()
    };
    if let Err(e) = tracing_subscriber::registry().with(layer).try_init() {
        eprintln!("logging already initialised: {e}");
    }
}

/// Belfry's metrics.
pub struct Metrics {
    registry: Registry,
    /// Live connections (WebSocket, SSE and waiting long-polls) on this node.
    pub connections: Gauge,
    /// Notifications stored (one per recipient).
    pub notifications_stored: Counter,
    /// Notification frames written to live connections.
    pub notifications_delivered: Counter,
    /// Seconds from a notification's commit to its frame being written to a connection.
    pub delivery_latency: Histogram,
    /// Connections closed because their outbox overflowed (4008).
    pub slow_disconnects: Counter,
    /// Requests answered 503 because the store was unavailable.
    pub store_unavailable: Counter,
    /// Messages for other nodes dropped because the broker was unreachable or its queue full.
    pub broker_dropped: Counter,
    /// Store reads of live feeds: a resume with `since`, or a gap in a connection's `seq`s that
    /// the outbox did not fill within the hold-back time.
    pub feed_store_reads: Counter,
    /// Users found behind the store by the position check and resynced.
    pub position_resyncs: Counter,
    /// Users resynced on other nodes because a message for them could not be published.
    pub broker_repairs: Counter,
    /// Ingested messages stored (or recognised as already stored).
    pub ingest_stored: Counter,
    /// Ingested messages refused as poison and sent to a dead-letter destination.
    pub ingest_poison: Counter,
    /// Pushes accepted by a push service.
    pub push_sent: Counter,
    /// Pushes given up (refused, or retries exhausted).
    pub push_failed: Counter,
    /// Push attempts retried after 429/5xx or a network error.
    pub push_retried: Counter,
    /// Subscriptions removed because the push service answered 404/410.
    pub push_pruned: Counter,
    /// Pushes dropped because the push queue, or one push service's queue, was full.
    pub push_dropped: Counter,
    /// Pushes not sent because the endpoint is not allowed (scheme, host, non-public address).
    pub push_refused: Counter,
    /// Pushes not sent because the user had a live connection (policy `offline`).
    pub push_skipped_online: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("belfry");
        let connections = Gauge::default();
        let notifications_stored = Counter::default();
        let notifications_delivered = Counter::default();
        let delivery_latency = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ]);
        let slow_disconnects = Counter::default();
        let store_unavailable = Counter::default();
        let broker_dropped = Counter::default();
        let feed_store_reads = Counter::default();
        let position_resyncs = Counter::default();
        let broker_repairs = Counter::default();
        let ingest_stored = Counter::default();
        let ingest_poison = Counter::default();
        let push_sent = Counter::default();
        let push_failed = Counter::default();
        let push_retried = Counter::default();
        let push_pruned = Counter::default();
        let push_dropped = Counter::default();
        let push_refused = Counter::default();
        let push_skipped_online = Counter::default();
        for (name, help, counter) in [
            ("push_sent", "Pushes accepted by a push service", &push_sent),
            (
                "push_failed",
                "Pushes given up (refused or retries exhausted)",
                &push_failed,
            ),
            (
                "push_retried",
                "Push attempts retried after 429, 5xx or a network error",
                &push_retried,
            ),
            (
                "push_pruned",
                "Push subscriptions removed after 404 or 410",
                &push_pruned,
            ),
            (
                "push_dropped",
                "Pushes dropped because the push queue, or one push service's queue, was full",
                &push_dropped,
            ),
            (
                "push_refused",
                "Pushes not sent because the endpoint is not allowed (scheme, host, non-public address)",
                &push_refused,
            ),
            (
                "push_skipped_online",
                "Pushes not sent because the user was online",
                &push_skipped_online,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "ingest_stored",
            "Ingested messages stored or recognised as already stored",
            ingest_stored.clone(),
        );
        registry.register(
            "ingest_poison",
            "Ingested messages refused as poison and dead-lettered",
            ingest_poison.clone(),
        );
        registry.register(
            "connections",
            "Live connections on this node",
            connections.clone(),
        );
        registry.register(
            "notifications_stored",
            "Notifications stored, one per recipient",
            notifications_stored.clone(),
        );
        registry.register(
            "notifications_delivered",
            "Notification frames written to live connections",
            notifications_delivered.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Time from commit to the frame being written to a connection",
            delivery_latency.clone(),
        );
        registry.register(
            "slow_disconnects",
            "Connections closed because their outgoing queue overflowed",
            slow_disconnects.clone(),
        );
        registry.register(
            "store_unavailable",
            "Requests refused with 503 because the store was unavailable",
            store_unavailable.clone(),
        );
        registry.register(
            "broker_dropped",
            "Messages for other nodes dropped because the broker was unreachable",
            broker_dropped.clone(),
        );
        registry.register(
            "feed_store_reads",
            "Store reads of live feeds catching up (a resume, or a gap the outbox did not fill)",
            feed_store_reads.clone(),
        );
        registry.register(
            "position_resyncs",
            "Users whose connections the position check found behind the store and resynced",
            position_resyncs.clone(),
        );
        registry.register(
            "broker_repairs",
            "Users told to resync on other nodes after a message for them could not be published",
            broker_repairs.clone(),
        );
        Self {
            registry,
            connections,
            notifications_stored,
            notifications_delivered,
            delivery_latency,
            slow_disconnects,
            store_unavailable,
            broker_dropped,
            feed_store_reads,
            position_resyncs,
            broker_repairs,
            ingest_stored,
            ingest_poison,
            push_sent,
            push_failed,
            push_retried,
            push_pruned,
            push_dropped,
            push_refused,
            push_skipped_online,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}
