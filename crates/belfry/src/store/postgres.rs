//! PostgreSQL store: one pool for reads and writes, and group commit with a few writer tasks.
//! Several nodes may share one database, so the guarantees rest on PostgreSQL's locks:
//!
//! - A user's seq comes from an upsert on `user_seqs` in the transaction that stores the
//!   notification. The row lock orders concurrent writers for that user, on any node: when seq
//!   N+1 is visible, N is committed.
//! - An idempotency key is guarded by a transaction-level advisory lock. A concurrent request
//!   with the same key waits for it, then finds the first request's committed result and
//!   replays it.
//! - A group takes all of its locks first, in one global order (keys, then users, each sorted),
//!   so two groups never deadlock, whichever nodes they run on.
//!
//! When the database is unreachable every call fails with [`StoreError::Unavailable`] within
//! [`ACQUIRE_TIMEOUT`].

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
// Dynamic SQL comes from `sql`, built only from constant fragments and numbered placeholders;
// values are always bound, never interpolated.
use sqlx::{AssertSqlSafe, Row};

use super::group_commit::{GroupCommit, GroupWrites, commit_group};
use super::plan::Planned;
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

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const SQL: Dialect = Dialect::Postgres;

/// Longest wait for a connection, including connecting to a database that is down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Writer tasks (and connections) for group commit. Two keep one group committing while the
/// next gathers; each group already carries everything queued.
const WRITERS: u32 = 2;

/// A session left idle inside a transaction (a node that froze or lost its network mid-group)
/// is ended by the server after this, so its row locks do not stall the other nodes. Applied
/// unless the URL's `options` set it.
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "30s";

/// Retries of a transaction that PostgreSQL aborted to break a deadlock or a serialization
/// failure. Groups never deadlock with each other (they lock in order); two concurrent state
/// changes of overlapping notifications can.
const LOCK_CONFLICT_RETRIES: usize = 3;

/// The PostgreSQL implementation of [`Store`].
pub struct PostgresStore {
    pool: PgPool,
    writer: GroupCommit,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://` or `postgresql://`) and migrates the database, which
    /// must exist. Several nodes may open the same database, at the same time.
    pub async fn open(
        url: &str,
        config: &StoreConfig,
        policy: WritePolicy,
    ) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url)?;
        let timeout_given = options
            .get_options()
            .is_some_and(|given| given.contains("idle_in_transaction_session_timeout"));
        if !timeout_given {
            options = options.options([(
                "idle_in_transaction_session_timeout",
                IDLE_IN_TRANSACTION_TIMEOUT,
            )]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.read_connections.max(1).saturating_add(WRITERS))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        let group_pool = pool.clone();
        let writer = GroupCommit::start(
            WRITERS as usize,
            config.group_commit_max_rows,
            move |batches| {
                let pool = group_pool.clone();
                async move { retry_lock_conflicts(|| commit_group(&pool, &batches, policy)).await }
            },
        );
        Ok(Self { pool, writer })
    }
}

/// Runs `attempt` again when PostgreSQL aborted it to break a deadlock or serialization failure.
async fn retry_lock_conflicts<T, F, Fut>(mut attempt: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut retries = 0;
    loop {
        match attempt().await {
            Err(e) if retries < LOCK_CONFLICT_RETRIES && is_lock_conflict(&e) => retries += 1,
            done => return done,
        }
    }
}

fn is_lock_conflict(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    // deadlock_detected, serialization_failure
    matches!(db.code().as_deref(), Some("40P01" | "40001"))
}

