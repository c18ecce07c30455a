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

#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_wal_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;

    if !on_sqlite() {
        return;
    }
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = crate::support::test_config(&dir);
    let data = dir.path().join("data");
    config.database_url = format!("sqlite://{}", data.join("belfry.db").display());
    let app = crate::support::start(config, dir).await;
    app.notify("alice", "t", json!({})).await;
    let mode = |path: std::path::PathBuf| {
        let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        meta.permissions().mode() & 0o777
    };
    assert_eq!(mode(data.clone()), 0o700, "the data directory");
    for name in ["belfry.db", "belfry.db-wal", "belfry.db-shm"] {
        assert_eq!(mode(data.join(name)), 0o600, "{name}");
    }
}
