//! Belfry's configuration: one typed tree, layered defaults < TOML file < `BELFRY_*` environment
//! < command-line flags. Every field states its unit and default; `belfry print-config` shows the
//! effective values (secrets redacted). `docs/config.md` lists them all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value had the wrong type or an unknown key was given. (Not a `#[source]`: the
    /// message already includes it, and error chains would print it twice.)
    #[error("invalid configuration: {0}")]
    Invalid(Box<figment::Error>),
    /// A value is well-typed but unusable.
    #[error("invalid configuration: {0}")]
    Unusable(String),
    /// The generated development secrets could not be read or written.
    #[error("cannot use the development secrets file {path}: {source}")]
    Secrets {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

impl From<Box<figment::Error>> for ConfigError {
    fn from(e: Box<figment::Error>) -> Self {
        ConfigError::Invalid(e)
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Where notifications are stored: `sqlite://PATH` (created and migrated on first start;
    /// WAL mode), or `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (also `postgresql://`; the
    /// database must exist and is migrated on start; nodes on several hosts may share it).
    /// Default `sqlite://belfry-data/belfry.db`.
    #[serde(serialize_with = "redact_url_text")]
    pub database_url: String,
    /// Fan-out between nodes.
    pub broker: BrokerConfig,
    /// The HTTP server's connection timeouts.
    pub http: HttpConfig,
    /// Credentials.
    pub auth: AuthConfig,
    /// Live connections (WebSocket and SSE).
    pub ws: WsConfig,
    /// Long-poll.
    pub poll: PollConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// Rate limits on the backend API.
    pub rate_limits: RateLimitConfig,
    /// Rooms.
    pub rooms: RoomsConfig,
    /// Event-stream sources of notify requests.
    pub ingest: IngestConfig,
    /// Web Push.
    pub push: crate::push::PushConfig,
    /// What the store keeps, and for how long.
    pub retention: RetentionConfig,
    /// Collapsing bursts of related events into one inbox item.
    pub grouping: GroupingConfig,
    /// Per-user preferences (mute, channels).
    pub preferences: PreferencesConfig,
    /// Store tuning.
    pub store: StoreConfig,
    /// Logging.
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://belfry-data/belfry.db".into(),
            broker: BrokerConfig::default(),
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            ws: WsConfig::default(),
            poll: PollConfig::default(),
            limits: LimitsConfig::default(),
            rate_limits: RateLimitConfig::default(),
            rooms: RoomsConfig::default(),
            ingest: IngestConfig::default(),
            push: crate::push::PushConfig::default(),
            retention: RetentionConfig::default(),
            grouping: GroupingConfig::default(),
            preferences: PreferencesConfig::default(),
            store: StoreConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// Which broker carries events between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// In-process: a single node (the default).
    Local,
    /// Redis pub/sub.
    Redis,
    /// NATS core subjects.
    Nats,
}

/// Fan-out between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// `local` (one node), `redis` or `nats`. Default `local`.
    pub kind: BrokerKind,
    /// `redis://host:6379` or `nats://host:4222`; required for `redis` and `nats`.
    #[serde(serialize_with = "redact_url_opt")]
    pub url: Option<String>,
    /// Prefix of channel/subject names, so several deployments can share a server. Default
    /// `belfry`.
    pub prefix: String,
    /// How often each node compares what it sent its connected users with the store (their
    /// highest seq and state version) and resyncs those behind, in milliseconds; 0 turns the
    /// check off. It bounds how long a change lost between nodes stays missing. Default 5000.
    pub position_check_ms: u64,
}

impl BrokerConfig {
    /// The position check's interval; `None` when it is off.
    pub fn position_check(&self) -> Option<std::time::Duration> {
        (self.position_check_ms > 0)
            .then(|| std::time::Duration::from_millis(self.position_check_ms))
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            kind: BrokerKind::Local,
            url: None,
            prefix: "belfry".into(),
            position_check_ms: 5_000,
        }
    }
}

/// The HTTP server's connection timeouts (see `listener`) and cross-origin access.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Time a client has to send a request's complete headers, in seconds, counted from the
    /// connection's start or the previous response: a slow (slowloris) or silent client is
    /// disconnected after it, and so is a keep-alive connection idle for that long. It covers
    /// the WebSocket opening handshake too. Default 10.
    pub header_read_timeout_secs: u64,
    /// Time a client has to send a request's whole body, in seconds, counted from the end of
    /// its headers (a deadline, not an idle timer: a body trickled byte by byte is cut off too).
    /// After it the request is answered `408 request_timeout` and the connection closed.
    /// Default 30.
    pub body_read_timeout_secs: u64,
    /// Origins of web pages allowed to call the client routes (inbox, preferences, push
    /// subscriptions, SSE, long-poll) across origins (CORS): exact origins such as
    /// `https://app.example.com` or `http://localhost:5173` (scheme, host and port; no path, no
    /// trailing slash), or `*` for any. Backend (API-key) routes never answer cross-origin.
    /// Default: none (same origin only).
    pub cors_allowed_origins: Vec<String>,
    /// How long a browser may cache a CORS preflight answer, in seconds. Default 600.
    pub cors_max_age_secs: u64,
    /// Most HTTP connections open at once on this node: API requests, WebSocket, SSE and
    /// long-poll connections, and clients still sending headers or a body, alike. Beyond it a
    /// new connection is answered `429 rate_limited` and closed. Keep it above
    /// `ws.max_connections_per_node`. Default 110000.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            cors_allowed_origins: Vec::new(),
            cors_max_age_secs: 600,
            max_connections: 110_000,
        }
    }
}

