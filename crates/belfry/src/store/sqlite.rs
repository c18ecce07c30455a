//! SQLite store: one file in WAL mode, a read pool, one writer task that commits concurrent
//! inserts together (group commit), so throughput does not hinge on one fsync per notification,
//! and a checkpointer that copies the WAL back into the database file off the commit path.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
// Dynamic SQL comes from `sql`, built only from constant fragments and numbered placeholders;
// values are always bound, never interpolated.
use sqlx::{AssertSqlSafe, Row, Sqlite, SqliteConnection};

use super::group_commit::{GroupCommit, GroupWrites, commit_group};
use super::plan::{Planned, chunked};
use super::rows::{
    Columns, NotificationRow, counts_of, decode_all, decode_positions, decode_preferences,
    encode_preferences, to_ms,
};
use super::sql::{self, Dialect};
use super::{Counts, Inserted, ListQuery, Retention, StateChanged, Store, StoreError, WritePolicy};
use crate::config::StoreConfig;
use crate::model::{
    Key, NewNotification, Notification, NotificationId, Position, PushSubscription, Seq,
    StateChange, StateVersion, SubscriptionKeys, UserId, now,
};
use crate::preferences::Preferences;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const SQL: Dialect = Dialect::Sqlite;

/// Users bound by one statement (SQLite binds each one; its limit is 32766 parameters).
const MAX_IDS_PER_STATEMENT: usize = 512;

/// Rows per multi-row insert (14 parameters each).
const MAX_ROWS_PER_INSERT: usize = 128;

/// How often the checkpointer copies committed pages from the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// The WAL size, in pages, past which the writer checkpoints by itself (SQLite's
/// `wal_autocheckpoint`). The checkpointer normally keeps the WAL far below it; this only bounds
/// the file if the checkpointer cannot keep up. SQLite's default of 1000 pages made every few
/// hundred commits wait for a whole checkpoint, and its fsync, before their 201.
const WRITER_AUTOCHECKPOINT_PAGES: u32 = 65_536;

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    writer: GroupCommit,
    checkpointer: Checkpointer,
}

/// Checkpoints the WAL on a connection of its own, off the commit path: a `PASSIVE` checkpoint
/// runs beside the writer (it never waits for it, nor the writer for it), so no 201 waits for
/// pages to be copied into the database file.
struct Checkpointer {
    pool: SqlitePool,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Checkpointer {
    fn start(pool: SqlitePool) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn({
            let (pool, stop) = (pool.clone(), stop.clone());
            async move {
                let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                        .execute(&pool)
                        .await
                    {
                        tracing::warn!(error = %e, "SQLite WAL checkpoint failed; retrying");
                    }
                }
            }
        });
        Self {
            pool,
            stop,
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    /// Stops the periodic checkpoints, then copies the whole WAL back and truncates it (after
    /// the writer has stopped), so a stopped server leaves a small WAL file behind.
    async fn close(&self) {
        self.stop.cancel();
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await
        {
            tracing::warn!(error = %e, "final SQLite WAL checkpoint failed");
        }
        self.pool.close().await;
    }
}

impl SqliteStore {
    /// Opens (creating and migrating when needed) the database at `url` (`sqlite://PATH`).
    pub async fn open(
        url: &str,
        config: &StoreConfig,
        policy: WritePolicy,
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
        create_private(options.get_filename())
            .map_err(|e| StoreError::Unavailable(Arc::new(sqlx::Error::Io(e))))?;
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().pragma(
                "wal_autocheckpoint",
                WRITER_AUTOCHECKPOINT_PAGES.to_string(),
            ))
            .await?;
        MIGRATOR.run(&write).await?;
        let checkpoint = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(config.read_connections.max(1))
            .connect_with(options.read_only(true))
            .await?;
        let pool = write.clone();
        // One writer: SQLite has a single write connection anyway.
        let writer = GroupCommit::start(1, config.group_commit_max_rows, move |batches| {
            let pool = pool.clone();
            async move { commit_group(&pool, &batches, policy).await }
        });
        Ok(Self {
            read,
            write,
            writer,
            checkpointer: Checkpointer::start(checkpoint),
        })
    }
}

