//! The store: the durable source of truth for notifications, per-user sequence numbers, read
//! state and idempotency keys.
//!
//! It owns the guarantee that a notification's `seq` is assigned in the same transaction that
//! stores it, so that per user `seq` increases strictly in commit order. It never knows about
//! HTTP, sockets or the hub; callers publish what it returns.
//!
//! Two backends implement [`Store`]: [`SqliteStore`] (a local file) and [`PostgresStore`] (a
//! server that nodes on many hosts share). They share their statements (`sql`), row decoding
//! (`rows`) and group commit (`group_commit`), and differ only where the databases do.

mod group_commit;
mod plan;
mod postgres;
mod rows;
mod sql;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::model::{
    NewNotification, Notification, NotificationId, NotificationRef, Position, PushSubscription,
    Seq, StateChange, StateVersion, UserId,
};

use crate::preferences::Preferences;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or could not do the operation now; nothing was written.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Arc<sqlx::Error>),
    /// The database refused a value (PostgreSQL SQLSTATE class 22, "data exception": a NUL in
    /// text, a malformed number): the caller's input, which validation should have caught.
    /// Nothing was written; the database is fine.
    #[error("the database refused a value: {0}")]
    Rejected(#[source] Arc<sqlx::Error>),
    /// The database refused the statement or a constraint (SQL errors, integrity violations,
    /// decoding): a bug. Nothing was written; the database is fine.
    #[error("database error: {0}")]
    Bug(#[source] Arc<sqlx::Error>),
    /// An idempotency key was reused for a different request.
    #[error("idempotency key `{0}` was already used for a different request")]
    IdempotencyConflict(String),
    /// The store is shutting down and takes no more writes.
    #[error("store is closed")]
    Closed,
    /// Stored data could not be decoded (a bug or a corrupted row).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::classify(Arc::new(e))
    }
}

impl StoreError {
    /// Sorts a database error into the database's health ([`StoreError::Unavailable`]: connection
    /// trouble, timeouts, lock contention, shutdown) and the request's or the code's fault,
    /// which must never read as "database down" (503, `belfry_store_unavailable_total`).
    pub fn classify(e: Arc<sqlx::Error>) -> Self {
        use sqlx::error::ErrorKind;
        match &*e {
            sqlx::Error::Database(db) => {
                if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    // SQLSTATE classes: 22 data exception; 42 syntax error or access rule
                    // violation; 0A feature not supported; 23 integrity constraint violation.
                    match &pg.code()[..2] {
                        "22" => return StoreError::Rejected(e),
                        "42" | "0A" | "23" => return StoreError::Bug(e),
                        _ => {}
                    }
                }
                match db.kind() {
                    ErrorKind::UniqueViolation
                    | ErrorKind::ForeignKeyViolation
                    | ErrorKind::NotNullViolation
                    | ErrorKind::CheckViolation => StoreError::Bug(e),
                    _ => StoreError::Unavailable(e),
                }
            }
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::Encode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::RowNotFound => StoreError::Bug(e),
            _ => StoreError::Unavailable(e),
        }
    }
}

/// The result of storing one [`NewNotification`].
#[derive(Debug, Clone)]
pub enum Inserted {
    /// Newly stored, one per recipient; publish these.
    New(Vec<Notification>),
    /// The idempotency key was seen before: the first request's result, nothing stored.
    Replayed(Vec<NotificationRef>),
}

impl Inserted {
    /// Where the notifications are, whether new or replayed.
    pub fn refs(&self) -> Vec<NotificationRef> {
        match self {
            Inserted::New(list) => list
                .iter()
                .map(|n| NotificationRef {
                    id: n.id.to_string(),
                    user_id: n.user_id.to_string(),
                    seq: n.seq,
                    muted: n.muted,
                })
                .collect(),
            Inserted::Replayed(refs) => refs.clone(),
        }
    }
}

/// Which notifications a list request wants.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only those with `seq` below this (the cursor), newest first.
    pub before: Option<Seq>,
    /// Page size.
    pub limit: u32,
    /// Only unread ones.
    pub unread_only: bool,
    /// Only this type.
    pub kind: Option<String>,
    /// Archived ones instead of the others.
    pub archived: bool,
}

/// The rules writers apply while storing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WritePolicy {
    /// A repeated idempotency key within this window replays the first result.
    pub idempotency_window: Duration,
    /// An event joins its group's newest item while that item's first event is younger than
    /// this (and the item is unread); zero turns grouping off.
    pub group_window: Duration,
    /// Most distinct actors a grouped item lists.
    pub max_actors: usize,
}

