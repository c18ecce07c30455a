//! Web Push: reaching users whose app is closed.
//!
//! Owns the VAPID key pair, the delivery policy (push when the user has no live connection
//! anywhere in the cluster, always, or never; per notification type), the payload format
//! (docs/push.md), and delivery: off the request path, bounded concurrency, retries with backoff
//! on 429/5xx honouring `Retry-After`, and removal of subscriptions the push service says are
//! gone (404/410). Encryption (RFC 8291, aes128gcm) and VAPID (RFC 8292) come from
//! `web-push-native`. It never knows about axum; it reads subscriptions from the store.
//!
//! Users choose their endpoints, so it never sends where `endpoint` forbids (a private
//! address, plain http, a host off the allow-list), never follows a redirect, and never lets
//! one slow push service, or one user, hold more than their share of the `concurrency` slots.

mod deliver;
mod endpoint;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64ct::{Base64UrlUnpadded, Encoding};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use web_push_native::jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256KeyPair};

use crate::broker::Broker;
use crate::hub::Hub;
use crate::model::Notification;
pub use crate::model::{PushSubscription, SubscriptionKeys};
use crate::store::Store;
use crate::telemetry::Metrics;

pub use deliver::Outcome;
pub use endpoint::{EndpointPolicy, EndpointRefused, HostPattern, Reach, reach};

/// When a notification is pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushPolicy {
    /// Only when the user has no live connection on any node (the default).
    Offline,
    /// Always, also when a tab is open (the service worker then skips what the page showed).
    Always,
    /// Never.
    Never,
}

/// Web Push settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// The VAPID private key (base64url, from `belfry vapid-keys`). Push is off without it.
    #[serde(serialize_with = "crate::config::redact_opt")]
    pub vapid_private_key: Option<SecretString>,
    /// Contact for push services, `mailto:` or `https:`. Default `mailto:admin@localhost`.
    pub subject: String,
    /// Default policy. Default `offline`.
    pub policy: PushPolicy,
    /// Policy per notification type, overriding `policy`.
    pub type_policies: BTreeMap<String, PushPolicy>,
    /// How long a push service keeps an undelivered push, in seconds. Default 43200 (12 h).
    pub ttl_secs: u64,
    /// `very-low`, `low`, `normal` or `high`. Default `normal`.
    pub urgency: String,
    /// Requests to push services in flight at once, over all hosts. Default 64.
    pub concurrency: usize,
    /// Requests in flight at once to one push service (scheme, host and port). Default 8.
    pub per_host_concurrency: usize,
    /// Pushes waiting for (or retrying against) one push service before further ones to it
    /// are dropped (and counted). Default 1000.
    pub per_host_queue: usize,
    /// Pushes waiting for (or retrying) for one user before further ones for them are dropped
    /// (and counted). A user's requests in flight are bounded by `max_subscriptions_per_user`.
    /// Default 100.
    pub per_user_queue: usize,
    /// Longest wait for a TCP and TLS connection to a push service, in seconds. Default 5.
    pub connect_timeout_secs: u64,
    /// Longest wait for a whole request to a push service, in seconds. Default 10.
    pub request_timeout_secs: u64,
    /// Attempts per delivery before giving up (429/5xx/network errors). Default 5.
    pub max_attempts: u32,
    /// Subscriptions kept per user; saving one more removes that user's least recently saved.
    /// Default 10.
    pub max_subscriptions_per_user: usize,
    /// Hosts endpoints may point to: `fcm.googleapis.com`, or `*.push.apple.com` for any name
    /// below it. Empty (the default): any public host.
    pub allowed_hosts: Vec<HostPattern>,
    /// Also accept `http` endpoints and loopback addresses. For development and tests only:
    /// it lets users make the server POST to its own machine. Default false.
    pub allow_insecure_endpoints: bool,
    /// Pushes queued before new ones are dropped (and counted). Default 10000.
    pub queue: usize,
    /// When above 0, a user's pushes are batched: the first opens a window of this many
    /// seconds, and what arrives within it goes out as one push at its end (a digest when
    /// there were several items). Default 0 (off).
    pub digest_window_secs: u64,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            vapid_private_key: None,
            subject: "mailto:admin@localhost".into(),
            policy: PushPolicy::Offline,
            type_policies: BTreeMap::new(),
            ttl_secs: 43_200,
            urgency: "normal".into(),
            concurrency: 64,
            per_host_concurrency: 8,
            per_host_queue: 1000,
            per_user_queue: 100,
            connect_timeout_secs: 5,
            request_timeout_secs: 10,
            max_attempts: 5,
            max_subscriptions_per_user: 10,
            allowed_hosts: Vec::new(),
            allow_insecure_endpoints: false,
            queue: 10_000,
            digest_window_secs: 0,
        }
    }
}

