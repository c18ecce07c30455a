//! Rooms on this node: which local connections are in which room, and which users other nodes
//! report there (presence is per user, not per tab, and spans nodes).
//!
//! Like the rest of the hub, nothing here awaits: messages and presence events are `try_send`s
//! into the same bounded outboxes as notifications.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Hub;
use crate::model::{RoomName, UserId};
use crate::protocol::{Event, ServerFrame};

struct Member {
    conn: u64,
    user: UserId,
    outbox: mpsc::Sender<Arc<Event>>,
    slow: CancellationToken,
}

#[derive(Default)]
pub(super) struct Room {
    members: Vec<Member>,
    /// node id → (users it reported, when)
    remote: HashMap<String, (BTreeSet<UserId>, Instant)>,
}

impl Room {
    fn present(&self, user: &UserId) -> bool {
        self.members.iter().any(|m| &m.user == user)
            || self.remote.values().any(|(users, _)| users.contains(user))
    }

    fn users(&self) -> BTreeSet<UserId> {
        let mut users: BTreeSet<UserId> = self.members.iter().map(|m| m.user.clone()).collect();
        for (remote, _) in self.remote.values() {
            users.extend(remote.iter().cloned());
        }
        users
    }

    fn local_users(&self) -> Vec<UserId> {
        let users: BTreeSet<&UserId> = self.members.iter().map(|m| &m.user).collect();
        users.into_iter().cloned().collect()
    }
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The room has the configured maximum of users.
    #[error("room is full ({0} users)")]
    Full(usize),
    /// The connection is no longer registered.
    #[error("connection is gone")]
    Gone,
}

/// What a join did.
#[derive(Debug)]
pub struct Joined {
    /// The room's users after the join, sorted.
    pub members: Vec<String>,
    /// True when this is the node's first connection in the room (watch the room's topic).
    pub first_on_node: bool,
    /// True when the user was not in the room before (on any node).
    pub user_arrived: bool,
}

/// What a leave did.
#[derive(Debug, Default)]
pub struct Left {
    /// True when the connection was in the room.
    pub was_member: bool,
    /// True when the node has no connection left in the room (unwatch the room's topic).
    pub last_on_node: bool,
    /// True when the user has left the room altogether (on every node).
    pub user_departed: bool,
}

fn presence(room: &RoomName, event: &str, user: &UserId) -> Arc<Event> {
    Arc::new(
        ServerFrame::Presence {
            room: room.as_str(),
            event,
            user_id: user.as_str(),
        }
        .encode(),
    )
}

impl Hub {
    fn room_shard(&self, room: &RoomName) -> std::sync::MutexGuard<'_, HashMap<RoomName, Room>> {
        let index = (std::hash::BuildHasher::hash_one(&self.hasher, room) as usize)
            % self.room_shards.len();
        match self.room_shards[index].lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn send_to_room(&self, room: &Room, event: &Arc<Event>, except: Option<u64>) -> usize {
        room.members
            .iter()
            .filter(|m| Some(m.conn) != except && self.offer(&m.outbox, &m.slow, event))
            .count()
    }

    /// Puts connection `conn` of `user` into `room`. Idempotent for a connection already in it.
    pub fn join_room(
        &self,
        user: &UserId,
        conn: u64,
        room: &RoomName,
        max_users: usize,
    ) -> Result<Joined, JoinError> {
        let (outbox, slow) = {
            let shard = self.shard(user);
            let found = shard
                .get(user)
                .and_then(|entry| entry.conns.iter().find(|c| c.id == conn));
            match found {
                Some(c) => (c.outbox.clone(), c.slow.clone()),
                None => return Err(JoinError::Gone),
            }
        };
        let mut rooms = self.room_shard(room);
        let entry = rooms.entry(room.clone()).or_default();
        if entry.members.iter().any(|m| m.conn == conn) {
            return Ok(Joined {
                members: entry.users().iter().map(ToString::to_string).collect(),
                first_on_node: false,
                user_arrived: false,
            });
        }
        let arrived = !entry.present(user);
        if arrived && entry.users().len() >= max_users {
            return Err(JoinError::Full(max_users));
        }
        let first_on_node = entry.members.is_empty();
        entry.members.push(Member {
            conn,
            user: user.clone(),
            outbox,
            slow,
        });
        if arrived {
            self.send_to_room(entry, &presence(room, "join", user), Some(conn));
        }
        Ok(Joined {
            members: entry.users().iter().map(ToString::to_string).collect(),
            first_on_node,
            user_arrived: arrived,
        })
    }

    /// Takes connection `conn` of `user` out of `room`.
    pub fn leave_room(&self, user: &UserId, conn: u64, room: &RoomName) -> Left {
        let mut rooms = self.room_shard(room);
        let Some(entry) = rooms.get_mut(room) else {
            return Left::default();
        };
        let before = entry.members.len();
        entry.members.retain(|m| m.conn != conn);
        if entry.members.len() == before {
            return Left::default();
        }
        let departed = !entry.present(user);
        if departed {
            self.send_to_room(entry, &presence(room, "leave", user), None);
        }
        let last_on_node = entry.members.is_empty();
        if last_on_node {
            rooms.remove(room);
        }
        Left {
            was_member: true,
            last_on_node,
            user_departed: departed,
        }
    }

