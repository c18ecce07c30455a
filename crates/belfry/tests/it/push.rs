//! Web Push against a stand-in push service on loopback that verifies VAPID and decrypts with
//! independent implementations (tests/push_receiver.py: PyJWT and http_ece). It is plain http on
//! loopback, which only `push.allow_insecure_endpoints` admits: every app here sets it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use secrecy::SecretString;
use serde_json::{Value, json};

use crate::support::{TestApp, metric, spawn_app_with, wait_until};

pub(crate) struct Receiver {
    child: Child,
    pub base: String,
    pub p256dh: String,
    pub auth: String,
}

impl Receiver {
    pub fn start() -> Receiver {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/push_receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with http_ece, pyjwt, cryptography (scripts/install-deps.sh)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let info: Value = serde_json::from_str(&line).expect("receiver did not start");
        Receiver {
            child,
            base: format!("http://127.0.0.1:{}", info["port"]),
            p256dh: info["p256dh"].as_str().unwrap().to_owned(),
            auth: info["auth"].as_str().unwrap().to_owned(),
        }
    }

    pub fn subscription(&self, name: &str) -> Value {
        json!({
            "endpoint": format!("{}/push/{name}", self.base),
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
            "expirationTime": null,
        })
    }

    /// A subscription with this receiver's keys and another endpoint.
    pub fn subscription_at(&self, endpoint: &str) -> Value {
        json!({
            "endpoint": endpoint,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        })
    }

