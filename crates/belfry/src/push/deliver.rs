//! The delivery workers: decide, encrypt, send, retry, prune.
//!
//! A job (one notification, or a digest) is prepared by a short task: the policy decision,
//! the user's subscriptions, the endpoint check. Each subscription is then sent by a task of
//! its own, so one user's pushes go out side by side, and neither a slow push service nor one
//! user holds more than its share: a request takes one of its user's
//! `max_subscriptions_per_user` slots, then one of its push service's `per_host_concurrency`
//! slots, then one of the `concurrency` slots shared by all (always in that order, so waits
//! never form a cycle), and holds none while it waits to retry. Each such lane holds at most
//! `per_user_queue` / `per_host_queue` sends; more are dropped.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64ct::{Base64UrlUnpadded, Encoding};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;
use web_push_native::WebPushBuilder;
use web_push_native::jwt_simple::algorithms::{
    ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, ES256KeyPair,
};
use web_push_native::jwt_simple::claims::Claims;

use super::endpoint::{EndpointPolicy, RefusedAddress};
use super::{DIGEST_TOPIC, PushConfig, PushPolicy, PushSubscription, digest_payload, payload};
use crate::broker::Broker;
use crate::hub::Hub;
use crate::model::{Notification, NotificationId, UserId};
use crate::store::Store;
use crate::telemetry::Metrics;

/// Longest wait honoured from a `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What became of one push to one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The push service accepted it.
    Delivered,
    /// The subscription is gone (404/410) and was removed.
    Pruned,
    /// Refused for good (including a redirect, which is not followed), or retries ran out.
    Failed,
    /// Not sent: the endpoint is not one this server sends to (scheme, host, or an address
    /// that is not public, literally or once resolved).
    Refused,
}

pub(super) struct Worker {
    pub key: Arc<ES256KeyPair>,
    pub config: PushConfig,
    pub endpoints: EndpointPolicy,
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub broker: Arc<dyn Broker>,
    pub metrics: Arc<Metrics>,
    pub client: reqwest::Client,
    /// Requests in flight, over all push services.
    pub requests: Arc<Semaphore>,
    /// Per push service (origin).
    pub hosts: Arc<Lanes>,
    /// Per user.
    pub users: Arc<Lanes>,
}

/// Lanes by key (a push service's origin, or a user), each with its own bounds. A lane exists
/// while a send holds a ticket for it.
#[derive(Default)]
pub(super) struct Lanes(Mutex<HashMap<String, Lane>>);

struct Lane {
    in_flight: Arc<Semaphore>,
    tickets: usize,
}

