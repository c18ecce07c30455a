//! NATS fan-out: one subject per user (`<prefix>.u.<hex of the user id>`, since user ids may
//! contain `.`, `*` or `>`), subscribed by a node only while it has a session of that user.
//!
//! The NATS client reconnects and resubscribes on its own; each time it (re)connects, the hub
//! resyncs every session from the store, so events published while the link was down are not
//! missed. A publish the client refuses (its buffer full while reconnecting) is remembered:
//! once connected again, the node publishes a resync for each such user, so their connections
//! on other nodes re-read the store at once.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::StreamMap;
use tokio_util::sync::CancellationToken;

use super::wire::{self, Command, Repairs, WatchRequests, Watchers};
use super::{Broker, BrokerError, Topic};
use crate::hub::Hub;
use crate::model::{RoomName, UserId};
use crate::protocol::Event;
use crate::telemetry::Metrics;

/// Fan-out through NATS core subjects.
pub struct NatsBroker {
    node: String,
    prefix: String,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    client: async_nats::Client,
    commands: WatchRequests,
    repairs: Arc<Repairs>,
}

/// How often the repair task looks for users to resync on other nodes.
const REPAIR_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

fn subject(prefix: &str, topic: &Topic) -> String {
    let (kind, name) = match topic {
        Topic::User(user) => ("u", user.as_str()),
        Topic::Room(room) => ("r", room.as_str()),
    };
    let mut hex = String::with_capacity(name.len() * 2);
    for byte in name.bytes() {
        hex.push_str(&format!("{byte:02x}"));
    }
    format!("{prefix}.{kind}.{hex}")
}

impl NatsBroker {
    /// Connects (retrying in the background when the server is down) and starts the subscriber
    /// task, which stops when `shutdown` is cancelled.
    pub async fn start(
        url: &str,
        prefix: &str,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Self, BrokerError> {
        let resync_hub = Arc::clone(&hub);
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let hub = Arc::clone(&resync_hub);
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("nats connected: resyncing sessions");
                            hub.resync_all();
                        }
                        async_nats::Event::Disconnected => tracing::warn!("nats disconnected"),
                        other => tracing::debug!(event = %other, "nats event"),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        let node = format!("n{}", uuid::Uuid::now_v7().simple());
        let (commands, command_rx) = WatchRequests::channel();
        let repairs = Arc::new(Repairs::default());
        tokio::spawn(run_repairs(Repairer {
            client: client.clone(),
            node: node.clone(),
            prefix: prefix.to_owned(),
            repairs: Arc::clone(&repairs),
            metrics: Arc::clone(&metrics),
            shutdown: shutdown.clone(),
        }));
        tokio::spawn(run_subscriber(
            client.clone(),
            node.clone(),
            prefix.to_owned(),
            Arc::clone(&hub),
            command_rx,
            shutdown,
        ));
        Ok(Self {
            node,
            prefix: prefix.to_owned(),
            hub,
            metrics,
            client,
            commands,
            repairs,
        })
    }
}

impl NatsBroker {
    async fn send(&self, topic: &Topic, event: &Event) -> Result<(), BrokerError> {
        // The client buffers while reconnecting; a full buffer is an error, never a wait.
        self.client
            .publish(
                subject(&self.prefix, topic),
                wire::encode(&self.node, event).into(),
            )
            .await
            .map_err(|e| {
                self.metrics.broker_dropped.inc();
                self.repairs.lost(topic);
                BrokerError::Unavailable(e.to_string())
            })
    }
}

