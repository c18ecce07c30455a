//! The hub: this node's registry of live connections, user → connections, sharded.
//!
//! It owns one invariant: **the hub never awaits a socket**. Delivery `try_send`s an encoded
//! event into each connection's bounded outbox; a full outbox marks that connection slow (its
//! session then closes it with 4008 and the client resumes from the store). Nothing here knows
//! about transports, HTTP or the database.
//!
//! For each user with a connection here it also keeps the position it has *sent*: the highest
//! `seq` and state version delivered to the user's connections (or read from the store by a
//! connection as it opened). Every connection of the user has been sent everything up to there,
//! from its outbox or from the store; the position check (`positions`) compares it with the
//! store's and resyncs a user who is behind, so that no delivery waits for a later event.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod rooms;

pub use rooms::{JoinError, Joined, Left};

use crate::model::{Position, RoomName, UserId};
use crate::protocol::Event;
use crate::telemetry::Metrics;

const SHARDS: usize = 64;

struct Conn {
    id: u64,
    outbox: mpsc::Sender<Arc<Event>>,
    slow: CancellationToken,
}

/// One user's connections on this node and the position they have been sent.
struct UserEntry {
    conns: Vec<Conn>,
    sent: Position,
}

type Shard = HashMap<UserId, UserEntry>;

/// Why a registration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegisterError {
    /// The user already holds the configured maximum of connections on this node.
    #[error("user has {0} connections on this node already")]
    TooManyConnections(usize),
    /// The node already holds `ws.max_connections_per_node` connections of all users.
    #[error("this node has {0} connections already")]
    NodeFull(usize),
}

