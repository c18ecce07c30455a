//! The notifier: the one road every change takes. Validate (done by the caller's types) →
//! preferences (who muted it, who may be pushed) → store (commit, per-user seq, grouping) →
//! broker (fan-out to live connections) → push (queued for users with no live connection).
//!
//! Invariant: nothing is published before it is committed, so a client never sees a
//! notification that a later read of the store would not return; and nothing muted is
//! published or pushed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use crate::broker::Broker;
use crate::model::{MutedAction, NewNotification, NotificationId, Seq, StateChange, UserId, now};
use crate::preferences::{PreferenceCache, Preferences};
use crate::protocol::ServerFrame;
use crate::push::Pusher;
use crate::store::{Counts, Inserted, StateChanged, Store, StoreError};
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
    preferences: PreferenceCache,
    muted_action: MutedAction,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// Wires the notifier.
    pub fn new(
        store: Arc<dyn Store>,
        broker: Arc<dyn Broker>,
        pusher: Option<Arc<Pusher>>,
        preferences: PreferenceCache,
        muted_action: MutedAction,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            broker,
            pusher,
            preferences,
            muted_action,
            metrics,
        }
    }

    /// Applies the recipients' preferences, stores `batch` atomically, then publishes every new
    /// or grouped item to its recipient (unless muted) and queues pushes the recipient allows.
    pub async fn notify(
        &self,
        mut batch: Vec<NewNotification>,
    ) -> Result<Vec<Inserted>, StoreError> {
        let no_push = self.apply_preferences(&mut batch).await?;
        let results = self.store.insert(batch).await?;
        for (result, no_push) in results.iter().zip(&no_push) {
            let Inserted::New(list) = result else {
                continue;
            };
            self.metrics.notifications_stored.inc_by(list.len() as u64);
            for notification in list.iter().filter(|n| !n.muted) {
                let mut event = ServerFrame::delivering(notification).encode();
                event.published_at = Some(Instant::now());
                if let Err(e) = self
                    .broker
                    .publish(&notification.user_id, Arc::new(event))
                    .await
                {
                    // Stored is what counts: live clients fill the gap from the store.
                    tracing::warn!(error = %e, "publish failed after commit");
                }
                if let Some(pusher) = &self.pusher
                    && !no_push.contains(&notification.user_id)
                {
                    pusher.enqueue(notification);
                }
            }
        }
        Ok(results)
    }

    /// Marks, in each request, the recipients who muted it in-app; returns, per request, the
    /// recipients who turned its web push off.
    async fn apply_preferences(
        &self,
        batch: &mut [NewNotification],
    ) -> Result<Vec<HashSet<UserId>>, StoreError> {
        let users: Vec<UserId> = batch
            .iter()
            .flat_map(|request| request.recipients.iter().cloned())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let preferences = self.preferences.get_many(&users).await?;
        let at = now();
        let mut no_push = Vec::with_capacity(batch.len());
        for request in batch {
            let mut silent = HashSet::new();
            for user in &request.recipients {
                let Some(prefs) = preferences.get(user) else {
                    continue;
                };
                let delivery = prefs.delivery(&request.kind, at);
                if !delivery.in_app {
                    request.muted.insert(user.clone());
                }
                if !delivery.web_push {
                    silent.insert(user.clone());
                }
            }
            request.muted_action = self.muted_action;
            no_push.push(silent);
        }
        Ok(no_push)
    }

    /// `user`'s preferences (the defaults when never set).
    pub async fn preferences(&self, user: &UserId) -> Result<Arc<Preferences>, StoreError> {
        self.preferences.get(user).await
    }

    /// Replaces `user`'s preferences and tells all of their connections.
    pub async fn set_preferences(
        &self,
        user: &UserId,
        preferences: Preferences,
    ) -> Result<Arc<Preferences>, StoreError> {
        let (preferences, version) = self.preferences.set(user, preferences).await?;
        let event = ServerFrame::Preferences {
            preferences: &preferences,
            version,
        }
        .encode();
        if let Err(e) = self.broker.publish(user, Arc::new(event)).await {
            tracing::warn!(error = %e, "preferences publish failed");
        }
        Ok(preferences)
    }

    /// Changes the state of some of `user`'s notifications and tells all of their connections.
    pub async fn change_state(
        &self,
        user: &UserId,
        ids: &[NotificationId],
        change: StateChange,
    ) -> Result<StateOutcome, StoreError> {
        let StateChanged { changed, counts } = self.store.set_state(user, ids, change).await?;
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
        let (StateChanged { changed, counts }, up_to) = self.store.mark_all_read(user).await?;
        // Nothing changed: no new version, and every connection already has this state.
        if changed > 0 {
            self.publish_state(user, StateChange::Read, &[], Some(up_to), counts)
                .await;
        }
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
            version: counts.state_version,
        }
        .encode();
        if let Err(e) = self.broker.publish(user, Arc::new(event)).await {
            tracing::warn!(error = %e, "state publish failed");
        }
    }
}
