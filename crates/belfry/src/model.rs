//! The nouns of Belfry: user ids, notification types, sequence numbers, notifications.
//!
//! Values here are parsed once at the edge (`parse` returns a typed [`ParseError`]) and are valid
//! by construction afterwards: the core never handles a raw, unchecked `String` id.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Why a value was refused by one of the `parse` constructors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The value was empty.
    #[error("must not be empty")]
    Empty,
    /// The value was longer than allowed.
    #[error("must be at most {max} characters")]
    TooLong {
        /// The limit, in characters.
        max: usize,
    },
    /// The value contained a character that is not allowed.
    #[error("{0}")]
    BadCharacter(&'static str),
    /// The value is not a UUID.
    #[error("must be a UUID")]
    NotUuid,
}

fn check_len(value: &str, max: usize) -> Result<(), ParseError> {
    if value.is_empty() {
        return Err(ParseError::Empty);
    }
    if value.chars().count() > max {
        return Err(ParseError::TooLong { max });
    }
    Ok(())
}

/// `value` when it is 1–`max` characters without control characters.
fn printable(value: String, max: usize) -> Result<String, ParseError> {
    check_len(&value, max)?;
    if value.chars().any(char::is_control) {
        return Err(ParseError::BadCharacter(
            "must not contain control characters",
        ));
    }
    Ok(value)
}

/// A user id, as the app knows it (the JWT `sub`): 1–128 printable characters, no whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// Longest accepted user id, in characters.
    pub const MAX_LEN: usize = 128;

    /// Parses a user id.
    pub fn parse(value: impl Into<String>) -> Result<Self, ParseError> {
        let value = value.into();
        check_len(&value, Self::MAX_LEN)?;
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ParseError::BadCharacter(
                "must not contain whitespace or control characters",
            ));
        }
        Ok(Self(value))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A notification type such as `comment.created`: 1–128 chars of `[A-Za-z0-9._:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct NotificationType(String);

impl NotificationType {
    /// Longest accepted type, in characters.
    pub const MAX_LEN: usize = 128;

    /// Parses a notification type.
    pub fn parse(value: impl Into<String>) -> Result<Self, ParseError> {
        let value = value.into();
        check_len(&value, Self::MAX_LEN)?;
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
        {
            return Err(ParseError::BadCharacter(
                "may only contain A-Z, a-z, 0-9 and . _ : -",
            ));
        }
        Ok(Self(value))
    }

    /// The type as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A room name such as `todo:42`: 1–128 chars of `[A-Za-z0-9._:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RoomName(String);

impl RoomName {
    /// Parses a room name (the same alphabet as notification types).
    pub fn parse(value: impl Into<String>) -> Result<Self, ParseError> {
        NotificationType::parse(value).map(|t| Self(t.0))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A short app-chosen key (group key, idempotency key): 1–256 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Key(String);

impl Key {
    /// Longest accepted key, in characters.
    pub const MAX_LEN: usize = 256;

    /// Parses a key.
    pub fn parse(value: impl Into<String>) -> Result<Self, ParseError> {
        printable(value.into(), Self::MAX_LEN).map(Self)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who caused an event ("Alice"), as the app names them: 1–128 characters, no control
/// characters. Grouped items list their distinct actors.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Actor(String);

impl Actor {
    /// Longest accepted actor, in characters.
    pub const MAX_LEN: usize = 128;

    /// Parses an actor.
    pub fn parse(value: impl Into<String>) -> Result<Self, ParseError> {
        printable(value.into(), Self::MAX_LEN).map(Self)
    }

    /// The actor as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A per-user sequence number. The first notification of a user has seq 1.
pub type Seq = i64;

/// A user's state version: one counter per user, taken by every read-state and preferences
/// change in the transaction that stores it, so that a late copy of a change can be told from
/// a newer one. 0 before the first change.
pub type StateVersion = i64;

/// Where a user's stream stands: what a connection that is up to date has been sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// Highest `seq` ever assigned to the user.
    pub last_seq: Seq,
    /// The user's state version.
    pub state_version: StateVersion,
}

impl Position {
    /// Moves each part up to `other`'s where that is ahead.
    pub fn advance(&mut self, other: Position) {
        self.last_seq = self.last_seq.max(other.last_seq);
        self.state_version = self.state_version.max(other.state_version);
    }

    /// True when `other` is ahead of this in either part.
    pub fn is_behind(&self, other: &Position) -> bool {
        other.last_seq > self.last_seq || other.state_version > self.state_version
    }
}

/// A notification's globally unique id (UUIDv7, so ids sort by creation time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NotificationId(Uuid);

impl NotificationId {
    /// A fresh id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses an id from its text form.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        Uuid::parse_str(value)
            .map(Self)
            .map_err(|_| ParseError::NotUuid)
    }
}

impl Default for NotificationId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for NotificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A stored notification, as clients see it (HTTP list and `notification` frames).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Notification {
    /// Globally unique id (UUIDv7).
    #[schema(value_type = String)]
    pub id: NotificationId,
    /// Per-user sequence number.
    pub seq: Seq,
    /// The recipient.
    #[schema(value_type = String)]
    pub user_id: UserId,
    /// The app's event type.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: NotificationType,
    /// The app's JSON object.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// Optional grouping key.
    #[schema(value_type = Option<String>)]
    pub group_key: Option<Key>,
    /// When it was stored (its first event, for a grouped item).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the last event was merged into this item; null when never.
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
    /// Events merged into this item (1 when ungrouped).
    pub count: i64,
    /// Distinct actors, most recent first (at most `grouping.max_actors` listed).
    #[schema(value_type = Vec<String>)]
    pub actors: Vec<String>,
    /// Distinct actors merged so far (at least `actors.len()`).
    pub actor_count: i64,
    /// Stored while the user's preferences muted it: already read, never sent live or pushed.
    pub muted: bool,
    /// When the user first saw it (opened the bell).
    #[serde(with = "time::serde::rfc3339::option")]
    pub seen_at: Option<OffsetDateTime>,
    /// When it was read.
    #[serde(with = "time::serde::rfc3339::option")]
    pub read_at: Option<OffsetDateTime>,
    /// When it was archived.
    #[serde(with = "time::serde::rfc3339::option")]
    pub archived_at: Option<OffsetDateTime>,
    /// After this time it is no longer listed, counted or delivered.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// A validated request to notify some users, as the notifier and the store take it.
#[derive(Debug, Clone)]
pub struct NewNotification {
    /// Distinct recipients, in request order.
    pub recipients: Vec<UserId>,
    /// The event type.
    pub kind: NotificationType,
    /// The JSON object, already size-checked.
    pub data: serde_json::Value,
    /// Optional grouping key.
    pub group_key: Option<Key>,
    /// Who caused it, for grouped items.
    pub actor: Option<Actor>,
    /// Optional idempotency key.
    pub idempotency_key: Option<Key>,
    /// Optional expiry.
    pub expires_at: Option<OffsetDateTime>,
    /// Recipients whose preferences mute it, decided before storing (see `preferences`).
    /// Empty from intake; the notifier fills it.
    pub muted: HashSet<UserId>,
    /// What the store does with a muted recipient's copy.
    pub muted_action: MutedAction,
}

/// What happens to a notification a recipient muted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MutedAction {
    /// Stored for history, already read, flagged `muted`; never sent live or pushed.
    #[default]
    Store,
    /// Not stored at all.
    Drop,
}

impl NewNotification {
    /// A stable digest of the request's content, used to tell a true retry (same key, same body)
    /// from a key reused for a different request.
    pub fn fingerprint(&self) -> String {
        let body = serde_json::json!({
            "r": self.recipients,
            "t": self.kind,
            "d": self.data,
            "g": self.group_key,
            "a": self.actor,
            "e": self.expires_at.map(|t| t.unix_timestamp_nanos() / 1_000_000),
        });
        body.to_string()
    }
}

/// Where a stored notification went: its id, recipient and sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationRef {
    /// The notification's id.
    #[schema(value_type = String)]
    pub id: String,
    /// Its recipient.
    pub user_id: String,
    /// Its per-user sequence number.
    pub seq: Seq,
    /// True when the recipient's preferences muted it (stored read, not delivered live).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub muted: bool,
}

/// A change of read state requested by a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateChange {
    /// Sets `read_at`.
    Read,
    /// Clears `read_at`.
    Unread,
    /// Sets `seen_at`.
    Seen,
    /// Sets `archived_at`.
    Archived,
    /// Removes the notification.
    Deleted,
}

/// A browser's push subscription (the `PushSubscription.toJSON()` shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushSubscription {
    /// The push service URL.
    pub endpoint: String,
    /// Browser keys.
    pub keys: SubscriptionKeys,
    /// Ignored; browsers send it.
    #[serde(default, rename = "expirationTime", skip_serializing)]
    #[schema(value_type = Option<f64>)]
    pub expiration_time: Option<serde_json::Value>,
}

/// The keys of a push subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionKeys {
    /// The browser's P-256 public key, base64url.
    pub p256dh: String,
    /// The browser's auth secret, base64url.
    pub auth: String,
}

