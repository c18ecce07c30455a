//! The inter-node message: `v1|<origin node>|<seq or ->|<kind>|<frame JSON>`. The frame is the
//! already-encoded client frame, so receiving nodes forward it without re-encoding. Shared by
//! the Redis and NATS brokers, together with the per-user watch counts.

use std::collections::HashMap;
use std::sync::Arc;

use super::Topic;
use tokio::sync::{mpsc, oneshot};

use crate::hub::Hub;
use crate::model::{RoomName, UserId};
use crate::protocol::Event;

/// Encodes `event` for other nodes.
pub fn encode(origin: &str, event: &Event) -> Vec<u8> {
    let seq = event.seq.map_or_else(|| "-".to_owned(), |s| s.to_string());
    format!("v1|{origin}|{seq}|{}|{}", event.kind, event.json).into_bytes()
}

/// Decodes a message into its origin node and event; `None` for anything malformed, or for a
/// message this node published itself (it already delivered those locally).
pub fn decode(own: &str, payload: &[u8]) -> Option<(String, Event)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(5, '|');
    if parts.next()? != "v1" {
        return None;
    }
    let origin = parts.next()?;
    if origin == own {
        return None;
    }
    let origin = origin.to_owned();
    let seq = match parts.next()? {
        "-" => None,
        s => Some(s.parse().ok()?),
    };
    let kind = match parts.next()? {
        "notification" => "notification",
        "state" => "state",
        "message" => "message",
        PRESENCE_STATE => PRESENCE_STATE,
        PRESENCE_QUERY => PRESENCE_QUERY,
        _ => return None,
    };
    let event = Event {
        seq,
        kind,
        json: Arc::from(parts.next()?),
        published_at: None,
    };
    Some((origin, event))
}

/// Node-to-node: "these are my users in this room" (JSON array of user ids).
pub const PRESENCE_STATE: &str = "presence_state";
/// Node-to-node: "tell me your users in this room".
pub const PRESENCE_QUERY: &str = "presence_query";

/// A presence-state event listing `users`.
pub fn presence_state(users: &[UserId]) -> Event {
    Event {
        seq: None,
        kind: PRESENCE_STATE,
        json: Arc::from(serde_json::to_string(users).unwrap_or_else(|_| "[]".into())),
        published_at: None,
    }
}

/// A presence-query event.
pub fn presence_query() -> Event {
    Event {
        seq: None,
        kind: PRESENCE_QUERY,
        json: Arc::from("[]"),
        published_at: None,
    }
}

/// What a node does with a room event from another node: deliver messages, record presence,
/// and answer queries (the returned event goes back out on the room's topic).
pub fn room_inbound(hub: &Hub, room: &RoomName, origin: &str, event: Event) -> Option<Event> {
    match event.kind {
        "message" => {
            hub.deliver_room(room, &Arc::new(event), None);
            None
        }
        PRESENCE_STATE => {
            let users: Vec<String> = serde_json::from_str(&event.json).ok()?;
            let users = users
                .into_iter()
                .filter_map(|u| UserId::parse(u).ok())
                .collect();
            hub.apply_remote_presence(room, origin, users);
            None
        }
        PRESENCE_QUERY => {
            let users = hub.local_room_users(room);
            (!users.is_empty()).then(|| presence_state(&users))
        }
        _ => None,
    }
}

/// A request to the subscriber task of a Redis or NATS broker.
pub enum Command {
    /// Count one more watch of the topic; answer once the subscription is active.
    Watch(Topic, oneshot::Sender<()>),
    /// Count one fewer.
    Unwatch(Topic),
}

/// The sending side of a subscriber task's command channel: `Broker::watch`/`unwatch` for
/// every broker that runs one.
pub struct WatchRequests(mpsc::UnboundedSender<Command>);

impl WatchRequests {
    /// A channel; the receiver goes to the subscriber task.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// Asks for `topic` and waits until the subscriber task has it (or is gone).
    pub async fn watch(&self, topic: &Topic) {
        let (done, wait) = oneshot::channel();
        if self.0.send(Command::Watch(topic.clone(), done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Gives up one watch of `topic`.
    pub fn unwatch(&self, topic: &Topic) {
        let _ = self.0.send(Command::Unwatch(topic.clone()));
    }
}

/// Per-user watch counts. `add` is true when the user went from 0 to 1 (subscribe), `remove`
/// when from 1 to 0 (unsubscribe).
#[derive(Default)]
pub struct Watchers {
    counts: HashMap<Topic, usize>,
}

impl Watchers {
    /// Counts one more watch; true when this is the first.
    pub fn add(&mut self, topic: &Topic) -> bool {
        let count = self.counts.entry(topic.clone()).or_default();
        *count += 1;
        *count == 1
    }

    /// Counts one fewer watch; true when it was the last.
    pub fn remove(&mut self, topic: &Topic) -> bool {
        match self.counts.get_mut(topic) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                self.counts.remove(topic);
                true
            }
            None => false,
        }
    }

    /// Every watched topic.
    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
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
        let (origin, back) = decode("node-b", &bytes).unwrap();
        assert_eq!(origin, "node-a");
        assert_eq!(back.json, state.json);
        assert_eq!(back.seq, None);
        assert!(decode("node-a", &bytes).is_none());
        assert!(decode("node-b", b"garbage").is_none());
    }

    #[test]
    fn watch_counts_report_first_and_last() {
        let mut w = Watchers::default();
        let u = Topic::User(UserId::parse("u").unwrap());
        assert!(w.add(&u));
        assert!(!w.add(&u));
        assert!(!w.remove(&u));
        assert!(w.remove(&u));
        assert!(!w.remove(&u));
    }
}
