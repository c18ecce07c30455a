//! SQLite store: one file in WAL mode, a read pool, and one writer task that commits concurrent
//! inserts together (group commit), so throughput does not hinge on one fsync per notification.

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
// Dynamic SQL below is built only from constant fragments and `?` placeholders; values are
// always bound, never interpolated.
use sqlx::{AssertSqlSafe, Row, SqliteConnection};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Counts, Inserted, ListQuery, Store, StoreError};
use crate::config::StoreConfig;
use crate::model::{
    Key, NewNotification, Notification, NotificationId, NotificationRef, NotificationType, Seq,
    StateChange, UserId, now,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const COLUMNS: &str = "id, user_id, seq, type, data, group_key, created_at, seen_at, read_at, \
                       archived_at, expires_at";

type Reply = oneshot::Sender<Result<Vec<Inserted>, StoreError>>;

struct Job {
    batch: Vec<NewNotification>,
    reply: Reply,
}

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl SqliteStore {
    /// Opens (creating and migrating when needed) the database at `url` (`sqlite://PATH`).
    pub async fn open(
        url: &str,
        config: &StoreConfig,
        idempotency_window: Duration,
    ) -> Result<Self, StoreError> {
        let synchronous = if config.sqlite_synchronous == "normal" {
            SqliteSynchronous::Normal
        } else {
            SqliteSynchronous::Full
        };
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        if let Some(dir) = Path::new(options.get_filename()).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(Arc::new(sqlx::Error::Io(e))))?;
        }
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(config.read_connections.max(1))
            .connect_with(options.read_only(true))
            .await?;
        let (tx, rx) = mpsc::channel::<Job>(1024);
        let writer = tokio::spawn(run_writer(
            write.clone(),
            rx,
            config.group_commit_max_rows.max(1),
            idempotency_window,
        ));
        Ok(Self {
            read,
            write,
            jobs: Mutex::new(Some(tx)),
            writer: tokio::sync::Mutex::new(Some(writer)),
        })
    }
}

