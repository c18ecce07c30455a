//! The inter-node message: `v1|<origin node>|<seq or ->|<kind>|<frame JSON>`. The frame is the
//! already-encoded client frame, so receiving nodes forward it without re-encoding. Shared by
//! the Redis and NATS brokers, together with the per-user watch counts.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::UserId;
use crate::protocol::Event;

/// Encodes `event` for other nodes.
pub fn encode(origin: &str, event: &Event) -> Vec<u8> {
    let seq = event.seq.map_or_else(|| "-".to_owned(), |s| s.to_string());
    format!("v1|{origin}|{seq}|{}|{}", event.kind, event.json).into_bytes()
}

/// Decodes a message; `None` for anything malformed, or for a message this node published
/// itself (it already delivered those locally).
pub fn decode(own: &str, payload: &[u8]) -> Option<Event> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(5, '|');
    if parts.next()? != "v1" {
        return None;
    }
    if parts.next()? == own {
        return None;
    }
    let seq = match parts.next()? {
        "-" => None,
        s => Some(s.parse().ok()?),
    };
    let kind = match parts.next()? {
        "notification" => "notification",
        "state" => "state",
        _ => return None,
    };
    Some(Event {
        seq,
        kind,
        json: Arc::from(parts.next()?),
        published_at: None,
    })
}

/// Per-user watch counts. `add` is true when the user went from 0 to 1 (subscribe), `remove`
/// when from 1 to 0 (unsubscribe).
#[derive(Default)]
pub struct Watchers {
    counts: HashMap<UserId, usize>,
}

impl Watchers {
    /// Counts one more watch; true when this is the first.
    pub fn add(&mut self, user: &UserId) -> bool {
        let count = self.counts.entry(user.clone()).or_default();
        *count += 1;
        *count == 1
    }

    /// Counts one fewer watch; true when it was the last.
    pub fn remove(&mut self, user: &UserId) -> bool {
        match self.counts.get_mut(user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                self.counts.remove(user);
                true
            }
            None => false,
        }
    }

    /// Every watched user.
    pub fn users(&self) -> impl Iterator<Item = &UserId> {
        self.counts.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ServerFrame;

    #[test]
    fn messages_round_trip_and_own_messages_are_skipped() {
        let event = ServerFrame::Pong { reference: None }.encode();
        let state = Event {
            kind: "state",
            ..event
        };
        let bytes = encode("node-a", &state);
        let back = decode("node-b", &bytes).unwrap();
        assert_eq!(back.json, state.json);
        assert_eq!(back.seq, None);
        assert!(decode("node-a", &bytes).is_none());
        assert!(decode("node-b", b"garbage").is_none());
    }

    #[test]
    fn watch_counts_report_first_and_last() {
        let mut w = Watchers::default();
        let u = UserId::parse("u").unwrap();
        assert!(w.add(&u));
        assert!(!w.add(&u));
        assert!(!w.remove(&u));
        assert!(w.remove(&u));
        assert!(!w.remove(&u));
    }
}
