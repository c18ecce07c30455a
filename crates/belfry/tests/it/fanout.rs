//! Several Belfry nodes sharing one database and a Redis or NATS broker: a notification posted
//! to any node reaches the user's connections on every node, read state follows, and a broker
//! outage loses nothing once clients resume.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use belfry::config::BrokerKind;
use serde_json::json;

use crate::support::brokers::{OwnRedis, free_port};
use crate::support::{DEADLINE, TestApp, start, test_config, wait_until};

const REDIS_URL: &str = "redis://127.0.0.1:6379";
const NATS_URL: &str = "nats://127.0.0.1:4222";

/// `n` nodes on one database and one broker, with a channel prefix of their own so parallel
/// tests sharing the broker server never see each other's events.
async fn cluster(kind: BrokerKind, url: &str, n: usize) -> Vec<TestApp> {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.broker.kind = kind;
    config.broker.url = Some(url.to_owned());
    config.broker.prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(start(config.clone(), Arc::clone(&dir)).await);
    }
    nodes
}

async fn a_notification_posted_to_one_node_reaches_tabs_on_every_node(kind: BrokerKind, url: &str) {
    let nodes = cluster(kind, url, 3).await;
    let (mut on_b, _) = nodes[1].ws_ready("alice", None).await;
    let (mut on_c, _) = nodes[2].ws_ready("alice", None).await;
    let (mut bob_on_c, _) = nodes[2].ws_ready("bob", None).await;

    nodes[0]
        .notify("alice", "cross.node", json!({"n": 1}))
        .await;
    for tab in [&mut on_b, &mut on_c] {
        let frame = tab.next_of("notification").await;
        assert_eq!(frame["notification"]["type"], "cross.node");
        assert_eq!(frame["seq"], 1);
    }
    nodes[1].notify("bob", "for.bob", json!({})).await;
    assert_eq!(
        bob_on_c.next_of("notification").await["notification"]["type"],
        "for.bob"
    );

    // read-all on node B reaches the tab on node C.
    let (status, _) = nodes[1]
        .post_as("alice", "/v1/me/notifications/read-all", json!({}))
        .await;
    assert_eq!(status, 200);
    let state = on_c.next_of("state").await;
    assert_eq!(state["all"], true);
    assert_eq!(state["unread_count"], 0);
}

#[tokio::test]
async fn redis_fanout_reaches_every_node_and_syncs_read_state() {
    a_notification_posted_to_one_node_reaches_tabs_on_every_node(BrokerKind::Redis, REDIS_URL)
        .await;
}

#[tokio::test]
async fn nats_fanout_reaches_every_node_and_syncs_read_state() {
    a_notification_posted_to_one_node_reaches_tabs_on_every_node(BrokerKind::Nats, NATS_URL).await;
}

