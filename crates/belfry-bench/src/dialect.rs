//! What differs between the servers the bench can load: Belfry's protocol (docs/protocol.md,
//! docs/api.md) and the seed-style peer's (bench/peers/fastapi). URLs, request bodies and the
//! frames clients read; everything else (clients, publisher, recorder) is shared.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Deserialize;

/// The notification type the bench publishes.
const KIND: &str = "bench.tick";

/// A server's API and live protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Belfry: `/v1/ws`, `/v1/sse`, `/v1/notifications`; per-user `seq`, resume with `since`.
    Belfry,
    /// The seed-style FastAPI peer: `/ws/notifications`, `/events/notifications`,
    /// `/api/notifications`; no resume (a reconnecting client fetches what it missed).
    Seed,
}

/// What a client makes of one frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// The session is registered and live.
    Hello,
    /// A room join was accepted (Belfry).
    Joined,
    /// A refused request (Belfry's `error` frame), with its code.
    Error(String),
    /// A notification: its id, its per-user order key, and the bench's own payload.
    Notification {
        /// Unique id (a UUID for Belfry, the row id for the peer).
        id: u128,
        /// Per-user order: Belfry's `seq`, the peer's row id.
        seq: i64,
        /// The bench's payload.
        payload: Payload,
    },
    /// A room message (no id, no order).
    Message(Payload),
    /// Anything else (pings, state frames, presence).
    Other,
}

/// The bench's own `data`: a run-wide sequence `s` and the send time `t`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Payload {
    /// Sequence.
    pub s: Option<u64>,
    /// Send time, µs since the recorder's epoch.
    pub t: Option<u64>,
}

impl Dialect {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Belfry => "belfry",
            Dialect::Seed => "fastapi",
        }
    }

    /// The readiness probe's path.
    pub fn ready_path(self) -> &'static str {
        match self {
            Dialect::Belfry => "/readyz",
            Dialect::Seed => "/healthz",
        }
    }

    /// The WebSocket path for a user token, resuming after `since` where the server can.
    pub fn ws_path(self, token: &str, since: Option<i64>, room: Option<&str>) -> String {
        match (self, room) {
            (Dialect::Belfry, _) => match since {
                Some(seq) => format!("/v1/ws?token={token}&since={seq}"),
                None => format!("/v1/ws?token={token}"),
            },
            (Dialect::Seed, Some(room)) => format!("/ws/rooms/{room}?token={token}"),
            (Dialect::Seed, None) => format!("/ws/notifications?token={token}"),
        }
    }

    /// The SSE path for a user token.
    pub fn sse_path(self, token: &str, since: Option<i64>) -> String {
        match self {
            Dialect::Belfry => match since {
                Some(seq) => format!("/v1/sse?token={token}&since={seq}"),
                None => format!("/v1/sse?token={token}"),
            },
            Dialect::Seed => format!("/events/notifications?token={token}"),
        }
    }

    /// The frame that joins `room` once the session is live, when joining takes a frame.
    pub fn join_frame(self, room: &str) -> Option<String> {
        match self {
            Dialect::Belfry => Some(format!(r#"{{"type":"join","room":"{room}","ref":1}}"#)),
            Dialect::Seed => None,
        }
    }

    /// Whether a reconnecting client must fetch what it missed itself (no `since`).
    pub fn fetches_on_reconnect(self) -> bool {
        self == Dialect::Seed
    }

    /// The path that lists a user's notifications after `after` (the peer's "fetch on mount").
    pub fn catch_up_path(self, after: i64, limit: u32) -> Option<String> {
        match self {
            Dialect::Belfry => None,
            Dialect::Seed => Some(format!("/api/notifications?after_id={after}&limit={limit}")),
        }
    }

    /// Path of the single-notification endpoint.
    pub fn single_path(self) -> &'static str {
        match self {
            Dialect::Belfry => "/v1/notifications",
            Dialect::Seed => "/api/notifications",
        }
    }

    /// Path of the batch endpoint.
    pub fn batch_path(self) -> &'static str {
        match self {
            Dialect::Belfry => "/v1/notifications/batch",
            Dialect::Seed => "/api/notifications/batch",
        }
    }

    /// Path of the backend's room message endpoint.
    pub fn room_path(self, room: &str) -> String {
        match self {
            Dialect::Belfry => format!("/v1/rooms/{room}/messages"),
            Dialect::Seed => format!("/api/rooms/{room}/messages"),
        }
    }

    /// Appends one notification request (for `user`, payload `s`, `t`) to `out`.
    pub fn item(self, out: &mut String, user: &str, s: u64, t: u64) {
        let _ = match self {
            Dialect::Belfry => write!(
                out,
                r#"{{"recipients":["{user}"],"type":"{KIND}","data":{{"s":{s},"t":{t}}}}}"#
            ),
            Dialect::Seed => write!(
                out,
                r#"{{"user_id":"{user}","type":"{KIND}","payload":{{"s":{s},"t":{t}}}}}"#
            ),
        };
    }

    /// The body of a room message with payload `s`, `t` (the same for both servers).
    pub fn room_body(self, s: u64, t: u64) -> String {
        format!(r#"{{"data":{{"s":{s},"t":{t}}}}}"#)
    }

    /// Reads one frame's text.
    pub fn parse(self, text: &str) -> Frame {
        match self {
            Dialect::Belfry => parse_belfry(text),
            Dialect::Seed => parse_seed(text),
        }
    }

    /// Reads a catch-up answer (a JSON array of notification objects) as notification frames.
    pub fn parse_catch_up(self, text: &str) -> Vec<Frame> {
        let Ok(items) = serde_json::from_str::<Vec<SeedNotification<'_>>>(text) else {
            return Vec::new();
        };
        items.into_iter().map(SeedNotification::frame).collect()
    }
}