    /// Delivers a room message to this node's members, except connection `except`.
    pub fn deliver_room(&self, room: &RoomName, event: &Arc<Event>, except: Option<u64>) -> usize {
        let rooms = self.room_shard(room);
        rooms
            .get(room)
            .map_or(0, |entry| self.send_to_room(entry, event, except))
    }

    /// The distinct users this node has in `room`.
    pub fn local_room_users(&self, room: &RoomName) -> Vec<UserId> {
        self.room_shard(room)
            .get(room)
            .map(Room::local_users)
            .unwrap_or_default()
    }

    /// Every room with members on this node, with its local users.
    pub fn local_rooms(&self) -> Vec<(RoomName, Vec<UserId>)> {
        let mut out = Vec::new();
        for shard in self.room_shards.iter() {
            let shard = match shard.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            for (name, room) in shard.iter() {
                out.push((name.clone(), room.local_users()));
            }
        }
        out
    }

    /// Records the users node `node` reports in `room`, telling local members who arrived and
    /// who left.
    pub fn apply_remote_presence(&self, room: &RoomName, node: &str, users: BTreeSet<UserId>) {
        let mut rooms = self.room_shard(room);
        let Some(entry) = rooms.get_mut(room) else {
            return;
        };
        let before = entry.users();
        entry
            .remote
            .insert(node.to_owned(), (users, Instant::now()));
        let after = entry.users();
        for user in after.difference(&before) {
            self.send_to_room(entry, &presence(room, "join", user), None);
        }
        for user in before.difference(&after) {
            self.send_to_room(entry, &presence(room, "leave", user), None);
        }
    }

    /// Forgets what other nodes reported longer than `max_age` ago (a node that died stops
    /// refreshing), telling local members who left.
    pub fn expire_remote_presence(&self, max_age: Duration) {
        for shard in self.room_shards.iter() {
            let mut shard = match shard.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            for (name, entry) in shard.iter_mut() {
                let before = entry.users();
                entry.remote.retain(|_, (_, at)| at.elapsed() <= max_age);
                let after = entry.users();
                for user in before.difference(&after) {
                    self.send_to_room(entry, &presence(name, "leave", user), None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Metrics;

    fn setup() -> (Arc<Hub>, RoomName) {
        let hub = Arc::new(Hub::new(16, 10, Arc::new(Metrics::new())));
        (hub, RoomName::parse("todo:1").unwrap())
    }

    fn drain(reg: &mut crate::hub::Registration) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(e) = reg.outbox.try_recv() {
            out.push(e.json.to_string());
        }
        out
    }

    #[test]
    fn presence_is_per_user_not_per_tab() {
        let (hub, room) = setup();
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        let mut bob_tab = hub.register(&bob).unwrap();
        let a1 = hub.register(&alice).unwrap();
        let a2 = hub.register(&alice).unwrap();
        hub.join_room(&bob, bob_tab.id(), &room, 10).unwrap();
        let first = hub.join_room(&alice, a1.id(), &room, 10).unwrap();
        assert!(first.user_arrived);
        let second = hub.join_room(&alice, a2.id(), &room, 10).unwrap();
        assert!(!second.user_arrived);
        assert_eq!(second.members, vec!["alice", "bob"]);
        let seen = drain(&mut bob_tab);
        assert_eq!(seen.len(), 1, "one join for two tabs: {seen:?}");
        assert!(!hub.leave_room(&alice, a1.id(), &room).user_departed);
        assert!(drain(&mut bob_tab).is_empty());
        assert!(hub.leave_room(&alice, a2.id(), &room).user_departed);
        assert!(drain(&mut bob_tab)[0].contains("\"leave\""));
    }

    #[test]
    fn a_full_room_refuses_new_users_but_not_new_tabs() {
        let (hub, room) = setup();
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        let a1 = hub.register(&alice).unwrap();
        let a2 = hub.register(&alice).unwrap();
        let b = hub.register(&bob).unwrap();
        hub.join_room(&alice, a1.id(), &room, 1).unwrap();
        hub.join_room(&alice, a2.id(), &room, 1).unwrap();
        assert_eq!(
            hub.join_room(&bob, b.id(), &room, 1).unwrap_err(),
            JoinError::Full(1)
        );
    }

    #[test]
    fn remote_presence_expires() {
        let (hub, room) = setup();
        let alice = UserId::parse("alice").unwrap();
        let mut a = hub.register(&alice).unwrap();
        hub.join_room(&alice, a.id(), &room, 10).unwrap();
        let remote: BTreeSet<UserId> = [UserId::parse("zed").unwrap()].into();
        hub.apply_remote_presence(&room, "n2", remote);
        assert!(drain(&mut a)[0].contains("zed"));
        hub.expire_remote_presence(Duration::ZERO);
        let events = drain(&mut a);
        assert!(events[0].contains("\"leave\"") && events[0].contains("zed"));
    }
}
