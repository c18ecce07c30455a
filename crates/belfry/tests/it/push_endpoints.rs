//! Push endpoints are chosen by users, so Belfry must not be made to POST into its own network
//! (SSRF): https only, public addresses only (literal, or after resolution when sending), no
//! redirects followed, and the operator's allow-list of push services.

use std::io::ErrorKind;
use std::net::TcpListener;

use belfry::model::{PushSubscription, SubscriptionKeys, UserId};
use serde_json::{Value, json};

use crate::push::{Receiver, push_app_with};
use crate::support::{TestApp, metric, wait_until};

/// Well-formed keys, so that only the endpoint can be wrong.
fn subscription_to(endpoint: &str) -> Value {
    let (_, public) = belfry::push::generate_vapid_keys();
    json!({"endpoint": endpoint, "keys": {"p256dh": public, "auth": "BwcHBwcHBwcHBwcHBwcHBw"}})
}

async fn strict_app() -> TestApp {
    push_app_with(|c| c.push.allow_insecure_endpoints = false).await
}

async fn assert_endpoint_refused(app: &TestApp, endpoint: &str) {
    let (status, body) = app
        .post_as(
            "mallory",
            "/v1/me/push-subscriptions",
            subscription_to(endpoint),
        )
        .await;
    assert_eq!(status, 422, "{endpoint}: {body}");
    assert_eq!(body["error"]["code"], "validation", "{endpoint}: {body}");
    assert!(
        body["error"]["fields"]["endpoint"].is_string(),
        "{endpoint}: {body}"
    );
}

/// Stores a subscription without the API's checks, as one saved before the rules (or the
/// allow-list) changed would be.
async fn store_directly(app: &TestApp, user: &str, endpoint: &str, receiver: Option<&Receiver>) {
    let (p256dh, auth) = match receiver {
        Some(r) => (r.p256dh.clone(), r.auth.clone()),
        None => (
            belfry::push::generate_vapid_keys().1,
            "BwcHBwcHBwcHBwcHBwcHBw".to_owned(),
        ),
    };
    let subscription = PushSubscription {
        endpoint: endpoint.to_owned(),
        keys: SubscriptionKeys { p256dh, auth },
        expiration_time: None,
    };
    app.state
        .store
        .add_push_subscription(&UserId::parse(user).unwrap(), &subscription, 10)
        .await
        .unwrap();
}

