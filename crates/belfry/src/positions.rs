//! The position check: no delivery may wait for a later event.
//!
//! The broker delivers at most once, so a change can be lost between nodes (a publish that timed
//! out, a broker restart, a full queue). Every interval each node compares, for each user with a
//! connection here, the position the hub has sent (highest `seq` and state version) with the
//! store's, in batched reads; a user still behind after a short settling time (a change just
//! committed is usually on its way) is resynced: each of their connections re-reads its feed
//! and, when the state version moved, gets a `sync` frame. A lost change therefore reaches every
//! tab within about one interval plus the settling time, with nothing else happening.
//!
//! It never writes and never decides what a user may see; the feeds do the reading.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::model::{Position, UserId};
use crate::store::Store;
use crate::telemetry::Metrics;

/// Users whose positions one store read fetches.
const READ_CHUNK: usize = 500;

/// The longest a user found behind is given to catch up on their own before being resynced.
const MAX_SETTLE: Duration = Duration::from_secs(1);

/// The position check of one node.
pub struct PositionCheck {
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    every: Duration,
}

impl PositionCheck {
    /// A check of `hub` against `store` every `every`.
    pub fn new(
        hub: Arc<Hub>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        every: Duration,
    ) -> Self {
        Self {
            hub,
            store,
            metrics,
            every,
        }
    }

    /// Runs until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let settle = self.every.min(MAX_SETTLE);
        let mut ticks = tokio::time::interval(self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let behind = match self.behind().await {
                Ok(behind) => behind,
                Err(e) => {
                    tracing::warn!(error = %e, "position check: cannot read the store");
                    continue;
                }
            };
            if behind.is_empty() {
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(settle) => {}
            }
            let resynced = self.resync_still_behind(&behind);
            if resynced > 0 {
                tracing::info!(
                    users = resynced,
                    "position check: resynced users behind the store"
                );
            }
        }
    }

    /// The users whose sent position is behind the store's, with the store's.
    async fn behind(&self) -> Result<Vec<(UserId, Position)>, crate::store::StoreError> {
        let sent = self.hub.sent_positions();
        let mut behind = Vec::new();
        for chunk in sent.chunks(READ_CHUNK) {
            let users: Vec<UserId> = chunk.iter().map(|(user, _)| user.clone()).collect();
            let stored: std::collections::HashMap<UserId, Position> =
                self.store.positions(&users).await?.into_iter().collect();
            for (user, sent) in chunk {
                if let Some(stored) = stored.get(user)
                    && sent.is_behind(stored)
                {
                    behind.push((user.clone(), *stored));
                }
            }
        }
        Ok(behind)
    }

    /// Resyncs those of `behind` that are still behind; returns how many.
    fn resync_still_behind(&self, behind: &[(UserId, Position)]) -> usize {
        let mut resynced = 0;
        for (user, stored) in behind {
            let still_behind = self
                .hub
                .sent_position(user)
                .is_some_and(|sent| sent.is_behind(stored));
            if still_behind && self.hub.resync_user(user, *stored) > 0 {
                resynced += 1;
            }
        }
        self.metrics.position_resyncs.inc_by(resynced as u64);
        resynced
    }
}