struct Repairer {
    client: async_nats::Client,
    node: String,
    prefix: String,
    repairs: Arc<Repairs>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

/// Publishes a resync for each user whose message was lost, once the client is connected.
async fn run_repairs(r: Repairer) {
    let resync = wire::encode(&r.node, &Event::resync());
    loop {
        tokio::select! {
            () = r.shutdown.cancelled() => return,
            () = tokio::time::sleep(REPAIR_EVERY) => {}
        }
        if r.repairs.is_empty()
            || r.client.connection_state() != async_nats::connection::State::Connected
        {
            continue;
        }
        let users = r.repairs.take();
        let mut sent = 0usize;
        for user in users {
            let topic = Topic::User(user);
            let subject = subject(&r.prefix, &topic);
            if r.client
                .publish(subject, resync.clone().into())
                .await
                .is_ok()
            {
                sent += 1;
            } else {
                r.repairs.lost(&topic);
            }
        }
        if r.client.flush().await.is_ok() && sent > 0 {
            tracing::info!(
                users = sent,
                "nats publish: told other nodes to resync users whose messages were lost"
            );
            r.metrics.broker_repairs.inc_by(sent as u64);
        }
    }
}

#[async_trait]
impl Broker for NatsBroker {
    async fn publish(&self, user: &UserId, event: Arc<Event>) -> Result<(), BrokerError> {
        self.hub.deliver(user, &event);
        self.send(&Topic::User(user.clone()), &event).await
    }

    async fn broadcast_room(&self, room: &RoomName, event: Arc<Event>) -> Result<(), BrokerError> {
        self.send(&Topic::Room(room.clone()), &event).await
    }

    async fn watch(&self, topic: &Topic) {
        self.commands.watch(topic).await;
    }

    fn unwatch(&self, topic: &Topic) {
        self.commands.unwatch(topic);
    }

    async fn online(&self, user: &UserId) -> bool {
        if self.hub.connections_of(user) > 0 {
            return true;
        }
        // Nodes watching the user answer requests on its subject; none answering means offline
        // (NATS reports "no responders" at once).
        let subject = subject(&self.prefix, &Topic::User(user.clone()));
        let request = self.client.request(subject, ONLINE_QUERY.into());
        matches!(
            tokio::time::timeout(std::time::Duration::from_millis(500), request).await,
            Ok(Ok(_))
        )
    }
}

/// The payload of an "is this user online?" request (never a valid wire message).
const ONLINE_QUERY: &str = "online?";

async fn run_subscriber(
    client: async_nats::Client,
    node: String,
    prefix: String,
    hub: Arc<Hub>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    shutdown: CancellationToken,
) {
    let mut watchers = Watchers::default();
    let mut subscriptions: StreamMap<Topic, async_nats::Subscriber> = StreamMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            command = commands.recv() => match command {
                None => return,
                Some(Command::Watch(topic, done)) => {
                    if watchers.add(&topic) {
                        match client.subscribe(subject(&prefix, &topic)).await {
                            Ok(subscriber) => {
                                // Flush so the server has the subscription before we answer.
                                if let Err(e) = client.flush().await {
                                    tracing::warn!(error = %e, "nats flush failed");
                                }
                                subscriptions.insert(topic, subscriber);
                            }
                            Err(e) => tracing::warn!(error = %e, "nats subscribe failed"),
                        }
                    }
                    let _ = done.send(());
                }
                Some(Command::Unwatch(topic)) => {
                    if watchers.remove(&topic) {
                        // Dropping the subscriber unsubscribes.
                        subscriptions.remove(&topic);
                    }
                }
            },
            Some((topic, message)) = subscriptions.next(), if !subscriptions.is_empty() => {
                if let Some(reply) = &message.reply {
                    let _ = client.publish(reply.clone(), "1".into()).await;
                    continue;
                }
                let Some((origin, event)) = wire::decode(&node, &message.payload) else {
                    continue;
                };
                match topic {
                    Topic::User(user) => {
                        hub.deliver(&user, &Arc::new(event));
                    }
                    Topic::Room(room) => {
                        if let Some(reply) = wire::room_inbound(&hub, &room, &origin, event) {
                            let subject = subject(&prefix, &Topic::Room(room));
                            if let Err(e) = client.publish(subject, wire::encode(&node, &reply).into()).await {
                                tracing::debug!(error = %e, "nats presence reply failed");
                            }
                        }
                    }
                }
            }
        }
    }
}