/// The registry. Cheap to share: wrap it in an `Arc`.
pub struct Hub {
    shards: Box<[Mutex<Shard>]>,
    room_shards: Box<[Mutex<HashMap<RoomName, rooms::Room>>]>,
    hasher: RandomState,
    next_id: AtomicU64,
    outbox_frames: usize,
    max_per_user: usize,
    max_per_node: usize,
    /// Registrations on this node, all users (checked against `max_per_node`).
    live: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// A hub whose connections queue at most `outbox_frames` events each.
    pub fn new(outbox_frames: usize, max_per_user: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            room_shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            next_id: AtomicU64::new(1),
            outbox_frames: outbox_frames.max(1),
            max_per_user,
            max_per_node: usize::MAX,
            live: AtomicUsize::new(0),
            metrics,
        }
    }

    /// The same hub, holding at most `max` connections of all users at once.
    pub fn with_max_per_node(mut self, max: usize) -> Self {
        self.max_per_node = max;
        self
    }

    fn shard(&self, user: &UserId) -> MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(user) as usize) % self.shards.len();
        // A poisoned shard only means a panic happened while it was held; the map itself is
        // still consistent (every mutation is a single push/retain), so keep serving.
        match self.shards[index].lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Registers a connection for `user`. From this moment on, every event delivered to the
    /// user is queued for it: register *before* reading the backlog to resume without a gap.
    pub fn register(self: &Arc<Self>, user: &UserId) -> Result<Registration, RegisterError> {
        let (tx, rx) = mpsc::channel(self.outbox_frames);
        let slow = CancellationToken::new();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Reserve a node-wide slot first; give it back if the user is over their own limit.
        let max_node = self.max_per_node;
        if let Err(live) = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max_node).then_some(n + 1)
            })
        {
            return Err(RegisterError::NodeFull(live));
        }
        {
            let mut shard = self.shard(user);
            let entry = shard.entry(user.clone()).or_insert_with(|| UserEntry {
                conns: Vec::new(),
                sent: Position::default(),
            });
            if entry.conns.len() >= self.max_per_user {
                let held = entry.conns.len();
                // With a limit of 0 the entry was just made for this refusal: leave none.
                if held == 0 {
                    shard.remove(user);
                }
                self.live.fetch_sub(1, Ordering::AcqRel);
                return Err(RegisterError::TooManyConnections(held));
            }
            entry.conns.push(Conn {
                id,
                outbox: tx,
                slow: slow.clone(),
            });
        }
        self.metrics.connections.inc();
        Ok(Registration {
            hub: Arc::clone(self),
            user: user.clone(),
            id,
            outbox: rx,
            slow,
        })
    }

    fn unregister(&self, user: &UserId, id: u64) {
        let mut shard = self.shard(user);
        if let Some(entry) = shard.get_mut(user) {
            entry.conns.retain(|c| c.id != id);
            if entry.conns.is_empty() {
                shard.remove(user);
            }
        }
        drop(shard);
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.metrics.connections.dec();
    }

    /// Queues `event` for every connection of `user` on this node; returns how many got it.
    /// Never waits: a connection whose outbox is full is marked slow and skipped.
    /// Records the event's seq or version as sent (a connection that misses it because its
    /// outbox is full is closed as slow, and resumes from the store).
    pub fn deliver(&self, user: &UserId, event: &Arc<Event>) -> usize {
        let mut shard = self.shard(user);
        let Some(entry) = shard.get_mut(user) else {
            return 0;
        };
        entry.sent.advance(Position {
            last_seq: event.seq.unwrap_or(0),
            state_version: event.version.unwrap_or(0),
        });
        entry
            .conns
            .iter()
            .filter(|conn| self.offer(&conn.outbox, &conn.slow, event))
            .count()
    }

    /// Records that `user`'s connections have been sent everything up to `position` (a
    /// connection read it from the store as it opened).
    pub fn observe(&self, user: &UserId, position: Position) {
        if let Some(entry) = self.shard(user).get_mut(user) {
            entry.sent.advance(position);
        }
    }

    /// What this node has sent each of its users, for the position check.
    pub fn sent_positions(&self) -> Vec<(UserId, Position)> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let shard = match shard.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            all.extend(shard.iter().map(|(user, entry)| (user.clone(), entry.sent)));
        }
        all
    }

    /// What this node has sent `user` (`None` without a connection here).
    pub fn sent_position(&self, user: &UserId) -> Option<Position> {
        self.shard(user).get(user).map(|entry| entry.sent)
    }

    /// Tells every connection of `user` on this node to re-read its feed and state from the
    /// store, which is at `position`; returns how many were told. A connection whose outbox is
    /// full is marked slow instead (it resumes from the store).
    pub fn resync_user(&self, user: &UserId, position: Position) -> usize {
        let event = Arc::new(Event::resync());
        let mut shard = self.shard(user);
        let Some(entry) = shard.get_mut(user) else {
            return 0;
        };
        entry.sent.advance(position);
        entry
            .conns
            .iter()
            .filter(|conn| self.offer(&conn.outbox, &conn.slow, &event))
            .count()
    }

    /// Queues `event` for one connection without waiting; a full outbox marks it slow.
    /// Returns whether the event was queued.
    fn offer(
        &self,
        outbox: &mpsc::Sender<Arc<Event>>,
        slow: &CancellationToken,
        event: &Arc<Event>,
    ) -> bool {
        if slow.is_cancelled() {
            return false;
        }
        match outbox.try_send(Arc::clone(event)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                slow.cancel();
                self.metrics.slow_disconnects.inc();
                false
            }
            // The session is gone and will unregister itself.
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Tells every connection on this node to re-read its feed from the store (after a broker
    /// reconnect, when events may have been missed). A connection whose outbox is full is
    /// marked slow instead; it resumes on reconnect, which re-reads the store too.
    pub fn resync_all(&self) {
        let event = Arc::new(Event::resync());
        for shard in self.shards.iter() {
            let shard = match shard.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            for conn in shard.values().flat_map(|entry| &entry.conns) {
                self.offer(&conn.outbox, &conn.slow, &event);
            }
        }
    }

    /// Live connections of `user` on this node.
    pub fn connections_of(&self, user: &UserId) -> usize {
        self.shard(user)
            .get(user)
            .map_or(0, |entry| entry.conns.len())
    }

    /// Live connections on this node.
    pub fn connection_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| match s.lock() {
                Ok(g) => g.values().map(|e| e.conns.len()).sum::<usize>(),
                Err(p) => p.into_inner().values().map(|e| e.conns.len()).sum(),
            })
            .sum()
    }
}

/// One live connection's place in the hub; unregisters when dropped.
pub struct Registration {
    hub: Arc<Hub>,
    user: UserId,
    id: u64,
    /// Events queued for this connection, oldest first.
    pub outbox: mpsc::Receiver<Arc<Event>>,
    /// Cancelled when the outbox overflowed: close the connection as slow.
    pub slow: CancellationToken,
}

