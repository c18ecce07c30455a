//! Long-poll: immediate answers when there is news, a wait that wakes on a new notification,
//! and an empty answer at the timeout.

use serde_json::json;

use crate::support::{spawn_app, spawn_app_with};

#[tokio::test]
async fn a_poll_with_news_answers_at_once() {
    let app = spawn_app().await;
    app.notify("alice", "t", json!({})).await;
    app.notify("alice", "t", json!({})).await;
    let (status, body) = app.get_as("alice", "/v1/poll?after=1&timeout=30").await;
    assert_eq!(status, 200);
    assert_eq!(body["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(body["notifications"][0]["seq"], 2);
    assert_eq!(body["last_seq"], 2);
    assert_eq!(body["unread_count"], 2);
}

#[tokio::test]
async fn a_waiting_poll_wakes_when_a_notification_arrives() {
    let app = std::sync::Arc::new(spawn_app().await);
    let poller = {
        let app = app.clone();
        tokio::spawn(async move { app.get_as("alice", "/v1/poll?after=0&timeout=30").await })
    };
    // Publish once the poll is waiting (it holds a live connection in the hub).
    crate::support::wait_until("the poll is waiting", || async {
        (app.state
            .hub
            .connections_of(&belfry::model::UserId::parse("alice").unwrap())
            == 1)
            .then_some(())
    })
    .await;
    app.notify("bob", "not.for.alice", json!({})).await;
    app.notify("alice", "wake", json!({})).await;
    let (status, body) = tokio::time::timeout(crate::support::DEADLINE, poller)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["notifications"][0]["type"], "wake");
    assert_eq!(body["last_seq"], 1);
}

#[tokio::test]
async fn a_poll_with_no_news_answers_empty_at_the_timeout() {
    let app = spawn_app().await;
    let (status, body) = app.get_as("alice", "/v1/poll?after=0&timeout=1").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"notifications": [], "last_seq": 0, "unread_count": 0, "state_version": 0})
    );
    let (status, body) = app.get_as("alice", "/v1/poll?timeout=999").await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test]
async fn a_poll_never_answers_after_its_tokens_exp() {
    let app = spawn_app_with(|c| c.auth.leeway_secs = 0).await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(crate::support::JWT_SECRET.as_bytes()),
    )
    .unwrap();
    // A wait of 50 s would end long after the token: it ends at `exp`, with a 401.
    let response = tokio::time::timeout(
        crate::support::DEADLINE,
        app.client
            .get(format!("{}/v1/poll?after=0&timeout=50", app.base))
            .bearer_auth(&token)
            .send(),
    )
    .await
    .expect("the poll was still waiting after its token expired")
    .unwrap();
    let ended = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(response.status(), 401);
    assert!(ended >= exp, "answered at {ended}, before exp {exp}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("token expired at "),
        "{body}"
    );
}