#[async_trait]
impl GroupWrites for PgConnection {
    async fn lock_group(&mut self, batches: &[Vec<NewNotification>]) -> Result<(), sqlx::Error> {
        let requests = || batches.iter().flatten();
        let keys: Vec<&str> = requests()
            .filter_map(|r| r.idempotency_key.as_ref().map(Key::as_str))
            .collect();
        if !keys.is_empty() {
            // The subquery sorts before any lock is taken (PostgreSQL does not flatten a
            // subquery with DISTINCT and ORDER BY).
            sqlx::query(
                "SELECT pg_advisory_xact_lock(lock_id) FROM \
                   (SELECT DISTINCT hashtextextended(key, 0) AS lock_id \
                    FROM unnest($1::text[]) AS keys (key) ORDER BY lock_id) AS sorted",
            )
            .bind(keys)
            .execute(&mut *self)
            .await?;
        }
        let mut users: Vec<&str> = requests()
            .flat_map(|r| r.recipients.iter().map(UserId::as_str))
            .collect();
        users.sort_unstable();
        users.dedup();
        // Creates missing rows and locks existing ones, in the server's order of user ids.
        sqlx::query(
            "INSERT INTO user_seqs (user_id, last_seq) \
             SELECT user_id, 0 FROM unnest($1::text[]) AS users (user_id) ORDER BY user_id \
             ON CONFLICT (user_id) DO UPDATE SET last_seq = user_seqs.last_seq",
        )
        .bind(users)
        .execute(&mut *self)
        .await?;
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
        let users: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
        sqlx::query_as(AssertSqlSafe(sql::last_seqs(SQL, 1)))
            .bind(users)
            .fetch_all(self)
            .await
    }

