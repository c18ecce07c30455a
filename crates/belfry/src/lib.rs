//! Belfry: a self-hosted real-time notification server.
//!
//! One event travels one road: `http` (backend API) → [`notifier::Notifier`] →
//! [`store::Store`] (commit, per-user `seq`) → [`broker::Broker`] → [`hub::Hub`] → the user's
//! live connections ([`transport`]: WebSocket, SSE, long-poll). The store is the source of truth;
//! everything after it may drop an event, and sessions repair any gap from the store.
//!
//! | module | owns |
//! | --- | --- |
//! | [`model`] | typed ids and the notification |
//! | [`store`] | durable notifications, per-user seq, read state, idempotency |
//! | [`json`] | strict JSON input: structs from objects only |
//! | [`intake`] | the notify request and its validation, shared by HTTP and ingestion |
//! | [`ingest`] | consuming notify requests from Redis Streams, NATS JetStream and Kafka (feature `kafka`) |
//! | [`preferences`] | per-user mute and channel choices, and the cache in front of the store |
//! | [`notifier`] | preferences, store-then-publish for notifications and state changes |
//! | [`broker`] | fan-out between nodes (in-process by default) |
//! | [`hub`] | this node's user → connections registry, bounded outboxes |
//! | [`transport`] | session loops: ordered, gap-free feeds over WS/SSE/poll |
//! | [`protocol`] | wire frames and the close/error code catalogue |
//! | [`auth`] | API keys and user JWTs |
//! | [`push`] | Web Push: VAPID, policy, payload, delivery with retries |
//! | [`rooms`] | room permissions, bounds, and presence across nodes |
//! | [`retention`] | deleting expired, old and over-cap notifications in small batches |
//! | [`ratelimit`] | per-API-key and per-recipient rate limits |
//! | [`http`] | routes, extractors, the single error → HTTP mapping, OpenAPI |
//! | [`app`] | wiring, listener, graceful shutdown |
//! | [`listener`] | the HTTP/1.1 accept loop: header-read timeout, connection draining |
//! | [`config`] | the typed, layered configuration |
//! | [`telemetry`] | logs and metrics |
//! | [`demo`] | the demo blog of `belfry demo` |

pub mod app;
pub mod auth;
pub mod broker;
pub mod config;
pub mod demo;
pub mod http;
pub mod hub;
pub mod ingest;
pub mod intake;
pub mod json;
pub mod listener;
pub mod model;
pub mod notifier;
pub mod positions;
pub mod preferences;
pub mod protocol;
pub mod push;
pub mod ratelimit;
pub mod retention;
pub mod rooms;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod transport;

pub use app::{App, AppState};
pub use config::Config;