/// Runs until every sender is gone, committing queued jobs together.
async fn run_writer(
    pool: SqlitePool,
    mut rx: mpsc::Receiver<Job>,
    max_rows: usize,
    idempotency_window: Duration,
) {
    let window_ms = i64::try_from(idempotency_window.as_millis()).unwrap_or(i64::MAX);
    while let Some(first) = rx.recv().await {
        let mut rows = job_rows(&first);
        let mut jobs = vec![first];
        while rows < max_rows {
            match rx.try_recv() {
                Ok(job) => {
                    rows += job_rows(&job);
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        match commit_jobs(&pool, &jobs, window_ms).await {
            Ok(results) => {
                for (job, result) in jobs.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for job in jobs {
                    let _ = job.reply.send(Err(StoreError::Unavailable(e.clone())));
                }
            }
        }
    }
}

fn job_rows(job: &Job) -> usize {
    job.batch.iter().map(|n| n.recipients.len()).sum()
}

/// One transaction for all jobs; each job in its own savepoint so a conflict undoes only it.
async fn commit_jobs(
    pool: &SqlitePool,
    jobs: &[Job],
    window_ms: i64,
) -> Result<Vec<Result<Vec<Inserted>, StoreError>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
        match insert_job(&mut savepoint, &job.batch, window_ms).await {
            Ok(Ok(inserted)) => {
                savepoint.commit().await?;
                results.push(Ok(inserted));
            }
            Ok(Err(conflict)) => {
                savepoint.rollback().await?;
                results.push(Err(conflict));
            }
            Err(e) => return Err(e),
        }
    }
    tx.commit().await?;
    Ok(results)
}

/// Inserts one job. The outer `Result` is a database failure (abort everything); the inner one
/// an idempotency conflict (undo this job only).
async fn insert_job(
    conn: &mut SqliteConnection,
    batch: &[NewNotification],
    window_ms: i64,
) -> Result<Result<Vec<Inserted>, StoreError>, sqlx::Error> {
    let created_at = now();
    let created_ms = to_ms(created_at);
    let mut out = Vec::with_capacity(batch.len());
    for request in batch {
        let fingerprint = request
            .idempotency_key
            .as_ref()
            .map(|_| request.fingerprint());
        if let (Some(key), Some(fingerprint)) = (&request.idempotency_key, &fingerprint) {
            let row = sqlx::query(
                "SELECT fingerprint, response FROM idempotency_keys WHERE key = ? AND created_at > ?",
            )
            .bind(key.as_str())
            .bind(created_ms.saturating_sub(window_ms))
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = row {
                let seen: String = row.try_get(0)?;
                if &seen != fingerprint {
                    return Ok(Err(StoreError::IdempotencyConflict(key.as_str().into())));
                }
                let response: String = row.try_get(1)?;
                let refs: Vec<NotificationRef> = serde_json::from_str(&response)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                out.push(Inserted::Replayed(refs));
                continue;
            }
        }
        let data = request.data.to_string();
        let mut stored = Vec::with_capacity(request.recipients.len());
        for user in &request.recipients {
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO user_seqs (user_id, last_seq) VALUES (?, 1) \
                 ON CONFLICT (user_id) DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq",
            )
            .bind(user.as_str())
            .fetch_one(&mut *conn)
            .await?;
            let id = NotificationId::new();
            sqlx::query(
                "INSERT INTO notifications (id, user_id, seq, type, data, group_key, created_at, \
                 expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id.to_string())
            .bind(user.as_str())
            .bind(seq)
            .bind(request.kind.as_str())
            .bind(&data)
            .bind(request.group_key.as_ref().map(Key::as_str))
            .bind(created_ms)
            .bind(request.expires_at.map(to_ms))
            .execute(&mut *conn)
            .await?;
            stored.push(Notification {
                id,
                seq,
                user_id: user.clone(),
                kind: request.kind.clone(),
                data: request.data.clone(),
                group_key: request.group_key.clone(),
                created_at,
                seen_at: None,
                read_at: None,
                archived_at: None,
                expires_at: request.expires_at,
            });
        }
        let inserted = Inserted::New(stored);
        if let (Some(key), Some(fingerprint)) = (&request.idempotency_key, fingerprint) {
            let response = serde_json::to_string(&inserted.refs())
                .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            sqlx::query(
                "INSERT INTO idempotency_keys (key, fingerprint, response, created_at) \
                 VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET \
                 fingerprint = excluded.fingerprint, response = excluded.response, \
                 created_at = excluded.created_at",
            )
            .bind(key.as_str())
            .bind(fingerprint)
            .bind(response)
            .bind(created_ms)
            .execute(&mut *conn)
            .await?;
        }
        out.push(inserted);
    }
    Ok(Ok(out))
}

fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_ms(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StoreError::Corrupt(format!("timestamp {ms}: {e}")))
}

fn opt_ms(ms: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    ms.map(from_ms).transpose()
}

fn decode(row: &SqliteRow) -> Result<Notification, StoreError> {
    let corrupt =
        |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("{what}: {e}"));
    let id: String = row.try_get(0)?;
    let user: String = row.try_get(1)?;
    let kind: String = row.try_get(3)?;
    let data: String = row.try_get(4)?;
    let group_key: Option<String> = row.try_get(5)?;
    Ok(Notification {
        id: NotificationId::parse(&id).map_err(|e| corrupt("id", &e))?,
        user_id: UserId::parse(user).map_err(|e| corrupt("user_id", &e))?,
        seq: row.try_get(2)?,
        kind: NotificationType::parse(kind).map_err(|e| corrupt("type", &e))?,
        data: serde_json::from_str(&data).map_err(|e| corrupt("data", &e))?,
        group_key: group_key
            .map(Key::parse)
            .transpose()
            .map_err(|e| corrupt("group_key", &e))?,
        created_at: from_ms(row.try_get(6)?)?,
        seen_at: opt_ms(row.try_get(7)?)?,
        read_at: opt_ms(row.try_get(8)?)?,
        archived_at: opt_ms(row.try_get(9)?)?,
        expires_at: opt_ms(row.try_get(10)?)?,
    })
}