impl Lanes {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Lane>> {
        // The map stays consistent whatever panicked while holding it: each change is one step.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place in `key`'s lane (of `in_flight` slots), unless `queue` sends already hold one.
    fn admit(self: &Arc<Self>, key: &str, queue: usize, in_flight: usize) -> Option<Ticket> {
        let mut lanes = self.lock();
        let lane = lanes.entry(key.to_owned()).or_insert_with(|| Lane {
            in_flight: Arc::new(Semaphore::new(in_flight.max(1))),
            tickets: 0,
        });
        if lane.tickets >= queue.max(1) {
            return None;
        }
        lane.tickets += 1;
        Some(Ticket {
            lanes: Arc::clone(self),
            key: key.to_owned(),
            in_flight: Arc::clone(&lane.in_flight),
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// One send's place in a lane; the lane goes when its last ticket does.
struct Ticket {
    lanes: Arc<Lanes>,
    key: String,
    in_flight: Arc<Semaphore>,
}

/// A send's places: its user's lane and its push service's.
struct Place {
    user: Ticket,
    host: Ticket,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut lanes = self.lanes.lock();
        if let Some(lane) = lanes.get_mut(&self.key) {
            lane.tickets = lane.tickets.saturating_sub(1);
            if lane.tickets == 0 {
                lanes.remove(&self.key);
            }
        }
    }
}

/// What one delivery sends.
pub(super) enum Job {
    /// One notification.
    One(Notification),
    /// Several of a user's notifications held during a digest window: how many distinct items,
    /// and the newest.
    Digest {
        /// Distinct items held.
        count: usize,
        /// The newest of them.
        latest: Notification,
    },
}

impl Job {
    fn latest(&self) -> &Notification {
        match self {
            Job::One(n) | Job::Digest { latest: n, .. } => n,
        }
    }
}

/// A user's pushes held while their digest window is open.
struct Held {
    items: HashSet<NotificationId>,
    latest: Notification,
}

impl Held {
    fn into_job(self) -> Job {
        if self.items.len() <= 1 {
            Job::One(self.latest)
        } else {
            Job::Digest {
                count: self.items.len(),
                latest: self.latest,
            }
        }
    }
}

pub(super) async fn run(
    worker: Worker,
    mut jobs: mpsc::Receiver<Notification>,
    shutdown: CancellationToken,
) {
    let worker = Arc::new(worker);
    // Jobs being prepared (a policy decision and a store read each; never a push service).
    let preparing = Arc::new(Semaphore::new(worker.config.concurrency.max(1)));
    let window = Duration::from_secs(worker.config.digest_window_secs);
    let mut held: HashMap<UserId, Held> = HashMap::new();
    let mut due: DelayQueue<UserId> = DelayQueue::new();
    loop {
        let job = tokio::select! {
            () = shutdown.cancelled() => return,
            job = jobs.recv() => match job {
                None => return,
                Some(n) if window.is_zero() => Job::One(n),
                Some(n) => {
                    match held.entry(n.user_id.clone()) {
                        Entry::Occupied(mut open) => {
                            let open = open.get_mut();
                            open.items.insert(n.id);
                            open.latest = n;
                        }
                        Entry::Vacant(first) => {
                            due.insert(n.user_id.clone(), window);
                            first.insert(Held { items: HashSet::from([n.id]), latest: n });
                        }
                    }
                    continue;
                }
            },
            Some(expired) = due.next(), if !due.is_empty() => {
                match held.remove(expired.get_ref()) {
                    Some(open) => open.into_job(),
                    None => continue,
                }
            }
        };
        let Ok(permit) = Arc::clone(&preparing).acquire_owned().await else {
            return;
        };
        let worker = Arc::clone(&worker);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            worker.push(&job, &stop).await;
            drop(permit);
        });
    }
}

/// RFC 8030 `Topic`: at most 32 URL-safe base64 characters. Pushes with the same topic replace
/// each other at the push service, so a newer notification of a group replaces an older one.
fn topic(group_key: &str) -> String {
    let digest = Sha256::digest(group_key.as_bytes());
    let mut text = Base64UrlUnpadded::encode_string(&digest);
    text.truncate(32);
    text
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Whether a request failed because our resolver refused the endpoint's addresses.
fn refused_by_resolver(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<RefusedAddress>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The VAPID `Authorization` header (RFC 8292). Signed here rather than by `web-push-native`,
/// whose audience leaves out a non-default port: `aud` must be the push resource's origin,
/// port included (our loopback test service, which checks it independently, caught this).
fn vapid_header(
    key: &ES256KeyPair,
    endpoint: &http::Uri,
    valid: Duration,
    subject: &str,
) -> Option<String> {
    let scheme = endpoint.scheme_str()?;
    let host = endpoint.host()?;
    let origin = match endpoint.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    };
    // Push services refuse tokens valid for more than 24 hours.
    let valid = valid.min(Duration::from_secs(24 * 3600));
    let claims = Claims::create(valid.into())
        .with_audience(origin)
        .with_subject(subject);
    let token = key.sign(claims).ok()?;
    let public =
        Base64UrlUnpadded::encode_string(&key.public_key().public_key().to_bytes_uncompressed());
    Some(format!("vapid t={token}, k={public}"))
}

impl Worker {
    async fn wanted(&self, notification: &Notification) -> bool {
        let policy = self
            .config
            .type_policies
            .get(notification.kind.as_str())
            .copied()
            .unwrap_or(self.config.policy);
        match policy {
            PushPolicy::Never => false,
            PushPolicy::Always => true,
            PushPolicy::Offline => {
                let user = &notification.user_id;
                let online = self.hub.connections_of(user) > 0 || self.broker.online(user).await;
                if online {
                    self.metrics.push_skipped_online.inc();
                }
                !online
            }
        }
    }

    /// Prepares a job and starts one send per subscription; returns without waiting for them.
    async fn push(self: &Arc<Self>, job: &Job, shutdown: &CancellationToken) {
        let notification = job.latest();
        if !self.wanted(notification).await {
            return;
        }
        let mut subscriptions = match self.store.push_subscriptions(&notification.user_id).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, "push: cannot read subscriptions");
                self.metrics.push_failed.inc();
                return;
            }
        };
        // Oldest first: a user over the cap (lowered since they subscribed) gets the newest.
        let over = subscriptions
            .len()
            .saturating_sub(self.config.max_subscriptions_per_user.max(1));
        subscriptions.drain(..over);
        let (body, topic) = match job {
            Job::One(n) => (payload(n), n.group_key.as_ref().map(|g| topic(g.as_str()))),
            Job::Digest { count, latest } => (
                digest_payload(*count, latest),
                Some(DIGEST_TOPIC.to_owned()),
            ),
        };
        let body: Arc<[u8]> = body.into();
        let topic: Option<Arc<str>> = topic.map(Into::into);
        for subscription in subscriptions {
            // Checked again here: the rules may have changed since the subscription was saved.
            let url = match self.endpoints.check(&subscription.endpoint) {
                Ok(url) => url,
                Err(refused) => {
                    tracing::warn!(%refused, "push: endpoint refused; not sent");
                    self.record(Outcome::Refused);
                    continue;
                }
            };
            let Some(place) = self.admit(&notification.user_id, &url) else {
                self.metrics.push_dropped.inc();
                continue;
            };
            let worker = Arc::clone(self);
            let (body, topic, stop) = (Arc::clone(&body), topic.clone(), shutdown.clone());
            tokio::spawn(async move {
                let outcome = worker
                    .send(&subscription, &url, topic.as_deref(), &body, &place, &stop)
                    .await;
                worker.record(outcome);
                drop(place);
            });
        }
    }