    pub async fn received(&self) -> Vec<Value> {
        reqwest::get(format!("{}/received", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn push_app() -> TestApp {
    push_app_with(|_| {}).await
}

/// A server with push on, admitting the loopback http receiver, then `tweak`ed.
pub(crate) async fn push_app_with(tweak: impl FnOnce(&mut belfry::Config)) -> TestApp {
    let (private, _) = belfry::push::generate_vapid_keys();
    spawn_app_with(|c| {
        c.push.vapid_private_key = Some(SecretString::from(private));
        c.push.subject = "mailto:ops@belfry.test".into();
        c.push.allow_insecure_endpoints = true;
        tweak(c);
    })
    .await
}

#[tokio::test]
async fn offline_users_get_one_verified_push_per_notification_and_online_users_none() {
    let receiver = Receiver::start();
    let app = push_app().await;
    let (status, key) = app.get_as("x", "/v1/push/vapid-public-key").await;
    assert_eq!(status, 200);
    assert_eq!(key["public_key"].as_str().unwrap().len(), 87);
    for user in ["alice", "bob"] {
        let (status, body) = app
            .post_as(
                user,
                "/v1/me/push-subscriptions",
                receiver.subscription(user),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (_bob_tab, _) = app.ws_ready("bob", None).await;

    // Three events of one group: one inbox item, pushed once per event under one Topic, so
    // the push service replaces an undelivered older push with the newer count.
    let mut ids = Vec::new();
    for i in 0..3 {
        let (status, body) = app
            .backend_post(
                "/v1/notifications",
                &json!({"recipients": ["alice", "bob"], "type": "comment.created",
                        "data": {"i": i}, "group_key": "post:7", "actor": format!("a{i}")}),
            )
            .await;
        assert_eq!(status, 201);
        ids.push(body["notifications"][0]["id"].as_str().unwrap().to_owned());
    }
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one grouped item: {ids:?}"
    );
    let pushes = wait_until("alice's three pushes arrive", || async {
        let got = receiver.received().await;
        (got.iter().filter(|r| r["name"] == "alice").count() >= 3).then_some(got)
    })
    .await;
    assert!(
        pushes.iter().all(|r| r.get("error").is_none()),
        "{pushes:?}"
    );
    let alice: Vec<&Value> = pushes.iter().filter(|r| r["name"] == "alice").collect();
    assert_eq!(alice.len(), 3);
    let mut counts: Vec<i64> = alice
        .iter()
        .map(|r| {
            assert_eq!(r["payload"]["id"], ids[0].as_str());
            r["payload"]["count"].as_i64().unwrap()
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, [1, 2, 3], "one push per event");
    assert!(alice.iter().all(|r| r["topic"] == alice[0]["topic"]));
    let first = alice[0];
    assert_eq!(first["payload"]["v"], 1);
    assert_eq!(first["payload"]["type"], "comment.created");
    assert_eq!(first["payload"]["user_id"], "alice");
    assert_eq!(first["urgency"], "normal");
    assert_eq!(first["ttl"], "43200");
    assert_eq!(first["topic"].as_str().unwrap().len(), 32);

    wait_until("bob's pushes are skipped as online", || async {
        (metric(&app.metrics().await, "belfry_push_skipped_online_total") >= 3.0).then_some(())
    })
    .await;
    assert!(receiver.received().await.iter().all(|r| r["name"] != "bob"));
}

#[tokio::test]
async fn a_410_removes_the_subscription_and_a_503_is_retried() {
    let receiver = Receiver::start();
    let app = push_app().await;
    for (user, name) in [("carol", "gone"), ("dave", "flaky")] {
        let (status, _) = app
            .post_as(
                user,
                "/v1/me/push-subscriptions",
                receiver.subscription(name),
            )
            .await;
        assert_eq!(status, 201);
    }
    app.backend_post(
        "/v1/notifications",
        &json!({"recipients": ["carol", "dave"], "type": "t"}),
    )
    .await;
    wait_until("dave's push gets through after one 503", || async {
        receiver
            .received()
            .await
            .iter()
            .any(|r| r["name"] == "flaky")
            .then_some(())
    })
    .await;
    wait_until("carol's gone subscription is removed", || async {
        (metric(&app.metrics().await, "belfry_push_pruned_total") == 1.0).then_some(())
    })
    .await;
    let text = app.metrics().await;
    assert!(metric(&text, "belfry_push_retried_total") >= 1.0);
    assert_eq!(metric(&text, "belfry_push_sent_total"), 1.0);
    // Removed: carol's next notification is not pushed at all.
    let (status, _) = app
        .user_request(
            reqwest::Method::DELETE,
            "carol",
            "/v1/me/push-subscriptions",
            Some(receiver.subscription("gone")),
        )
        .await;
    assert_eq!(status, 404, "already pruned");
}

#[tokio::test]
async fn bad_subscriptions_are_refused_and_push_can_be_off() {
    let app = push_app().await;
    let (status, body) = app
        .post_as(
            "alice",
            "/v1/me/push-subscriptions",
            json!({"endpoint": "ftp://x", "keys": {"p256dh": "AAAA", "auth": "AAAA"}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["fields"].get("endpoint").is_some());
    let off = crate::support::spawn_app().await;
    let (status, _) = off.get_as("alice", "/v1/push/vapid-public-key").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn preferences_stop_pushes_for_a_muted_type_or_channel() {
    let receiver = Receiver::start();
    // One slot everywhere: pushes are prepared and sent one at a time, in the order queued.
    let app = push_app_with(|c| {
        c.push.concurrency = 1;
        c.push.per_host_concurrency = 1;
    })
    .await;
    let (status, _) = app
        .post_as(
            "erin",
            "/v1/me/push-subscriptions",
            receiver.subscription("erin"),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = app
        .user_request(
            reqwest::Method::PUT,
            "erin",
            "/v1/me/preferences",
            Some(json!({"types": {"quiet.push": {"web_push": false},
                                  "quiet.app": {"in_app": false}}})),
        )
        .await;
    assert_eq!(status, 200);
    for kind in ["quiet.push", "quiet.app", "loud"] {
        let (status, _) = app
            .backend_post(
                "/v1/notifications",
                &json!({"recipients": ["erin"], "type": kind}),
            )
            .await;
        assert_eq!(status, 201);
    }
    // Pushes go out in order with one slot: once "loud" arrived, the others would have.
    let got = wait_until("the unmuted push arrives", || async {
        let got = receiver.received().await;
        got.iter()
            .any(|r| r["payload"]["type"] == "loud")
            .then_some(got)
    })
    .await;
    let types: Vec<&Value> = got.iter().map(|r| &r["payload"]["type"]).collect();
    assert_eq!(types, [&json!("loud")], "{got:?}");
}

#[tokio::test]
async fn a_digest_window_sends_one_push_for_a_burst() {
    let receiver = Receiver::start();
    let app = push_app_with(|c| c.push.digest_window_secs = 1).await;
    let (status, _) = app
        .post_as(
            "frank",
            "/v1/me/push-subscriptions",
            receiver.subscription("frank"),
        )
        .await;
    assert_eq!(status, 201);
    for i in 0..3 {
        let (status, _) = app
            .backend_post(
                "/v1/notifications",
                &json!({"recipients": ["frank"], "type": "comment.created", "data": {"i": i}}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let digest = wait_until("the digest arrives", || async {
        receiver
            .received()
            .await
            .into_iter()
            .find(|r| r["name"] == "frank")
    })
    .await;
    assert_eq!(digest["payload"]["digest"], true, "{digest}");
    assert_eq!(digest["payload"]["count"], 3);
    assert_eq!(digest["payload"]["latest"]["data"]["i"], 2);
    assert_eq!(digest["topic"], "belfry-digest");

    // The window closed with the digest: the next notification opens a new one and goes alone.
    app.backend_post(
        "/v1/notifications",
        &json!({"recipients": ["frank"], "type": "comment.created", "data": {"i": 3}}),
    )
    .await;
    let got = wait_until("the next window's push arrives", || async {
        let got = receiver.received().await;
        (got.iter().filter(|r| r["name"] == "frank").count() >= 2).then_some(got)
    })
    .await;
    let frank: Vec<&Value> = got.iter().filter(|r| r["name"] == "frank").collect();
    assert_eq!(frank.len(), 2, "{got:?}");
    assert_eq!(frank[1]["payload"]["data"]["i"], 3);
    assert!(frank[1]["payload"].get("digest").is_none());
}