#[tokio::test]
async fn a_node_receives_only_users_it_has_sessions_for_and_unsubscribes_when_they_leave() {
    let nodes = cluster(BrokerKind::Redis, REDIS_URL, 2).await;
    let prefix = nodes[0].config.broker.prefix.clone();
    let client = redis::Client::open(REDIS_URL).unwrap();
    let con = client.get_multiplexed_async_connection().await.unwrap();
    let numsub = |user: &str| {
        let channel = format!("{prefix}:u:{user}");
        let mut con = con.clone();
        async move {
            let (_, n): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async::<Vec<(String, i64)>>(&mut con)
                .await
                .unwrap()
                .remove(0);
            n
        }
    };
    assert_eq!(numsub("alice").await, 0);
    let (ws, _) = nodes[1].ws_ready("alice", None).await;
    assert_eq!(numsub("alice").await, 1, "node B subscribed to alice only");
    assert_eq!(numsub("bob").await, 0);
    ws.close().await;
    wait_until("node B unsubscribes when alice leaves", || async {
        (numsub("alice").await == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_redis_restart_during_a_publish_stream_loses_nothing() {
    let port = free_port();
    let mut redis = OwnRedis::start(port).await;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let nodes = Arc::new(cluster(BrokerKind::Redis, &url, 2).await);
    let (mut ws, _) = nodes[1].ws_ready("alice", None).await;

    let total = 150;
    let publisher = {
        let nodes = Arc::clone(&nodes);
        tokio::spawn(async move {
            for i in 0..total {
                // Every notification is stored and acknowledged, broker or not.
                nodes[0].notify("alice", "stream", json!({"i": i})).await;
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut restarted = false;
    let deadline = tokio::time::Instant::now() + DEADLINE * 3;
    while seen.len() < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck after {:?}",
            seen.last()
        );
        if !restarted && seen.len() >= 30 {
            redis.kill();
            // Publish some while Redis is down, then bring it back on the same port.
            wait_until("more is stored while redis is down", || async {
                let text = nodes[0].metrics().await;
                (crate::support::metric(&text, "belfry_notifications_stored_total") >= 60.0)
                    .then_some(())
            })
            .await;
            redis = OwnRedis::start(port).await;
            restarted = true;
        }
        match ws.try_next_json(Duration::from_millis(200)).await {
            Ok(Some(frame)) if frame["type"] == "notification" => {
                seen.push(frame["seq"].as_i64().unwrap());
            }
            Ok(_) => {}
            Err(ended) => panic!("connection ended: {ended:?}"),
        }
    }
    publisher.await.unwrap();
    let expected: Vec<i64> = (1..=total as i64).collect();
    assert_eq!(
        seen, expected,
        "every notification once, in order, across the restart"
    );
    assert!(restarted);
}

#[tokio::test]
async fn a_node_killed_with_sigkill_loses_nothing_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir);
    let port = free_port();
    let file = dir.path().join("belfry.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{}\"\n[auth]\napi_keys = [\"{}\"]\njwt_secret = \"{}\"\n",
            config.database_url,
            crate::support::API_KEY,
            crate::support::JWT_SECRET
        ),
    )
    .unwrap();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_belfry"))
            .args(["--config", file.to_str().unwrap(), "serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let ready = || {
        let client = client.clone();
        let url = format!("{base}/readyz");
        async move {
            client
                .get(url)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(drop)
        }
    };
    let mut node = spawn();
    wait_until("the node is ready", &ready).await;

    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let publisher = {
        let acked = Arc::clone(&acked);
        let client = client.clone();
        let url = format!("{base}/v1/notifications");
        tokio::spawn(async move {
            for i in 0..100_000 {
                let sent = client
                    .post(&url)
                    .bearer_auth(crate::support::API_KEY)
                    .json(&json!({"recipients": ["alice"], "type": "t", "data": {"i": i}}))
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                if response.status() != 201 {
                    break;
                }
                let Ok(body) = response.json::<serde_json::Value>().await else {
                    break;
                };
                let id = body["notifications"][0]["id"].as_str().unwrap().to_owned();
                acked.lock().unwrap().push(id);
            }
        })
    };
    wait_until("some notifications are acknowledged", || async {
        (acked.lock().unwrap().len() >= 50).then_some(())
    })
    .await;
    node.kill().unwrap(); // SIGKILL
    node.wait().unwrap();
    publisher.await.unwrap();
    let acked = acked.lock().unwrap().clone();

    let mut node = spawn();
    wait_until("the node is ready again", &ready).await;
    let app_token = {
        let auth = belfry::auth::Auth::new(&config.auth).unwrap();
        auth.mint(
            &belfry::model::UserId::parse("alice").unwrap(),
            Duration::from_secs(60),
        )
        .unwrap()
        .0
    };
    let mut stored = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/me/notifications?limit=100");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: serde_json::Value = client
            .get(url)
            .bearer_auth(&app_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for n in page["notifications"].as_array().unwrap() {
            stored.insert(n["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    node.kill().unwrap();
    node.wait().unwrap();
    let missing: Vec<_> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged but lost: {missing:?}",
        missing.len()
    );
    assert!(acked.len() >= 50);
}
