//! The client wire protocol, version 1: frames in both directions and the catalogue of close and
//! error codes. `docs/protocol.md` is the prose of this file; the SDK mirrors the catalogue in
//! `clients/js/src/core/codes.ts` (a test compares them).
//!
//! This module only defines shapes and encodes them; it never touches a socket.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{Notification, Seq, StateChange, StateVersion};
use crate::preferences::Preferences;

/// The protocol version this server speaks.
pub const VERSION: u32 = 1;

/// WebSocket close codes. 4000–4499: the client should reconnect; 4500–4999: it should not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum CloseCode {
    /// The client asked to close.
    Normal = 1000,
    /// A client frame exceeded `ws.max_frame_bytes`.
    MessageTooBig = 1009,
    /// A server-side failure; reconnect with backoff.
    Internal = 4000,
    /// Missing, invalid or expired token; refresh it, then reconnect.
    Unauthorized = 4001,
    /// No `auth` frame within `ws.auth_timeout_secs`.
    AuthTimeout = 4002,
    /// The connection's outgoing queue overflowed; reconnect at once with `since`.
    Slow = 4008,
    /// Nothing arrived from the client for two heartbeat intervals.
    HeartbeatTimeout = 4009,
    /// The server is shutting down; reconnect with backoff and `since`.
    Shutdown = 4010,
    /// The client sent frames faster than `ws.max_frames_per_second` allows.
    TooManyFrames = 4011,
    /// The user or the node has too many connections.
    TooManyConnections = 4429,
    /// The client broke the protocol; do not reconnect.
    ProtocolError = 4500,
    /// The requested protocol version is not served; do not reconnect.
    UnsupportedVersion = 4501,
}

impl CloseCode {
    /// Every code, for documentation and the SDK comparison test.
    pub const ALL: [CloseCode; 12] = [
        CloseCode::Normal,
        CloseCode::MessageTooBig,
        CloseCode::Internal,
        CloseCode::Unauthorized,
        CloseCode::AuthTimeout,
        CloseCode::Slow,
        CloseCode::HeartbeatTimeout,
        CloseCode::Shutdown,
        CloseCode::TooManyFrames,
        CloseCode::TooManyConnections,
        CloseCode::ProtocolError,
        CloseCode::UnsupportedVersion,
    ];

    /// The numeric code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// A short reason, sent as the close frame's reason text.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal",
            CloseCode::MessageTooBig => "message too big",
            CloseCode::Internal => "internal",
            CloseCode::Unauthorized => "unauthorized",
            CloseCode::AuthTimeout => "auth timeout",
            CloseCode::Slow => "slow",
            CloseCode::HeartbeatTimeout => "heartbeat timeout",
            CloseCode::Shutdown => "shutdown",
            CloseCode::TooManyFrames => "too many frames",
            CloseCode::TooManyConnections => "too many connections",
            CloseCode::ProtocolError => "protocol error",
            CloseCode::UnsupportedVersion => "unsupported version",
        }
    }

    /// The name the SDK uses for this code (`CloseCode.Unauthorized` in `codes.ts`).
    pub fn name(self) -> &'static str {
        match self {
            CloseCode::Normal => "Normal",
            CloseCode::MessageTooBig => "MessageTooBig",
            CloseCode::Internal => "Internal",
            CloseCode::Unauthorized => "Unauthorized",
            CloseCode::AuthTimeout => "AuthTimeout",
            CloseCode::Slow => "Slow",
            CloseCode::HeartbeatTimeout => "HeartbeatTimeout",
            CloseCode::Shutdown => "Shutdown",
            CloseCode::TooManyFrames => "TooManyFrames",
            CloseCode::TooManyConnections => "TooManyConnections",
            CloseCode::ProtocolError => "ProtocolError",
            CloseCode::UnsupportedVersion => "UnsupportedVersion",
        }
    }
}

/// Error codes, shared by HTTP error bodies and `error` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed JSON, wrong types, unknown fields.
    BadRequest,
    /// Well-formed but invalid values.
    Validation,
    /// Missing, invalid or expired credentials.
    Unauthorized,
    /// Valid credentials that may not do this.
    Forbidden,
    /// No such resource, or not the caller's.
    NotFound,
    /// An idempotency key reused with a different request.
    Conflict,
    /// The request body did not arrive within `http.body_read_timeout_secs`.
    RequestTimeout,
    /// The route exists, but not for this HTTP method (the `Allow` header lists those it has).
    MethodNotAllowed,
    /// A body or `data` over the limit.
    PayloadTooLarge,
    /// Slow down.
    RateLimited,
    /// A configured bound was reached (rooms per connection, users per room).
    LimitExceeded,
    /// The database is unreachable; nothing was stored.
    Unavailable,
    /// A bug; details are in the server log.
    Internal,
    /// A WebSocket frame that is not a known client frame.
    BadFrame,
}

