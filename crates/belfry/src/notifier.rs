//! The notifier: the one road every change takes. Validate (done by the caller's types) →
//! store (commit, per-user seq) → broker (fan-out to live connections) → push (queued for
//! users with no live connection).
//!
//! Invariant: nothing is published before it is committed, so a client never sees a
//! notification that a later read of the store would not return.

use std::sync::Arc;
use std::time::Instant;

use crate::broker::Broker;
use crate::model::{NewNotification, NotificationId, Seq, StateChange, UserId};
use crate::protocol::ServerFrame;
use crate::push::Pusher;
use crate::store::{Counts, Inserted, Store, StoreError};
use crate::telemetry::Metrics;

/// What a state change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateOutcome {
    /// Notifications whose state changed.
    pub changed: u64,
    /// The user's unread count afterwards.
    pub unread_count: i64,
}

/// Stores and fans out notifications and state changes.
pub struct Notifier {
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    pusher: Option<Arc<Pusher>>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// Wires the notifier.
    pub fn new(
        store: Arc<dyn Store>,
        broker: Arc<dyn Broker>,
        pusher: Option<Arc<Pusher>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            broker,
            pusher,
            metrics,
        }
    }

    /// Stores `batch` atomically, then publishes every new notification to its recipient.
    pub async fn notify(&self, batch: Vec<NewNotification>) -> Result<Vec<Inserted>, StoreError> {
        let results = self.store.insert(batch).await?;
        for result in &results {
            let Inserted::New(list) = result else {
                continue;
            };
            self.metrics.notifications_stored.inc_by(list.len() as u64);
            for notification in list {
                let mut event = ServerFrame::Notification {
                    seq: notification.seq,
                    notification,
                }
                .encode();
                event.published_at = Some(Instant::now());
                if let Err(e) = self
                    .broker
                    .publish(&notification.user_id, Arc::new(event))
                    .await
                {
                    // Stored is what counts: live clients fill the gap from the store.
                    tracing::warn!(error = %e, "publish failed after commit");
                }
                if let Some(pusher) = &self.pusher {
                    pusher.enqueue(notification);
                }
            }
        }
        Ok(results)
    }

    /// Changes the state of some of `user`'s notifications and tells all of their connections.
    pub async fn change_state(
        &self,
        user: &UserId,
        ids: &[NotificationId],
        change: StateChange,
    ) -> Result<StateOutcome, StoreError> {
        let changed = self.store.set_state(user, ids, change).await?;
        let counts = self.store.counts(user).await?;
        if changed > 0 {
            let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
            self.publish_state(user, change, &ids, None, counts).await;
        }
        Ok(StateOutcome {
            changed,
            unread_count: counts.unread,
        })
    }

    /// Marks all of `user`'s notifications read and tells all of their connections.
    pub async fn mark_all_read(&self, user: &UserId) -> Result<StateOutcome, StoreError> {
        let (changed, up_to) = self.store.mark_all_read(user).await?;
        let counts = self.store.counts(user).await?;
        self.publish_state(user, StateChange::Read, &[], Some(up_to), counts)
            .await;
        Ok(StateOutcome {
            changed,
            unread_count: counts.unread,
        })
    }

    async fn publish_state(
        &self,
        user: &UserId,
        change: StateChange,
        ids: &[String],
        up_to_seq: Option<Seq>,
        counts: Counts,
    ) {
        let event = ServerFrame::State {
            change,
            ids,
            all: up_to_seq.is_some(),
            up_to_seq,
            unread_count: counts.unread,
            last_seq: counts.last_seq,
        }
        .encode();
        if let Err(e) = self.broker.publish(user, Arc::new(event)).await {
            tracing::warn!(error = %e, "state publish failed");
        }
    }
}
