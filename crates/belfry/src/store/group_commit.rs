//! Group commit, for both backends: `insert` calls queue their batches, and writer tasks commit
//! whatever is queued (up to a row budget) in one transaction, planned in memory first
//! (`plan`) and written with a few multi-row statements, so throughput hinges neither on one
//! commit per notification nor on one statement per row. An idempotency conflict refuses only
//! the batch it belongs to.
//!
//! The insert logic (idempotency replay, seq assignment, grouping, recording keys) lives here
//! and in `plan` once; a backend supplies its statements through [`GroupWrites`].

use std::future::Future;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sqlx::{Database, Pool};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::plan::{Plan, Planned};
use super::rows::NotificationRow;
use super::{Inserted, StoreError, WritePolicy};
use crate::model::{Key, NewNotification, Seq, UserId};

/// One caller's result: what it stored or replayed, or an error that undid only its batch.
pub(super) type Outcome = Result<Vec<Inserted>, StoreError>;

/// Queued batches waiting for a writer.
type Queue = Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>;

struct Job {
    batch: Vec<NewNotification>,
    reply: oneshot::Sender<Outcome>,
}

/// The statements a backend runs to store one group. Implemented for a backend's connection.
#[async_trait]
pub(super) trait GroupWrites: Send {
    /// Runs once per group, before any batch: takes the locks that keep this transaction from
    /// deadlocking with concurrent ones (other writers, other nodes).
    async fn lock_group(&mut self, batches: &[Vec<NewNotification>]) -> Result<(), sqlx::Error>;

    /// The fingerprint and response stored for `key` after `since_ms`.
    async fn find_key(
        &mut self,
        key: &Key,
        since_ms: i64,
    ) -> Result<Option<(String, String)>, sqlx::Error>;

    /// The newest item of `user`'s group `key`, if any.
    async fn group_head(
        &mut self,
        user: &UserId,
        key: &Key,
    ) -> Result<Option<NotificationRow>, sqlx::Error>;

    /// The last seq of each of `users` that has one, as `(user_id, last_seq)`.
    async fn last_seqs(&mut self, users: &[&UserId]) -> Result<Vec<(String, Seq)>, sqlx::Error>;

    /// Sets each user's last seq.
    async fn save_seqs(&mut self, seqs: &[(&UserId, Seq)]) -> Result<(), sqlx::Error>;

    /// Inserts new rows.
    async fn insert_rows(&mut self, rows: &[&Planned]) -> Result<(), sqlx::Error>;

    /// Rewrites a stored group item (found by id) as planned: its new seq, type, data, count,
    /// actors, update time and expiry.
    async fn rewrite_group_item(&mut self, item: &Planned) -> Result<(), sqlx::Error>;

    /// Records `key`'s first result, replacing an expired use of the key.
    async fn record_key(
        &mut self,
        key: &Key,
        fingerprint: &str,
        response: &str,
        created_ms: i64,
    ) -> Result<(), sqlx::Error>;
}

/// The queue in front of a backend's writer tasks.
pub(super) struct GroupCommit {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writers: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl GroupCommit {
    /// Starts `writers` tasks. Each takes what is queued, up to `max_rows` notifications, and
    /// hands the batches to `commit`, which returns one [`Outcome`] per batch in order, or a
    /// database error that failed the whole group. A failure that is not the database's health
    /// (a value it refused, a bug it hit) is retried batch by batch, so that only the batch at
    /// fault fails.
    pub(super) fn start<C, F>(writers: usize, max_rows: usize, commit: C) -> Self
    where
        C: Fn(Arc<[Vec<NewNotification>]>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Vec<Outcome>, sqlx::Error>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<Job>(1024);
        let queue: Queue = Arc::new(tokio::sync::Mutex::new(rx));
        let commit = Arc::new(commit);
        let handles = (0..writers.max(1))
            .map(|_| {
                tokio::spawn(run_writer(
                    Arc::clone(&queue),
                    Arc::clone(&commit),
                    max_rows.max(1),
                ))
            })
            .collect();
        Self {
            jobs: Mutex::new(Some(tx)),
            writers: tokio::sync::Mutex::new(handles),
        }
    }

