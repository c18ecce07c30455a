//! SQLite only: the WAL is checkpointed beside the writer, not by it. Committed pages reach the
//! database file while the server runs (the writer's own autocheckpoint is set far above what
//! these writes fill), and a graceful stop leaves an empty WAL behind.

use serde_json::json;

use crate::support::{TEST_DATABASE_URL, spawn_app, wait_until};

fn on_sqlite() -> bool {
    let postgres = std::env::var(TEST_DATABASE_URL).is_ok_and(|url| !url.is_empty());
    if postgres {
        eprintln!("skipped: SQLite only (unset {TEST_DATABASE_URL})");
    }
    !postgres
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[tokio::test]
async fn the_checkpointer_copies_the_wal_into_the_database_and_a_stop_truncates_it() {
    if !on_sqlite() {
        return;
    }
    let mut app = spawn_app().await;
    let db = app.dir.path().join("belfry.db");
    let wal = app.dir.path().join("belfry.db-wal");
    let before = file_len(&db);

    // ~1 MiB of notifications: 256 pages of the writer's 65 536-page autocheckpoint.
    let filler = "x".repeat(4000);
    let items: Vec<_> = (0..250)
        .map(|i| json!({"recipients": [format!("u{}", i % 10)], "type": "wal.fill", "data": {"i": i, "filler": filler}}))
        .collect();
    let (status, body) = app
        .backend_post(
            "/v1/notifications/batch",
            &json!({ "notifications": items }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(file_len(&wal) > 0, "the batch was committed to the WAL");

    let grown = wait_until("the database file to take the committed pages", || {
        let len = file_len(&db);
        async move { (len > before + 1_000_000).then_some(len) }
    })
    .await;
    assert!(grown > before);

    app.stop().await;
    assert_eq!(file_len(&wal), 0, "a graceful stop truncates the WAL");
}
