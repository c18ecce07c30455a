//! Redis pub/sub fan-out: one channel per user (`<prefix>:u:<user id>`), subscribed by a node
//! only while it has a session of that user.
//!
//! Two tasks per node: a publisher that pipelines queued messages over one connection, and a
//! subscriber that owns a pub/sub connection. Both reconnect with backoff on their own; after the
//! subscriber reconnects it resubscribes every watched user and asks the hub to resync every
//! session from the store, so events published while it was away are not missed. When a
//! publish fails (Redis down, paused or timing out), the publisher remembers the users whose
//! messages were lost and, as soon as Redis answers again, publishes a resync for each: their
//! connections on other nodes re-read the store at once, with no later event needed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::wire::{self, Command, Repairs, WatchRequests, Watchers};
use super::{Broker, BrokerError, Topic};
use crate::hub::Hub;
use crate::model::{RoomName, UserId};
use crate::protocol::Event;
use crate::telemetry::Metrics;

/// Queued messages per node before publishing drops (and counts) new ones.
const PUBLISH_QUEUE: usize = 65_536;
/// Most messages sent in one pipeline.
const PIPELINE: usize = 512;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Fan-out through Redis pub/sub.
pub struct RedisBroker {
    client: redis::Client,
    node: String,
    prefix: String,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    outgoing: mpsc::Sender<(Topic, Vec<u8>)>,
    commands: WatchRequests,
    repairs: Arc<Repairs>,
}