/// Checks that `origin` is `*` or an origin in its canonical form (`scheme://host[:port]`).
pub fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let url = reqwest::Url::parse(origin).map_err(|e| {
        format!("`{origin}` is not an origin ({e}); write e.g. `https://app.example.com`")
    })?;
    let canonical = url.origin().ascii_serialization();
    if !matches!(url.scheme(), "http" | "https") || canonical != origin {
        return Err(format!(
            "`{origin}` is not an origin: write scheme://host[:port] with no path or trailing slash (`{canonical}`)"
        ));
    }
    Ok(())
}

/// Credentials for the backend API (API keys) and for users (JWT).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Keys accepted by the backend API (`Authorization: Bearer <key>`). When neither this nor
    /// a JWT key is configured, Belfry generates development secrets on first start and keeps
    /// them in `secrets_file`. Default: none.
    #[serde(serialize_with = "redact_list")]
    pub api_keys: Vec<SecretString>,
    /// Shared secret for HS256 user tokens. Default: none.
    #[serde(serialize_with = "redact_opt")]
    pub jwt_secret: Option<SecretString>,
    /// PEM public key (RSA for RS256, EC P-256 for ES256) for user tokens, inline text or a path
    /// to a file. Default: none.
    pub jwt_public_key: Option<String>,
    /// URL of a JWKS document (RS256/ES256 keys by `kid`), cached and refreshed when a token
    /// names an unknown `kid` (at most once per `jwks_min_refresh_secs`). Default: none.
    #[serde(serialize_with = "redact_url_opt")]
    pub jwks_url: Option<String>,
    /// Minimum seconds between two JWKS fetches. Default 30.
    pub jwks_min_refresh_secs: u64,
    /// Required `aud` claim, when set. Default: not checked.
    pub audience: Option<String>,
    /// Required `iss` claim, when set. Default: not checked.
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp`/`nbf`, in seconds. Default 30.
    pub leeway_secs: u64,
    /// Where generated development secrets are kept. Default `belfry-data/secrets.toml`.
    pub secrets_file: PathBuf,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            jwt_secret: None,
            jwt_public_key: None,
            jwks_url: None,
            jwks_min_refresh_secs: 30,
            audience: None,
            issuer: None,
            leeway_secs: 30,
            secrets_file: PathBuf::from("belfry-data/secrets.toml"),
        }
    }
}

impl AuthConfig {
    fn has_credentials(&self) -> bool {
        !self.api_keys.is_empty()
            || self.jwt_secret.is_some()
            || self.jwt_public_key.is_some()
            || self.jwks_url.is_some()
    }
}

/// Live connection settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsConfig {
    /// Server ping interval, in seconds; a connection silent for two intervals is closed (4009).
    /// Default 25.
    pub heartbeat_interval_secs: u64,
    /// Time allowed for the `auth` frame when no token is in the URL, in seconds. Default 10.
    pub auth_timeout_secs: u64,
    /// Outgoing frames queued per connection before it is closed as slow (4008). Default 256.
    pub outbox_frames: usize,
    /// Largest client frame accepted, in bytes; larger closes with 1009. Default 65536.
    pub max_frame_bytes: usize,
    /// Live connections one user may hold on this node (4429 beyond). Default 100.
    pub max_connections_per_user: usize,
    /// Live connections (WebSocket, SSE, waiting long-polls) of all users on this node (4429 /
    /// 429 beyond). Default 100000.
    pub max_connections_per_node: usize,
    /// Frames per second a WebSocket client may send, sustained (text, binary, ping and pong
    /// alike); over the limit the connection is closed with 4011. 0 turns it off. Default 50.
    pub max_frames_per_second: u32,
    /// Frames a WebSocket client may send at once, above the sustained rate. Default 100.
    pub frames_burst: u32,
    /// Serves `/v1/ws/echo`: an unauthenticated WebSocket that echoes every message, with the
    /// same limits as `/v1/ws`, for the Autobahn conformance suite (`scripts/hardening.sh`).
    /// Never enable it in production. Default false.
    pub echo_endpoint: bool,
    /// Origins whose pages may open a WebSocket (the handshake's `Origin` header), in the form
    /// of `http.cors_allowed_origins` (`*` for any). A handshake from another origin gets 403.
    /// The server's own origin (the handshake's `Host`) is always allowed, and so are clients
    /// that send no `Origin` (not browsers). Default: `http.cors_allowed_origins`.
    pub allowed_origins: Option<Vec<String>>,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_secs: 25,
            auth_timeout_secs: 10,
            outbox_frames: 256,
            max_frame_bytes: 64 * 1024,
            max_connections_per_user: 100,
            max_connections_per_node: 100_000,
            max_frames_per_second: 50,
            frames_burst: 100,
            echo_endpoint: false,
            allowed_origins: None,
        }
    }
}

/// Long-poll settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollConfig {
    /// Wait used when the request gives no `timeout`, in seconds. Default 25.
    pub default_timeout_secs: u64,
    /// Longest wait a request may ask for, in seconds. Default 55.
    pub max_timeout_secs: u64,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            default_timeout_secs: 25,
            max_timeout_secs: 55,
        }
    }
}

/// Request limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest `data` object, serialised, in bytes. Default 16384.
    pub max_data_bytes: usize,
    /// Most recipients in one request (a batch counts all its items). Default 1000.
    pub max_recipients: usize,
    /// Largest HTTP request body, in bytes. Default 4194304 (4 MiB).
    pub max_body_bytes: usize,
    /// Most ids in one read/archive request or frame. Default 1000.
    pub max_ids_per_request: usize,
    /// How long an idempotency key is remembered, in seconds. Default 86400.
    pub idempotency_window_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_data_bytes: 16 * 1024,
            max_recipients: 1000,
            max_body_bytes: 4 * 1024 * 1024,
            max_ids_per_request: 1000,
            idempotency_window_secs: 24 * 3600,
        }
    }
}

/// Rate limits on the backend API; `0` turns a limit off.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests per minute per API key. Default 0 (off).
    pub api_key_per_minute: u32,
    /// Requests an API key may send at once. Default: `api_key_per_minute`.
    pub api_key_burst: u32,
    /// Notifications per minute per recipient. Default 0 (off).
    pub recipient_per_minute: u32,
    /// Notifications a recipient may get at once. Default: `recipient_per_minute`.
    pub recipient_burst: u32,
}

/// Room bounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    /// Rooms one connection may be in. Default 32.
    pub max_rooms_per_connection: usize,
    /// Distinct users one room may hold (tabs of one user count once). Default 1000.
    pub max_users_per_room: usize,
    /// Largest room message `data`, serialised, in bytes. Default 16384.
    pub max_message_bytes: usize,
    /// Room messages per second one connection may publish; 0 turns the limit off. Default 20.
    pub publish_per_second: u32,
    /// Room messages one connection may publish at once. Default 40.
    pub publish_burst: u32,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        Self {
            max_rooms_per_connection: 32,
            max_users_per_room: 1000,
            max_message_bytes: 16 * 1024,
            publish_per_second: 20,
            publish_burst: 40,
        }
    }
}

/// Event-stream sources; each is off unless its section is present.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// A Redis Streams consumer group.
    pub redis: Option<RedisIngestConfig>,
    /// A NATS JetStream durable consumer.
    pub nats: Option<NatsIngestConfig>,
    /// A Kafka consumer group. Needs a build with the `kafka` feature: on a build without it the
    /// section is still parsed (its keys are checked) and then refused with an error saying so.
    #[serde(deserialize_with = "kafka_section")]
    pub kafka: Option<KafkaIngestConfig>,
}

/// Redis Streams source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisIngestConfig {
    /// Redis URL. Default `redis://127.0.0.1:6379`.
    #[serde(serialize_with = "redact_url_text")]
    pub url: String,
    /// Stream to read; each entry's `payload` field is a notify request. Default
    /// `belfry:notifications`.
    pub stream: String,
    /// Consumer group (created at the stream's start when missing). Default `belfry`.
    pub group: String,
    /// This node's consumer name; give each node its own. Default `belfry-1`.
    pub consumer: String,
    /// Stream receiving poison messages (`payload`, `error`, `source_id`). Default
    /// `belfry:dead-letter`.
    pub dead_letter_stream: String,
    /// Entries read per call. Default 100.
    pub batch: usize,
}