impl ErrorCode {
    /// Every code, for documentation and the SDK comparison test.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadRequest,
        ErrorCode::Validation,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::LimitExceeded,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::BadFrame,
    ];

    /// The wire text of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Validation => "validation",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::BadFrame => "bad_frame",
        }
    }
}

/// A frame from a client (WebSocket only).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Authenticates a connection opened without a `token` query parameter.
    Auth {
        /// The user's JWT.
        token: String,
        /// Resume after this sequence number.
        #[serde(default)]
        since: Option<Seq>,
        /// Echoed in the `ack` (when refreshing the token of an open connection).
        #[serde(default, rename = "ref")]
        reference: Option<u64>,
    },
    /// Application-level ping; answered with `pong`.
    Ping {
        /// Echoed in the reply.
        #[serde(default, rename = "ref")]
        reference: Option<u64>,
    },
    /// Marks notifications read.
    MarkRead {
        /// Notification ids.
        ids: Vec<String>,
        /// Echoed in the `ack`.
        #[serde(default, rename = "ref")]
        reference: Option<u64>,
    },
    /// Marks notifications unread.
    MarkUnread {
        /// Notification ids.
        ids: Vec<String>,
        /// Echoed in the `ack`.
        #[serde(default, rename = "ref")]
        reference: Option<u64>,
    },
    /// Marks notifications seen.
    MarkSeen {
        /// Notification ids.
        ids: Vec<String>,
        /// Echoed in the `ack`.
        #[serde(default, rename = "ref")]
        reference: Option<u64>,
    },
    /// Marks every notification read.
    MarkAllRead {
        /// Echoed in the `ack`.
        #[serde(default, rename = "ref")]
        reference: Option<u64>,
    },
    /// Joins a room.
    Join {
        /// The room.
        room: String,
        /// A room token from the app backend, when the user token grants no access.
        #[serde(default)]
        token: Option<String>,
        /// Echoed in the reply.
        #[serde(default, rename = "ref")]
        reference: Option<u64>,
    },
    /// Leaves a room.
    Leave {
        /// The room.
        room: String,
        /// Echoed in the `ack`.
        #[serde(default, rename = "ref")]
        reference: Option<u64>,
    },
    /// Sends a message to the other members of a room.
    Publish {
        /// The room.
        room: String,
        /// The message: a JSON value.
        data: serde_json::Value,
        /// Echoed in the `ack`.
        #[serde(default, rename = "ref")]
        reference: Option<u64>,
    },
}

impl ClientFrame {
    /// Parses a client text frame; the error message is safe to send back to the client.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| {
            let msg = e.to_string();
            // serde's messages quote the input at most by a field name; cap the length anyway.
            msg.chars().take(200).collect()
        })
    }

    /// The `ref` the client attached, if any.
    pub fn reference(&self) -> Option<u64> {
        match self {
            ClientFrame::Auth { reference, .. }
            | ClientFrame::Ping { reference }
            | ClientFrame::MarkRead { reference, .. }
            | ClientFrame::MarkUnread { reference, .. }
            | ClientFrame::MarkSeen { reference, .. }
            | ClientFrame::MarkAllRead { reference }
            | ClientFrame::Join { reference, .. }
            | ClientFrame::Leave { reference, .. }
            | ClientFrame::Publish { reference, .. } => *reference,
        }
    }
}

