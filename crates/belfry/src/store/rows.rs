//! What both backends share about rows: times as unix milliseconds, a stored row decoded into a
//! [`Notification`], and the response kept with an idempotency key.

use std::time::Duration;

use time::OffsetDateTime;

use super::plan::Planned;
use super::{Counts, Inserted, StoreError};
use crate::model::Position;
use crate::model::{
    Actor, Key, NewNotification, Notification, NotificationId, NotificationRef, NotificationType,
    Seq, UserId,
};
use crate::preferences::Preferences;

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
    updated_at: Option<i64>,
    count: i64,
    actors: String,
    actor_count: i64,
    muted: bool,
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
            updated_at: opt_ms(row.updated_at)?,
            count: row.count,
            actors: serde_json::from_str(&row.actors).map_err(|e| corrupt("actors", &e))?,
            actor_count: row.actor_count,
            muted: row.muted,
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

/// One event for one recipient, before it is planned as a new row or merged into a group item.
pub(super) struct NewRow<'a> {
    pub(super) id: NotificationId,
    pub(super) user: &'a UserId,
    pub(super) request: &'a NewNotification,
    pub(super) created_at: OffsetDateTime,
    /// The recipient muted it: stored read and flagged, never delivered live.
    pub(super) muted: bool,
}

impl NewRow<'_> {
    /// The notification as stored under `seq`: unseen, unarchived, unread unless muted.
    pub(super) fn stored(self, seq: Seq) -> Notification {
        let actors: Vec<String> = self.actor().map(str::to_owned).into_iter().collect();
        Notification {
            id: self.id,
            seq,
            user_id: self.user.clone(),
            kind: self.request.kind.clone(),
            data: self.request.data.clone(),
            group_key: self.request.group_key.clone(),
            created_at: self.created_at,
            updated_at: None,
            count: 1,
            actor_count: actors.len() as i64,
            actors,
            muted: self.muted,
            seen_at: None,
            read_at: self.muted.then_some(self.created_at),
            archived_at: None,
            expires_at: self.request.expires_at,
        }
    }

    fn created_ms(&self) -> i64 {
        to_ms(self.created_at)
    }

    fn actor(&self) -> Option<&str> {
        self.request.actor.as_ref().map(Actor::as_str)
    }

    /// Whether this event joins `head`, the newest stored item of its group: the item is
    /// still unread, unarchived, unmuted and unexpired, and its first event is less than
    /// `window_ms` old. Muted events are never grouped.
    pub(super) fn joins(&self, head: &Notification, window_ms: i64) -> bool {
        let now = self.created_ms();
        !self.muted
            && window_ms > 0
            && !head.muted
            && head.read_at.is_none()
            && head.archived_at.is_none()
            && head.expires_at.is_none_or(|at| to_ms(at) > now)
            && now - to_ms(head.created_at) < window_ms
    }

    /// Merges this event into `head` under its new `seq`: one more event, this event's type,
    /// data and expiry, its actor moved to the front of at most `max_actors`.
    pub(super) fn merge_into(&self, head: &mut Notification, seq: Seq, max_actors: usize) {
        if let Some(actor) = self.actor() {
            let known = head.actors.iter().position(|a| a == actor);
            match known {
                Some(at) => {
                    head.actors.remove(at);
                }
                // Beyond the listed ones the count can only assume a newcomer.
                None => head.actor_count += 1,
            }
            head.actors.insert(0, actor.to_owned());
            head.actors.truncate(max_actors.max(1));
        }
        head.seq = seq;
        head.count += 1;
        head.kind = self.request.kind.clone();
        head.data = self.request.data.clone();
        head.expires_at = self.request.expires_at;
        head.updated_at = Some(self.created_at);
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

/// A planned row's columns in their stored form (times as unix ms, actors as JSON text).
pub(super) struct Columns<'a> {
    pub(super) n: &'a Notification,
    pub(super) id: String,
    pub(super) data: &'a str,
    pub(super) group_key: Option<&'a str>,
    pub(super) actors: String,
    pub(super) created_ms: i64,
    pub(super) updated_ms: Option<i64>,
    pub(super) read_ms: Option<i64>,
    pub(super) expires_ms: Option<i64>,
}

impl<'a> Columns<'a> {
    pub(super) fn of(planned: &'a Planned) -> Self {
        let n = &planned.notification;
        Self {
            n,
            id: n.id.to_string(),
            data: &planned.data,
            group_key: n.group_key.as_ref().map(Key::as_str),
            actors: serde_json::Value::from(n.actors.clone()).to_string(),
            created_ms: to_ms(n.created_at),
            updated_ms: n.updated_at.map(to_ms),
            read_ms: n.read_at.map(to_ms),
            expires_ms: n.expires_at.map(to_ms),
        }
    }
}

/// A preferences document as stored.
pub(super) fn encode_preferences(preferences: &Preferences) -> Result<String, StoreError> {
    serde_json::to_string(preferences).map_err(|e| StoreError::Corrupt(format!("preferences: {e}")))
}

/// Stored `(user_id, document)` rows, decoded.
pub(super) fn decode_preferences(
    rows: Vec<(String, String)>,
) -> Result<Vec<(UserId, Preferences)>, StoreError> {
    rows.into_iter()
        .map(|(user, document)| {
            let user = UserId::parse(user)
                .map_err(|e| StoreError::Corrupt(format!("preferences user_id: {e}")))?;
            let preferences = serde_json::from_str(&document)
                .map_err(|e| StoreError::Corrupt(format!("preferences of {user}: {e}")))?;
            Ok((user, preferences))
        })
        .collect()
}

/// A `counts` row (unread, last seq, state version), decoded.
pub(super) fn counts_of<R>(row: &R) -> Result<Counts, StoreError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Counts {
        unread: row.try_get(0)?,
        last_seq: row.try_get(1)?,
        state_version: row.try_get(2)?,
    })
}

/// Stored `(user_id, last_seq, state_version)` rows, decoded.
pub(super) fn decode_positions(
    rows: Vec<(String, i64, i64)>,
) -> Result<Vec<(UserId, Position)>, StoreError> {
    rows.into_iter()
        .map(|(user, last_seq, state_version)| {
            let user = UserId::parse(user)
                .map_err(|e| StoreError::Corrupt(format!("user_seqs user_id: {e}")))?;
            Ok((
                user,
                Position {
                    last_seq,
                    state_version,
                },
            ))
        })
        .collect()
}