impl Default for RedisIngestConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            stream: "belfry:notifications".into(),
            group: "belfry".into(),
            consumer: "belfry-1".into(),
            dead_letter_stream: "belfry:dead-letter".into(),
            batch: 100,
        }
    }
}

/// NATS JetStream source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsIngestConfig {
    /// NATS URL. Default `nats://127.0.0.1:4222`.
    #[serde(serialize_with = "redact_url_text")]
    pub url: String,
    /// JetStream stream (created when missing). Default `BELFRY_NOTIFICATIONS`.
    pub stream: String,
    /// Subject the stream captures; messages are notify requests. Default `belfry.notify`.
    pub subject: String,
    /// Durable consumer name, shared by all nodes (they split the messages). Default `belfry`.
    pub durable: String,
    /// Subject receiving poison messages (header `Belfry-Error`). Default `belfry.dead-letter`.
    pub dead_letter_subject: String,
    /// Most unacknowledged messages in flight. Default 100.
    pub batch: u32,
    /// Seconds before the server re-delivers a message that was never acknowledged (a node
    /// crashed while handling it). Default 30.
    pub ack_wait_secs: u64,
}

impl Default for NatsIngestConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            stream: "BELFRY_NOTIFICATIONS".into(),
            subject: "belfry.notify".into(),
            durable: "belfry".into(),
            dead_letter_subject: "belfry.dead-letter".into(),
            batch: 100,
            ack_wait_secs: 30,
        }
    }
}