/// A frame to a client. Encoded once per event and shared by every connection it goes to.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// First frame of a session.
    Hello {
        /// Protocol version.
        v: u32,
        /// This connection's id (for logs and support).
        conn_id: String,
        /// The authenticated user.
        user_id: &'a str,
        /// Unread notifications right now.
        unread_count: i64,
        /// The user's highest stored sequence number when the connection opened.
        last_seq: Seq,
        /// The user's state version when the connection opened (see `state`).
        state_version: StateVersion,
        /// Server ping interval, in milliseconds.
        heartbeat_ms: u64,
    },
    /// A new notification.
    Notification {
        /// Its sequence number (also inside the object).
        seq: Seq,
        /// The notification.
        notification: &'a Notification,
    },
    /// A grouped item changed: another event joined it (or a feed catching up sends an item
    /// that holds several events). Replaces the item with the same id; never changes the
    /// unread count.
    Updated {
        /// The item's new sequence number (also inside the object).
        seq: Seq,
        /// The whole item.
        notification: &'a Notification,
    },
    /// The user's preferences changed (from any tab, device or the backend).
    Preferences {
        /// The preferences now.
        preferences: &'a Preferences,
        /// The user's state version this change took.
        version: StateVersion,
    },
    /// Read state changed.
    State {
        /// What changed.
        change: StateChange,
        /// The notifications concerned (empty with `all`).
        ids: &'a [String],
        /// True for "mark all read".
        all: bool,
        /// With `all`: every notification up to this seq is read.
        #[serde(skip_serializing_if = "Option::is_none")]
        up_to_seq: Option<Seq>,
        /// The user's unread count after the change.
        unread_count: i64,
        /// The user's highest seq when the count was taken.
        last_seq: Seq,
        /// The user's state version this change took: a frame with a version not above the
        /// last one a connection got is stale and never sent.
        version: StateVersion,
    },
    /// The connection's read state or preferences may be stale (a change was lost between
    /// nodes): here is the truth now. Clients set the count and preferences and re-read the
    /// first page of the inbox.
    Sync {
        /// The user's unread count now.
        unread_count: i64,
        /// The user's highest seq when the count was taken.
        last_seq: Seq,
        /// The user's state version now.
        state_version: StateVersion,
        /// The user's preferences now.
        preferences: &'a Preferences,
    },
    /// Reply to `join`: the room's members now (one entry per user, however many tabs).
    Joined {
        /// The room.
        room: &'a str,
        /// User ids present.
        members: &'a [String],
        /// The `join`'s `ref`.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
    },
    /// A user arrived in (first tab) or left (last tab) a room.
    Presence {
        /// The room.
        room: &'a str,
        /// `join` or `leave`.
        event: &'a str,
        /// Who.
        user_id: &'a str,
    },
    /// A room message, from a member or the backend.
    Message {
        /// The room.
        room: &'a str,
        /// Unique message id.
        id: &'a str,
        /// The sending user; absent when the app backend sent it.
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<&'a str>,
        /// When the server received it (RFC 3339).
        at: &'a str,
        /// The message.
        data: &'a serde_json::Value,
    },
    /// Reply to `ping`.
    Pong {
        /// The ping's `ref`.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
    },
    /// A client frame with a `ref` was handled.
    Ack {
        /// The frame's `ref`.
        #[serde(rename = "ref")]
        reference: u64,
    },
    /// A client frame was rejected.
    Error {
        /// The frame's `ref`, when it had one.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
        /// The error code.
        code: ErrorCode,
        /// A human-readable explanation.
        message: &'a str,
    },
}

impl<'a> ServerFrame<'a> {
    /// The frame that delivers a stored item: `notification` for a single event, `updated`
    /// for an item that holds several (the client may have an older version of it).
    pub fn delivering(notification: &'a Notification) -> Self {
        if notification.count > 1 {
            ServerFrame::Updated {
                seq: notification.seq,
                notification,
            }
        } else {
            ServerFrame::Notification {
                seq: notification.seq,
                notification,
            }
        }
    }

    /// The frame's `type`, used as the SSE event name.
    pub fn kind(&self) -> FrameKind {
        match self {
            ServerFrame::Hello { .. } => FrameKind::Hello,
            ServerFrame::Notification { .. } => FrameKind::Notification,
            ServerFrame::Updated { .. } => FrameKind::Updated,
            ServerFrame::Preferences { .. } => FrameKind::Preferences,
            ServerFrame::State { .. } => FrameKind::State,
            ServerFrame::Sync { .. } => FrameKind::Sync,
            ServerFrame::Joined { .. } => FrameKind::Joined,
            ServerFrame::Presence { .. } => FrameKind::Presence,
            ServerFrame::Message { .. } => FrameKind::Message,
            ServerFrame::Pong { .. } => FrameKind::Pong,
            ServerFrame::Ack { .. } => FrameKind::Ack,
            ServerFrame::Error { .. } => FrameKind::Error,
        }
    }