/// Why a subscription or key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PushError {
    /// Push is not configured (no VAPID key).
    #[error("web push is not configured on this server")]
    Disabled,
    /// A subscription field is malformed.
    #[error("{0}")]
    Invalid(&'static str),
    /// The VAPID key is malformed.
    #[error("invalid VAPID private key: {0}")]
    BadKey(String),
}

impl From<EndpointRefused> for PushError {
    fn from(refused: EndpointRefused) -> Self {
        PushError::Invalid(refused.as_str())
    }
}

impl PushConfig {
    /// The endpoint rules of these settings.
    pub fn endpoint_policy(&self) -> EndpointPolicy {
        EndpointPolicy::new(self.allow_insecure_endpoints, self.allowed_hosts.clone())
    }
}

/// Checks a subscription's endpoint (against `policy`) and keys can be used for delivery.
pub fn validate_subscription(
    subscription: &PushSubscription,
    policy: &EndpointPolicy,
) -> Result<(), PushError> {
    policy.check(&subscription.endpoint)?;
    let key = Base64UrlUnpadded::decode_vec(subscription.keys.p256dh.trim_end_matches('='))
        .map_err(|_| PushError::Invalid("keys.p256dh: not base64url"))?;
    web_push_native::p256::PublicKey::from_sec1_bytes(&key)
        .map_err(|_| PushError::Invalid("keys.p256dh: not a P-256 public key"))?;
    let auth = Base64UrlUnpadded::decode_vec(subscription.keys.auth.trim_end_matches('='))
        .map_err(|_| PushError::Invalid("keys.auth: not base64url"))?;
    if auth.len() != 16 {
        return Err(PushError::Invalid("keys.auth: must be 16 bytes"));
    }
    Ok(())
}

/// A fresh VAPID key pair: (private, public), both base64url without padding.
pub fn generate_vapid_keys() -> (String, String) {
    let pair = ES256KeyPair::generate();
    let private = Base64UrlUnpadded::encode_string(&pair.to_bytes());
    let public =
        Base64UrlUnpadded::encode_string(&pair.public_key().public_key().to_bytes_uncompressed());
    (private, public)
}

fn load_key(secret: &SecretString) -> Result<ES256KeyPair, PushError> {
    let bytes = Base64UrlUnpadded::decode_vec(secret.expose_secret().trim().trim_end_matches('='))
        .map_err(|e| PushError::BadKey(e.to_string()))?;
    ES256KeyPair::from_bytes(&bytes).map_err(|e| PushError::BadKey(e.to_string()))
}

/// Queues pushes and delivers them in the background.
pub struct Pusher {
    public_key: String,
    queue: mpsc::Sender<Notification>,
    config: PushConfig,
    endpoints: EndpointPolicy,
    metrics: Arc<Metrics>,
}

