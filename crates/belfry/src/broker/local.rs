//! The in-process broker: a single node delivers straight into its own hub.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Broker, BrokerError, Topic};
use crate::hub::Hub;
use crate::model::{RoomName, UserId};
use crate::protocol::Event;

/// Single-node fan-out: publishing is delivering to this node's hub.
pub struct LocalBroker {
    hub: Arc<Hub>,
}

impl LocalBroker {
    /// A broker that delivers to `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

#[async_trait]
impl Broker for LocalBroker {
    async fn publish(&self, user: &UserId, event: Arc<Event>) -> Result<(), BrokerError> {
        self.hub.deliver(user, &event);
        Ok(())
    }

    async fn broadcast_room(
        &self,
        _room: &RoomName,
        _event: Arc<Event>,
    ) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn watch(&self, _topic: &Topic) {}

    fn unwatch(&self, _topic: &Topic) {}

    async fn online(&self, user: &UserId) -> bool {
        self.hub.connections_of(user) > 0
    }
}