    /// Encodes the frame once, for any number of connections.
    pub fn encode(&self) -> Event {
        let seq = match self {
            ServerFrame::Notification { seq, .. } | ServerFrame::Updated { seq, .. } => Some(*seq),
            _ => None,
        };
        let version = match self {
            ServerFrame::State { version, .. } | ServerFrame::Preferences { version, .. } => {
                Some(*version)
            }
            ServerFrame::Sync { state_version, .. } => Some(*state_version),
            _ => None,
        };
        // Serialising these plain structs cannot fail: no maps with non-string keys, no
        // user-provided Serialize impls. An empty object keeps the stream well-formed regardless.
        let json = serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"));
        Event {
            seq,
            version,
            kind: self.kind(),
            json: Arc::from(json),
            published_at: None,
        }
    }
}

/// Every kind of event that travels through the hub and between nodes: the client frames'
/// `type`s, and the node-internal markers that never reach a client. One closed set shared by
/// the protocol, the SSE event names, the broker's wire format and the hub, so that no layer
/// can keep a list of its own that a new kind misses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// `hello`.
    Hello,
    /// `notification`.
    Notification,
    /// `updated`.
    Updated,
    /// `preferences`.
    Preferences,
    /// `state`.
    State,
    /// `sync`.
    Sync,
    /// `joined`.
    Joined,
    /// `presence`.
    Presence,
    /// `message`.
    Message,
    /// `pong`.
    Pong,
    /// `ack`.
    Ack,
    /// `error`.
    Error,
    /// Node-internal: "re-read the store, events may have been missed". Sessions consume it.
    Resync,
    /// Node-to-node: "these are my users in this room" (JSON array of user ids).
    PresenceState,
    /// Node-to-node: "tell me your users in this room".
    PresenceQuery,
}

impl FrameKind {
    /// Every kind.
    pub const ALL: [FrameKind; 15] = [
        FrameKind::Hello,
        FrameKind::Notification,
        FrameKind::Updated,
        FrameKind::Preferences,
        FrameKind::State,
        FrameKind::Sync,
        FrameKind::Joined,
        FrameKind::Presence,
        FrameKind::Message,
        FrameKind::Pong,
        FrameKind::Ack,
        FrameKind::Error,
        FrameKind::Resync,
        FrameKind::PresenceState,
        FrameKind::PresenceQuery,
    ];

    /// The wire name: the client frame's `type` (and SSE event name), or the internal marker's.
    pub fn as_str(self) -> &'static str {
        match self {
            FrameKind::Hello => "hello",
            FrameKind::Notification => "notification",
            FrameKind::Updated => "updated",
            FrameKind::Preferences => "preferences",
            FrameKind::State => "state",
            FrameKind::Sync => "sync",
            FrameKind::Joined => "joined",
            FrameKind::Presence => "presence",
            FrameKind::Message => "message",
            FrameKind::Pong => "pong",
            FrameKind::Ack => "ack",
            FrameKind::Error => "error",
            FrameKind::Resync => "resync",
            FrameKind::PresenceState => "presence_state",
            FrameKind::PresenceQuery => "presence_query",
        }
    }

    /// The kind with this wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// True for the kinds that reach clients (the others are node-internal).
    pub fn is_client_frame(self) -> bool {
        !matches!(
            self,
            FrameKind::Resync | FrameKind::PresenceState | FrameKind::PresenceQuery
        )
    }
}

impl std::fmt::Display for FrameKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An encoded server frame, shared (`Arc`) between all the connections it is sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The item's sequence number, for `notification` and `updated` frames.
    pub seq: Option<Seq>,
    /// The user's state version, for `state`, `preferences` and `sync` frames.
    pub version: Option<StateVersion>,
    /// The frame type (SSE event name).
    pub kind: FrameKind,
    /// The JSON text.
    pub json: Arc<str>,
    /// When a live notification was handed to the broker, for the delivery latency metric.
    pub published_at: Option<std::time::Instant>,
}

impl Event {
    /// An event of `kind` with this JSON text and no seq or version.
    pub fn internal(kind: FrameKind, json: &str) -> Self {
        Event {
            seq: None,
            version: None,
            kind,
            json: Arc::from(json),
            published_at: None,
        }
    }