/// Kafka source (the `kafka` cargo feature).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaIngestConfig {
    /// Bootstrap brokers, comma-separated `host:port`. Default `127.0.0.1:9092`.
    pub brokers: String,
    /// Topic to consume; each message's value is a notify request. Default
    /// `belfry.notifications`.
    pub topic: String,
    /// Consumer group, shared by all nodes (they split the partitions). Default `belfry`.
    pub group: String,
    /// Topic receiving poison messages (the original key and value, header `belfry-error`).
    /// It must exist, or be auto-created by the brokers. Default `belfry.dead-letter`.
    pub dead_letter_topic: String,
    /// Offsets are committed after this many stored messages, or sooner when the topic goes
    /// quiet (`commit_interval_ms`). Default 100.
    pub commit_batch: usize,
    /// Longest time a stored message's offset waits for its commit, in milliseconds.
    /// Default 1000.
    pub commit_interval_ms: u64,
    /// Milliseconds without a heartbeat before the group gives a node's partitions to the
    /// others (a node killed without leaving the group). Default 45000.
    pub session_timeout_ms: u64,
}

impl Default for KafkaIngestConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topic: "belfry.notifications".into(),
            group: "belfry".into(),
            dead_letter_topic: "belfry.dead-letter".into(),
            commit_batch: 100,
            commit_interval_ms: 1000,
            session_timeout_ms: 45_000,
        }
    }
}