    /// Places in the user's and the push service's lanes, unless either is full.
    fn admit(&self, user: &UserId, url: &reqwest::Url) -> Option<Place> {
        let config = &self.config;
        let Some(user) = self.users.admit(
            user.as_str(),
            config.per_user_queue,
            config.max_subscriptions_per_user,
        ) else {
            tracing::warn!("push: too many pushes waiting for one user; dropped");
            return None;
        };
        let origin = url.origin().ascii_serialization();
        let Some(host) =
            self.hosts
                .admit(&origin, config.per_host_queue, config.per_host_concurrency)
        else {
            tracing::warn!(%origin, "push: too many pushes waiting for one push service; dropped");
            return None;
        };
        Some(Place { user, host })
    }

    fn record(&self, outcome: Outcome) {
        match outcome {
            Outcome::Delivered => self.metrics.push_sent.inc(),
            Outcome::Pruned => self.metrics.push_pruned.inc(),
            Outcome::Failed => self.metrics.push_failed.inc(),
            Outcome::Refused => self.metrics.push_refused.inc(),
        };
    }

    fn request(
        &self,
        subscription: &PushSubscription,
        url: &reqwest::Url,
        topic: Option<&str>,
        body: &[u8],
    ) -> Option<reqwest::RequestBuilder> {
        let endpoint: http::Uri = url.as_str().parse().ok()?;
        let p256dh =
            Base64UrlUnpadded::decode_vec(subscription.keys.p256dh.trim_end_matches('=')).ok()?;
        let public = web_push_native::p256::PublicKey::from_sec1_bytes(&p256dh).ok()?;
        let secret = Base64UrlUnpadded::decode_vec(subscription.keys.auth.trim_end_matches('='))
            .ok()
            .filter(|a| a.len() == 16)?;
        let mut auth = web_push_native::Auth::default();
        auth.copy_from_slice(&secret);
        let ttl = Duration::from_secs(self.config.ttl_secs.max(1));
        let vapid = vapid_header(&self.key, &endpoint, ttl, &self.config.subject)?;
        let request = WebPushBuilder::new(endpoint, public, auth)
            .with_valid_duration(ttl)
            .build(body.to_vec())
            .ok()?;
        let (parts, body) = request.into_parts();
        // The URL checked is the URL requested.
        let mut builder = self
            .client
            .post(url.clone())
            .headers(parts.headers)
            .header("Urgency", self.config.urgency.as_str())
            .header(reqwest::header::AUTHORIZATION, vapid);
        if let Some(topic) = topic {
            builder = builder.header("Topic", topic);
        }
        Some(builder.body(body))
    }