impl Registration {
    /// The connection's node-local id.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(&self.user, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ServerFrame;

    fn event() -> Arc<Event> {
        Arc::new(ServerFrame::Pong { reference: None }.encode())
    }

    fn hub(outbox: usize) -> Arc<Hub> {
        Arc::new(Hub::new(outbox, 10, Arc::new(Metrics::new())))
    }

    #[test]
    fn delivers_to_every_connection_of_the_user_and_no_other() {
        let hub = hub(4);
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        let mut a1 = hub.register(&alice).unwrap();
        let mut a2 = hub.register(&alice).unwrap();
        let mut b = hub.register(&bob).unwrap();
        assert_eq!(hub.deliver(&alice, &event()), 2);
        assert!(a1.outbox.try_recv().is_ok());
        assert!(a2.outbox.try_recv().is_ok());
        assert!(b.outbox.try_recv().is_err());
    }

    #[test]
    fn a_full_outbox_marks_only_that_connection_slow() {
        let hub = hub(2);
        let alice = UserId::parse("alice").unwrap();
        let stuck = hub.register(&alice).unwrap();
        let mut reading = hub.register(&alice).unwrap();
        for _ in 0..3 {
            hub.deliver(&alice, &event());
            while reading.outbox.try_recv().is_ok() {}
        }
        assert!(stuck.slow.is_cancelled());
        assert!(!reading.slow.is_cancelled());
    }

    #[test]
    fn the_sent_position_follows_deliveries_and_observations_and_never_goes_back() {
        let hub = hub(8);
        let alice = UserId::parse("alice").unwrap();
        assert_eq!(hub.sent_position(&alice), None);
        let _a = hub.register(&alice).unwrap();
        let at = |last_seq, state_version| Position {
            last_seq,
            state_version,
        };
        hub.observe(&alice, at(4, 2));
        let mut notification = ServerFrame::Pong { reference: None }.encode();
        notification.seq = Some(6);
        hub.deliver(&alice, &Arc::new(notification));
        assert_eq!(hub.sent_position(&alice), Some(at(6, 2)));
        let mut state = ServerFrame::Pong { reference: None }.encode();
        state.version = Some(3);
        hub.deliver(&alice, &Arc::new(state));
        hub.observe(&alice, at(5, 1));
        assert_eq!(hub.sent_position(&alice), Some(at(6, 3)));
        assert_eq!(hub.resync_user(&alice, at(9, 3)), 1);
        assert_eq!(hub.sent_positions(), vec![(alice.clone(), at(9, 3))]);
    }

    #[test]
    fn dropping_a_registration_unregisters_it() {
        let hub = hub(2);
        let alice = UserId::parse("alice").unwrap();
        let reg = hub.register(&alice).unwrap();
        assert_eq!(hub.connections_of(&alice), 1);
        drop(reg);
        assert_eq!(hub.connection_count(), 0);
    }

    #[test]
    fn the_per_user_limit_is_enforced() {
        let hub = Arc::new(Hub::new(2, 1, Arc::new(Metrics::new())));
        let alice = UserId::parse("alice").unwrap();
        let _first = hub.register(&alice).unwrap();
        assert!(matches!(
            hub.register(&alice),
            Err(RegisterError::TooManyConnections(1))
        ));
    }

    #[test]
    fn the_per_node_limit_counts_every_user_and_frees_slots_on_drop() {
        let hub = Arc::new(Hub::new(2, 10, Arc::new(Metrics::new())).with_max_per_node(2));
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        let carol = UserId::parse("carol").unwrap();
        let a = hub.register(&alice).unwrap();
        let _b = hub.register(&bob).unwrap();
        assert!(matches!(
            hub.register(&carol),
            Err(RegisterError::NodeFull(2))
        ));
        drop(a);
        assert!(hub.register(&carol).is_ok());
    }

    #[test]
    fn a_refusal_for_the_user_limit_does_not_use_up_a_node_slot() {
        let hub = Arc::new(Hub::new(2, 1, Arc::new(Metrics::new())).with_max_per_node(2));
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        let _a = hub.register(&alice).unwrap();
        for _ in 0..3 {
            assert!(hub.register(&alice).is_err());
        }
        assert!(hub.register(&bob).is_ok());
    }
}