impl RedisBroker {
    /// Starts the publisher and subscriber tasks; they stop when `shutdown` is cancelled.
    /// Never fails on an unreachable Redis: it keeps retrying in the background.
    pub fn start(
        url: &str,
        prefix: &str,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Self, BrokerError> {
        let client =
            redis::Client::open(url).map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        let node = format!("n{}", uuid::Uuid::now_v7().simple());
        let query_client = client.clone();
        let (outgoing, queue) = mpsc::channel(PUBLISH_QUEUE);
        let (commands, command_rx) = WatchRequests::channel();
        let repairs = Arc::new(Repairs::default());
        tokio::spawn(run_publisher(Publisher {
            client: client.clone(),
            node: node.clone(),
            prefix: prefix.to_owned(),
            queue,
            repairs: Arc::clone(&repairs),
            metrics: Arc::clone(&metrics),
            shutdown: shutdown.clone(),
        }));
        tokio::spawn(run_subscriber(Subscriber {
            client,
            replies: outgoing.clone(),
            node: node.clone(),
            prefix: prefix.to_owned(),
            hub: Arc::clone(&hub),
            commands: command_rx,
            watchers: Watchers::default(),
            shutdown,
        }));
        Ok(Self {
            client: query_client,
            node,
            prefix: prefix.to_owned(),
            hub,
            metrics,
            outgoing,
            commands,
            repairs,
        })
    }
}

fn channel(prefix: &str, topic: &Topic) -> String {
    match topic {
        Topic::User(user) => format!("{prefix}:u:{user}"),
        Topic::Room(room) => format!("{prefix}:r:{room}"),
    }
}

fn parse_channel(prefix: &str, channel: &str) -> Option<Topic> {
    let rest = channel.strip_prefix(prefix)?;
    if let Some(user) = rest.strip_prefix(":u:") {
        return UserId::parse(user).ok().map(Topic::User);
    }
    RoomName::parse(rest.strip_prefix(":r:")?)
        .ok()
        .map(Topic::Room)
}

impl RedisBroker {
    fn queue(&self, topic: &Topic, event: &Event) -> Result<(), BrokerError> {
        let message = (topic.clone(), wire::encode(&self.node, event));
        self.outgoing.try_send(message).map_err(|_| {
            self.metrics.broker_dropped.inc();
            self.repairs.lost(topic);
            BrokerError::Unavailable("publish queue full".into())
        })
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn publish(&self, user: &UserId, event: Arc<Event>) -> Result<(), BrokerError> {
        self.hub.deliver(user, &event);
        self.queue(&Topic::User(user.clone()), &event)
    }

    async fn broadcast_room(&self, room: &RoomName, event: Arc<Event>) -> Result<(), BrokerError> {
        self.queue(&Topic::Room(room.clone()), &event)
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
        // A node subscribes to a user's channel exactly while it has a session of that user.
        let channel = channel(&self.prefix, &Topic::User(user.clone()));
        let query = async {
            let mut con = self.client.get_multiplexed_async_connection().await?;
            redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async::<Vec<(String, i64)>>(&mut con)
                .await
        };
        match tokio::time::timeout(std::time::Duration::from_secs(2), query).await {
            Ok(Ok(counts)) => counts.first().is_some_and(|(_, n)| *n > 0),
            _ => false,
        }
    }
}

async fn backoff(delay: &mut Duration, shutdown: &CancellationToken) -> bool {
    let wait = *delay;
    *delay = (*delay * 2).min(BACKOFF_MAX);
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

struct Publisher {
    client: redis::Client,
    node: String,
    prefix: String,
    queue: mpsc::Receiver<(Topic, Vec<u8>)>,
    repairs: Arc<Repairs>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl Publisher {
    /// Forgets `batch`, remembering its users for repair.
    fn lose(&self, batch: &mut Vec<(Topic, Vec<u8>)>) {
        self.metrics.broker_dropped.inc_by(batch.len() as u64);
        for (topic, _) in batch.drain(..) {
            self.repairs.lost(&topic);
        }
    }
}

async fn run_publisher(mut p: Publisher) {
    let mut connection = None;
    let mut delay = BACKOFF_MIN;
    let mut batch = Vec::with_capacity(PIPELINE);
    loop {
        // With repairs pending, try again after the backoff even when nothing new is queued.
        let repairing = !p.repairs.is_empty();
        tokio::select! {
            () = p.shutdown.cancelled() => return,
            received = p.queue.recv_many(&mut batch, PIPELINE) => if received == 0 { return },
            () = tokio::time::sleep(delay), if repairing => {}
        }
        if connection.is_none() {
            match p.client.get_multiplexed_async_connection().await {
                Ok(c) => connection = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, dropped = batch.len(), "redis publish: cannot connect");
                    p.lose(&mut batch);
                    if !backoff(&mut delay, &p.shutdown).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let Some(con) = connection.as_mut() else {
            continue;
        };
        let repairs = p.repairs.take();
        let mut pipe = redis::pipe();
        let resync = wire::encode(&p.node, &Event::resync());
        for user in &repairs {
            let topic = Topic::User(user.clone());
            pipe.cmd("PUBLISH")
                .arg(channel(&p.prefix, &topic))
                .arg(&resync)
                .ignore();
        }
        for (topic, payload) in &batch {
            pipe.cmd("PUBLISH")
                .arg(channel(&p.prefix, topic))
                .arg(payload)
                .ignore();
        }
        match pipe.query_async::<()>(con).await {
            Ok(()) => {
                delay = BACKOFF_MIN;
                batch.clear();
                if !repairs.is_empty() {
                    tracing::info!(
                        users = repairs.len(),
                        "redis publish: told other nodes to resync users whose messages were lost"
                    );
                    p.metrics.broker_repairs.inc_by(repairs.len() as u64);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, lost = batch.len(), "redis publish failed: the users' other nodes will resync");
                for user in repairs {
                    p.repairs.lost(&Topic::User(user));
                }
                p.lose(&mut batch);
                connection = None;
                delay = (delay * 2).min(BACKOFF_MAX);
            }
        }
    }
}

struct Subscriber {
    client: redis::Client,
    replies: mpsc::Sender<(Topic, Vec<u8>)>,
    node: String,
    prefix: String,
    hub: Arc<Hub>,
    commands: mpsc::UnboundedReceiver<Command>,
    watchers: Watchers,
    shutdown: CancellationToken,
}

impl Subscriber {
    /// Applies a command while disconnected: counts change, nothing is sent.
    fn count_only(&mut self, command: Command) {
        match command {
            Command::Watch(topic, done) => {
                self.watchers.add(&topic);
                let _ = done.send(());
            }
            Command::Unwatch(topic) => {
                self.watchers.remove(&topic);
            }
        }
    }
}

async fn run_subscriber(mut s: Subscriber) {
    let mut delay = BACKOFF_MIN;
    let mut connected_before = false;
    loop {
        let connect = async {
            let pubsub = s.client.get_async_pubsub().await?;
            let (mut sink, stream) = pubsub.split();
            let channels: Vec<String> =
                s.watchers.topics().map(|t| channel(&s.prefix, t)).collect();
            if !channels.is_empty() {
                sink.subscribe(channels).await?;
            }
            Ok::<_, redis::RedisError>((sink, stream))
        };
        let attempt = tokio::select! {
            () = s.shutdown.cancelled() => return,
            attempt = connect => attempt,
        };
        let (mut sink, mut stream) = match attempt {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "redis subscribe: cannot connect");
                let sleep = tokio::time::sleep(delay);
                delay = (delay * 2).min(BACKOFF_MAX);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = s.shutdown.cancelled() => return,
                        () = &mut sleep => break,
                        Some(command) = s.commands.recv() => s.count_only(command),
                    }
                }
                continue;
            }
        };
        delay = BACKOFF_MIN;
        if connected_before {
            tracing::info!("redis subscriber reconnected: resyncing sessions");
            s.hub.resync_all();
        }
        connected_before = true;
        loop {
            tokio::select! {
                () = s.shutdown.cancelled() => return,
                command = s.commands.recv() => {
                    let Some(command) = command else { return };
                    let sent = match command {
                        Command::Watch(topic, done) => {
                            let result = if s.watchers.add(&topic) {
                                sink.subscribe(channel(&s.prefix, &topic)).await
                            } else {
                                Ok(())
                            };
                            let _ = done.send(());
                            result
                        }
                        Command::Unwatch(topic) => {
                            if s.watchers.remove(&topic) {
                                sink.unsubscribe(channel(&s.prefix, &topic)).await
                            } else {
                                Ok(())
                            }
                        }
                    };
                    if let Err(e) = sent {
                        tracing::warn!(error = %e, "redis subscription change failed");
                        break;
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else {
                        tracing::warn!("redis subscriber disconnected");
                        break;
                    };
                    let Some(topic) = parse_channel(&s.prefix, message.get_channel_name()) else {
                        continue;
                    };
                    let Some((origin, event)) = wire::decode(&s.node, message.get_payload_bytes())
                    else {
                        continue;
                    };
                    match topic {
                        Topic::User(user) => {
                            s.hub.deliver(&user, &Arc::new(event));
                        }
                        Topic::Room(room) => {
                            if let Some(reply) = wire::room_inbound(&s.hub, &room, &origin, event) {
                                let reply = (Topic::Room(room), wire::encode(&s.node, &reply));
                                let _ = s.replies.try_send(reply);
                            }
                        }
                    }
                }
            }
        }
    }
}