    /// Sends one push, retrying 429/5xx/network errors with backoff (or `Retry-After`). Each
    /// attempt waits for a slot of its user's lane, of its push service's, then a shared one.
    async fn send(
        &self,
        subscription: &PushSubscription,
        url: &reqwest::Url,
        topic: Option<&str>,
        body: &[u8],
        place: &Place,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=self.config.max_attempts.max(1) {
            let Some(request) = self.request(subscription, url, topic, body) else {
                tracing::warn!("push: unusable subscription; removing it");
                let _ = self
                    .store
                    .remove_push_subscription(None, &subscription.endpoint)
                    .await;
                return Outcome::Pruned;
            };
            let slots = async {
                let user = place.user.in_flight.acquire().await.ok()?;
                let host = place.host.in_flight.acquire().await.ok()?;
                let shared = self.requests.acquire().await.ok()?;
                Some((user, host, shared))
            };
            let sent = tokio::select! {
                () = shutdown.cancelled() => return Outcome::Failed,
                slots = slots => match slots {
                    Some(slots) => tokio::select! {
                        () = shutdown.cancelled() => return Outcome::Failed,
                        sent = request.send() => { drop(slots); sent }
                    },
                    None => return Outcome::Failed,
                },
            };
            let wait = match sent {
                Ok(response) if response.status().is_success() => return Outcome::Delivered,
                Ok(response) if matches!(response.status().as_u16(), 404 | 410) => {
                    if let Err(e) = self
                        .store
                        .remove_push_subscription(None, &subscription.endpoint)
                        .await
                    {
                        tracing::warn!(error = %e, "push: cannot remove a gone subscription");
                    }
                    return Outcome::Pruned;
                }
                Ok(response)
                    if response.status().as_u16() == 429 || response.status().is_server_error() =>
                {
                    retry_after(&response).unwrap_or(delay)
                }
                Ok(response) if response.status().is_redirection() => {
                    tracing::warn!(status = %response.status(), "push service redirected; not followed");
                    return Outcome::Failed;
                }
                Ok(response) => {
                    tracing::warn!(status = %response.status(), "push refused");
                    return Outcome::Failed;
                }
                Err(e) if refused_by_resolver(&e) => {
                    tracing::warn!("push: endpoint resolves to a non-public address; not sent");
                    return Outcome::Refused;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "push: network error");
                    delay
                }
            };
            if attempt == self.config.max_attempts.max(1) {
                break;
            }
            self.metrics.push_retried.inc();
            tokio::select! {
                () = shutdown.cancelled() => return Outcome::Failed,
                () = tokio::time::sleep(wait) => {}
            }
            delay = (delay * 2).min(MAX_RETRY_AFTER);
        }
        Outcome::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_short_url_safe_and_stable() {
        let a = topic("post:7:likes");
        assert_eq!(a.len(), 32);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(a, topic("post:7:likes"));
        assert_ne!(a, topic("post:8:likes"));
    }

    #[test]
    fn a_lane_admits_up_to_its_queue_and_goes_with_its_last_ticket() {
        let lanes = Arc::new(Lanes::default());
        let first = lanes.admit("https://a.example", 2, 1).unwrap();
        let second = lanes.admit("https://a.example", 2, 1).unwrap();
        assert!(
            lanes.admit("https://a.example", 2, 1).is_none(),
            "queue full"
        );
        let other = lanes.admit("https://b.example", 2, 1).unwrap();
        assert_eq!(lanes.len(), 2);
        drop(first);
        let third = lanes.admit("https://a.example", 2, 1).unwrap();
        drop((second, third, other));
        assert_eq!(lanes.len(), 0);
    }
}