    async fn save_seqs(&mut self, seqs: &[(&UserId, Seq)]) -> Result<(), sqlx::Error> {
        if seqs.is_empty() {
            return Ok(());
        }
        let (users, values): (Vec<&str>, Vec<Seq>) =
            seqs.iter().map(|(user, seq)| (user.as_str(), *seq)).unzip();
        sqlx::query(AssertSqlSafe(sql::save_seqs(SQL, seqs.len())))
            .bind(users)
            .bind(values)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn insert_rows(&mut self, rows: &[&Planned]) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let columns: Vec<Columns<'_>> = rows.iter().map(|p| Columns::of(p)).collect();
        let column = |f: &dyn Fn(&Columns<'_>) -> String| columns.iter().map(f).collect::<Vec<_>>();
        let ints =
            |f: &dyn Fn(&Columns<'_>) -> Option<i64>| columns.iter().map(f).collect::<Vec<_>>();
        sqlx::query(AssertSqlSafe(sql::insert_rows(SQL, rows.len())))
            .bind(column(&|c| c.id.clone()))
            .bind(column(&|c| c.n.user_id.to_string()))
            .bind(ints(&|c| Some(c.n.seq)))
            .bind(column(&|c| c.n.kind.as_str().to_owned()))
            .bind(column(&|c| c.data.to_owned()))
            .bind(columns.iter().map(|c| c.group_key).collect::<Vec<_>>())
            .bind(ints(&|c| Some(c.created_ms)))
            .bind(ints(&|c| c.expires_ms))
            .bind(ints(&|c| c.read_ms))
            .bind(ints(&|c| c.updated_ms))
            .bind(ints(&|c| Some(c.n.count)))
            .bind(column(&|c| c.actors.clone()))
            .bind(ints(&|c| Some(c.n.actor_count)))
            .bind(columns.iter().map(|c| c.n.muted).collect::<Vec<_>>())
            .execute(self)
            .await?;
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

/// Takes `user`'s next state version inside `tx`, locking the user's row.
async fn next_state_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    user: &UserId,
) -> Result<StateVersion, sqlx::Error> {
    sqlx::query_scalar(AssertSqlSafe(sql::next_state_version(SQL)))
        .bind(user.as_str())
        .fetch_one(&mut **tx)
        .await
}

/// Ends a read-state change: commits it with its new state version when anything changed,
/// rolls the version back otherwise; reads the counts inside the transaction. The outer
/// `Result` is the database's (retried on lock conflicts), the inner one the decoding's.
async fn finish_state_change(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    user: &UserId,
    changed: u64,
    version: StateVersion,
) -> Result<Result<StateChanged, StoreError>, sqlx::Error> {
    let row = sqlx::query(AssertSqlSafe(sql::counts(SQL)))
        .bind(user.as_str())
        .bind(to_ms(now()))
        .fetch_one(&mut *tx)
        .await?;
    if changed > 0 {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(counts_of(&row).map(|mut counts| {
        if changed == 0 {
            // The version taken is rolled back with the transaction.
            counts.state_version = version - 1;
        }
        StateChanged { changed, counts }
    }))
}

#[async_trait]
impl Store for PostgresStore {
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
        decode_all(q.fetch_all(&self.pool).await?)
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
            .fetch_all(&self.pool)
            .await?;
        decode_all(rows)
    }

    async fn counts(&self, user: &UserId) -> Result<Counts, StoreError> {
        let row = sqlx::query(AssertSqlSafe(sql::counts(SQL)))
            .bind(user.as_str())
            .bind(to_ms(now()))
            .fetch_one(&self.pool)
            .await?;
        counts_of(&row)
    }

    async fn positions(&self, users: &[UserId]) -> Result<Vec<(UserId, Position)>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let users: Vec<&str> = users.iter().map(UserId::as_str).collect();
        let rows = sqlx::query_as::<_, (String, i64, i64)>(AssertSqlSafe(sql::positions(SQL, 1)))
            .bind(users)
            .fetch_all(&self.pool)
            .await?;
        decode_positions(rows)
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
        let (statement, stamped) = sql::set_state(SQL, change, ids.len());
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let (statement, ids) = (&statement, &ids);
        retry_lock_conflicts(|| async move {
            let mut tx = self.pool.begin().await?;
            // The user's row first, as the notification writers lock it: one lock order.
            let version = next_state_version(&mut tx, user).await?;
            let mut q = sqlx::query(AssertSqlSafe(statement.as_str()))
                .bind(user.as_str())
                .bind(ids.as_slice());
            if stamped {
                q = q.bind(to_ms(now()));
            }
            let changed = q.execute(&mut *tx).await?.rows_affected();
            finish_state_change(tx, user, changed, version).await
        })
        .await?
    }

    async fn mark_all_read(&self, user: &UserId) -> Result<(StateChanged, Seq), StoreError> {
        retry_lock_conflicts(|| async move {
            let mut tx = self.pool.begin().await?;
            let version = next_state_version(&mut tx, user).await?;
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
            let done = finish_state_change(tx, user, changed, version).await?;
            Ok(done.map(|changed| (changed, up_to)))
        })
        .await?
    }

    async fn add_push_subscription(
        &self,
        user: &UserId,
        subscription: &PushSubscription,
        keep: usize,
    ) -> Result<u64, StoreError> {
        let removed = retry_lock_conflicts(|| async move {
            let mut tx = self.pool.begin().await?;
            // Serialises saves for this user on every node: the trim below counts what
            // committed saves left (two keys: a key space apart from idempotency keys').
            sqlx::query("SELECT pg_advisory_xact_lock(1886745448, hashtext($1))")
                .bind(user.as_str())
                .execute(&mut *tx)
                .await?;
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
        })
        .await?;
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
        Ok(query.execute(&self.pool).await?.rows_affected() > 0)
    }

    async fn preferences(
        &self,
        users: &[UserId],
    ) -> Result<Vec<(UserId, Preferences)>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let users: Vec<&str> = users.iter().map(UserId::as_str).collect();
        let rows = sqlx::query_as::<_, (String, String)>(AssertSqlSafe(sql::preferences(SQL, 1)))
            .bind(users)
            .fetch_all(&self.pool)
            .await?;
        decode_preferences(rows)
    }

    async fn set_preferences(
        &self,
        user: &UserId,
        preferences: &Preferences,
    ) -> Result<StateVersion, StoreError> {
        let document = encode_preferences(preferences)?;
        let document = &document;
        let version = retry_lock_conflicts(|| async move {
            let mut tx = self.pool.begin().await?;
            let version = next_state_version(&mut tx, user).await?;
            sqlx::query(AssertSqlSafe(sql::save_preferences(SQL)))
                .bind(user.as_str())
                .bind(document)
                .bind(to_ms(now()))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(version)
        })
        .await?;
        Ok(version)
    }

    async fn push_subscriptions(&self, user: &UserId) -> Result<Vec<PushSubscription>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(sql::select_push_subscriptions(SQL)))
            .bind(user.as_str())
            .fetch_all(&self.pool)
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
            .execute(&self.pool)
            .await?
            .rows_affected();
        if let Some(cap) = retention.per_user_cap
            && deleted < batch as u64
        {
            deleted += sqlx::query(AssertSqlSafe(sql::prune_over_cap(SQL)))
                .bind(i64::from(cap))
                .bind(batch - deleted as i64)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        if deleted < batch as u64 {
            deleted += sqlx::query(AssertSqlSafe(sql::prune_keys(SQL)))
                .bind(retention.keys_before_ms)
                .bind(batch - deleted as i64)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(deleted)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}