#[tokio::test]
async fn subscriptions_to_plain_http_or_non_public_addresses_are_refused_with_422_naming_endpoint()
{
    let app = strict_app().await;
    for endpoint in [
        "http://127.0.0.1:9/internal/admin",
        "http://push.example/x",
        "https://127.0.0.1:9/internal/admin",
        "https://2130706433/internal",
        "https://0x7f.0.0.1/internal",
        "https://[::1]:9/internal",
        "https://[::ffff:127.0.0.1]/internal",
        "https://[::ffff:a9fe:a9fe]/latest/meta-data",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.5/x",
        "https://172.16.0.1/x",
        "https://192.168.1.1/x",
        "https://100.64.0.1/x",
        "https://0.0.0.0/x",
        "https://[::]/x",
        "https://[fd00::1]/x",
        "https://[fe80::1]/x",
        "https://224.0.0.1/x",
        "https://[ff02::1]/x",
        "https://user:secret@push.example/x",
        "https://push.example/a\u{0}b",
    ] {
        assert_endpoint_refused(&app, endpoint).await;
    }
    let (status, body) = app
        .post_as(
            "mallory",
            "/v1/me/push-subscriptions",
            subscription_to("https://push.example/fine"),
        )
        .await;
    assert_eq!(status, 201, "a public https endpoint is accepted: {body}");

    // The development setting admits http and loopback, nothing else.
    let dev = push_app_with(|_| {}).await;
    let (status, body) = dev
        .post_as(
            "mallory",
            "/v1/me/push-subscriptions",
            subscription_to("http://127.0.0.1:9/push/x"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for endpoint in ["http://10.0.0.5/x", "https://[fe80::1]/x"] {
        assert_endpoint_refused(&dev, endpoint).await;
    }
}

#[tokio::test]
async fn pushes_never_connect_to_a_loopback_address_by_name_or_from_a_subscription_stored_earlier()
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = strict_app().await;
    // A name is accepted when saved; what it resolves to is checked when sending.
    let (status, body) = app
        .post_as(
            "mallory",
            "/v1/me/push-subscriptions",
            subscription_to(&format!("https://localhost:{port}/internal")),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    store_directly(
        &app,
        "trudy",
        &format!("http://127.0.0.1:{port}/internal"),
        None,
    )
    .await;

    let (status, _) = app
        .backend_post(
            "/v1/notifications",
            &json!({"recipients": ["mallory", "trudy"], "type": "t"}),
        )
        .await;
    assert_eq!(status, 201);
    wait_until("both pushes are refused", || async {
        (metric(&app.metrics().await, "belfry_push_refused_total") == 2.0).then_some(())
    })
    .await;
    // A connection made before the refusal would be waiting in the backlog.
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the server connected to loopback: {other:?}"),
    }
    let text = app.metrics().await;
    assert_eq!(metric(&text, "belfry_push_sent_total"), 0.0);
    assert_eq!(metric(&text, "belfry_push_retried_total"), 0.0);
}

#[tokio::test]
async fn a_redirect_from_a_push_service_is_not_followed() {
    let receiver = Receiver::start();
    let app = push_app_with(|_| {}).await;
    let (status, _) = app
        .post_as(
            "oscar",
            "/v1/me/push-subscriptions",
            receiver.subscription("redirect"),
        )
        .await;
    assert_eq!(status, 201);
    app.backend_post(
        "/v1/notifications",
        &json!({"recipients": ["oscar"], "type": "t"}),
    )
    .await;
    wait_until("the redirected push fails", || async {
        (metric(&app.metrics().await, "belfry_push_failed_total") == 1.0).then_some(())
    })
    .await;
    let text = app.metrics().await;
    assert_eq!(metric(&text, "belfry_push_sent_total"), 0.0);
    assert_eq!(
        metric(&text, "belfry_push_retried_total"),
        0.0,
        "not retried"
    );
    assert!(
        receiver
            .received()
            .await
            .iter()
            .all(|r| r["name"] != "redirected"),
        "the redirect target got the push"
    );
}

#[tokio::test]
async fn the_allow_list_of_push_services_is_checked_when_saving_and_before_each_push() {
    let receiver = Receiver::start();
    let app = push_app_with(|c| {
        c.push.allowed_hosts = vec!["127.0.0.1".to_owned().try_into().unwrap()];
    })
    .await;
    let (status, body) = app
        .post_as(
            "peggy",
            "/v1/me/push-subscriptions",
            receiver.subscription("listed"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let unlisted = format!(
        "{}/push/unlisted",
        receiver.base.replace("127.0.0.1", "localhost")
    );
    let (status, body) = app
        .post_as(
            "peggy",
            "/v1/me/push-subscriptions",
            receiver.subscription_at(&unlisted),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["fields"]["endpoint"].is_string(), "{body}");
    // Saved before the list was set: refused when sending.
    store_directly(&app, "peggy", &unlisted, Some(&receiver)).await;

    app.backend_post(
        "/v1/notifications",
        &json!({"recipients": ["peggy"], "type": "t"}),
    )
    .await;
    wait_until("one push sent, one refused", || async {
        let text = app.metrics().await;
        (metric(&text, "belfry_push_sent_total") == 1.0
            && metric(&text, "belfry_push_refused_total") == 1.0)
            .then_some(())
    })
    .await;
    let names: Vec<Value> = receiver
        .received()
        .await
        .into_iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(names, [json!("listed")]);
}

#[tokio::test]
async fn a_bad_allow_list_entry_is_a_configuration_error() {
    for bad in ["", "*.", "https://fcm.googleapis.com", "*.10.0.0.1"] {
        let error = belfry::Config::load(
            None,
            figment::Figment::from(figment::providers::Serialized::default(
                "push.allowed_hosts",
                [bad],
            )),
        )
        .err();
        assert!(
            error.is_some_and(|e| e.to_string().contains("push.allowed_hosts")),
            "{bad:?} accepted"
        );
    }
}
