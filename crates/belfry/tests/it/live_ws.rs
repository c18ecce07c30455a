//! Live delivery over WebSocket: every tab of the user, no other user, read state in sync.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Ended, metric, spawn_app, spawn_app_with, wait_until};

#[tokio::test]
async fn hello_carries_the_unread_count_and_last_seq() {
    let app = spawn_app().await;
    app.notify("alice", "t", json!({})).await;
    app.notify("alice", "t", json!({})).await;
    let (_ws, hello) = app.ws_ready("alice", None).await;
    assert_eq!(hello["v"], 1);
    assert_eq!(hello["unread_count"], 2);
    assert_eq!(hello["last_seq"], 2);
    assert!(hello["heartbeat_ms"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn a_notification_reaches_every_tab_of_its_user_and_no_one_else() {
    let app = spawn_app().await;
    let (mut tab1, _) = app.ws_ready("alice", None).await;
    let (mut tab2, _) = app.ws_ready("alice", None).await;
    let (mut bob, _) = app.ws_ready("bob", None).await;

    app.notify("alice", "comment.created", json!({"preview": "hi"}))
        .await;
    for tab in [&mut tab1, &mut tab2] {
        let frame = tab.next_json().await;
        assert_eq!(frame["type"], "notification");
        assert_eq!(frame["seq"], 1);
        assert_eq!(frame["notification"]["data"]["preview"], "hi");
        assert_eq!(frame["notification"]["user_id"], "alice");
    }
    // Bob's next frame is his own notification, not alice's.
    app.notify("bob", "for.bob", json!({})).await;
    let frame = bob.next_json().await;
    assert_eq!(frame["notification"]["type"], "for.bob");
    assert_eq!(frame["notification"]["user_id"], "bob");
}

#[tokio::test]
async fn reading_in_one_tab_updates_the_badge_in_all_tabs() {
    let app = spawn_app().await;
    let (mut tab1, _) = app.ws_ready("alice", None).await;
    let (mut tab2, _) = app.ws_ready("alice", None).await;
    app.notify("alice", "t", json!({})).await;
    app.notify("alice", "t", json!({})).await;
    let id = tab1.next_json().await["notification"]["id"].clone();
    tab1.next_json().await;
    tab2.next_json().await;
    tab2.next_json().await;

    tab1.send_json(json!({"type": "mark_read", "ids": [id], "ref": 3}))
        .await;
    let state = tab2.next_json().await;
    assert_eq!(state["type"], "state");
    assert_eq!(state["change"], "read");
    assert_eq!(state["ids"], json!([id]));
    assert_eq!(state["unread_count"], 1);
    let mut saw_ack = false;
    let mut saw_state = false;
    while !(saw_ack && saw_state) {
        let frame = tab1.next_json().await;
        saw_ack |= frame == json!({"type": "ack", "ref": 3});
        saw_state |= frame["type"] == "state";
    }

    // read-all over HTTP reaches both tabs too.
    let (status, _) = app
        .post_as("alice", "/v1/me/notifications/read-all", json!({}))
        .await;
    assert_eq!(status, 200);
    for tab in [&mut tab1, &mut tab2] {
        let state = tab.next_of("state").await;
        assert_eq!(state["all"], true);
        assert_eq!(state["up_to_seq"], 2);
        assert_eq!(state["unread_count"], 0);
    }
}

#[tokio::test]
async fn ping_frames_are_answered_and_bad_frames_get_an_error_not_a_close() {
    let app = spawn_app().await;
    let (mut ws, _) = app.ws_ready("alice", None).await;
    ws.send_json(json!({"type": "ping", "ref": 5})).await;
    assert_eq!(ws.next_json().await, json!({"type": "pong", "ref": 5}));
    ws.stream
        .send(Message::Text("not json".into()))
        .await
        .unwrap();
    let error = ws.next_json().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "bad_frame");
    ws.send_json(json!({"type": "launch_missiles"})).await;
    assert_eq!(ws.next_json().await["code"], "bad_frame");
    // Still open.
    ws.send_json(json!({"type": "ping"})).await;
    assert_eq!(ws.next_json().await, json!({"type": "pong"}));
}

#[tokio::test]
async fn an_oversized_client_frame_closes_with_1009() {
    let app = spawn_app_with(|c| c.ws.max_frame_bytes = 1024).await;
    let (mut ws, _) = app.ws_ready("alice", None).await;
    ws.send_json(json!({"type": "mark_read", "ids": ["x".repeat(1500)]}))
        .await;
    assert_eq!(ws.closed().await, Ended::Closed(1009));
}

#[tokio::test]
async fn an_unsupported_protocol_version_closes_with_4501() {
    let app = spawn_app().await;
    let mut ws = crate::support::WsClient::connect(&format!(
        "{}/v1/ws?v=2&token={}",
        app.ws_base,
        app.token("alice")
    ))
    .await;
    assert_eq!(ws.closed().await, Ended::Closed(4501));
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_dropped_with_4009() {
    let app = spawn_app_with(|c| c.ws.heartbeat_interval_secs = 1).await;
    let (mut silent, _) = app.ws_ready("alice", None).await;
    // Not reading means not answering pings: the server must give up on this connection.
    wait_until("the silent connection is dropped", || async {
        (metric(&app.metrics().await, "belfry_connections") == 0.0).then_some(())
    })
    .await;
    assert_eq!(silent.closed().await, Ended::Closed(4009));
    // A client that reads (and so answers pings) stays connected through several intervals.
    let (mut live, _) = app.ws_ready("alice", None).await;
    assert!(matches!(
        live.try_next_json(Duration::from_millis(3500)).await,
        Ok(None)
    ));
    app.notify("alice", "still.here", json!({})).await;
    assert_eq!(live.next_json().await["notification"]["type"], "still.here");
}

#[tokio::test]
async fn too_many_connections_for_one_user_are_refused_with_4429() {
    let app = spawn_app_with(|c| c.ws.max_connections_per_user = 2).await;
    let (_a, _) = app.ws_ready("alice", None).await;
    let (_b, _) = app.ws_ready("alice", None).await;
    let mut third = app.ws("alice", None).await;
    assert_eq!(third.closed().await, Ended::Closed(4429));
    let (_bob, _) = app.ws_ready("bob", None).await;
}

#[tokio::test]
async fn metrics_count_connections_and_deliveries() {
    let app = spawn_app().await;
    let (mut ws, _) = app.ws_ready("alice", None).await;
    app.notify("alice", "t", json!({})).await;
    ws.next_json().await;
    let text = app.metrics().await;
    assert_eq!(metric(&text, "belfry_connections"), 1.0);
    assert_eq!(metric(&text, "belfry_notifications_stored_total"), 1.0);
    wait_until("the delivery is counted", || async {
        (metric(&app.metrics().await, "belfry_notifications_delivered_total") == 1.0).then_some(())
    })
    .await;
    assert!(text.contains("belfry_delivery_latency_seconds_bucket"));
}
