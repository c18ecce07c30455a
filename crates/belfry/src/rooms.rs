//! Rooms for collaborative screens: joining with permission, broadcasting to the other members
//! (the sender's own connection is left out), and presence per user across nodes.
//!
//! This module owns the rules (who may join or publish, the per-connection bounds) and the
//! choreography between the hub (local members) and the broker (other nodes). It never touches
//! a socket: sessions call it and send what it returns.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::DefaultClock;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use time::format_description::well_known::Rfc3339;

use crate::app::AppState;
use crate::auth::{RoomAccess, RoomGrants, User};
use crate::broker::{Broker, Topic, Watch, presence_query, presence_state};
use crate::hub::{Hub, JoinError};
use crate::model::{RoomName, UserId, now};
use crate::protocol::{ErrorCode, Event, ServerFrame};

/// How often a node repeats its presence to the others, and how long others trust it.
pub const PRESENCE_REFRESH: Duration = Duration::from_secs(20);
/// After this long without a refresh, a node's reported users are forgotten.
pub const PRESENCE_TTL: Duration = Duration::from_secs(60);

/// A refused room operation; both parts are safe to send to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomError {
    /// The error code.
    pub code: ErrorCode,
    /// What went wrong.
    pub message: String,
}

impl RoomError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Builds a room message frame (from a user, or from the backend when `from` is `None`).
pub fn message_event(room: &RoomName, from: Option<&UserId>, data: &serde_json::Value) -> Event {
    let id = uuid::Uuid::now_v7().to_string();
    let at = now().format(&Rfc3339).unwrap_or_default();
    ServerFrame::Message {
        room: room.as_str(),
        id: &id,
        from: from.map(UserId::as_str),
        at: &at,
        data,
    }
    .encode()
}

/// Checks a message's size against `max_bytes`.
pub fn check_size(data: &serde_json::Value, max_bytes: usize) -> Result<(), RoomError> {
    let size = data.to_string().len();
    if size > max_bytes {
        return Err(RoomError::new(
            ErrorCode::PayloadTooLarge,
            format!("message is {size} bytes; at most {max_bytes} allowed"),
        ));
    }
    Ok(())
}

/// Sends a message to every member of `room` except connection `except`, on every node.
pub async fn broadcast(
    hub: &Hub,
    broker: &Arc<dyn Broker>,
    room: &RoomName,
    event: Event,
    except: Option<u64>,
) {
    let event = Arc::new(event);
    hub.deliver_room(room, &event, except);
    if let Err(e) = broker.broadcast_room(room, event).await {
        tracing::warn!(error = %e, %room, "room broadcast to other nodes failed");
    }
}

async fn announce(hub: &Hub, broker: &Arc<dyn Broker>, room: &RoomName) {
    let users = hub.local_room_users(room);
    if let Err(e) = broker
        .broadcast_room(room, Arc::new(presence_state(&users)))
        .await
    {
        tracing::debug!(error = %e, %room, "presence announcement failed");
    }
}

struct Membership {
    _watch: Watch,
    access: RoomAccess,
    /// Joined with a room ticket (its own token), not with the session token's grants.
    by_ticket: bool,
}

/// One connection's rooms. Leaves them all when dropped.
pub struct Memberships {
    state: AppState,
    user: UserId,
    conn: u64,
    joined: HashMap<RoomName, Membership>,
    publish_rate: Option<RateLimiter<NotKeyed, InMemoryState, DefaultClock>>,
}