/// `?, ?, ?` with `n` placeholders.
fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert(&self, batch: Vec<NewNotification>) -> Result<Vec<Inserted>, StoreError> {
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

    async fn list(
        &self,
        user: &UserId,
        query: &ListQuery,
    ) -> Result<Vec<Notification>, StoreError> {
        let mut sql = format!(
            "SELECT {COLUMNS} FROM notifications WHERE user_id = ? AND seq < ? \
             AND (expires_at IS NULL OR expires_at > ?)"
        );
        if query.unread_only {
            sql.push_str(" AND read_at IS NULL");
        }
        if query.archived {
            sql.push_str(" AND archived_at IS NOT NULL");
        } else {
            sql.push_str(" AND archived_at IS NULL");
        }
        if query.kind.is_some() {
            sql.push_str(" AND type = ?");
        }
        sql.push_str(" ORDER BY seq DESC LIMIT ?");
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(user.as_str())
            .bind(query.before.unwrap_or(i64::MAX))
            .bind(to_ms(now()));
        if let Some(kind) = &query.kind {
            q = q.bind(kind);
        }
        let rows = q.bind(i64::from(query.limit)).fetch_all(&self.read).await?;
        rows.iter().map(decode).collect()
    }

    async fn after(
        &self,
        user: &UserId,
        after: Seq,
        before: Option<Seq>,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM notifications WHERE user_id = ? AND seq > ? AND seq < ? \
             AND (expires_at IS NULL OR expires_at > ?) ORDER BY seq ASC LIMIT ?"
        )))
        .bind(user.as_str())
        .bind(after)
        .bind(before.unwrap_or(i64::MAX))
        .bind(to_ms(now()))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(decode).collect()
    }

    async fn counts(&self, user: &UserId) -> Result<Counts, StoreError> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM notifications WHERE user_id = ?1 AND read_at IS NULL \
                  AND archived_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)), \
               (SELECT COALESCE(MAX(last_seq), 0) FROM user_seqs WHERE user_id = ?1)",
        )
        .bind(user.as_str())
        .bind(to_ms(now()))
        .fetch_one(&self.read)
        .await?;
        Ok(Counts {
            unread: row.try_get(0)?,
            last_seq: row.try_get(1)?,
        })
    }

    async fn set_state(
        &self,
        user: &UserId,
        ids: &[NotificationId],
        change: StateChange,
    ) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let list = placeholders(ids.len());
        // (SQL, whether it takes the current time as its first parameter)
        let (sql, stamped) = match change {
            StateChange::Read => (
                format!(
                    "UPDATE notifications SET read_at = ? WHERE user_id = ? \
                     AND read_at IS NULL AND id IN ({list})"
                ),
                true,
            ),
            StateChange::Unread => (
                format!(
                    "UPDATE notifications SET read_at = NULL WHERE user_id = ? \
                     AND read_at IS NOT NULL AND id IN ({list})"
                ),
                false,
            ),
            StateChange::Seen => (
                format!(
                    "UPDATE notifications SET seen_at = ? WHERE user_id = ? \
                     AND seen_at IS NULL AND id IN ({list})"
                ),
                true,
            ),
            StateChange::Archived => (
                format!(
                    "UPDATE notifications SET archived_at = ? WHERE user_id = ? \
                     AND archived_at IS NULL AND id IN ({list})"
                ),
                true,
            ),
            StateChange::Deleted => (
                format!("DELETE FROM notifications WHERE user_id = ? AND id IN ({list})"),
                false,
            ),
        };
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if stamped {
            q = q.bind(to_ms(now()));
        }
        q = q.bind(user.as_str());
        for id in ids {
            q = q.bind(id.to_string());
        }
        Ok(q.execute(&self.write).await?.rows_affected())
    }

    async fn mark_all_read(&self, user: &UserId) -> Result<(u64, Seq), StoreError> {
        let mut tx = self.write.begin().await?;
        let up_to: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(last_seq), 0) FROM user_seqs WHERE user_id = ?",
        )
        .bind(user.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let changed = sqlx::query(
            "UPDATE notifications SET read_at = ? WHERE user_id = ? AND read_at IS NULL AND seq <= ?",
        )
        .bind(to_ms(now()))
        .bind(user.as_str())
        .bind(up_to)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((changed, up_to))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn close(&self) {
        let sender = match self.jobs.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(sender);
        if let Some(writer) = self.writer.lock().await.take() {
            let _ = writer.await;
        }
        self.read.close().await;
        self.write.close().await;
    }
}
