//! Retention deletes expired, over-cap notifications and stale idempotency keys in small
//! batches, while writes go on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use crate::support::{spawn_app_with, wait_until};

#[tokio::test]
async fn the_per_user_cap_holds_while_a_write_load_runs() {
    let app = Arc::new(
        spawn_app_with(|c| {
            c.retention.per_user_cap = 20;
            c.retention.batch_size = 7;
            c.retention.pause_ms = 0;
        })
        .await,
    );
    // Each round of writes waits for a retention pass since the previous round, so pruning and
    // writing interleave however fast either side is.
    let passes = Arc::new(AtomicUsize::new(0));
    let writer = {
        let app = Arc::clone(&app);
        let passes = Arc::clone(&passes);
        tokio::spawn(async move {
            for round in 0..30 {
                let batch: Vec<_> = (0..10)
                    .map(|i| json!({"recipients": ["alice", "bob"], "type": "t", "data": {"n": round * 10 + i}}))
                    .collect();
                let (status, body) = app
                    .backend_post("/v1/notifications/batch", &json!({"notifications": batch}))
                    .await;
                assert_eq!(status, 201, "writes keep succeeding: {body}");
                let seen = passes.load(Ordering::SeqCst);
                wait_until("a retention pass after this write", || async {
                    (passes.load(Ordering::SeqCst) > seen).then_some(())
                })
                .await;
            }
        })
    };
    while !writer.is_finished() {
        belfry::retention::prune_once(app.state.store.as_ref(), &app.config)
            .await
            .unwrap();
        passes.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    belfry::retention::prune_once(app.state.store.as_ref(), &app.config)
        .await
        .unwrap();
    assert!(
        passes.load(Ordering::SeqCst) >= 30,
        "retention ran between the writes"
    );
    for user in ["alice", "bob"] {
        let (_, page) = app.get_as(user, "/v1/me/notifications?limit=100").await;
        let seqs: Vec<i64> = page["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (281..=300).rev().collect::<Vec<_>>(),
            "{user} keeps the newest 20"
        );
        assert_eq!(page["last_seq"], 300, "sequences are never reused");
    }
}

#[tokio::test]
async fn expired_notifications_and_stale_idempotency_keys_are_deleted() {
    let app = spawn_app_with(|c| c.limits.idempotency_window_secs = 1).await;
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::seconds(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, _) = app
        .backend_post(
            "/v1/notifications",
            &json!({"recipients": ["alice"], "type": "t", "expires_at": soon, "idempotency_key": "k1"}),
        )
        .await;
    assert_eq!(status, 201);
    let deleted = std::sync::atomic::AtomicU64::new(0);
    wait_until("the expired row and the stale key are deleted", || async {
        let n = belfry::retention::prune_once(app.state.store.as_ref(), &app.config)
            .await
            .unwrap();
        let total = deleted.fetch_add(n, std::sync::atomic::Ordering::SeqCst) + n;
        (total >= 2).then_some(())
    })
    .await;
    assert_eq!(deleted.into_inner(), 2, "one notification, one key");
    // The key is forgotten: the same key stores a new notification.
    let (status, _) = app
        .backend_post(
            "/v1/notifications",
            &json!({"recipients": ["alice"], "type": "t", "idempotency_key": "k1"}),
        )
        .await;
    assert_eq!(status, 201);
}