#[derive(Deserialize)]
struct BelfryFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    seq: Option<i64>,
    #[serde(default, borrow)]
    notification: Option<BelfryNotification<'a>>,
    #[serde(default)]
    data: Option<Payload>,
    #[serde(default, borrow)]
    code: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct BelfryNotification<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default)]
    data: Option<Payload>,
}

fn parse_belfry(text: &str) -> Frame {
    let Ok(frame) = serde_json::from_str::<BelfryFrame<'_>>(text) else {
        return Frame::Other;
    };
    match &*frame.kind {
        "hello" => Frame::Hello,
        "joined" => Frame::Joined,
        "error" => Frame::Error(frame.code.map_or_else(String::new, Cow::into_owned)),
        "message" => Frame::Message(frame.data.unwrap_or_default()),
        "notification" => match (frame.notification, frame.seq) {
            (Some(body), Some(seq)) => Frame::Notification {
                id: uuid::Uuid::parse_str(&body.id).map_or(0, |u| u.as_u128()),
                seq,
                payload: body.data.unwrap_or_default(),
            },
            _ => Frame::Other,
        },
        _ => Frame::Other,
    }
}

#[derive(Deserialize)]
struct SeedFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    payload: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct SeedNotification<'a> {
    id: i64,
    #[serde(default, borrow, rename = "type")]
    _kind: Option<Cow<'a, str>>,
    #[serde(default)]
    payload: Option<Payload>,
}

impl SeedNotification<'_> {
    fn frame(self) -> Frame {
        Frame::Notification {
            id: u128::try_from(self.id).unwrap_or(0),
            seq: self.id,
            payload: self.payload.unwrap_or_default(),
        }
    }
}

fn parse_seed(text: &str) -> Frame {
    let Ok(frame) = serde_json::from_str::<SeedFrame<'_>>(text) else {
        return Frame::Other;
    };
    let payload = frame.payload.map(|raw| raw.get()).unwrap_or("null");
    match &*frame.kind {
        "hello" => Frame::Hello,
        "new_notification" => serde_json::from_str::<SeedNotification<'_>>(payload)
            .map_or(Frame::Other, SeedNotification::frame),
        "message" => Frame::Message(serde_json::from_str(payload).unwrap_or_default()),
        _ => Frame::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "01935f1e-7c1a-7b3e-9d2a-3f0c8a4b5e61";

    #[test]
    fn belfry_frames_parse() {
        let d = Dialect::Belfry;
        let text = format!(
            r#"{{"type":"notification","seq":3,"notification":{{"id":"{ID}","seq":3,"user_id":"u","type":"bench.tick","data":{{"s":10,"t":7}},"group_key":null}}}}"#
        );
        let Frame::Notification { id, seq, payload } = d.parse(&text) else {
            panic!("not a notification");
        };
        assert_eq!(id, uuid::Uuid::parse_str(ID).unwrap().as_u128());
        assert_eq!(seq, 3);
        assert_eq!(
            payload,
            Payload {
                s: Some(10),
                t: Some(7)
            }
        );
        assert_eq!(d.parse(r#"{"type":"hello","last_seq":4}"#), Frame::Hello);
        assert_eq!(
            d.parse(r#"{"type":"message","room":"r","id":"x","at":"","data":{"s":1,"t":2}}"#),
            Frame::Message(Payload {
                s: Some(1),
                t: Some(2)
            })
        );
        assert_eq!(
            d.parse(r#"{"type":"error","code":"forbidden","message":"no"}"#),
            Frame::Error("forbidden".into())
        );
        assert_eq!(d.parse("not json"), Frame::Other);
    }

    #[test]
    fn seed_frames_parse() {
        let d = Dialect::Seed;
        let text = r#"{"type": "new_notification", "payload": {"id": 41, "user_id": "u", "type": "bench.tick", "payload": {"s": 5, "t": 9}, "created_at": "x"}}"#;
        assert_eq!(
            d.parse(text),
            Frame::Notification {
                id: 41,
                seq: 41,
                payload: Payload {
                    s: Some(5),
                    t: Some(9)
                }
            }
        );
        assert_eq!(
            d.parse(r#"{"type": "message", "room": "r", "payload": {"s": 1, "t": 2}}"#),
            Frame::Message(Payload {
                s: Some(1),
                t: Some(2)
            })
        );
        assert_eq!(d.parse(r#"{"type": "ping", "payload": {}}"#), Frame::Other);
        let listed = d.parse_catch_up(r#"[{"id": 2, "payload": {"s": 1, "t": 0}}]"#);
        assert_eq!(listed.len(), 1);
    }

    #[test]
    fn request_bodies_follow_each_api() {
        let mut out = String::new();
        Dialect::Belfry.item(&mut out, "u1", 4, 5);
        assert_eq!(
            out,
            r#"{"recipients":["u1"],"type":"bench.tick","data":{"s":4,"t":5}}"#
        );
        out.clear();
        Dialect::Seed.item(&mut out, "u1", 4, 5);
        assert_eq!(
            out,
            r#"{"user_id":"u1","type":"bench.tick","payload":{"s":4,"t":5}}"#
        );
    }
}