impl Memberships {
    /// No rooms yet, for connection `conn` of `user`.
    pub fn new(state: &AppState, user: &UserId, conn: u64) -> Self {
        let limits = &state.config.rooms;
        let publish_rate = NonZeroU32::new(limits.publish_per_second).map(|rate| {
            let burst = NonZeroU32::new(limits.publish_burst).unwrap_or(rate);
            RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            state: state.clone(),
            user: user.clone(),
            conn,
            joined: HashMap::new(),
            publish_rate,
        }
    }

    fn parse(room: &str) -> Result<RoomName, RoomError> {
        RoomName::parse(room)
            .map_err(|e| RoomError::new(ErrorCode::Validation, format!("room: {e}")))
    }

    /// Joins `room` with the permission of `user`'s token or of a room `token`; returns the
    /// members now present.
    pub async fn join(
        &mut self,
        user: &User,
        room: &str,
        token: Option<&str>,
    ) -> Result<Vec<String>, RoomError> {
        let room = Self::parse(room)?;
        let access = match token {
            Some(token) => {
                let ticket = self.state.auth.verify(token).await.map_err(|e| {
                    RoomError::new(ErrorCode::Unauthorized, format!("room token: {e}"))
                })?;
                if ticket.id != user.id {
                    return Err(RoomError::new(
                        ErrorCode::Forbidden,
                        "room token is for another user",
                    ));
                }
                ticket.grants.access(room.as_str())
            }
            None => user.grants.access(room.as_str()),
        }
        .ok_or_else(|| RoomError::new(ErrorCode::Forbidden, format!("may not join `{room}`")))?;
        let limits = &self.state.config.rooms;
        if !self.joined.contains_key(&room) && self.joined.len() >= limits.max_rooms_per_connection
        {
            return Err(RoomError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "at most {} rooms per connection",
                    limits.max_rooms_per_connection
                ),
            ));
        }
        // Watch first so replies to the presence query below reach this node.
        let watch = Watch::start(&self.state.broker, Topic::Room(room.clone())).await;
        let joined = self
            .state
            .hub
            .join_room(&self.user, self.conn, &room, limits.max_users_per_room)
            .map_err(|e| match e {
                JoinError::Full(n) => RoomError::new(
                    ErrorCode::LimitExceeded,
                    format!("room `{room}` is full ({n} users)"),
                ),
                JoinError::Gone => RoomError::new(ErrorCode::Internal, "connection is closing"),
            })?;
        let broker = &self.state.broker;
        if joined.first_on_node
            && let Err(e) = broker
                .broadcast_room(&room, Arc::new(presence_query()))
                .await
        {
            tracing::debug!(error = %e, "presence query failed");
        }
        announce(&self.state.hub, broker, &room).await;
        self.joined.insert(
            room,
            Membership {
                _watch: watch,
                access,
                by_ticket: token.is_some(),
            },
        );
        Ok(joined.members)
    }

    /// After the session's token was refreshed: rooms joined on the old token's grants take the
    /// new token's access, and those it no longer grants are left (and returned, for the client
    /// to be told). Rooms joined with a room ticket keep the ticket's access.
    pub async fn regrant(&mut self, grants: &RoomGrants) -> Vec<RoomName> {
        let mut revoked = Vec::new();
        for (room, membership) in &mut self.joined {
            if membership.by_ticket {
                continue;
            }
            match grants.access(room.as_str()) {
                Some(access) => membership.access = access,
                None => revoked.push(room.clone()),
            }
        }
        for room in &revoked {
            self.joined.remove(room);
            self.state.hub.leave_room(&self.user, self.conn, room);
            announce(&self.state.hub, &self.state.broker, room).await;
        }
        revoked
    }

    /// Leaves `room`.
    pub async fn leave(&mut self, room: &str) -> Result<(), RoomError> {
        let room = Self::parse(room)?;
        if self.joined.remove(&room).is_none() {
            return Err(RoomError::new(
                ErrorCode::NotFound,
                format!("not in `{room}`"),
            ));
        }
        self.state.hub.leave_room(&self.user, self.conn, &room);
        announce(&self.state.hub, &self.state.broker, &room).await;
        Ok(())
    }

    /// Sends `data` to the room's other members.
    pub async fn publish(&mut self, room: &str, data: &serde_json::Value) -> Result<(), RoomError> {
        let room = Self::parse(room)?;
        let Some(membership) = self.joined.get(&room) else {
            return Err(RoomError::new(
                ErrorCode::Forbidden,
                format!("join `{room}` before publishing"),
            ));
        };
        if membership.access != RoomAccess::Publish {
            return Err(RoomError::new(
                ErrorCode::Forbidden,
                format!("read-only in `{room}`"),
            ));
        }
        check_size(data, self.state.config.rooms.max_message_bytes)?;
        if let Some(limiter) = &self.publish_rate
            && limiter.check().is_err()
        {
            return Err(RoomError::new(
                ErrorCode::RateLimited,
                "publishing too fast; slow down",
            ));
        }
        let event = message_event(&room, Some(&self.user), data);
        broadcast(
            &self.state.hub,
            &self.state.broker,
            &room,
            event,
            Some(self.conn),
        )
        .await;
        Ok(())
    }
}

impl Drop for Memberships {
    fn drop(&mut self) {
        if self.joined.is_empty() {
            return;
        }
        let rooms: Vec<RoomName> = self.joined.drain().map(|(room, _)| room).collect();
        for room in &rooms {
            self.state.hub.leave_room(&self.user, self.conn, room);
        }
        let hub = Arc::clone(&self.state.hub);
        let broker = Arc::clone(&self.state.broker);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for room in &rooms {
                    announce(&hub, &broker, room).await;
                }
            });
        }
    }
}

/// Repeats this node's presence to the others and forgets stale reports, until `stop`.
pub fn spawn_presence_refresh(
    hub: Arc<Hub>,
    broker: Arc<dyn Broker>,
    stop: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(PRESENCE_REFRESH);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {
                    for (room, users) in hub.local_rooms() {
                        let _ = broker.broadcast_room(&room, Arc::new(presence_state(&users))).await;
                    }
                    hub.expire_remote_presence(PRESENCE_TTL);
                }
            }
        }
    });
}
