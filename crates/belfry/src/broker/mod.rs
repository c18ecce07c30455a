//! The broker: carries encoded events from the node that stored a notification to the nodes
//! where the recipient is connected.
//!
//! It owns fan-out between nodes and nothing else: it never stores, never decides who may see
//! what, and never knows about sockets or HTTP. Delivery through a broker is **at most once**:
//! an event can be lost (a broker restart, a full outbox) but never invented. That is safe
//! because the store is the source of truth: sessions fill any `seq` gap from the store, and
//! clients resume with `since`.

mod local;

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::UserId;
use crate::protocol::Event;

pub use local::LocalBroker;

/// Why a publish did not reach the broker. Publishing happens after the store committed, so the
/// notification is safe either way; connected clients catch up through gap filling and resume.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot be reached right now.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// Fan-out between nodes.
///
/// Guarantees: at most once; events published by one caller for one user arrive in the order
/// they were published. No order is promised between different publishers.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Sends `event` to every node with a connection of `user` (this node included).
    async fn publish(&self, user: &UserId, event: Arc<Event>) -> Result<(), BrokerError>;
}