impl Pusher {
    /// Starts the delivery workers, or returns `Ok(None)` when no VAPID key is configured.
    pub fn start(
        config: &PushConfig,
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        broker: Arc<dyn Broker>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Option<Self>, PushError> {
        let Some(secret) = &config.vapid_private_key else {
            return Ok(None);
        };
        let key = load_key(secret)?;
        let public_key = Base64UrlUnpadded::encode_string(
            &key.public_key().public_key().to_bytes_uncompressed(),
        );
        let (queue, jobs) = mpsc::channel(config.queue.max(1));
        let endpoints = config.endpoint_policy();
        // No redirects (a push service never needs one, and each would be a new target to
        // check) and no proxy (it would resolve names our resolver never sees).
        let client = reqwest::Client::builder()
            .dns_resolver(endpoints.resolver())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(!config.allow_insecure_endpoints)
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs.max(1)))
            .timeout(Duration::from_secs(config.request_timeout_secs.max(1)))
            .build()
            .map_err(|e| PushError::BadKey(format!("HTTP client: {e}")))?;
        let worker = deliver::Worker {
            key: Arc::new(key),
            config: config.clone(),
            endpoints: endpoints.clone(),
            store,
            hub,
            broker,
            metrics: Arc::clone(&metrics),
            client,
            requests: Arc::new(tokio::sync::Semaphore::new(config.concurrency.max(1))),
            hosts: Arc::default(),
            users: Arc::default(),
        };
        tokio::spawn(deliver::run(worker, jobs, shutdown));
        Ok(Some(Self {
            public_key,
            queue,
            config: config.clone(),
            endpoints,
            metrics,
        }))
    }

    /// Checks a subscription before it is saved: its keys, and an endpoint this server would
    /// send to.
    pub fn validate(&self, subscription: &PushSubscription) -> Result<(), PushError> {
        validate_subscription(subscription, &self.endpoints)
    }

    /// How many subscriptions a user keeps (`max_subscriptions_per_user`, at least 1).
    pub fn max_subscriptions_per_user(&self) -> usize {
        self.config.max_subscriptions_per_user.max(1)
    }

    /// The VAPID public key browsers subscribe with (`applicationServerKey`).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The policy for a notification type.
    pub fn policy_for(&self, kind: &str) -> PushPolicy {
        self.config
            .type_policies
            .get(kind)
            .copied()
            .unwrap_or(self.config.policy)
    }

    /// Queues `notification` for push, when its policy allows; never waits.
    pub fn enqueue(&self, notification: &Notification) {
        if self.policy_for(notification.kind.as_str()) == PushPolicy::Never {
            return;
        }
        if self.queue.try_send(notification.clone()).is_err() {
            self.metrics.push_dropped.inc();
            tracing::warn!("push queue full: push dropped");
        }
    }
}

/// The `Topic` of digest pushes: a newer digest replaces an undelivered older one.
pub const DIGEST_TOPIC: &str = "belfry-digest";

/// The JSON a service worker receives (docs/push.md, version 1). Over 3 KiB of `data` is
/// left out (`data_truncated: true`): push services cap payloads near 4 KiB.
pub fn payload(notification: &Notification) -> Vec<u8> {
    payload_json(notification).to_string().into_bytes()
}

/// A digest push (docs/push.md): how many items a digest window held, and the newest one as
/// its usual payload.
pub fn digest_payload(count: usize, latest: &Notification) -> Vec<u8> {
    serde_json::json!({
        "v": 1,
        "digest": true,
        "user_id": latest.user_id,
        "count": count,
        "latest": payload_json(latest),
    })
    .to_string()
    .into_bytes()
}

fn payload_json(notification: &Notification) -> serde_json::Value {
    const MAX_DATA: usize = 3 * 1024;
    let data = notification.data.to_string();
    let (data, truncated) = if data.len() > MAX_DATA {
        (serde_json::Value::Null, true)
    } else {
        (notification.data.clone(), false)
    };
    serde_json::json!({
        "v": 1,
        "id": notification.id,
        "seq": notification.seq,
        "user_id": notification.user_id,
        "type": notification.kind,
        "group_key": notification.group_key,
        "count": notification.count,
        "actors": notification.actors,
        "actor_count": notification.actor_count,
        "created_at": rfc3339(notification.created_at),
        "updated_at": notification.updated_at.map(rfc3339),
        "data": data,
        "data_truncated": truncated,
    })
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_match() {
        let (private, public) = generate_vapid_keys();
        let pair = load_key(&SecretString::from(private)).unwrap();
        let derived = Base64UrlUnpadded::encode_string(
            &pair.public_key().public_key().to_bytes_uncompressed(),
        );
        assert_eq!(derived, public);
        assert_eq!(Base64UrlUnpadded::decode_vec(&public).unwrap().len(), 65);
    }

    #[test]
    fn subscriptions_are_validated() {
        let (_, public) = generate_vapid_keys();
        let good = PushSubscription {
            endpoint: "https://push.example/abc".into(),
            keys: SubscriptionKeys {
                p256dh: public,
                auth: Base64UrlUnpadded::encode_string(&[7u8; 16]),
            },
            expiration_time: None,
        };
        let policy = PushConfig::default().endpoint_policy();
        assert_eq!(validate_subscription(&good, &policy), Ok(()));
        let mut bad = good.clone();
        bad.endpoint = "ftp://x".into();
        assert!(validate_subscription(&bad, &policy).is_err());
        let mut bad = good.clone();
        bad.keys.auth = "AAAA".into();
        assert!(validate_subscription(&bad, &policy).is_err());
        let mut bad = good;
        bad.keys.p256dh = "not-a-key".into();
        assert!(validate_subscription(&bad, &policy).is_err());
    }
}
