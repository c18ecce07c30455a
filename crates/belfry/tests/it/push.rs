//! Web Push against a stand-in push service on loopback that verifies VAPID and decrypts with
//! independent implementations (tests/push_receiver.py: PyJWT and http_ece).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use secrecy::SecretString;
use serde_json::{Value, json};

use crate::support::{TestApp, metric, spawn_app_with, wait_until};

struct Receiver {
    child: Child,
    base: String,
    p256dh: String,
    auth: String,
}

impl Receiver {
    fn start() -> Receiver {
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

    fn subscription(&self, name: &str) -> Value {
        json!({
            "endpoint": format!("{}/push/{name}", self.base),
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
            "expirationTime": null,
        })
    }

    async fn received(&self) -> Vec<Value> {
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
    let (private, _) = belfry::push::generate_vapid_keys();
    spawn_app_with(|c| {
        c.push.vapid_private_key = Some(SecretString::from(private));
        c.push.subject = "mailto:ops@belfry.test".into();
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

    let mut ids = Vec::new();
    for i in 0..3 {
        let (status, body) = app
            .backend_post(
                "/v1/notifications",
                &json!({"recipients": ["alice", "bob"], "type": "comment.created",
                        "data": {"i": i}, "group_key": "post:7"}),
            )
            .await;
        assert_eq!(status, 201);
        ids.push(body["notifications"][0]["id"].as_str().unwrap().to_owned());
    }
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
    let got_ids: Vec<&str> = alice
        .iter()
        .map(|r| r["payload"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(got_ids.len(), 3);
    for id in &ids {
        assert_eq!(
            got_ids.iter().filter(|g| *g == id).count(),
            1,
            "exactly one push for {id}"
        );
    }
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
