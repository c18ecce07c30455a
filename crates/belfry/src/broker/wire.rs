//! The inter-node message: `v2|<origin node>|<seq or ->|<state version or ->|<kind>|<frame
//! JSON>`. The frame is the already-encoded client frame, so receiving nodes forward it without
//! re-encoding; the kind is any [`FrameKind`] (one closed set: a kind added to the protocol
//! crosses nodes without a change here). `v1` messages (no version field) of nodes not yet
//! upgraded are still read. Shared by the Redis and NATS brokers, together with the per-user
//! watch counts.

use std::collections::HashMap;
use std::sync::Arc;

use super::Topic;
use tokio::sync::{mpsc, oneshot};

use crate::hub::Hub;
use crate::model::{RoomName, UserId};
use crate::protocol::{Event, FrameKind};

/// Encodes `event` for other nodes.
pub fn encode(origin: &str, event: &Event) -> Vec<u8> {
    let dash = || "-".to_owned();
    let seq = event.seq.map_or_else(dash, |s| s.to_string());
    let version = event.version.map_or_else(dash, |v| v.to_string());
    format!("v2|{origin}|{seq}|{version}|{}|{}", event.kind, event.json).into_bytes()
}

fn number(field: &str) -> Option<Option<i64>> {
    match field {
        "-" => Some(None),
        s => s.parse().ok().map(Some),
    }
}

/// Decodes a message into its origin node and event; `None` for anything malformed, or for a
/// message this node published itself (it already delivered those locally).
pub fn decode(own: &str, payload: &[u8]) -> Option<(String, Event)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (envelope, rest) = text.split_once('|')?;
    let fields = match envelope {
        "v1" => 4,
        "v2" => 5,
        _ => return None,
    };
    let mut parts = rest.splitn(fields, '|');
    let origin = parts.next()?;
    if origin == own {
        return None;
    }
    let seq = number(parts.next()?)?;
    let version = if fields == 5 {
        number(parts.next()?)?
    } else {
        None
    };
    let kind = FrameKind::parse(parts.next()?)?;
    let event = Event {
        seq,
        version,
        kind,
        json: Arc::from(parts.next()?),
        published_at: None,
    };
    Some((origin.to_owned(), event))
}

/// A presence-state event listing `users`.
pub fn presence_state(users: &[UserId]) -> Event {
    let json = serde_json::to_string(users).unwrap_or_else(|_| "[]".into());
    Event::internal(FrameKind::PresenceState, &json)
}

/// A presence-query event.
pub fn presence_query() -> Event {
    Event::internal(FrameKind::PresenceQuery, "[]")
}

/// What a node does with a room event from another node: deliver messages, record presence,
/// and answer queries (the returned event goes back out on the room's topic).
pub fn room_inbound(hub: &Hub, room: &RoomName, origin: &str, event: Event) -> Option<Event> {
    match event.kind {
        FrameKind::PresenceState => {
            let users: Vec<String> = serde_json::from_str(&event.json).ok()?;
            let users = users
                .into_iter()
                .filter_map(|u| UserId::parse(u).ok())
                .collect();
            hub.apply_remote_presence(room, origin, users);
            None
        }
        FrameKind::PresenceQuery => {
            let users = hub.local_room_users(room);
            (!users.is_empty()).then(|| presence_state(&users))
        }
        // Every client frame published to a room (messages) goes to the room's members here.
        kind if kind.is_client_frame() => {
            hub.deliver_room(room, &Arc::new(event), None);
            None
        }
        _ => None,
    }
}

/// Most users remembered for repair; past it, the position check repairs the rest.
const MAX_REPAIRS: usize = 100_000;

/// The users a node could not publish to: once the broker answers again, each gets a resync on
/// every other node (`Event::resync` on the user's topic), so what was lost is read from the
/// store at once instead of waiting for the user's next event or the position check.
#[derive(Default)]
pub struct Repairs {
    users: std::sync::Mutex<std::collections::HashSet<UserId>>,
}

impl Repairs {
    /// Remembers that a message for `topic` was lost (room messages are live only: nothing to
    /// repair). Returns false when the set is full.
    pub fn lost(&self, topic: &Topic) -> bool {
        let Topic::User(user) = topic else {
            return true;
        };
        let mut users = match self.users.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if users.len() >= MAX_REPAIRS && !users.contains(user) {
            return false;
        }
        users.insert(user.clone());
        true
    }

    /// Takes every remembered user.
    pub fn take(&self) -> Vec<UserId> {
        let mut users = match self.users.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        users.drain().collect()
    }

    /// True when no user waits for a repair.
    pub fn is_empty(&self) -> bool {
        match self.users.lock() {
            Ok(guard) => guard.is_empty(),
            Err(poisoned) => poisoned.into_inner().is_empty(),
        }
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
        let bytes = encode("node-a", &event);
        let (origin, back) = decode("node-b", &bytes).unwrap();
        assert_eq!(origin, "node-a");
        assert_eq!(back, event);
        assert!(decode("node-a", &bytes).is_none());
        assert!(decode("node-b", b"garbage").is_none());
        assert!(decode("node-b", b"v2|a|x|-|state|{}").is_none());
    }

    /// No kind is dropped between nodes: every one of the closed set round-trips, with its seq
    /// and version and a JSON text that itself holds `|`.
    #[test]
    fn every_frame_kind_crosses_with_its_seq_and_version() {
        for (i, kind) in FrameKind::ALL.into_iter().enumerate() {
            let event = Event {
                seq: (i % 2 == 0).then_some(i as i64 + 1),
                version: (i % 3 == 0).then_some(i as i64 + 7),
                kind,
                json: Arc::from(r#"{"a":"x|y"}"#),
                published_at: None,
            };
            let (_, back) = decode("b", &encode("a", &event)).unwrap();
            assert_eq!(back, event, "{kind}");
        }
    }

    #[test]
    fn messages_of_nodes_not_yet_upgraded_are_read() {
        let (origin, event) = decode("b", br#"v1|a|3|updated|{"type":"updated"}"#).unwrap();
        assert_eq!(origin, "a");
        assert_eq!(event.kind, FrameKind::Updated);
        assert_eq!((event.seq, event.version), (Some(3), None));
    }

    #[test]
    fn repairs_remember_users_once_and_ignore_rooms() {
        let repairs = Repairs::default();
        let u = Topic::User(UserId::parse("u").unwrap());
        assert!(repairs.is_empty());
        assert!(repairs.lost(&u));
        assert!(repairs.lost(&u));
        assert!(repairs.lost(&Topic::Room(RoomName::parse("r").unwrap())));
        assert_eq!(repairs.take(), vec![UserId::parse("u").unwrap()]);
        assert!(repairs.is_empty());
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
