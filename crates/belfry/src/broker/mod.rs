//! The broker: carries encoded events from the node that stored a notification to the nodes
//! where the recipient is connected.
//!
//! It owns fan-out between nodes and nothing else: it never stores, never decides who may see
//! what, and never knows about sockets or HTTP. Delivery through a broker is **at most once**:
//! an event can be lost (a broker restart, a full queue) but never invented. That is safe
//! because the store is the source of truth: sessions fill any `seq` gap from the store, and
//! after a broker reconnect every session of the node re-reads the store (a *resync*).
//!
//! A node only receives what its connected users need: sessions `watch` their user while they
//! live, and the Redis and NATS brokers subscribe per user (see docs/operations.md).

mod local;
mod nats;
mod redis;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::{RoomName, UserId};
use crate::protocol::Event;

pub use local::LocalBroker;
pub use nats::NatsBroker;
pub use redis::RedisBroker;
pub use wire::{presence_query, presence_state};

/// Why a broker operation failed. Publishing happens after the store committed, so the
/// notification is safe either way.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot be reached right now.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// What a node subscribes to: a user's notifications, or a room.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// A user's notifications and read-state changes.
    User(UserId),
    /// A room's messages and presence.
    Room(RoomName),
}

/// Fan-out between nodes.
///
/// Guarantees: at most once; the events one node publishes for one user arrive at each other
/// node in the order they were published. Nothing is promised between different publishers
/// (sessions order by `seq` themselves). `publish` never waits for the network: remote
/// delivery is queued.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Delivers `event` to `user`'s connections on this node and queues it for the other nodes.
    async fn publish(&self, user: &UserId, event: Arc<Event>) -> Result<(), BrokerError>;

    /// Sends a room event to the *other* nodes (the caller delivers locally, so that it can
    /// leave out the sender's own connection).
    async fn broadcast_room(&self, room: &RoomName, event: Arc<Event>) -> Result<(), BrokerError>;

    /// Makes this node receive `topic`'s events from other nodes (counted: every `watch` needs
    /// an `unwatch`). Returns once the subscription is active, or at once while the broker is
    /// unreachable (a resync follows the reconnect).
    async fn watch(&self, topic: &Topic);

    /// Undoes one `watch`.
    fn unwatch(&self, topic: &Topic);

    /// True when some node (possibly this one) has a live session of `user`; false when none
    /// has, or the broker cannot tell (Web Push then goes out: a duplicate is better than a
    /// miss, and the service worker drops what a page already showed).
    async fn online(&self, user: &UserId) -> bool;
}

/// A counted `watch` that is undone when dropped. Sessions hold one for their lifetime.
pub struct Watch {
    broker: Arc<dyn Broker>,
    topic: Topic,
}

impl Watch {
    /// Watches `topic` until the returned guard is dropped.
    pub async fn start(broker: &Arc<dyn Broker>, topic: Topic) -> Self {
        broker.watch(&topic).await;
        Self {
            broker: Arc::clone(broker),
            topic,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.broker.unwatch(&self.topic);
    }
}
