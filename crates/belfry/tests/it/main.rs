//! Belfry's integration tests: one binary, every test against a real server on a random port
//! with its own SQLite database, over real sockets.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)]

mod support;

mod auth;
mod auth_keys;
mod cli;
mod convergence;
mod cors;
mod errors;
mod fanout;
mod grouping;
mod inbox;
mod ingest;
mod lifecycle;
mod limits;
mod live_ws;
mod logs;
mod poll;
mod preferences;
mod push;
mod push_endpoints;
mod push_load;
mod ratelimit;
mod resume;
mod retention;
mod rooms;
mod slow;
mod sqlite_wal;
mod sse;
mod store_concurrency;
mod tokens;