/// What the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Notifications created before this (unix ms) go; `i64::MIN` keeps them all.
    pub created_before_ms: i64,
    /// Each user keeps at most this many, newest by seq; `None` keeps all.
    pub per_user_cap: Option<u32>,
    /// Idempotency keys recorded before this (unix ms) go.
    pub keys_before_ms: i64,
    /// Now (unix ms): notifications whose `expires_at` has passed go.
    pub now_ms: i64,
}

/// A user's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Unread, unarchived, unexpired notifications.
    pub unread: i64,
    /// Highest `seq` ever assigned to the user (0 when none).
    pub last_seq: Seq,
    /// The user's state version (0 before the first read-state or preferences change).
    pub state_version: StateVersion,
}

impl Counts {
    /// The position these counts were taken at.
    pub fn position(&self) -> Position {
        Position {
            last_seq: self.last_seq,
            state_version: self.state_version,
        }
    }
}

/// What a read-state change did, read in its own transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChanged {
    /// Notifications whose state changed.
    pub changed: u64,
    /// The user's counts right after the change; `state_version` is the change's own when
    /// anything changed.
    pub counts: Counts,
}

/// Durable storage. Implementations: [`SqliteStore`] (the default) and [`PostgresStore`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores the whole batch atomically (all or nothing) and returns one [`Inserted`] per
    /// request, in order. Concurrent calls may share one transaction (group commit) but never
    /// each other's fate: an idempotency conflict fails only the call it belongs to.
    async fn insert(&self, batch: Vec<NewNotification>) -> Result<Vec<Inserted>, StoreError>;

    /// One page of a user's notifications, newest first.
    async fn list(&self, user: &UserId, query: &ListQuery)
    -> Result<Vec<Notification>, StoreError>;

    /// A user's notifications with `after < seq` (and `seq < before` when given), oldest first,
    /// at most `limit`. Expired and muted ones are skipped: this is what live feeds and resume
    /// read.
    async fn after(
        &self,
        user: &UserId,
        after: Seq,
        before: Option<Seq>,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError>;

    /// The user's unread count, highest seq and state version.
    async fn counts(&self, user: &UserId) -> Result<Counts, StoreError>;

    /// The positions of those of `users` who have any (a user missing from the answer is at
    /// [`Position::default`]).
    async fn positions(&self, users: &[UserId]) -> Result<Vec<(UserId, Position)>, StoreError>;

    /// Applies a state change to the user's notifications among `ids`. When any changed, the
    /// change takes the user's next state version, in the same transaction.
    async fn set_state(
        &self,
        user: &UserId,
        ids: &[NotificationId],
        change: StateChange,
    ) -> Result<StateChanged, StoreError>;

    /// Marks every unread notification read, taking the user's next state version when any
    /// changed; returns what changed and the seq they go up to.
    async fn mark_all_read(&self, user: &UserId) -> Result<(StateChanged, Seq), StoreError>;

    /// Saves a push subscription for `user` (an endpoint that belonged to another user moves
    /// to this one: the browser profile changed hands) as their most recently saved, then
    /// removes their least recently saved beyond `keep`, in one transaction; returns how many
    /// were removed. Concurrent saves for one user are serialised, so the bound holds.
    async fn add_push_subscription(
        &self,
        user: &UserId,
        subscription: &PushSubscription,
        keep: usize,
    ) -> Result<u64, StoreError>;

    /// Removes the subscription with this endpoint (only if it is `user`'s, when given);
    /// returns whether one was removed.
    async fn remove_push_subscription(
        &self,
        user: Option<&UserId>,
        endpoint: &str,
    ) -> Result<bool, StoreError>;

    /// The stored preferences of those of `users` who have any.
    async fn preferences(&self, users: &[UserId])
    -> Result<Vec<(UserId, Preferences)>, StoreError>;

    /// Replaces `user`'s preferences; the change takes the user's next state version, which
    /// is returned.
    async fn set_preferences(
        &self,
        user: &UserId,
        preferences: &Preferences,
    ) -> Result<StateVersion, StoreError>;

    /// A user's push subscriptions.
    async fn push_subscriptions(&self, user: &UserId) -> Result<Vec<PushSubscription>, StoreError>;

    /// Deletes at most `batch` rows the retention policy no longer keeps, in one short
    /// transaction; returns how many went. Call it until it returns less than `batch`.
    async fn prune(&self, retention: &Retention, batch: u32) -> Result<u64, StoreError>;

    /// Answers when the database is reachable.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Finishes queued writes and closes connections. Later writes fail with [`StoreError::Closed`].
    async fn close(&self);
}
