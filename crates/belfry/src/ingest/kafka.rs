//! Kafka source (cargo feature `kafka`): a consumer group on one topic, so several nodes split
//! its partitions. Each message's value is a notify request. Messages are handled one at a time;
//! auto-commit is off and a message's offset is stored only once its notification is stored (or
//! it was dead-lettered), then the stored offsets are committed every `commit_batch` messages or
//! `commit_interval_ms`. A crash re-delivers what was not committed, and the idempotency key
//! derived from the message's position stores nothing twice.
//!
//! librdkafka's calls that wait on the network (a synchronous commit, closing the consumer) block
//! a thread: they run on tokio's blocking pool, never on a runtime worker.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Handled, Pipeline, backoff};
use crate::config::KafkaIngestConfig;
use crate::model::Key;

/// Header of a dead-lettered message: why it was refused.
pub const ERROR_HEADER: &str = "belfry-error";
/// Header of a dead-lettered message: where it was read, `<topic>:<partition>:<offset>`.
pub const SOURCE_HEADER: &str = "belfry-source";

/// How long a dead letter may wait in the producer's queue before the send fails.
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(10);

struct Clients {
    consumer: StreamConsumer,
    producer: FutureProducer,
}

pub(super) async fn run(
    config: KafkaIngestConfig,
    pipeline: Pipeline,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        let result = match connect(&config) {
            Ok(clients) => {
                let result = consume(&config, &pipeline, &clients, &shutdown).await;
                close(clients).await;
                result
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, topic = %config.topic, "kafka ingest failed; reconnecting")
            }
        }
        if !backoff(&mut delay, &shutdown).await {
            return;
        }
    }
}

fn connect(config: &KafkaIngestConfig) -> Result<Clients, KafkaError> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", "belfry")
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        // Offsets are stored by `consume` after the store, not by librdkafka on delivery.
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        // Heartbeats also carry news of a rebalance: librdkafka's 3 s, or more often when the
        // session is short.
        .set(
            "heartbeat.interval.ms",
            (config.session_timeout_ms / 3).clamp(1, 3000).to_string(),
        )
        // What librdkafka fetches ahead of the one message being handled: bounded, and small
        // next to its 64 MiB default, so a slow store slows the fetching down.
        .set("queued.max.messages.kbytes", "4096")
        .create()?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", "belfry")
        .create()?;
    Ok(Clients { consumer, producer })
}

/// Runs until shutdown (`Ok`) or an error that needs new clients (`Err`). librdkafka reconnects
/// to brokers by itself, so a consumption error short of fatal only pauses the loop.
async fn consume(
    config: &KafkaIngestConfig,
    pipeline: &Pipeline,
    clients: &Clients,
    shutdown: &CancellationToken,
) -> Result<(), KafkaError> {
    let Clients { consumer, producer } = clients;
    consumer.subscribe(&[&config.topic])?;
    let commit_interval = Duration::from_millis(config.commit_interval_ms);
    let mut uncommitted = 0;
    let mut commit_at: Option<Instant> = None;
    let mut pause = Duration::from_millis(100);
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep_until(commit_at.unwrap_or_else(Instant::now)),
                if commit_at.is_some() => {
                commit(consumer);
                (uncommitted, commit_at) = (0, None);
                continue;
            }
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message,
            Err(e @ KafkaError::MessageConsumptionFatal(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, topic = %config.topic, "kafka ingest: consumer error");
                if !backoff(&mut pause, shutdown).await {
                    return Ok(());
                }
                continue;
            }
        };
        pause = Duration::from_millis(100);
        let position = position(message.topic(), message.partition(), message.offset());
        let payload = message.payload().unwrap_or_default();
        let Some(handled) = pipeline
            .handle_until_stored(payload, &position, shutdown)
            .await
        else {
            return Ok(());
        };
        if let Handled::Poison(reason) = handled {
            dead_letter(producer, &config.dead_letter_topic, &message, &reason).await?;
        }
        consumer.store_offset_from_message(&message)?;
        uncommitted += 1;
        if uncommitted >= config.commit_batch.max(1) {
            commit(consumer);
            (uncommitted, commit_at) = (0, None);
        } else if commit_at.is_none() {
            commit_at = Some(Instant::now() + commit_interval);
        }
    }
}

/// Commits the stored offsets without waiting: a commit that fails only means a re-delivery.
fn commit(consumer: &StreamConsumer) {
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
        tracing::warn!(error = %e, "kafka ingest: offset commit failed");
    }
}

/// Commits the stored offsets and leaves the group (so its partitions move at once), on the
/// blocking pool.
async fn close(clients: Clients) {
    let closing = tokio::task::spawn_blocking(move || {
        match clients.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(error = %e, "kafka ingest: final offset commit failed"),
        }
        drop(clients);
    });
    if let Err(e) = closing.await {
        tracing::warn!(error = %e, "kafka ingest: closing the consumer failed");
    }
}

/// Produces `message` to the dead-letter topic with the reason in a header, and waits until the
/// brokers have it: only then may its offset be committed.
async fn dead_letter(
    producer: &FutureProducer,
    topic: &str,
    message: &BorrowedMessage<'_>,
    reason: &str,
) -> Result<(), KafkaError> {
    let source = format!(
        "{}:{}:{}",
        message.topic(),
        message.partition(),
        message.offset()
    );
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: ERROR_HEADER,
            value: Some(reason),
        })
        .insert(Header {
            key: SOURCE_HEADER,
            value: Some(&source),
        });
    let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
    if let Some(payload) = message.payload() {
        record = record.payload(payload);
    }
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    producer
        .send(record, DEAD_LETTER_TIMEOUT)
        .await
        .map(drop)
        .map_err(|(e, _)| e)
}

/// The idempotency key of the message at `offset` of `partition`:
/// `ingest:kafka:<topic>:<partition>:<offset>`, with the topic replaced by its SHA-256 when the
/// key would be longer than a key may be (topic names go up to 249 characters).
fn position(topic: &str, partition: i32, offset: i64) -> String {
    let key = format!("ingest:kafka:{topic}:{partition}:{offset}");
    if key.chars().count() <= Key::MAX_LEN {
        return key;
    }
    let digest = Sha256::digest(topic.as_bytes());
    format!("ingest:kafka:{digest:x}:{partition}:{offset}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_names_topic_partition_and_offset_and_always_fits_a_key() {
        assert_eq!(
            position("belfry.notifications", 2, 41),
            "ingest:kafka:belfry.notifications:2:41"
        );
        let long = "t".repeat(249);
        let key = position(&long, i32::MAX, i64::MAX);
        assert!(Key::parse(key.as_str()).is_ok(), "{key}");
        assert_ne!(key, position(&"u".repeat(249), i32::MAX, i64::MAX));
    }
}
