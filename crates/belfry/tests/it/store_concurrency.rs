//! PostgreSQL only (set `BELFRY_TEST_DATABASE_URL`): two nodes writing to one database keep
//! each user's sequence gapless (also when fan-outs lock the same users in opposite orders) and
//! store an idempotent request once; an unreachable database makes calls fail fast with 503,
//! and the node recovers when it is back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use belfry::model::UserId;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::support::{API_KEY, TEST_DATABASE_URL, TestApp, start, test_config, wait_until};

/// False, with a note, when the suite runs on SQLite.
fn on_postgres() -> bool {
    let set = std::env::var(TEST_DATABASE_URL).is_ok_and(|url| !url.is_empty());
    if !set {
        eprintln!("skipped: set {TEST_DATABASE_URL} to a PostgreSQL server to run this test");
    }
    set
}

/// Two apps ("nodes") on one fresh database.
async fn two_nodes() -> [Arc<TestApp>; 2] {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let config = test_config(&dir);
    assert!(config.database_url.starts_with("postgres"));
    let a = start(config.clone(), Arc::clone(&dir)).await;
    let b = start(config, dir).await;
    [Arc::new(a), Arc::new(b)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_on_two_nodes_give_a_user_every_seq_once() {
    if !on_postgres() {
        return;
    }
    let nodes = two_nodes().await;
    const PUBLISHERS: usize = 4;
    const EACH: usize = 100;

    let mut tasks = Vec::new();
    for publisher in 0..PUBLISHERS {
        let node = Arc::clone(&nodes[publisher % 2]);
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(EACH);
            for i in 0..EACH {
                let data = json!({"publisher": publisher, "i": i});
                seqs.push(node.notify("alice", "burst", data).await);
            }
            seqs
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.unwrap());
    }

    let expected: Vec<i64> = (1..=(PUBLISHERS * EACH) as i64).collect();
    acknowledged.sort_unstable();
    assert_eq!(acknowledged, expected, "acknowledged seqs are 1..=400");
    let alice = UserId::parse("alice").unwrap();
    for node in &nodes {
        let stored = node.state.store.after(&alice, 0, None, 1000).await.unwrap();
        let seqs: Vec<i64> = stored.iter().map(|n| n.seq).collect();
        assert_eq!(seqs, expected, "every node reads 1..=400, in order");
        let counts = node.state.store.counts(&alice).await.unwrap();
        assert_eq!(counts.last_seq, 400);
        assert_eq!(counts.unread, 400);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fan_outs_to_the_same_users_in_opposite_orders_on_two_nodes_all_commit_gaplessly() {
    if !on_postgres() {
        return;
    }
    let nodes = two_nodes().await;
    let users = ["u1", "u2", "u3", "u4"];
    const PUBLISHERS: usize = 4;
    const EACH: usize = 50;

    let mut tasks = Vec::new();
    for publisher in 0..PUBLISHERS {
        let node = Arc::clone(&nodes[publisher % 2]);
        let mut recipients = users.to_vec();
        if publisher % 2 == 1 {
            recipients.reverse();
        }
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                let (status, body) = node
                    .backend_post(
                        "/v1/notifications",
                        &json!({"recipients": recipients, "type": "t", "data": {"i": i}}),
                    )
                    .await;
                assert_eq!(status, 201, "{body}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let expected: Vec<i64> = (1..=(PUBLISHERS * EACH) as i64).collect();
    for user in users {
        let id = UserId::parse(user).unwrap();
        let stored = nodes[1]
            .state
            .store
            .after(&id, 0, None, 1000)
            .await
            .unwrap();
        let seqs: Vec<i64> = stored.iter().map(|n| n.seq).collect();
        assert_eq!(seqs, expected, "{user} got every seq once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_sent_to_both_nodes_at_once_is_stored_once() {
    if !on_postgres() {
        return;
    }
    let nodes = two_nodes().await;
    let request = json!({"recipients": ["alice", "bob"], "type": "t", "idempotency_key": "race"});

    let mut tasks = Vec::new();
    for i in 0..8 {
        let node = Arc::clone(&nodes[i % 2]);
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let response = node
                .client
                .post(format!("{}/v1/notifications", node.base))
                .bearer_auth(API_KEY)
                .json(&request)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body["notifications"].clone())
        }));
    }
    let mut created = 0;
    let mut answers = Vec::new();
    for task in tasks {
        let (status, notifications) = task.await.unwrap();
        assert!(status == 200 || status == 201, "{status}: {notifications}");
        created += usize::from(status == 201);
        answers.push(notifications);
    }

    assert_eq!(created, 1, "one request stored, the others replayed it");
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "every caller got the same notifications: {answers:?}"
    );
    for user in ["alice", "bob"] {
        let id = UserId::parse(user).unwrap();
        let stored = nodes[0].state.store.after(&id, 0, None, 10).await.unwrap();
        assert_eq!(stored.len(), 1, "{user} has one notification");
        assert_eq!(stored[0].seq, 1);
    }
    let different = json!({"recipients": ["alice"], "type": "other", "idempotency_key": "race"});
    let (status, _) = nodes[1].backend_post("/v1/notifications", &different).await;
    assert_eq!(status, 409, "the key is taken on every node");
}

#[tokio::test]
async fn with_the_database_unreachable_calls_fail_with_503_in_bounded_time_and_then_recover() {
    if !on_postgres() {
        return;
    }
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let config = test_config(&dir);
    let database = reqwest::Url::parse(&config.database_url).unwrap().path()[1..].to_owned();
    let app = start(config, dir).await;
    app.notify("alice", "before", json!({})).await;

    let server = std::env::var(TEST_DATABASE_URL).unwrap();
    let mut admin = PgConnection::connect(&server).await.unwrap();
    let allow = |allowed: bool| {
        AssertSqlSafe(format!(
            "ALTER DATABASE {database} WITH ALLOW_CONNECTIONS {allowed}"
        ))
    };
    sqlx::raw_sql(allow(false))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&database)
        .execute(&mut admin)
        .await
        .unwrap();

    let started = Instant::now();
    let (status, body) = app
        .backend_post(
            "/v1/notifications",
            &json!({"recipients": ["alice"], "type": "t"}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    let (status, _) = app.get_as("alice", "/v1/me/notifications").await;
    assert_eq!(status, 503);
    let ready = reqwest::get(format!("{}/readyz", app.base)).await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "each call gives up within the acquire timeout, took {:?}",
        started.elapsed()
    );

    sqlx::raw_sql(allow(true))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let seq = wait_until("the node stores again", || async {
        let (status, body) = app
            .backend_post(
                "/v1/notifications",
                &json!({"recipients": ["alice"], "type": "after"}),
            )
            .await;
        (status == 201).then(|| body["notifications"][0]["seq"].as_i64())
    })
    .await;
    assert_eq!(
        seq,
        Some(2),
        "nothing was stored while the database was away"
    );
}
