//! Gap-free resume: a client that reconnects with the last seq it saw receives exactly what it
//! missed, in order, then live notifications; nothing lost, nothing twice, even while
//! notifications are being published concurrently with the reconnects.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng;
use serde_json::json;

use crate::support::{DEADLINE, TestApp, WsClient, metric, spawn_app};

#[tokio::test]
async fn reconnecting_with_since_replays_exactly_the_missed_notifications() {
    let app = spawn_app().await;
    for i in 1..=3 {
        app.notify("alice", "t", json!({"i": i})).await;
    }
    let (mut ws, hello) = app.ws_ready("alice", Some(1)).await;
    assert_eq!(hello["last_seq"], 3);
    assert_eq!(ws.next_json().await["seq"], 2);
    assert_eq!(ws.next_json().await["seq"], 3);
    app.notify("alice", "t", json!({"i": 4})).await;
    assert_eq!(ws.next_json().await["seq"], 4);
}

#[tokio::test]
async fn without_since_only_new_notifications_are_sent() {
    let app = spawn_app().await;
    app.notify("alice", "old", json!({})).await;
    let (mut ws, _) = app.ws_ready("alice", None).await;
    app.notify("alice", "new", json!({})).await;
    let frame = ws.next_json().await;
    assert_eq!(frame["notification"]["type"], "new");
    assert_eq!(frame["seq"], 2);
}

#[tokio::test]
async fn a_large_backlog_is_replayed_in_order_across_pages() {
    let app = spawn_app().await;
    let batch: Vec<_> = (0..600)
        .map(|i| json!({"recipients": ["alice"], "type": "t", "data": {"i": i}}))
        .collect();
    let (status, _) = app
        .backend_post("/v1/notifications/batch", &json!({"notifications": batch}))
        .await;
    assert_eq!(status, 201);
    let (mut ws, _) = app.ws_ready("alice", Some(0)).await;
    for expected in 1..=600 {
        assert_eq!(ws.next_json().await["seq"], expected);
    }
}

/// Publishes `total` notifications to alice from two concurrent publishers while a client
/// disconnects and reconnects at random; the client must see 1..=total exactly once, in order.
#[tokio::test]
async fn resume_loses_and_repeats_nothing_while_publishing_races_reconnects() {
    let app = Arc::new(spawn_app().await);
    let total: i64 = 400;
    let done = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for publisher in 0..2 {
        let app = Arc::clone(&app);
        publishers.push(tokio::spawn(async move {
            for i in 0..total / 2 {
                app.notify("alice", "race", json!({"p": publisher, "i": i}))
                    .await;
                if i % 25 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    let watcher = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            for p in publishers {
                p.await.unwrap();
            }
            done.store(true, Ordering::SeqCst);
        })
    };

    let mut seen: Vec<i64> = Vec::new();
    let mut last: i64 = 0;
    let mut reconnects = 0;
    let deadline = tokio::time::Instant::now() + DEADLINE * 3;
    while last < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck at seq {last}"
        );
        let since = if reconnects == 0 { Some(0) } else { Some(last) };
        let (mut ws, _) = app.ws_ready("alice", since).await;
        reconnects += 1;
        let budget = rand::rng().random_range(1..40);
        for _ in 0..budget {
            match ws.try_next_json(Duration::from_millis(500)).await {
                Ok(Some(frame)) if frame["type"] == "notification" => {
                    let seq = frame["seq"].as_i64().unwrap();
                    seen.push(seq);
                    last = seq;
                }
                Ok(Some(_)) => {}
                Ok(None) if done.load(Ordering::SeqCst) && last >= total => break,
                Ok(None) => {}
                Err(ended) => panic!("server ended the connection: {ended:?}"),
            }
        }
        // Half the time close politely, half the time just drop the socket.
        if rand::rng().random_bool(0.5) {
            ws.close().await;
        } else {
            drop(ws);
        }
    }
    watcher.await.unwrap();
    let expected: Vec<i64> = (1..=total).collect();
    assert_eq!(seen, expected, "after {reconnects} reconnects");
    assert!(
        reconnects > 5,
        "the test must actually reconnect ({reconnects})"
    );
}

#[tokio::test]
async fn a_since_beyond_the_last_seq_still_gets_new_notifications() {
    let app = spawn_app().await;
    app.notify("alice", "t", json!({})).await;
    // A client that remembers seq 50 from a database that has since been reset.
    let (mut ws, hello) = app.ws_ready("alice", Some(50)).await;
    assert_eq!(
        hello["last_seq"], 1,
        "hello tells the client where the server is"
    );
    app.notify("alice", "after.reset", json!({})).await;
    let frame = ws.next_json().await;
    assert_eq!(frame["seq"], 2);
    assert_eq!(frame["notification"]["type"], "after.reset");
}