/// Now, truncated to milliseconds (the precision the store keeps).
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    let millis = now.unix_timestamp_nanos() / 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(millis * 1_000_000).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_reject_empty_long_and_whitespace() {
        assert_eq!(UserId::parse(""), Err(ParseError::Empty));
        assert!(UserId::parse("a b").is_err());
        assert!(UserId::parse("x".repeat(129)).is_err());
        assert_eq!(UserId::parse("42").map(|u| u.to_string()), Ok("42".into()));
    }

    #[test]
    fn types_allow_only_the_documented_alphabet() {
        assert!(NotificationType::parse("comment.created").is_ok());
        assert!(NotificationType::parse("a:b-c_d").is_ok());
        assert!(NotificationType::parse("comment created").is_err());
        assert!(NotificationType::parse("é").is_err());
    }

    #[test]
    fn fingerprint_differs_when_content_differs() {
        let mk = |data| NewNotification {
            recipients: vec![UserId::parse("1").unwrap()],
            kind: NotificationType::parse("t").unwrap(),
            data,
            group_key: None,
            actor: None,
            idempotency_key: None,
            expires_at: None,
            muted: HashSet::new(),
            muted_action: MutedAction::Store,
        };
        let a = mk(serde_json::json!({"a": 1}));
        let b = mk(serde_json::json!({"a": 2}));
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
    }
}