/// Reads `[ingest.kafka]`, refusing it on a build that cannot consume from Kafka: a config
/// naming a source that would silently not run is an error, not a warning.
fn kafka_section<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<KafkaIngestConfig>, D::Error> {
    let section = Option::<KafkaIngestConfig>::deserialize(d)?;
    if section.is_some() && !cfg!(feature = "kafka") {
        return Err(serde::de::Error::custom(
            "[ingest.kafka] is configured but this build of Belfry has no Kafka support; \
             rebuild with `cargo build --features kafka`, or remove the section",
        ));
    }
    Ok(section)
}

/// Retention: expired notifications always go; the rest per these settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Notifications older than this many days are deleted; 0 keeps them. Default 0.
    pub ttl_days: u32,
    /// Each user keeps at most this many notifications, newest first; 0 keeps all. Default 0.
    pub per_user_cap: u32,
    /// Seconds between two retention passes. Default 60.
    pub interval_secs: u64,
    /// Rows deleted per transaction. Default 500.
    pub batch_size: u32,
    /// Pause between two batches of one pass, in milliseconds. Default 10.
    pub pause_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            ttl_days: 0,
            per_user_cap: 0,
            interval_secs: 60,
            batch_size: 500,
            pause_ms: 10,
        }
    }
}

/// Grouping: notifications with the same `group_key` for the same user collapse into one item.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupingConfig {
    /// An event joins its group's newest item while that item is unread and its first event is
    /// less than this many seconds old; 0 turns grouping off. Default 3600.
    pub window_secs: u64,
    /// Most distinct actors a grouped item lists, most recent first (1–1000). `actor_count`
    /// stays exact while a group has at most this many distinct actors. Default 10.
    pub max_actors: usize,
}

impl Default for GroupingConfig {
    fn default() -> Self {
        Self {
            window_secs: 3600,
            max_actors: 10,
        }
    }
}

/// Per-user preferences.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreferencesConfig {
    /// What happens to a notification its recipient muted: `store` (kept for history, already
    /// read, never delivered live or pushed) or `drop` (not stored). Default `store`.
    pub muted: crate::model::MutedAction,
    /// How long a node keeps a user's preferences in memory, in seconds; a change made on
    /// another node is seen after at most this long. 0 reads the store on every notify.
    /// Default 5.
    pub cache_secs: u64,
    /// Most users whose preferences a node keeps in memory. Default 100000.
    pub cache_capacity: u64,
}

impl Default for PreferencesConfig {
    fn default() -> Self {
        Self {
            muted: crate::model::MutedAction::Store,
            cache_secs: 5,
            cache_capacity: 100_000,
        }
    }
}