    /// A node-internal marker, never sent to clients: "re-read the store, events may have been
    /// missed". Sessions consume it.
    pub fn resync() -> Self {
        Self::internal(FrameKind::Resync, "")
    }

    /// True for the resync marker.
    pub fn is_resync(&self) -> bool {
        self.kind == FrameKind::Resync
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_with_and_without_ref() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ping","ref":5}"#),
            Ok(ClientFrame::Ping { reference: Some(5) })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"mark_all_read"}"#),
            Ok(ClientFrame::MarkAllRead { reference: None })
        );
        assert!(ClientFrame::parse(r#"{"type":"nope"}"#).is_err());
        assert!(ClientFrame::parse("not json").is_err());
    }

    /// `Name: value,` lines of the object `export const <object> = { … }` in codes.ts.
    fn sdk_entries(source: &str, object: &str) -> Vec<(String, String)> {
        let start = format!("export const {object} = {{");
        source
            .lines()
            .skip_while(|l| l.trim() != start)
            .skip(1)
            .take_while(|l| !l.trim().starts_with('}'))
            .filter_map(|l| {
                let (name, value) = l.trim().trim_end_matches(',').split_once(':')?;
                Some((
                    name.trim().to_owned(),
                    value.trim().trim_matches('"').to_owned(),
                ))
            })
            .collect()
    }

    /// The SDK's catalogue (clients/js/src/core/codes.ts) is exactly the server's.
    #[test]
    fn the_sdk_code_catalogue_matches_the_server() {
        let source = include_str!("../../../clients/js/src/core/codes.ts");
        let close: Vec<(String, String)> = CloseCode::ALL
            .iter()
            .map(|c| (c.name().to_owned(), c.code().to_string()))
            .collect();
        assert_eq!(sdk_entries(source, "CloseCode"), close);
        let errors: Vec<String> = ErrorCode::ALL
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        let sdk: Vec<String> = sdk_entries(source, "ErrorCode")
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(sdk, errors);
    }

    /// docs/protocol.md documents every close code and every error code.
    #[test]
    fn the_protocol_doc_lists_every_code() {
        let doc = include_str!("../../../docs/protocol.md");
        for code in CloseCode::ALL {
            assert!(doc.contains(&format!("| {} |", code.code())), "{code:?}");
        }
        for code in ErrorCode::ALL {
            assert!(
                doc.contains(&format!("| `{}` |", code.as_str())),
                "{code:?}"
            );
        }
    }

    #[test]
    fn close_codes_fall_in_their_documented_ranges() {
        for code in CloseCode::ALL {
            let c = code.code();
            let reconnect = (4000..4500).contains(&c);
            let terminal = (4500..5000).contains(&c);
            let standard = c < 4000;
            assert!(reconnect || terminal || standard, "{c}");
        }
    }

    /// The SDK's SSE transport listens for every client frame kind (EventSource needs each
    /// event name): a kind added here and missing there fails this test.
    #[test]
    fn the_sdk_sse_transport_listens_for_every_client_frame() {
        let source = include_str!("../../../clients/js/src/core/transports/sse.ts");
        let start = source.find("export const EVENTS").unwrap();
        let start = start + source[start..].find('=').unwrap();
        let list = &source[start..start + source[start..].find("];").unwrap()];
        let listed: Vec<&str> = list.split('"').skip(1).step_by(2).collect();
        let kinds: Vec<&str> = FrameKind::ALL
            .into_iter()
            .filter(|k| k.is_client_frame())
            .map(FrameKind::as_str)
            .collect();
        assert_eq!(listed, kinds);
    }

    #[test]
    fn every_frame_kind_has_one_wire_name() {
        for kind in FrameKind::ALL {
            assert_eq!(FrameKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(FrameKind::parse("nope"), None);
    }

    #[test]
    fn versioned_frames_carry_their_version() {
        let prefs = Preferences::default();
        let event = ServerFrame::Preferences {
            preferences: &prefs,
            version: 7,
        }
        .encode();
        assert_eq!(event.version, Some(7));
        assert_eq!(event.kind, FrameKind::Preferences);
        assert!(event.json.contains(r#""version":7"#));
    }

    #[test]
    fn notification_frames_carry_their_seq() {
        let frame = ServerFrame::Pong { reference: Some(3) }.encode();
        assert_eq!(&*frame.json, r#"{"type":"pong","ref":3}"#);
        assert_eq!(frame.seq, None);
    }
}
