//! Rate limits: 429 with Retry-After, nothing stored, per API key and per recipient.

use serde_json::json;

use crate::support::{API_KEY, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_recipient_over_its_limit_gets_429_with_retry_after_and_nothing_is_stored() {
    let app = spawn_app_with(|c| {
        c.rate_limits.recipient_per_minute = 3;
    })
    .await;
    for _ in 0..3 {
        app.notify("alice", "t", json!({})).await;
    }
    let response = app
        .client
        .post(format!("{}/v1/notifications", app.base))
        .bearer_auth(API_KEY)
        .json(&json!({"recipients": ["bob", "alice"], "type": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(body["error"]["message"].as_str().unwrap().contains("alice"));

    let (_, bob) = app.get_as("bob", "/v1/me/unread-count").await;
    assert_eq!(bob["unread_count"], 0, "the whole request was refused");
    // Other recipients are not affected.
    app.notify("carol", "t", json!({})).await;
}

#[tokio::test]
async fn an_api_key_over_its_limit_gets_429() {
    let app = spawn_app_with(|c| {
        c.rate_limits.api_key_per_minute = 2;
    })
    .await;
    let body = json!({"recipients": ["a"], "type": "t"});
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(app.backend_post("/v1/notifications", &body).await.0);
    }
    assert_eq!(statuses, vec![201, 201, 429]);
}

#[tokio::test]
async fn limits_are_off_by_default() {
    let app = spawn_app().await;
    for _ in 0..50 {
        app.notify("alice", "t", json!({})).await;
    }
}