/// Stores one notification for `user` without publishing it, as a commit whose publish has not
/// reached this node yet; returns it.
async fn store_unpublished(app: &TestApp, user: &str, i: u32) -> belfry::model::Notification {
    use belfry::model::{NewNotification, NotificationType, UserId};
    use belfry::store::Inserted;
    let new = NewNotification {
        recipients: vec![UserId::parse(user).unwrap()],
        kind: NotificationType::parse("swap").unwrap(),
        data: json!({ "i": i }),
        group_key: None,
        actor: None,
        idempotency_key: None,
        expires_at: None,
        muted: Default::default(),
        muted_action: Default::default(),
    };
    match app.state.store.insert(vec![new]).await.unwrap().pop() {
        Some(Inserted::New(mut list)) => list.pop().unwrap(),
        other => panic!("not stored: {other:?}"),
    }
}

fn publish(app: &TestApp, notification: &belfry::model::Notification) {
    let event = belfry::protocol::ServerFrame::delivering(notification).encode();
    app.state
        .hub
        .deliver(&notification.user_id, &std::sync::Arc::new(event));
}

/// No further notification frame arrives within 300 ms (other frames may).
async fn assert_no_more_notifications(ws: &mut WsClient) {
    let more = ws.try_next_json(Duration::from_millis(300)).await;
    assert!(
        !matches!(&more, Ok(Some(frame)) if frame["type"] == "notification"),
        "{more:?}"
    );
}

async fn feed_store_reads(app: &TestApp) -> f64 {
    metric(&app.metrics().await, "belfry_feed_store_reads_total")
}

#[tokio::test]
async fn notifications_published_out_of_order_go_out_in_order_without_a_store_read() {
    let app = spawn_app().await;
    let (mut ws, hello) = app.ws_ready("alice", None).await;
    assert_eq!(hello["last_seq"], 0);
    let first = store_unpublished(&app, "alice", 1).await;
    let second = store_unpublished(&app, "alice", 2).await;
    let third = store_unpublished(&app, "alice", 3).await;
    // 3 and 2 reach the outbox before 1, as when concurrent requests commit in one group.
    publish(&app, &third);
    publish(&app, &second);
    publish(&app, &first);
    for expected in 1..=3 {
        let frame = ws.next_of("notification").await;
        assert_eq!(frame["seq"], expected);
        assert_eq!(frame["notification"]["data"]["i"], expected);
    }
    // The held-back notifications came from the outbox: the store was not read.
    assert_eq!(feed_store_reads(&app).await, 0.0);
    // And nothing came twice.
    assert_no_more_notifications(&mut ws).await;
}

#[tokio::test]
async fn a_gap_the_outbox_does_not_fill_is_read_from_the_store_after_the_hold() {
    let app = spawn_app().await;
    let (mut ws, _) = app.ws_ready("alice", None).await;
    let _lost = store_unpublished(&app, "alice", 1).await;
    let second = store_unpublished(&app, "alice", 2).await;
    // 1's publish never arrives (a broker that dropped it): 2 waits, then the store fills 1.
    let published = std::time::Instant::now();
    publish(&app, &second);
    let frame = ws.next_of("notification").await;
    assert_eq!(frame["seq"], 1);
    assert!(
        published.elapsed() >= belfry::transport::GAP_HOLD,
        "read before the hold ended: {:?}",
        published.elapsed()
    );
    assert_eq!(ws.next_of("notification").await["seq"], 2);
    assert!(feed_store_reads(&app).await >= 1.0);
}

#[tokio::test]
async fn a_state_change_behind_held_notifications_goes_out_after_them() {
    let app = spawn_app().await;
    let (mut ws, _) = app.ws_ready("alice", None).await;
    let first = store_unpublished(&app, "alice", 1).await;
    let second = store_unpublished(&app, "alice", 2).await;
    publish(&app, &second);
    // A read-all while 2 is held back: the store fills the gap at once, then the state frame.
    let (status, body) = app
        .post_as("alice", "/v1/me/notifications/read-all", json!({}))
        .await;
    assert!(status == 200 || status == 204, "{status} {body}");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let frame = ws.next_json().await;
        match frame["type"].as_str() {
            Some("notification") => seen.push(format!("n{}", frame["seq"])),
            Some("state") => seen.push("state".into()),
            _ => {}
        }
    }
    assert_eq!(seen, ["n1", "n2", "state"]);
    publish(&app, &first);
    assert_no_more_notifications(&mut ws).await;
}