/// Store tuning.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Most notifications written in one group-commit transaction. Default 2048.
    pub group_commit_max_rows: usize,
    /// SQLite `synchronous` pragma: `full` (every commit reaches the disk; default) or
    /// `normal` (faster; a power cut may lose the last commits, a process crash does not).
    pub sqlite_synchronous: String,
    /// Connections in the read pool. Default 4.
    pub read_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            group_commit_max_rows: 2048,
            sqlite_synchronous: "full".into(),
            read_connections: 4,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info,belfry=debug`. Default `info`.
    pub filter: String,
    /// `text` or `json`. Default `text`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: "text".into(),
        }
    }
}

fn redact_list<S: serde::Serializer>(v: &[SecretString], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|_| "[redacted]"))
}

pub(crate) fn redact_opt<S: serde::Serializer>(
    v: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("[redacted]"),
        None => s.serialize_none(),
    }
}

fn redact_url_text<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(v))
}

fn redact_url_opt<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(url) => s.serialize_some(&redact_url(url)),
        None => s.serialize_none(),
    }
}

/// Query parameters whose values are credentials (`?password=` is a PostgreSQL connection
/// option, `?token=` a common one).
fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "secret", "token"].iter().any(|s| name.contains(s))
}

/// `text` with the credentials of a URL replaced by `***`, for printing the configuration and
/// errors: the password, a user part without a password (NATS reads `nats://TOKEN@host` as a
/// token), and the values of credential query parameters. A URL that does not parse keeps only
/// what follows its last `@`.
pub fn redact_url(text: &str) -> String {
    let Ok(mut url) = url::Url::parse(text) else {
        return match text.rsplit_once('@') {
            Some((before, host)) => match before.split_once("://") {
                Some((scheme, _)) => format!("{scheme}://***@{host}"),
                None => format!("***@{host}"),
            },
            None => text.to_owned(),
        };
    };
    let mut redacted = false;
    if url.password().is_some() {
        redacted |= url.set_password(Some("***")).is_ok();
    } else if !url.username().is_empty() {
        redacted |= url.set_username("***").is_ok();
    }
    if url
        .query_pairs()
        .any(|(name, _)| is_secret_parameter(&name))
    {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_secret_parameter(&name) {
                    "***".to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        redacted = true;
    }
    // Unchanged URLs are shown as written, not as the parser normalises them.
    if redacted {
        url.to_string()
    } else {
        text.to_owned()
    }
}

/// Development secrets generated on first start when none are configured.
#[derive(Debug, Serialize, Deserialize)]
struct DevSecrets {
    api_keys: Vec<String>,
    jwt_secret: String,
}

/// `BELFRY_*` variables that are not server settings: the file flag, the tests' database, and
/// the variables the backend client packages read (`clients/python`).
const CLIENT_VARIABLES: &[&str] = &[
    "CONFIG",
    "TEST_DATABASE_URL",
    "URL",
    "API_KEY",
    "JWT_SECRET",
    "TIMEOUT",
];

impl Config {
    /// Loads defaults < `file` (when given) < `BELFRY_*` environment < `overrides`.
    ///
    /// Nested keys use `__` in the environment: `BELFRY_WS__OUTBOX_FRAMES=64`.
    pub fn load(file: Option<&Path>, overrides: Figment) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment
            // BELFRY_CONFIG names the file (a CLI flag); BELFRY_TEST_DATABASE_URL is for tests;
            // the backend clients' own variables (the Python package's) are theirs, so one
            // environment can serve an app and the server it calls.
            .merge(
                Env::prefixed("BELFRY_")
                    .ignore(CLIENT_VARIABLES)
                    .split("__"),
            )
            .merge(overrides);
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.ws.heartbeat_interval_secs == 0 {
            return Err(ConfigError::Unusable(
                "ws.heartbeat_interval_secs must be at least 1".into(),
            ));
        }
        if self.http.header_read_timeout_secs == 0 {
            return Err(ConfigError::Unusable(
                "http.header_read_timeout_secs must be at least 1".into(),
            ));
        }
        if self.http.max_connections == 0 {
            return Err(ConfigError::Unusable(
                "http.max_connections must be at least 1".into(),
            ));
        }
        if self.http.body_read_timeout_secs == 0 {
            return Err(ConfigError::Unusable(
                "http.body_read_timeout_secs must be at least 1".into(),
            ));
        }
        if self.ws.outbox_frames == 0 {
            return Err(ConfigError::Unusable(
                "ws.outbox_frames must be at least 1".into(),
            ));
        }
        if !(1..=1000).contains(&self.grouping.max_actors) {
            return Err(ConfigError::Unusable(
                "grouping.max_actors must be between 1 and 1000".into(),
            ));
        }
        if !matches!(self.store.sqlite_synchronous.as_str(), "full" | "normal") {
            return Err(ConfigError::Unusable(
                "store.sqlite_synchronous must be `full` or `normal`".into(),
            ));
        }
        if self.broker.kind != BrokerKind::Local && self.broker.url.is_none() {
            return Err(ConfigError::Unusable(
                "broker.url is required when broker.kind is redis or nats".into(),
            ));
        }
        let ws_origins = self.ws.allowed_origins.iter().flatten();
        for (setting, origin) in (self.http.cors_allowed_origins.iter())
            .map(|o| ("http.cors_allowed_origins", o))
            .chain(ws_origins.map(|o| ("ws.allowed_origins", o)))
        {
            check_origin(origin).map_err(|e| ConfigError::Unusable(format!("{setting}: {e}")))?;
        }
        if self.auth.jwks_url.is_some() && self.auth.jwt_public_key.is_some() {
            return Err(ConfigError::Unusable(
                "set auth.jwt_public_key or auth.jwks_url, not both".into(),
            ));
        }
        Ok(())
    }

    /// When no credentials are configured, loads (or creates, mode 0600) the development
    /// secrets file so that `serve`, `token` and `notify` agree on the same secrets.
    /// Returns true when development secrets are in use.
    pub fn ensure_dev_secrets(&mut self) -> Result<bool, ConfigError> {
        if self.auth.has_credentials() {
            return Ok(false);
        }
        let path = self.auth.secrets_file.clone();
        let err = |source| ConfigError::Secrets {
            path: path.clone(),
            source,
        };
        let secrets = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<DevSecrets>(&text)
                .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secrets = DevSecrets {
                    api_keys: vec![format!("bk_{}", random_hex(24))],
                    jwt_secret: random_hex(32),
                };
                write_private(&path, &secrets).map_err(err)?;
                secrets
            }
            Err(e) => return Err(err(e)),
        };
        self.auth.api_keys = secrets
            .api_keys
            .into_iter()
            .map(SecretString::from)
            .collect();
        self.auth.jwt_secret = Some(SecretString::from(secrets.jwt_secret));
        Ok(true)
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// The first configured API key, for the CLI's `notify` command.
    pub fn first_api_key(&self) -> Option<&str> {
        self.auth.api_keys.first().map(|k| k.expose_secret())
    }
}

