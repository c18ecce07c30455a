//! Group commit, for both backends: `insert` calls queue their batches, and writer tasks commit
//! whatever is queued (up to a row budget) in one transaction, each caller's batch in its own
//! savepoint, so throughput does not hinge on one commit per notification and an idempotency
//! conflict undoes only the batch it belongs to.
//!
//! The insert logic (idempotency replay, seq assignment, recording keys) lives here once; a
//! backend supplies its statements through [`GroupWrites`].

use std::future::Future;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sqlx::{Database, Pool};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::rows::{NewRow, NotificationRow, duration_ms, encode_response, replay, to_ms};
use super::{Inserted, StoreError, WritePolicy};
use crate::model::{
    Key, MutedAction, NewNotification, Notification, NotificationId, Seq, UserId, now,
};

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

    /// Gives `row.user` its next seq and stores the row under it, in this transaction.
    async fn insert_row(&mut self, row: &NewRow<'_>) -> Result<Seq, sqlx::Error>;

    /// The newest item of `user`'s group `key`, if any.
    async fn group_head(
        &mut self,
        user: &UserId,
        key: &Key,
    ) -> Result<Option<NotificationRow>, sqlx::Error>;

    /// Gives `user` its next seq.
    async fn next_seq(&mut self, user: &UserId) -> Result<Seq, sqlx::Error>;

    /// Rewrites a group's item (found by id) as `merged`: its new seq, type, data, count,
    /// actors, update time and expiry.
    async fn rewrite_group_item(&mut self, merged: &Notification) -> Result<(), sqlx::Error>;

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
    /// database error that fails the whole group.
    pub(super) fn start<C, F>(writers: usize, max_rows: usize, commit: C) -> Self
    where
        C: Fn(Vec<Vec<NewNotification>>) -> F + Send + Sync + 'static,
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
    C: Fn(Vec<Vec<NewNotification>>) -> F,
    F: Future<Output = Result<Vec<Outcome>, sqlx::Error>>,
{
    while let Some(group) = next_group(&queue, max_rows).await {
        let (batches, replies): (Vec<_>, Vec<_>) =
            group.into_iter().map(|job| (job.batch, job.reply)).unzip();
        match commit(batches).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(Arc::clone(&e))));
                }
            }
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

/// Commits `batches` in one transaction, each in its own savepoint so a conflict undoes only
/// that batch.
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
    let mut outcomes = Vec::with_capacity(batches.len());
    for batch in batches {
        let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
        match insert_batch(&mut *savepoint, batch, policy).await? {
            Ok(inserted) => {
                savepoint.commit().await?;
                outcomes.push(Ok(inserted));
            }
            Err(refused) => {
                savepoint.rollback().await?;
                outcomes.push(Err(refused));
            }
        }
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Stores one caller's batch. The outer `Result` is a database failure (abort the group); the
/// inner one refuses this batch only (idempotency conflict, corrupt stored response).
async fn insert_batch<W: GroupWrites + ?Sized>(
    conn: &mut W,
    batch: &[NewNotification],
    policy: WritePolicy,
) -> Result<Outcome, sqlx::Error> {
    let created_at = now();
    let created_ms = to_ms(created_at);
    let mut out = Vec::with_capacity(batch.len());
    for request in batch {
        let key = request
            .idempotency_key
            .as_ref()
            .map(|key| (key, request.fingerprint()));
        if let Some((key, fingerprint)) = &key {
            let since = created_ms.saturating_sub(duration_ms(policy.idempotency_window));
            if let Some((seen, response)) = conn.find_key(key, since).await? {
                match replay(key, fingerprint, &seen, &response) {
                    Ok(replayed) => {
                        out.push(replayed);
                        continue;
                    }
                    Err(refused) => return Ok(Err(refused)),
                }
            }
        }
        let data = request.data.to_string();
        let mut stored = Vec::with_capacity(request.recipients.len());
        for user in &request.recipients {
            let muted = request.muted.contains(user);
            if muted && request.muted_action == MutedAction::Drop {
                continue;
            }
            let row = NewRow {
                id: NotificationId::new(),
                user,
                request,
                data: &data,
                created_at,
                muted,
            };
            if let Some(merged) = join_group(conn, &row, policy).await? {
                stored.push(merged);
                continue;
            }
            let seq = conn.insert_row(&row).await?;
            stored.push(row.stored(seq));
        }
        let inserted = Inserted::New(stored);
        if let Some((key, fingerprint)) = &key {
            let response = encode_response(&inserted)?;
            conn.record_key(key, fingerprint, &response, created_ms)
                .await?;
        }
        out.push(inserted);
    }
    Ok(Ok(out))
}

/// Merges `row` into its group's newest item when it joins it (see [`NewRow::joins`]), giving
/// the item the user's next seq; returns the merged item, or `None` to store `row` as new.
async fn join_group<W: GroupWrites + ?Sized>(
    conn: &mut W,
    row: &NewRow<'_>,
    policy: WritePolicy,
) -> Result<Option<Notification>, sqlx::Error> {
    let window_ms = duration_ms(policy.group_window);
    let Some(key) = row
        .request
        .group_key
        .as_ref()
        .filter(|_| window_ms > 0 && !row.muted)
    else {
        return Ok(None);
    };
    let Some(head) = conn.group_head(row.user, key).await? else {
        return Ok(None);
    };
    let head = match Notification::try_from(head) {
        Ok(head) => head,
        Err(e) => {
            // A row we cannot read is left alone; the event becomes an item of its own.
            tracing::warn!(error = %e, "group item unreadable; storing the event as a new item");
            return Ok(None);
        }
    };
    if !row.joins(&head, window_ms) {
        return Ok(None);
    }
    let seq = conn.next_seq(row.user).await?;
    let merged = row.merged_into(head, seq, policy.max_actors);
    conn.rewrite_group_item(&merged).await?;
    Ok(Some(merged))
}
