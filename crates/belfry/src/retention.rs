//! Retention: a background task that deletes what the store no longer keeps — expired
//! notifications (`expires_at`), notifications older than `retention.ttl_days`, those beyond
//! `retention.per_user_cap` per user, and idempotency keys past their window — in small batches,
//! one short transaction each, so writers are never blocked for long.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::model::now;
use crate::store::{Retention, Store, StoreError};

/// The policy in force now.
pub fn policy(config: &Config) -> Retention {
    let now_ms = i64::try_from(now().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let day_ms: i64 = 24 * 3600 * 1000;
    let retention = &config.retention;
    Retention {
        created_before_ms: if retention.ttl_days == 0 {
            i64::MIN
        } else {
            now_ms.saturating_sub(i64::from(retention.ttl_days).saturating_mul(day_ms))
        },
        per_user_cap: (retention.per_user_cap > 0).then_some(retention.per_user_cap),
        keys_before_ms: now_ms.saturating_sub(
            i64::try_from(config.limits.idempotency_window_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
        ),
        now_ms,
    }
}

/// One full pass: deletes batch after batch until nothing is left to delete; returns the total.
/// Between batches it yields, so other writes get the database.
pub async fn prune_once(store: &dyn Store, config: &Config) -> Result<u64, StoreError> {
    let retention = policy(config);
    let batch = config.retention.batch_size.max(1);
    let mut total = 0;
    loop {
        let deleted = store.prune(&retention, batch).await?;
        total += deleted;
        if deleted < u64::from(batch) {
            return Ok(total);
        }
        tokio::time::sleep(Duration::from_millis(config.retention.pause_ms)).await;
    }
}

/// Runs a pass every `interval_secs` until `stop`.
pub fn spawn(store: Arc<dyn Store>, config: Arc<Config>, stop: CancellationToken) {
    let every = Duration::from_secs(config.retention.interval_secs.max(1));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let pass = tokio::select! {
                () = stop.cancelled() => return,
                pass = prune_once(store.as_ref(), &config) => pass,
            };
            match pass {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "retention pass"),
                Err(e) => tracing::warn!(error = %e, "retention pass failed"),
            }
        }
    });
}