/// Creates `dir` and its missing parents, owner-only (0700) on Unix; an existing directory
/// keeps its mode. The data directory holds the secrets file and the SQLite database.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn write_private(path: &Path, secrets: &DevSecrets) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let fresh = !dir.exists();
        create_private_dir(dir)?;
        // The folder usually lands inside the user's project: keep its secrets (and the SQLite
        // files beside them) out of version control.
        if fresh {
            std::fs::write(
                dir.join(".gitignore"),
                "# Created by Belfry: development secrets and data, never to be committed.\n*\n",
            )?;
        }
    }
    let text = toml::to_string(secrets).map_err(std::io::Error::other)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(
        b"# Development secrets generated by Belfry. Configure auth.* for production.\n",
    )?;
    file.write_all(text.as_bytes())
}

/// `bytes` random bytes as hex, from the OS generator (via UUIDv4, which uses `getrandom`).
pub fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    while out.len() < bytes * 2 {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(bytes * 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_print_without_secrets() {
        let mut config = Config::default();
        config.auth.jwt_secret = Some(SecretString::from("hunter2"));
        config.validate().unwrap();
        let text = config.to_redacted_toml();
        assert!(!text.contains("hunter2"));
        assert!(text.contains("[redacted]"));
    }

    #[test]
    fn urls_are_printed_without_their_credentials() {
        for (url, shown) in [
            (
                "postgres://belfry:hunter2@db:5432/belfry",
                "postgres://belfry:***@db:5432/belfry",
            ),
            ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
            ("nats://hunter2@nats:4222", "nats://***@nats:4222"),
            (
                "https://user:hunter2@idp.example/.well-known/jwks.json",
                "https://user:***@idp.example/.well-known/jwks.json",
            ),
            (
                "postgres://db/belfry?sslmode=require&password=hunter2",
                "postgres://db/belfry?sslmode=require&password=***",
            ),
            ("redis://:hunter2 with space@cache", "redis://:***@cache"),
            ("redis://:hunter2@[not-a-host", "redis://***@[not-a-host"),
            ("hunter2@cache", "***@cache"),
            (
                "sqlite://belfry-data/belfry.db",
                "sqlite://belfry-data/belfry.db",
            ),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        let mut config = Config {
            database_url: "postgres://belfry:hunter2@db/belfry".into(),
            ..Config::default()
        };
        config.broker.url = Some("redis://:hunter2@cache:6379".into());
        config.auth.jwks_url = Some("https://u:hunter2@idp.example/jwks".into());
        config.ingest.redis = Some(RedisIngestConfig {
            url: "redis://u:hunter2@cache".into(),
            ..RedisIngestConfig::default()
        });
        config.ingest.nats = Some(NatsIngestConfig {
            url: "nats://hunter2@nats".into(),
            ..NatsIngestConfig::default()
        });
        let text = config.to_redacted_toml();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(text.matches("***").count(), 5, "{text}");
    }

    #[test]
    fn flags_override_file_values() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("belfry.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\n[ws]\noutbox_frames = 8\n",
        )
        .unwrap();
        let flags = Figment::new().merge(("listen", "127.0.0.1:9001"));
        let config = Config::load(Some(&file), flags).unwrap();
        assert_eq!(config.listen.port(), 9001);
        assert_eq!(config.ws.outbox_frames, 8);
    }

    /// Every key of the configuration is documented in docs/config.md, and vice versa.
    #[test]
    fn docs_config_md_lists_exactly_the_configuration_keys() {
        let docs = include_str!("../../../docs/config.md");
        let value = toml::Value::try_from(Config::default()).unwrap();
        let mut keys = std::collections::BTreeSet::new();
        for (key, v) in value.as_table().unwrap() {
            match v.as_table() {
                Some(section) => {
                    for sub in section.keys() {
                        keys.insert((format!("[{key}]"), sub.clone()));
                    }
                }
                None => {
                    keys.insert((String::new(), key.clone()));
                }
            }
        }
        // Optional settings are unset by default and so absent from the TOML value.
        for optional in [
            "jwt_secret",
            "jwt_public_key",
            "jwks_url",
            "audience",
            "issuer",
        ] {
            keys.insert(("[auth]".into(), optional.into()));
        }
        keys.insert(("[broker]".into(), "url".into()));
        keys.insert(("[ws]".into(), "allowed_origins".into()));
        keys.insert(("[push]".into(), "vapid_private_key".into()));
        let redis = toml::Value::try_from(RedisIngestConfig::default()).unwrap();
        let nats = toml::Value::try_from(NatsIngestConfig::default()).unwrap();
        let kafka = toml::Value::try_from(KafkaIngestConfig::default()).unwrap();
        for (section, value) in [
            ("[ingest.redis]", redis),
            ("[ingest.nats]", nats),
            ("[ingest.kafka]", kafka),
        ] {
            for key in value.as_table().unwrap().keys() {
                keys.insert((section.into(), key.clone()));
            }
        }
        for (section, key) in &keys {
            assert!(
                docs.contains(&format!("| `{key}` |")),
                "docs/config.md does not document {section} {key}"
            );
        }
        let code: std::collections::BTreeSet<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
        let extra: Vec<&str> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
            .filter(|k| !code.contains(k))
            .collect();
        assert!(
            extra.is_empty(),
            "docs/config.md lists keys the code does not have: {extra:?}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("belfry.toml");
        std::fs::write(&file, "[ws]\noutbox_frame = 8\n").unwrap();
        assert!(Config::load(Some(&file), Figment::new()).is_err());
    }

    #[test]
    fn cors_and_websocket_origins_must_be_exact_origins() {
        for good in [
            "*",
            "http://localhost:5173",
            "https://app.example.com",
            "http://[::1]:8080",
        ] {
            assert_eq!(check_origin(good), Ok(()), "{good}");
        }
        for bad in [
            "http://localhost:5173/",
            "https://app.example.com/app",
            "localhost:5173",
            "https://App.example.com",
            "ftp://example.com",
            "",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("belfry.toml");
        std::fs::write(&file, "[ws]\nallowed_origins = [\"http://a.example/\"]\n").unwrap();
        let error = Config::load(Some(&file), Figment::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains("ws.allowed_origins"), "{error}");
        assert!(
            error.contains("`http://a.example`"),
            "the canonical form: {error}"
        );
    }

    #[test]
    fn dev_secrets_are_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Config::default();
        a.auth.secrets_file = dir.path().join("s/secrets.toml");
        assert!(a.ensure_dev_secrets().unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.path().join("s")), 0o700, "the data directory");
            assert_eq!(mode(&a.auth.secrets_file), 0o600);
        }
        let mut b = Config::default();
        b.auth.secrets_file = a.auth.secrets_file.clone();
        b.ensure_dev_secrets().unwrap();
        assert_eq!(a.first_api_key(), b.first_api_key());
    }
}
