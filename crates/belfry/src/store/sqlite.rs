//! SQLite store: one file in WAL mode, a read pool, and one writer task that commits concurrent
//! inserts together (group commit), so throughput does not hinge on one fsync per notification.

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
use sqlx::{AssertSqlSafe, Row, SqliteConnection};

use super::group_commit::{GroupCommit, GroupWrites, commit_group};
use super::rows::{
    GroupColumns, NewRow, NotificationRow, decode_all, decode_preferences, encode_preferences,
    to_ms,
};
use super::sql::{self, Dialect};
use super::{Counts, Inserted, ListQuery, Retention, Store, StoreError, WritePolicy};
use crate::config::StoreConfig;
use crate::model::{
    Key, NewNotification, Notification, NotificationId, PushSubscription, Seq, StateChange,
    SubscriptionKeys, UserId, now,
};
use crate::preferences::Preferences;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const SQL: Dialect = Dialect::Sqlite;

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    writer: GroupCommit,
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
        })
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

    async fn insert_row(&mut self, row: &NewRow<'_>) -> Result<Seq, sqlx::Error> {
        let seq = self.next_seq(row.user).await?;
        sqlx::query(
            "INSERT INTO notifications (id, user_id, seq, type, data, group_key, created_at, \
             expires_at, read_at, actors, actor_count, muted) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .bind(row.id.to_string())
        .bind(row.user.as_str())
        .bind(seq)
        .bind(row.request.kind.as_str())
        .bind(row.data)
        .bind(row.group_key())
        .bind(row.created_ms())
        .bind(row.expires_ms())
        .bind(row.read_ms())
        .bind(row.actors_json())
        .bind(row.actor_count())
        .bind(row.muted)
        .execute(&mut *self)
        .await?;
        Ok(seq)
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

    async fn next_seq(&mut self, user: &UserId) -> Result<Seq, sqlx::Error> {
        sqlx::query_scalar(AssertSqlSafe(sql::next_seq(SQL)))
            .bind(user.as_str())
            .fetch_one(self)
            .await
    }

    async fn rewrite_group_item(&mut self, merged: &Notification) -> Result<(), sqlx::Error> {
        let group = GroupColumns::of(merged);
        sqlx::query(AssertSqlSafe(sql::merge_into_group(SQL)))
            .bind(merged.id.to_string())
            .bind(merged.seq)
            .bind(merged.kind.as_str())
            .bind(group.data)
            .bind(merged.count)
            .bind(group.actors)
            .bind(merged.actor_count)
            .bind(group.updated_ms)
            .bind(group.expires_ms)
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
        let (statement, stamped) = sql::set_state(SQL, change, ids.len());
        let mut q = sqlx::query(AssertSqlSafe(statement)).bind(user.as_str());
        for id in ids {
            q = q.bind(id.to_string());
        }
        if stamped {
            q = q.bind(to_ms(now()));
        }
        Ok(q.execute(&self.write).await?.rows_affected())
    }

    async fn mark_all_read(&self, user: &UserId) -> Result<(u64, Seq), StoreError> {
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
        tx.commit().await?;
        Ok((changed, up_to))
    }

    async fn add_push_subscription(
        &self,
        user: &UserId,
        subscription: &PushSubscription,
    ) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(sql::upsert_push_subscription(SQL)))
            .bind(&subscription.endpoint)
            .bind(user.as_str())
            .bind(&subscription.keys.p256dh)
            .bind(&subscription.keys.auth)
            .bind(to_ms(crate::model::now()))
            .execute(&self.write)
            .await?;
        Ok(())
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
    ) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(sql::save_preferences(SQL)))
            .bind(user.as_str())
            .bind(encode_preferences(preferences)?)
            .bind(to_ms(now()))
            .execute(&self.write)
            .await?;
        Ok(())
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
        self.read.close().await;
        self.write.close().await;
    }
}
