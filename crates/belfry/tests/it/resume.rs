//! Gap-free resume: a client that reconnects with the last seq it saw receives exactly what it
//! missed, in order, then live notifications; nothing lost, nothing twice, even while
//! notifications are being published concurrently with the reconnects.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng;
use serde_json::json;

use crate::support::{DEADLINE, spawn_app};

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
