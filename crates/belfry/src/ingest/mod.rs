//! Ingestion: take notify requests from the app's event stream instead of HTTP — Redis Streams,
//! NATS JetStream, and Kafka (behind the `kafka` cargo feature, which links librdkafka).
//!
//! Every source feeds the same [`Pipeline`]: the message is the JSON of `POST /v1/notifications`
//! (see `intake`), validated the same way and stored through the notifier. A source
//! acknowledges (XACK, JetStream ack, offset commit) **only after** the notification is stored,
//! so a crash re-delivers; the idempotency key — the message's own, or one derived from its
//! position in the stream — makes the re-delivery store nothing twice. A poison message (bad
//! JSON, schema error) is counted, sent to the source's dead-letter destination and acknowledged:
//! it never blocks the stream. While the store is unavailable a source retries the same message
//! with backoff instead of reading further (backpressure, no unbounded buffer).
//!
//! Sources never know about HTTP; they only know their broker's client and the pipeline.

#[cfg(feature = "kafka")]
mod kafka;
mod nats;
mod redis;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{IngestConfig, LimitsConfig};
use crate::intake::{NotifyRequest, validate};
use crate::model::Key;
use crate::notifier::Notifier;
use crate::store::StoreError;
use crate::telemetry::Metrics;

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Stored (or already stored: an idempotent replay). Acknowledge it.
    Stored,
    /// Unusable; send it to the dead-letter destination with this reason, then acknowledge it.
    Poison(String),
}

/// Validation and storage shared by every source.
#[derive(Clone)]
pub struct Pipeline {
    notifier: Arc<Notifier>,
    limits: LimitsConfig,
    metrics: Arc<Metrics>,
}

impl Pipeline {
    /// A pipeline storing through `notifier`.
    pub fn new(notifier: Arc<Notifier>, limits: LimitsConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            notifier,
            limits,
            metrics,
        }
    }

    /// Handles one message. `position` names where it sits in its stream (unique per message,
    /// stable across re-deliveries) and becomes its idempotency key when it has none.
    /// `Err` means the store is unavailable (or failed on a bug): do not acknowledge, try again
    /// later.
    pub async fn handle(&self, payload: &[u8], position: &str) -> Result<Handled, StoreError> {
        let request: NotifyRequest = match serde_json::from_slice(payload) {
            Ok(crate::json::Object(request)) => request,
            Err(e) => return Ok(self.poison(format!("not a notify request: {e}"))),
        };
        let mut fields = BTreeMap::new();
        let Some(mut new) = validate(request, &self.limits, "", &mut fields) else {
            let reasons: Vec<String> = fields.iter().map(|(f, p)| format!("{f}: {p}")).collect();
            return Ok(self.poison(reasons.join("; ")));
        };
        if new.idempotency_key.is_none() {
            new.idempotency_key = position_key(position);
        }
        match self.notifier.notify(vec![new]).await {
            Ok(_) => {}
            // The message holds a value the database refuses: retrying cannot help.
            Err(StoreError::Rejected(e)) => {
                return Ok(self.poison(format!("the database refused a value: {e}")));
            }
            Err(e) => return Err(e),
        }
        self.metrics.ingest_stored.inc();
        Ok(Handled::Stored)
    }

    fn poison(&self, reason: String) -> Handled {
        self.metrics.ingest_poison.inc();
        tracing::warn!(%reason, "poison message sent to the dead-letter destination");
        Handled::Poison(reason)
    }

    /// Retries `handle` with backoff while the store is unavailable; `None` on shutdown.
    pub async fn handle_until_stored(
        &self,
        payload: &[u8],
        position: &str,
        shutdown: &CancellationToken,
    ) -> Option<Handled> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.handle(payload, position).await {
                Ok(handled) => return Some(handled),
                Err(e) => {
                    tracing::warn!(error = %e, "ingest: store unavailable, retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// The idempotency key for a stream position; positions too long for a key (very long stream
/// names) are replaced by their SHA-256, so re-deliveries are still recognised.
fn position_key(position: &str) -> Option<Key> {
    use sha2::{Digest, Sha256};
    Key::parse(position)
        .or_else(|_| {
            let digest = Sha256::digest(position.as_bytes());
            Key::parse(format!("ingest:sha256:{digest:x}"))
        })
        .ok()
}

/// Starts every source enabled in `config`; each runs until `shutdown`.
pub fn start(config: &IngestConfig, pipeline: Pipeline, shutdown: CancellationToken) {
    if let Some(source) = &config.redis {
        tokio::spawn(redis::run(
            source.clone(),
            pipeline.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(source) = &config.nats {
        tokio::spawn(nats::run(
            source.clone(),
            pipeline.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(source) = &config.kafka {
        // Loading a config refuses `[ingest.kafka]` on a build without the feature; this is for
        // a `Config` built in code.
        #[cfg(not(feature = "kafka"))]
        tracing::error!(
            topic = %source.topic,
            "[ingest.kafka] is configured but this build has no Kafka support (cargo feature \
             `kafka`): the source does not run"
        );
        #[cfg(feature = "kafka")]
        tokio::spawn(kafka::run(source.clone(), pipeline, shutdown));
    }
}

/// Sleeps `delay` (doubling it up to 5 s) unless shutdown comes first; false on shutdown.
async fn backoff(delay: &mut Duration, shutdown: &CancellationToken) -> bool {
    let wait = *delay;
    *delay = (*delay * 2).min(Duration::from_secs(5));
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_positions_still_get_a_stable_key() {
        let long = format!("ingest:redis:{}:1-0", "s".repeat(400));
        let key = position_key(&long).unwrap();
        assert!(key.as_str().starts_with("ingest:sha256:"));
        assert_eq!(position_key(&long), Some(key));
        assert_eq!(
            position_key("ingest:nats:S:7").unwrap().as_str(),
            "ingest:nats:S:7"
        );
    }
}
