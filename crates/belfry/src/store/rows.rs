//! What both backends share about rows: times as unix milliseconds, a stored row decoded into a
//! [`Notification`], and the response kept with an idempotency key.

use std::time::Duration;

use time::OffsetDateTime;

use super::{Inserted, StoreError};
use crate::model::{
    Key, NewNotification, Notification, NotificationId, NotificationRef, NotificationType, Seq,
    UserId,
};

/// A time as the store keeps it: unix milliseconds.
pub(super) fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// A duration in milliseconds, saturating.
pub(super) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn from_ms(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StoreError::Corrupt(format!("timestamp {ms}: {e}")))
}

fn opt_ms(ms: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    ms.map(from_ms).transpose()
}

/// A notification row as both backends select it (see `sql::Dialect::columns`).
#[derive(sqlx::FromRow)]
pub(super) struct NotificationRow {
    id: String,
    user_id: String,
    seq: i64,
    #[sqlx(rename = "type")]
    kind: String,
    data: String,
    group_key: Option<String>,
    created_at: i64,
    seen_at: Option<i64>,
    read_at: Option<i64>,
    archived_at: Option<i64>,
    expires_at: Option<i64>,
}

impl TryFrom<NotificationRow> for Notification {
    type Error = StoreError;

    fn try_from(row: NotificationRow) -> Result<Self, StoreError> {
        let corrupt =
            |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("{what}: {e}"));
        Ok(Notification {
            id: NotificationId::parse(&row.id).map_err(|e| corrupt("id", &e))?,
            user_id: UserId::parse(row.user_id).map_err(|e| corrupt("user_id", &e))?,
            seq: row.seq,
            kind: NotificationType::parse(row.kind).map_err(|e| corrupt("type", &e))?,
            data: serde_json::from_str(&row.data).map_err(|e| corrupt("data", &e))?,
            group_key: row
                .group_key
                .map(Key::parse)
                .transpose()
                .map_err(|e| corrupt("group_key", &e))?,
            created_at: from_ms(row.created_at)?,
            seen_at: opt_ms(row.seen_at)?,
            read_at: opt_ms(row.read_at)?,
            archived_at: opt_ms(row.archived_at)?,
            expires_at: opt_ms(row.expires_at)?,
        })
    }
}

/// Decodes every row of a page.
pub(super) fn decode_all(rows: Vec<NotificationRow>) -> Result<Vec<Notification>, StoreError> {
    rows.into_iter().map(Notification::try_from).collect()
}

/// One notification row to insert; the backend assigns its `seq`.
pub(super) struct NewRow<'a> {
    pub(super) id: NotificationId,
    pub(super) user: &'a UserId,
    pub(super) request: &'a NewNotification,
    /// `request.data` serialised once for all recipients.
    pub(super) data: &'a str,
    pub(super) created_at: OffsetDateTime,
}

impl NewRow<'_> {
    /// The notification as stored under `seq`: unseen, unread, unarchived.
    pub(super) fn stored(self, seq: Seq) -> Notification {
        Notification {
            id: self.id,
            seq,
            user_id: self.user.clone(),
            kind: self.request.kind.clone(),
            data: self.request.data.clone(),
            group_key: self.request.group_key.clone(),
            created_at: self.created_at,
            seen_at: None,
            read_at: None,
            archived_at: None,
            expires_at: self.request.expires_at,
        }
    }

    pub(super) fn created_ms(&self) -> i64 {
        to_ms(self.created_at)
    }

    pub(super) fn group_key(&self) -> Option<&str> {
        self.request.group_key.as_ref().map(Key::as_str)
    }

    pub(super) fn expires_ms(&self) -> Option<i64> {
        self.request.expires_at.map(to_ms)
    }
}

/// What an idempotency key's first request stored, as kept with the key.
pub(super) fn encode_response(inserted: &Inserted) -> Result<String, sqlx::Error> {
    serde_json::to_string(&inserted.refs()).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// A repeat of `key`: the first request's result when `fingerprint` matches the stored one,
/// otherwise a conflict.
pub(super) fn replay(
    key: &Key,
    fingerprint: &str,
    stored_fingerprint: &str,
    stored_response: &str,
) -> Result<Inserted, StoreError> {
    if fingerprint != stored_fingerprint {
        return Err(StoreError::IdempotencyConflict(key.as_str().into()));
    }
    let refs: Vec<NotificationRef> = serde_json::from_str(stored_response)
        .map_err(|e| StoreError::Corrupt(format!("idempotency response: {e}")))?;
    Ok(Inserted::Replayed(refs))
}
