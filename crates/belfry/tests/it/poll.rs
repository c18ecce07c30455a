//! Long-poll: immediate answers when there is news, a wait that wakes on a new notification,
//! and an empty answer at the timeout.

use serde_json::json;

use crate::support::spawn_app;

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
