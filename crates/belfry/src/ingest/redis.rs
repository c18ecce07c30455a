//! Redis Streams source: a consumer group on one stream. Each entry's `payload` field holds the
//! notify request JSON. Entries are XACKed after they are stored; on start the consumer first
//! re-reads its own pending entries (delivered before a crash, never acknowledged).

use std::time::Duration;

use redis::AsyncCommands;
use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio_util::sync::CancellationToken;

use super::{Handled, Pipeline, backoff};
use crate::config::RedisIngestConfig;

/// The stream field that carries the message.
pub const PAYLOAD_FIELD: &str = "payload";

pub(super) async fn run(
    config: RedisIngestConfig,
    pipeline: Pipeline,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        match consume(&config, &pipeline, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, stream = %config.stream, "redis ingest failed; reconnecting")
            }
        }
        if !backoff(&mut delay, &shutdown).await {
            return;
        }
    }
}

/// Runs until shutdown (`Ok`) or a Redis error (`Err`, the caller reconnects).
async fn consume(
    config: &RedisIngestConfig,
    pipeline: &Pipeline,
    shutdown: &CancellationToken,
) -> redis::RedisResult<()> {
    let client = redis::Client::open(config.url.as_str())?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let created: redis::RedisResult<()> = con
        .xgroup_create_mkstream(&config.stream, &config.group, "0")
        .await;
    if let Err(e) = created
        && e.code() != Some("BUSYGROUP")
    {
        return Err(e);
    }
    // "0" first: our own pending entries (a crash between store and XACK); then ">" for new ones.
    let mut cursor = "0".to_owned();
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let options = StreamReadOptions::default()
            .group(&config.group, &config.consumer)
            .count(config.batch)
            .block(1000);
        let keys = [&config.stream];
        let ids = [&cursor];
        let reply: Option<StreamReadReply> = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            reply = con.xread_options(&keys, &ids, &options) => reply?,
        };
        let entries: Vec<_> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect();
        if entries.is_empty() && cursor == "0" {
            cursor = ">".to_owned();
            continue;
        }
        for entry in entries {
            let payload: Vec<u8> = entry.get(PAYLOAD_FIELD).unwrap_or_default();
            let position = format!("ingest:redis:{}:{}", config.stream, entry.id);
            let Some(handled) = pipeline
                .handle_until_stored(&payload, &position, shutdown)
                .await
            else {
                return Ok(());
            };
            if let Handled::Poison(reason) = handled {
                let _: String = con
                    .xadd(
                        &config.dead_letter_stream,
                        "*",
                        &[
                            (PAYLOAD_FIELD, payload.as_slice()),
                            ("error", reason.as_bytes()),
                            ("source_id", entry.id.as_bytes()),
                        ],
                    )
                    .await?;
            }
            let _: i64 = con
                .xack(&config.stream, &config.group, &[&entry.id])
                .await?;
        }
    }
}
