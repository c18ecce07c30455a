//! A client that cannot keep up is disconnected with 4008 and recovers by resuming; it never
//! slows the other connections down.

use serde_json::json;

use crate::support::{Ended, metric, spawn_app_with, wait_until};

#[tokio::test]
async fn a_stalled_client_is_closed_as_slow_while_others_get_everything() {
    let app = spawn_app_with(|c| c.ws.outbox_frames = 8).await;
    let (mut stalled, _) = app.ws_ready("alice", None).await;
    let (mut reader, _) = app.ws_ready("alice", None).await;

    // Large frames fill the stalled client's socket buffers, then its outbox.
    let big = "x".repeat(15_000);
    let rounds = 400;
    let per_round = 4;
    let mut received = 0;
    for round in 0..rounds {
        let batch: Vec<_> = (0..per_round)
            .map(|i| json!({"recipients": ["alice"], "type": "bulk", "data": {"r": round, "i": i, "pad": big}}))
            .collect();
        let (status, _) = app
            .backend_post("/v1/notifications/batch", &json!({"notifications": batch}))
            .await;
        assert_eq!(status, 201);
        // The reader keeps up.
        while received < (round + 1) * per_round {
            let frame = reader.next_json().await;
            if frame["type"] == "notification" {
                received += 1;
                assert_eq!(frame["seq"], received);
            }
        }
        if metric(&app.metrics().await, "belfry_slow_disconnects_total") >= 1.0 {
            break;
        }
    }
    wait_until("the stalled client is counted as slow", || async {
        (metric(&app.metrics().await, "belfry_slow_disconnects_total") >= 1.0).then_some(())
    })
    .await;

    // The stalled client, reading at last, finds what was buffered and then the 4008 close.
    let mut last = 0;
    let ended = loop {
        match stalled.try_next_json(crate::support::DEADLINE).await {
            Ok(Some(frame)) => {
                if let Some(seq) = frame["seq"].as_i64() {
                    assert_eq!(seq, last + 1, "in order, without gaps");
                    last = seq;
                }
            }
            Ok(None) => panic!("no close frame"),
            Err(ended) => break ended,
        }
    };
    assert_eq!(ended, Ended::Closed(4008));
    assert!(
        last < received as i64,
        "it really fell behind ({last} of {received})"
    );

    // It resumes from where it was and catches up completely.
    let (mut resumed, _) = app.ws_ready("alice", Some(last)).await;
    for expected in last + 1..=received as i64 {
        let frame = resumed.next_of("notification").await;
        assert_eq!(frame["seq"], expected);
    }
}