    /// Queues `batch` and waits for the group it joins to commit.
    pub(super) async fn submit(&self, batch: Vec<NewNotification>) -> Outcome {
        let sender = match self.jobs.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
        .ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Job { batch, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Takes no more batches, and returns once every queued one is committed.
    pub(super) async fn close(&self) {
        let sender = match self.jobs.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(sender);
        let writers = std::mem::take(&mut *self.writers.lock().await);
        for writer in writers {
            let _ = writer.await;
        }
    }
}

/// Runs until the queue is closed and empty.
async fn run_writer<C, F>(queue: Queue, commit: Arc<C>, max_rows: usize)
where
    C: Fn(Arc<[Vec<NewNotification>]>) -> F,
    F: Future<Output = Result<Vec<Outcome>, sqlx::Error>>,
{
    while let Some(group) = next_group(&queue, max_rows).await {
        let (batches, replies): (Vec<_>, Vec<_>) =
            group.into_iter().map(|job| (job.batch, job.reply)).unzip();
        let batches: Arc<[Vec<NewNotification>]> = batches.into();
        let e = match commit(Arc::clone(&batches)).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
                continue;
            }
            Err(e) => Arc::new(e),
        };
        let healthy = !matches!(
            StoreError::classify(Arc::clone(&e)),
            StoreError::Unavailable(_)
        );
        if healthy && batches.len() > 1 {
            // One batch's value (or a bug one batch hit) must not fail the others it was
            // grouped with: each is committed alone.
            for (batch, reply) in batches.iter().zip(replies) {
                let alone: Arc<[Vec<NewNotification>]> = Arc::from(vec![batch.clone()]);
                let outcome = match commit(alone).await {
                    Ok(mut outcomes) => outcomes.pop().unwrap_or(Err(StoreError::Closed)),
                    Err(e) => Err(StoreError::from(e)),
                };
                let _ = reply.send(outcome);
            }
            continue;
        }
        for reply in replies {
            let _ = reply.send(Err(StoreError::classify(Arc::clone(&e))));
        }
    }
}

/// Waits for one job, then takes whatever else is queued, up to `max_rows` notifications.
async fn next_group(queue: &Queue, max_rows: usize) -> Option<Vec<Job>> {
    let mut queue = queue.lock().await;
    let first = queue.recv().await?;
    let mut rows = job_rows(&first);
    let mut group = vec![first];
    while rows < max_rows {
        match queue.try_recv() {
            Ok(job) => {
                rows += job_rows(&job);
                group.push(job);
            }
            Err(_) => break,
        }
    }
    Some(group)
}

fn job_rows(job: &Job) -> usize {
    job.batch.iter().map(|n| n.recipients.len()).sum()
}

/// Commits `batches` in one transaction, planned in memory and written at the end.
pub(super) async fn commit_group<DB>(
    pool: &Pool<DB>,
    batches: &[Vec<NewNotification>],
    policy: WritePolicy,
) -> Result<Vec<Outcome>, sqlx::Error>
where
    DB: Database,
    DB::Connection: GroupWrites,
{
    let mut tx = pool.begin().await?;
    tx.lock_group(batches).await?;
    let mut plan = Plan::seeded(&mut *tx, batches).await?;
    let mut outcomes = Vec::with_capacity(batches.len());
    for batch in batches {
        outcomes.push(plan.batch(&mut *tx, batch, policy).await?);
    }
    plan.write(&mut *tx).await?;
    tx.commit().await?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MutedAction, NotificationType};

    /// A database error that is the request's or the code's fault, not the database's health
    /// (a constraint the batch broke).
    #[derive(Debug)]
    struct Refused(&'static str);

    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "refused ({})", self.0)
        }
    }

    impl std::error::Error for Refused {}

    impl sqlx::error::DatabaseError for Refused {
        fn message(&self) -> &str {
            "check constraint violated"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::CheckViolation
        }
    }

    fn batch(user: &str) -> Vec<NewNotification> {
        vec![NewNotification {
            recipients: vec![UserId::parse(user).unwrap()],
            kind: NotificationType::parse("t").unwrap(),
            data: serde_json::json!({}),
            group_key: None,
            actor: None,
            idempotency_key: None,
            expires_at: None,
            muted: Default::default(),
            muted_action: MutedAction::Store,
        }]
    }

    /// A group holding one batch the database refuses fails that batch only; one that finds the
    /// database unreachable fails them all.
    #[tokio::test]
    async fn only_the_batch_whose_value_is_refused_fails_its_group() {
        let commit = |batches: Arc<[Vec<NewNotification>]>| async move {
            let users = || batches.iter().flatten().flat_map(|n| n.recipients.iter());
            if users().any(|u| u.as_str() == "down") {
                return Err(sqlx::Error::PoolTimedOut);
            }
            if users().any(|u| u.as_str() == "bad") {
                return Err(sqlx::Error::Database(Box::new(Refused("23514"))));
            }
            Ok(batches.iter().map(|_| Ok(Vec::new())).collect())
        };
        let writer = Arc::new(GroupCommit::start(1, 1000, commit));
        for (bad, expect_good) in [("bad", true), ("down", false)] {
            // Queued together before the writer runs, so they share one group.
            let jobs: Vec<_> = ["good1", bad, "good2"]
                .into_iter()
                .map(|user| {
                    let writer = Arc::clone(&writer);
                    tokio::spawn(async move { writer.submit(batch(user)).await })
                })
                .collect();
            let mut results = Vec::new();
            for job in jobs {
                results.push(job.await.unwrap());
            }
            assert_eq!(results[0].is_ok(), expect_good, "{results:?}");
            assert_eq!(results[2].is_ok(), expect_good, "{results:?}");
            match (bad, &results[1]) {
                ("bad", Err(StoreError::Bug(_))) | ("down", Err(StoreError::Unavailable(_))) => {}
                other => panic!("{other:?}"),
            }
        }
        writer.close().await;
    }
}
