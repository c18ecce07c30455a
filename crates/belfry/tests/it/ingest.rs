//! Ingestion from Redis Streams and NATS JetStream: events reach the user's WebSocket, a node
//! stopped mid-stream and restarted loses and doubles nothing, poison goes to the dead letters.

use std::sync::Arc;

use belfry::config::{NatsIngestConfig, RedisIngestConfig};
use futures_util::StreamExt;
use redis::AsyncCommands;
use serde_json::json;

use crate::support::{DEADLINE, TestApp, spawn_app_with, start, test_config, wait_until};

mod kafka;

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

fn notify_json(user: &str, i: usize) -> String {
    json!({"recipients": [user], "type": "ingested", "data": {"i": i}}).to_string()
}

async fn collect_seqs(app: &TestApp, user: &str, total: usize) -> Vec<i64> {
    wait_until("every ingested notification is stored", || async {
        let (_, count) = app.get_as(user, "/v1/me/unread-count").await;
        (count["last_seq"].as_u64()? as usize >= total).then_some(())
    })
    .await;
    let mut items = Vec::new();
    let mut path = "/v1/me/notifications?limit=100".to_owned();
    loop {
        let (_, page) = app.get_as(user, &path).await;
        items.extend(
            page["notifications"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["data"]["i"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/me/notifications?limit=100&cursor={cursor}"),
            None => break,
        }
    }
    items.sort_unstable();
    items
}

#[tokio::test]
async fn redis_stream_entries_reach_the_websocket_and_poison_is_dead_lettered() {
    let stream = unique("t:stream:");
    let dead = unique("t:dead:");
    let source = RedisIngestConfig {
        stream: stream.clone(),
        dead_letter_stream: dead.clone(),
        ..RedisIngestConfig::default()
    };
    let app = spawn_app_with(|c| c.ingest.redis = Some(source)).await;
    let (mut ws, _) = app.ws_ready("alice", None).await;
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();

    let _: String = con
        .xadd(&stream, "*", &[("payload", notify_json("alice", 1))])
        .await
        .unwrap();
    let frame = ws.next_of("notification").await;
    assert_eq!(frame["notification"]["type"], "ingested");

    let _: String = con
        .xadd(&stream, "*", &[("payload", "{not json")])
        .await
        .unwrap();
    let _: String = con
        .xadd(
            &stream,
            "*",
            &[(
                "payload",
                json!({"recipients": [], "type": "t"}).to_string(),
            )],
        )
        .await
        .unwrap();
    let _: String = con
        .xadd(&stream, "*", &[("payload", notify_json("alice", 2))])
        .await
        .unwrap();
    let next = ws.next_of("notification").await;
    assert_eq!(
        next["notification"]["data"]["i"], 2,
        "the good message after the poison got through"
    );

    let dead_letters: redis::streams::StreamRangeReply = con.xrange_all(&dead).await.unwrap();
    assert_eq!(dead_letters.ids.len(), 2);
    let error: String = dead_letters.ids[1].get("error").unwrap();
    assert!(error.contains("recipients"), "{error}");
    let text = app.metrics().await;
    assert_eq!(
        crate::support::metric(&text, "belfry_ingest_poison_total"),
        2.0
    );
}

#[tokio::test]
async fn a_redis_consumer_stopped_mid_stream_loses_and_doubles_nothing() {
    let stream = unique("t:stream:");
    let source = RedisIngestConfig {
        stream: stream.clone(),
        dead_letter_stream: unique("t:dead:"),
        batch: 10,
        ..RedisIngestConfig::default()
    };
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.ingest.redis = Some(source);
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let total = 300;
    for i in 0..total {
        let _: String = con
            .xadd(&stream, "*", &[("payload", notify_json("bob", i))])
            .await
            .unwrap();
    }
    let mut first = start(config.clone(), Arc::clone(&dir)).await;
    wait_until("the first node has ingested some", || async {
        let (_, count) = first.get_as("bob", "/v1/me/unread-count").await;
        (count["last_seq"].as_i64()? >= 50).then_some(())
    })
    .await;
    first.stop().await;
    let second = start(config, dir).await;
    let seen = collect_seqs(&second, "bob", total).await;
    let expected: Vec<i64> = (0..total as i64).collect();
    assert_eq!(seen.len(), total, "nothing doubled");
    assert_eq!(seen, expected, "nothing lost");
}

#[tokio::test]
async fn jetstream_messages_reach_the_websocket_survive_a_restart_and_poison_is_dead_lettered() {
    let stream = unique("T_");
    let subject = format!("belfry.test.{}", unique("s"));
    let dead_subject = format!("belfry.test.dead.{}", unique("d"));
    let source = NatsIngestConfig {
        stream: stream.clone(),
        subject: subject.clone(),
        dead_letter_subject: dead_subject.clone(),
        batch: 10,
        ..NatsIngestConfig::default()
    };
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.ingest.nats = Some(source);
    let nats = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
    let mut dead_letters = nats.subscribe(dead_subject).await.unwrap();
    let js = async_nats::jetstream::new(nats.clone());
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .unwrap();

    let mut first = start(config.clone(), Arc::clone(&dir)).await;
    let (mut ws, _) = first.ws_ready("carol", None).await;
    js.publish(subject.clone(), notify_json("carol", 0).into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        ws.next_of("notification").await["notification"]["data"]["i"],
        0
    );

    js.publish(subject.clone(), "{poison".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let dead = tokio::time::timeout(DEADLINE, dead_letters.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&dead.payload[..], b"{poison");
    assert!(dead.headers.unwrap().get("Belfry-Error").is_some());

    let total = 200;
    for i in 1..total {
        js.publish(subject.clone(), notify_json("carol", i).into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    wait_until("some are ingested before the stop", || async {
        let (_, count) = first.get_as("carol", "/v1/me/unread-count").await;
        (count["last_seq"].as_i64()? >= 20).then_some(())
    })
    .await;
    first.stop().await;
    let second = start(config, dir).await;
    let seen = collect_seqs(&second, "carol", total).await;
    assert_eq!(seen, (0..total as i64).collect::<Vec<_>>());
    js.delete_stream(&stream).await.unwrap();
}

/// Runs the real binary with `extra` TOML appended to a base config, so it can be SIGKILLed.
struct Node {
    child: std::process::Child,
    base: String,
}

impl Node {
    async fn spawn(dir: &std::path::Path, port: u16, extra: &str) -> Node {
        let config = test_config_in(dir);
        let file = dir.join("node.toml");
        std::fs::write(
            &file,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{}\"\n[auth]\napi_keys = [\"{}\"]\njwt_secret = \"{}\"\n{extra}",
                config.database_url,
                crate::support::API_KEY,
                crate::support::JWT_SECRET
            ),
        )
        .unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_belfry"))
            .args(["--config", file.to_str().unwrap(), "serve"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let url = format!("{base}/readyz");
        wait_until("the node is ready", || async {
            reqwest::get(&url)
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(drop)
        })
        .await;
        Node { child, base }
    }

    async fn ingested(&self, user: &str) -> Vec<i64> {
        let auth = belfry::auth::Auth::new(&belfry::config::AuthConfig {
            jwt_secret: Some(secrecy::SecretString::from(crate::support::JWT_SECRET)),
            ..Default::default()
        })
        .unwrap();
        let token = auth
            .mint(
                &belfry::model::UserId::parse(user).unwrap(),
                std::time::Duration::from_secs(60),
            )
            .unwrap()
            .0;
        let client = reqwest::Client::new();
        let mut items = Vec::new();
        let mut url = format!("{}/v1/me/notifications?limit=100", self.base);
        loop {
            let page: serde_json::Value = client
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            items.extend(
                page["notifications"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n["data"]["i"].as_i64().unwrap()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => url = format!("{}/v1/me/notifications?limit=100&cursor={c}", self.base),
                None => break,
            }
        }
        items.sort_unstable();
        items
    }

    fn kill(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn test_config_in(dir: &std::path::Path) -> belfry::Config {
    let mut config = belfry::Config::default();
    config.database_url = format!("sqlite://{}", dir.join("node.db").display());
    config
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn killed_mid_stream(extra: &str, user: &str, publish: impl AsyncFnOnce(usize)) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let total = 400;
    let mut node = Node::spawn(dir.path(), port, extra).await;
    publish(total).await;
    wait_until("the node has ingested some", || async {
        (node.ingested(user).await.len() >= 40).then_some(())
    })
    .await;
    node.kill();
    let node = Node::spawn(dir.path(), port, extra).await;
    let seen = wait_until("everything is ingested after the restart", || async {
        let seen = node.ingested(user).await;
        (seen.len() >= total).then_some(seen)
    })
    .await;
    assert_eq!(
        seen,
        (0..total as i64).collect::<Vec<_>>(),
        "nothing lost, nothing doubled"
    );
}

#[tokio::test]
async fn a_redis_ingesting_node_killed_with_sigkill_loses_and_doubles_nothing() {
    let stream = unique("t:stream:");
    let extra = format!(
        "[ingest.redis]\nstream = \"{stream}\"\ndead_letter_stream = \"{}\"\nbatch = 20\n",
        unique("t:dead:")
    );
    killed_mid_stream(&extra, "dora", async |total| {
        let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        for i in 0..total {
            let _: String = con
                .xadd(&stream, "*", &[("payload", notify_json("dora", i))])
                .await
                .unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn a_jetstream_ingesting_node_killed_with_sigkill_loses_and_doubles_nothing() {
    let stream = unique("T_");
    let subject = format!("belfry.test.{}", unique("s"));
    let dead = format!("belfry.test.dead.{}", unique("d"));
    let extra = format!(
        "[ingest.nats]\nstream = \"{stream}\"\nsubject = \"{subject}\"\ndead_letter_subject = \"{dead}\"\nbatch = 20\nack_wait_secs = 2\n"
    );
    let nats = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
    let js = async_nats::jetstream::new(nats);
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .unwrap();
    let publisher = js.clone();
    killed_mid_stream(&extra, "erin", async |total| {
        for i in 0..total {
            publisher
                .publish(subject.clone(), notify_json("erin", i).into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    })
    .await;
    js.delete_stream(&stream).await.unwrap();
}