/// Creates the database file (and its directory) readable by the owner only, when missing: it
/// holds every user's notifications, beside a secrets file that is 0600. SQLite gives the `-wal`
/// and `-shm` files the database file's permissions. Existing files keep theirs.
fn create_private(file: &Path) -> std::io::Result<()> {
    if file == Path::new(":memory:") {
        return Ok(());
    }
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::config::create_private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// A single writer never waits for another, so a group needs no locks of its own.
#[async_trait]
impl GroupWrites for SqliteConnection {
    async fn lock_group(&mut self, _batches: &[Vec<NewNotification>]) -> Result<(), sqlx::Error> {
        Ok(())
    }

    async fn find_key(
        &mut self,
        key: &Key,
        since_ms: i64,
    ) -> Result<Option<(String, String)>, sqlx::Error> {
        sqlx::query_as(AssertSqlSafe(sql::find_key(SQL)))
            .bind(key.as_str())
            .bind(since_ms)
            .fetch_optional(self)
            .await
    }

    async fn group_head(
        &mut self,
        user: &UserId,
        key: &Key,
    ) -> Result<Option<NotificationRow>, sqlx::Error> {
        sqlx::query_as(AssertSqlSafe(sql::group_head(SQL)))
            .bind(user.as_str())
            .bind(key.as_str())
            .fetch_optional(self)
            .await
    }

    async fn last_seqs(&mut self, users: &[&UserId]) -> Result<Vec<(String, Seq)>, sqlx::Error> {
        let mut found = Vec::with_capacity(users.len());
        for chunk in chunked(users, MAX_IDS_PER_STATEMENT) {
            let mut query =
                sqlx::query_as::<_, (String, Seq)>(AssertSqlSafe(sql::last_seqs(SQL, chunk.len())));
            for user in chunk {
                query = query.bind(user.as_str());
            }
            found.extend(query.fetch_all(&mut *self).await?);
        }
        Ok(found)
    }

    async fn save_seqs(&mut self, seqs: &[(&UserId, Seq)]) -> Result<(), sqlx::Error> {
        for chunk in chunked(seqs, MAX_IDS_PER_STATEMENT) {
            let mut query = sqlx::query(AssertSqlSafe(sql::save_seqs(SQL, chunk.len())));
            for (user, seq) in chunk {
                query = query.bind(user.as_str()).bind(*seq);
            }
            query.execute(&mut *self).await?;
        }
        Ok(())
    }

    async fn insert_rows(&mut self, rows: &[&Planned]) -> Result<(), sqlx::Error> {
        for chunk in chunked(rows, MAX_ROWS_PER_INSERT) {
            let columns: Vec<Columns<'_>> = chunk.iter().map(|p| Columns::of(p)).collect();
            let mut query = sqlx::query(AssertSqlSafe(sql::insert_rows(SQL, chunk.len())));
            for c in &columns {
                query = query
                    .bind(c.id.as_str())
                    .bind(c.n.user_id.as_str())
                    .bind(c.n.seq)
                    .bind(c.n.kind.as_str())
                    .bind(c.data)
                    .bind(c.group_key)
                    .bind(c.created_ms)
                    .bind(c.expires_ms)
                    .bind(c.read_ms)
                    .bind(c.updated_ms)
                    .bind(c.n.count)
                    .bind(c.actors.as_str())
                    .bind(c.n.actor_count)
                    .bind(c.n.muted);
            }
            query.execute(&mut *self).await?;
        }
        Ok(())
    }

    async fn rewrite_group_item(&mut self, item: &Planned) -> Result<(), sqlx::Error> {
        let c = Columns::of(item);
        sqlx::query(AssertSqlSafe(sql::merge_into_group(SQL)))
            .bind(c.id.as_str())
            .bind(c.n.seq)
            .bind(c.n.kind.as_str())
            .bind(c.data)
            .bind(c.n.count)
            .bind(c.actors.as_str())
            .bind(c.n.actor_count)
            .bind(c.updated_ms)
            .bind(c.expires_ms)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn record_key(
        &mut self,
        key: &Key,
        fingerprint: &str,
        response: &str,
        created_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(sql::record_key(SQL)))
            .bind(key.as_str())
            .bind(fingerprint)
            .bind(response)
            .bind(created_ms)
            .execute(self)
            .await?;
        Ok(())
    }
}

/// Takes `user`'s next state version inside `tx`.
async fn next_state_version(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    user: &UserId,
) -> Result<StateVersion, sqlx::Error> {
    sqlx::query_scalar(AssertSqlSafe(sql::next_state_version(SQL)))
        .bind(user.as_str())
        .fetch_one(&mut **tx)
        .await
}

/// `user`'s counts as `tx` sees them.
async fn counts_in(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    user: &UserId,
) -> Result<Counts, StoreError> {
    let row = sqlx::query(AssertSqlSafe(sql::counts(SQL)))
        .bind(user.as_str())
        .bind(to_ms(now()))
        .fetch_one(&mut **tx)
        .await?;
    counts_of(&row)
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert(&self, batch: Vec<NewNotification>) -> Result<Vec<Inserted>, StoreError> {
        self.writer.submit(batch).await
    }

    async fn list(
        &self,
        user: &UserId,
        query: &ListQuery,
    ) -> Result<Vec<Notification>, StoreError> {
        let mut q = sqlx::query_as::<_, NotificationRow>(AssertSqlSafe(sql::list(SQL, query)))
            .bind(user.as_str())
            .bind(query.before.unwrap_or(i64::MAX))
            .bind(to_ms(now()))
            .bind(i64::from(query.limit));
        if let Some(kind) = &query.kind {
            q = q.bind(kind);
        }
        decode_all(q.fetch_all(&self.read).await?)
    }

    async fn after(
        &self,
        user: &UserId,
        after: Seq,
        before: Option<Seq>,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        let rows = sqlx::query_as::<_, NotificationRow>(AssertSqlSafe(sql::after(SQL)))
            .bind(user.as_str())
            .bind(after)
            .bind(before.unwrap_or(i64::MAX))
            .bind(to_ms(now()))
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?;
        decode_all(rows)
    }

    async fn counts(&self, user: &UserId) -> Result<Counts, StoreError> {
        let row = sqlx::query(AssertSqlSafe(sql::counts(SQL)))
            .bind(user.as_str())
            .bind(to_ms(now()))
            .fetch_one(&self.read)
            .await?;
        counts_of(&row)
    }

    async fn positions(&self, users: &[UserId]) -> Result<Vec<(UserId, Position)>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = sqlx::query_as::<_, (String, i64, i64)>(AssertSqlSafe(sql::positions(
            SQL,
            users.len(),
        )));
        for user in users {
            query = query.bind(user.as_str());
        }
        decode_positions(query.fetch_all(&self.read).await?)
    }

    async fn set_state(
        &self,
        user: &UserId,
        ids: &[NotificationId],
        change: StateChange,
    ) -> Result<StateChanged, StoreError> {
        if ids.is_empty() {
            let counts = self.counts(user).await?;
            return Ok(StateChanged { changed: 0, counts });
        }
        let mut tx = self.write.begin().await?;
        let (statement, stamped) = sql::set_state(SQL, change, ids.len());
        let mut q = sqlx::query(AssertSqlSafe(statement)).bind(user.as_str());
        for id in ids {
            q = q.bind(id.to_string());
        }
        if stamped {
            q = q.bind(to_ms(now()));
        }
        let changed = q.execute(&mut *tx).await?.rows_affected();
        if changed > 0 {
            next_state_version(&mut tx, user).await?;
        }
        let counts = counts_in(&mut tx, user).await?;
        tx.commit().await?;
        Ok(StateChanged { changed, counts })
    }

    async fn mark_all_read(&self, user: &UserId) -> Result<(StateChanged, Seq), StoreError> {
        let mut tx = self.write.begin().await?;
        let up_to: i64 = sqlx::query_scalar(AssertSqlSafe(sql::last_seq(SQL)))
            .bind(user.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let changed = sqlx::query(AssertSqlSafe(sql::mark_read_up_to(SQL)))
            .bind(to_ms(now()))
            .bind(user.as_str())
            .bind(up_to)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed > 0 {
            next_state_version(&mut tx, user).await?;
        }
        let counts = counts_in(&mut tx, user).await?;
        tx.commit().await?;
        Ok((StateChanged { changed, counts }, up_to))
    }

    async fn add_push_subscription(
        &self,
        user: &UserId,
        subscription: &PushSubscription,
        keep: usize,
    ) -> Result<u64, StoreError> {
        // One write connection: transactions are already serialised.
        let mut tx = self.write.begin().await?;
        sqlx::query(AssertSqlSafe(sql::upsert_push_subscription(SQL)))
            .bind(&subscription.endpoint)
            .bind(user.as_str())
            .bind(&subscription.keys.p256dh)
            .bind(&subscription.keys.auth)
            .bind(to_ms(crate::model::now()))
            .execute(&mut *tx)
            .await?;
        let removed = sqlx::query(AssertSqlSafe(sql::trim_push_subscriptions(SQL)))
            .bind(user.as_str())
            .bind(&subscription.endpoint)
            .bind(i64::try_from(keep.saturating_sub(1)).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(removed)
    }

    async fn remove_push_subscription(
        &self,
        user: Option<&UserId>,
        endpoint: &str,
    ) -> Result<bool, StoreError> {
        let mut query = sqlx::query(AssertSqlSafe(sql::delete_push_subscription(
            SQL,
            user.is_some(),
        )))
        .bind(endpoint);
        if let Some(user) = user {
            query = query.bind(user.as_str());
        }
        Ok(query.execute(&self.write).await?.rows_affected() > 0)
    }

    async fn preferences(
        &self,
        users: &[UserId],
    ) -> Result<Vec<(UserId, Preferences)>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = sqlx::query_as::<_, (String, String)>(AssertSqlSafe(sql::preferences(
            SQL,
            users.len(),
        )));
        for user in users {
            query = query.bind(user.as_str());
        }
        decode_preferences(query.fetch_all(&self.read).await?)
    }

    async fn set_preferences(
        &self,
        user: &UserId,
        preferences: &Preferences,
    ) -> Result<StateVersion, StoreError> {
        let document = encode_preferences(preferences)?;
        let mut tx = self.write.begin().await?;
        let version = next_state_version(&mut tx, user).await?;
        sqlx::query(AssertSqlSafe(sql::save_preferences(SQL)))
            .bind(user.as_str())
            .bind(document)
            .bind(to_ms(now()))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn push_subscriptions(&self, user: &UserId) -> Result<Vec<PushSubscription>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(sql::select_push_subscriptions(SQL)))
            .bind(user.as_str())
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(PushSubscription {
                    endpoint: row.try_get(0)?,
                    keys: SubscriptionKeys {
                        p256dh: row.try_get(1)?,
                        auth: row.try_get(2)?,
                    },
                    expiration_time: None,
                })
            })
            .collect()
    }

    async fn prune(&self, retention: &Retention, batch: u32) -> Result<u64, StoreError> {
        let batch = i64::from(batch);
        let mut deleted = sqlx::query(AssertSqlSafe(sql::prune_old(SQL)))
            .bind(retention.now_ms)
            .bind(retention.created_before_ms)
            .bind(batch)
            .execute(&self.write)
            .await?
            .rows_affected();
        if let Some(cap) = retention.per_user_cap
            && deleted < batch as u64
        {
            deleted += sqlx::query(AssertSqlSafe(sql::prune_over_cap(SQL)))
                .bind(i64::from(cap))
                .bind(batch - deleted as i64)
                .execute(&self.write)
                .await?
                .rows_affected();
        }
        if deleted < batch as u64 {
            deleted += sqlx::query(AssertSqlSafe(sql::prune_keys(SQL)))
                .bind(retention.keys_before_ms)
                .bind(batch - deleted as i64)
                .execute(&self.write)
                .await?
                .rows_affected();
        }
        Ok(deleted)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn close(&self) {
        self.writer.close().await;
        self.write.close().await;
        self.checkpointer.close().await;
        self.read.close().await;
    }
}
