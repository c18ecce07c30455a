//! Every frame reaches every tab on every node, and every tab converges to the store — through
//! broker pauses and restarts, with changes from several nodes — with nothing else happening
//! afterwards: no later event is there to repair a loss.
//!
//! Each fault test runs its own Redis or NATS (killed, paused) and several nodes on one
//! database (SQLite, or PostgreSQL with `BELFRY_TEST_DATABASE_URL`).

use std::sync::Arc;
use std::time::Duration;

use belfry::config::{BrokerKind, Config};
use belfry::protocol::ServerFrame;
use serde_json::{Value, json};

use crate::support::brokers::{Link, OwnNats, OwnRedis, free_port};
use crate::support::tab::{Tab, Transport, converge, preferences_muting};
use crate::support::{
    DEADLINE, TestApp, WsClient, metric, spawn_app, start, test_config, wait_until,
};

const REDIS_URL: &str = "redis://127.0.0.1:6379";
const NATS_URL: &str = "nats://127.0.0.1:4222";

/// How long tabs get to converge after a fault: the broker's reconnect backoff (at most 5 s)
/// plus a resync.
const CONVERGE: Duration = Duration::from_secs(20);

/// `n` nodes on one database and one broker (a prefix of their own on a shared server).
async fn cluster(kind: BrokerKind, url: &str, n: usize, tweak: fn(&mut Config)) -> Vec<TestApp> {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.broker.kind = kind;
    config.broker.url = Some(url.to_owned());
    config.broker.prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    tweak(&mut config);
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(start(config.clone(), Arc::clone(&dir)).await);
    }
    nodes
}

/// The position check off: whatever converges, the broker path (and its repairs) carried.
fn no_position_check(config: &mut Config) {
    config.broker.position_check_ms = 0;
}

async fn notify(app: &TestApp, user: &str, kind: &str, group: Option<(&str, &str)>) -> Value {
    let mut body = json!({"recipients": [user], "type": kind, "data": {"k": kind}});
    if let Some((key, actor)) = group {
        body["group_key"] = json!(key);
        body["actor"] = json!(actor);
    }
    let (status, answer) = app.backend_post("/v1/notifications", &body).await;
    assert_eq!(status, 201, "{answer}");
    answer["notifications"][0].clone()
}

async fn mark_read(app: &TestApp, user: &str, id: &str) {
    let (status, body) = app
        .post_as(user, "/v1/me/notifications/read", json!({"ids": [id]}))
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn set_preferences(app: &TestApp, user: &str, preferences: Value) {
    let response = app
        .client
        .put(format!("{}/v1/me/preferences", app.base))
        .bearer_auth(app.token(user))
        .json(&preferences)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

fn room_token(app: &TestApp, user: &str) -> String {
    app.token_with(user, |c| c.rooms = vec!["board:*".to_owned()])
}

async fn join(ws: &mut WsClient, room: &str, reference: u64) {
    ws.send_json(json!({"type": "join", "room": room, "ref": reference}))
        .await;
    loop {
        let frame = ws.next_json().await;
        if frame["ref"] == reference {
            assert_eq!(frame["type"], "joined", "{frame}");
            return;
        }
    }
}

/// One change of every kind a node publishes, made on node A, reaches tabs on node B over the
/// broker alone (no position check): notification, updated, state, preferences, and in a room
/// presence and message.
async fn every_published_kind_crosses(kind: BrokerKind, url: &str) {
    let nodes = cluster(kind, url, 2, no_position_check).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut ws = Tab::open(b, "alice", Transport::Ws).await;
    let mut sse = Tab::open(b, "alice", Transport::Sse).await;

    let first = notify(a, "alice", "post.commented", None).await;
    notify(a, "alice", "post.liked", Some(("post:1", "bob"))).await;
    notify(a, "alice", "post.liked", Some(("post:1", "carol"))).await;
    mark_read(a, "alice", first["id"].as_str().unwrap()).await;
    set_preferences(a, "alice", preferences_muting("never.sent")).await;
    for tab in [&mut ws, &mut sse] {
        converge(std::slice::from_mut(tab), DEADLINE).await;
        for kind in ["notification", "updated", "state", "preferences"] {
            assert!(
                tab.received.iter().any(|k| k == kind),
                "{kind} never reached the {:?} tab on the other node: {:?}",
                tab.transport,
                tab.received
            );
        }
    }

    let mut alice_room = b.ws_with_token(&room_token(b, "alice")).await;
    join(&mut alice_room, "board:1", 1).await;
    let mut bob_room = a.ws_with_token(&room_token(a, "bob")).await;
    join(&mut bob_room, "board:1", 2).await;
    let presence = alice_room.next_of("presence").await;
    assert_eq!(
        (presence["event"].as_str(), presence["user_id"].as_str()),
        (Some("join"), Some("bob"))
    );
    bob_room
        .send_json(json!({"type": "publish", "room": "board:1", "data": {"x": 1}}))
        .await;
    let message = alice_room.next_of("message").await;
    assert_eq!(message["data"], json!({"x": 1}));
    bob_room.close().await;
    let presence = alice_room.next_of("presence").await;
    assert_eq!(
        (presence["event"].as_str(), presence["user_id"].as_str()),
        (Some("leave"), Some("bob"))
    );
}

#[tokio::test]
async fn every_published_frame_kind_crosses_nodes_over_redis() {
    every_published_kind_crosses(BrokerKind::Redis, REDIS_URL).await;
}

#[tokio::test]
async fn every_published_frame_kind_crosses_nodes_over_nats() {
    every_published_kind_crosses(BrokerKind::Nats, NATS_URL).await;
}

/// Tabs of two users on nodes B and C, over every transport.
async fn tabs(nodes: &[TestApp]) -> Vec<Tab> {
    vec![
        Tab::open(&nodes[1], "alice", Transport::Ws).await,
        Tab::open(&nodes[2], "alice", Transport::Sse).await,
        Tab::open(&nodes[1], "alice", Transport::Poll).await,
        Tab::open(&nodes[2], "bob", Transport::Ws).await,
        Tab::open(&nodes[1], "bob", Transport::Sse).await,
    ]
}

/// Before the fault: a round of changes from every node (plain and grouped notifications,
/// reads, preferences), which every tab must show. Returns each user's plain notification ids.
async fn baseline(nodes: &[TestApp], tabs: &mut [Tab]) -> Vec<(String, String)> {
    let mut plain = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for user in ["alice", "bob"] {
            let n = notify(node, user, "comment.created", None).await;
            plain.push((user.to_owned(), n["id"].as_str().unwrap().to_owned()));
            notify(
                node,
                user,
                "post.liked",
                Some(("post:7", &format!("actor{i}"))),
            )
            .await;
        }
    }
    mark_read(&nodes[1], "alice", &plain[0].1).await;
    mark_read(&nodes[2], "bob", &plain[1].1).await;
    set_preferences(&nodes[0], "alice", preferences_muting("never.sent.0")).await;
    converge(tabs, DEADLINE).await;
    plain
}

/// While the fault lasts: changes of every kind, all from node A, where no tab is — so no tab
/// hears of any of them from its own node — and nothing after them. Whatever a tab misses can
/// only come back through the repair mechanisms, never through a later event.
async fn during_the_fault(a: &TestApp, plain: &[(String, String)]) {
    for user in ["alice", "bob"] {
        notify(a, user, "comment.created", None).await;
        notify(a, user, "post.liked", Some(("post:9", "dave"))).await;
        notify(a, user, "post.liked", Some(("post:9", "erin"))).await;
        notify(a, user, "post.liked", Some(("post:7", "frank"))).await;
    }
    for (user, id) in &plain[2..4] {
        mark_read(a, user, id).await;
    }
    set_preferences(a, "alice", preferences_muting("never.sent.1")).await;
    set_preferences(a, "bob", preferences_muting("never.sent.2")).await;
}

/// Three nodes on one broker; node A's link to it goes through `Link`.
async fn cluster_with_link(
    kind: BrokerKind,
    broker_port: u16,
    tweak: fn(&mut Config),
) -> (Vec<TestApp>, Link) {
    let scheme = if kind == BrokerKind::Redis {
        "redis"
    } else {
        "nats"
    };
    let link = Link::to(broker_port).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.broker.kind = kind;
    config.broker.prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    tweak(&mut config);
    let mut nodes = Vec::new();
    for i in 0..3 {
        let mut config = config.clone();
        config.broker.url = Some(if i == 0 {
            link.url(scheme)
        } else {
            format!("{scheme}://127.0.0.1:{broker_port}")
        });
        nodes.push(start(config, Arc::clone(&dir)).await);
    }
    (nodes, link)
}

/// Node A's publishes time out or vanish while its link is stalled (the others' links are
/// fine, so no subscriber reconnects): A must tell the other nodes to resync once it can.
#[tokio::test]
async fn a_publishing_node_whose_redis_link_stalls_loses_nothing_for_tabs_on_other_nodes() {
    let redis = OwnRedis::start(free_port()).await;
    let (nodes, link) = cluster_with_link(BrokerKind::Redis, redis.port, no_position_check).await;
    let mut tabs = tabs(&nodes).await;
    let plain = baseline(&nodes, &mut tabs).await;

    link.stall();
    during_the_fault(&nodes[0], &plain).await;
    // Hold the stall until A has given up on every one of those messages (12: eight
    // notifications, two reads, two preferences), so they are lost, not merely late.
    wait_until("node A dropped what it could not publish", || async {
        let metrics = nodes[0].metrics().await;
        (metric(&metrics, "belfry_broker_dropped_total") >= 12.0).then_some(())
    })
    .await;
    link.restore();
    converge(&mut tabs, CONVERGE).await;
    let metrics = nodes[0].metrics().await;
    assert!(
        metric(&metrics, "belfry_broker_repairs_total") >= 2.0,
        "{metrics}"
    );
}

/// The same over NATS, where a stalled link loses publishes without any error (the client
/// wrote them): only the position check can find them.
#[tokio::test]
async fn a_publishing_node_whose_nats_link_stalls_loses_nothing_for_tabs_on_other_nodes() {
    let nats = OwnNats::start(free_port()).await;
    let (nodes, link) = cluster_with_link(BrokerKind::Nats, nats.port, |c| {
        c.broker.position_check_ms = 500;
    })
    .await;
    let mut tabs = tabs(&nodes).await;
    let plain = baseline(&nodes, &mut tabs).await;

    link.stall();
    during_the_fault(&nodes[0], &plain).await;
    link.restore();
    converge(&mut tabs, CONVERGE).await;
    // What A wrote into the stalled link was lost without an error: the position check on the
    // tabs' nodes brought it.
    let mut resyncs = 0.0;
    for node in &nodes[1..] {
        resyncs += metric(&node.metrics().await, "belfry_position_resyncs_total");
    }
    assert!(
        resyncs >= 1.0,
        "no position-check resync: was anything lost?"
    );
}

#[tokio::test]
async fn a_redis_pause_mid_stream_loses_nothing_for_tabs_on_other_nodes() {
    let redis = OwnRedis::start(free_port()).await;
    let nodes = cluster(BrokerKind::Redis, &redis.url(), 3, no_position_check).await;
    let mut tabs = tabs(&nodes).await;
    let plain = baseline(&nodes, &mut tabs).await;

    // Every client's commands wait (publishes time out after 500 ms); changes are still
    // acknowledged.
    redis.pause(2_000).await;
    during_the_fault(&nodes[0], &plain).await;
    converge(&mut tabs, CONVERGE).await;
}

#[tokio::test]
async fn a_redis_restart_mid_stream_loses_nothing_for_tabs_on_other_nodes() {
    let port = free_port();
    let mut redis = OwnRedis::start(port).await;
    let nodes = cluster(BrokerKind::Redis, &redis.url(), 3, no_position_check).await;
    let mut tabs = tabs(&nodes).await;
    let plain = baseline(&nodes, &mut tabs).await;

    redis.kill();
    during_the_fault(&nodes[0], &plain).await;
    let _redis = OwnRedis::start(port).await;
    converge(&mut tabs, CONVERGE).await;
}

#[tokio::test]
async fn a_nats_pause_mid_stream_loses_nothing_for_tabs_on_other_nodes() {
    let nats = OwnNats::start(free_port()).await;
    let nodes = cluster(BrokerKind::Nats, &nats.url(), 3, no_position_check).await;
    let mut tabs = tabs(&nodes).await;
    let plain = baseline(&nodes, &mut tabs).await;

    nats.pause();
    during_the_fault(&nodes[0], &plain).await;
    nats.resume();
    converge(&mut tabs, CONVERGE).await;
}

#[tokio::test]
async fn a_nats_restart_mid_stream_loses_nothing_for_tabs_on_other_nodes() {
    let port = free_port();
    let mut nats = OwnNats::start(port).await;
    let nodes = cluster(BrokerKind::Nats, &nats.url(), 3, no_position_check).await;
    let mut tabs = tabs(&nodes).await;
    let plain = baseline(&nodes, &mut tabs).await;

    nats.kill();
    during_the_fault(&nodes[0], &plain).await;
    let _nats = OwnNats::start(port).await;
    converge(&mut tabs, CONVERGE).await;
}

/// A change that no broker carries (node A publishes only to itself) still reaches the tabs on
/// node B: B's position check finds them behind the store and resyncs them.
#[tokio::test]
async fn the_position_check_brings_tabs_a_change_no_broker_carried() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.broker.kind = BrokerKind::Redis;
    config.broker.url = Some(REDIS_URL.to_owned());
    config.broker.prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    config.broker.position_check_ms = 300;
    let b = start(config.clone(), Arc::clone(&dir)).await;
    let mut isolated = config;
    isolated.broker.kind = BrokerKind::Local;
    isolated.broker.url = None;
    let a = start(isolated, Arc::clone(&dir)).await;

    let mut tabs = vec![
        Tab::open(&b, "alice", Transport::Ws).await,
        Tab::open(&b, "alice", Transport::Sse).await,
        Tab::open(&b, "alice", Transport::Poll).await,
    ];
    let n = notify(&a, "alice", "comment.created", None).await;
    notify(&a, "alice", "post.liked", Some(("post:1", "bob"))).await;
    notify(&a, "alice", "post.liked", Some(("post:1", "carol"))).await;
    mark_read(&a, "alice", n["id"].as_str().unwrap()).await;
    set_preferences(&a, "alice", preferences_muting("never.sent")).await;
    converge(&mut tabs, DEADLINE).await;
    assert!(metric(&b.metrics().await, "belfry_position_resyncs_total") >= 1.0);
    for tab in &tabs[..2] {
        assert!(
            tab.received.iter().any(|k| k == "sync"),
            "{:?}",
            tab.received
        );
    }
}

/// A state frame that arrives late (older than what the tab has) is never sent; one that
/// skips a version makes the feed send the store's state (`sync`) instead.
#[tokio::test]
async fn a_late_state_frame_never_overwrites_a_newer_one_and_a_gap_sends_sync() {
    let app = spawn_app().await;
    let a = notify(&app, "alice", "comment.created", None).await;
    let b = notify(&app, "alice", "comment.created", None).await;
    let (mut ws, hello) = app.ws_ready("alice", None).await;
    assert_eq!(hello["state_version"], 0);
    mark_read(&app, "alice", a["id"].as_str().unwrap()).await;
    mark_read(&app, "alice", b["id"].as_str().unwrap()).await;
    assert_eq!(ws.next_of("state").await["version"], 1);
    assert_eq!(ws.next_of("state").await["version"], 2);

    let user = belfry::model::UserId::parse("alice").unwrap();
    let state_frame = |version, unread_count| {
        Arc::new(
            ServerFrame::State {
                change: belfry::model::StateChange::Unread,
                ids: &[],
                all: false,
                up_to_seq: None,
                unread_count,
                last_seq: 2,
                version,
            }
            .encode(),
        )
    };
    // As if it had waited in another node's publish queue during a broker outage.
    app.state.hub.deliver(&user, &state_frame(1, 99));
    let c = notify(&app, "alice", "comment.created", None).await;
    let frame = ws.next_json().await;
    assert_eq!(
        frame["type"], "notification",
        "the stale state frame was sent: {frame}"
    );
    assert_eq!(frame["notification"]["id"], c["id"]);

    // Version 3 is stored without being published (as if its frame was lost between nodes);
    // 4 arrives: the tab gets the store's state (the changes of 3 included), then nothing
    // stale.
    let d = notify(&app, "alice", "comment.created", None).await;
    assert_eq!(
        ws.next_of("notification").await["notification"]["id"],
        d["id"]
    );
    let id = |n: &Value| belfry::model::NotificationId::parse(n["id"].as_str().unwrap()).unwrap();
    let changed = app
        .state
        .store
        .set_state(&user, &[id(&c)], belfry::model::StateChange::Read)
        .await
        .unwrap();
    assert_eq!(changed.counts.state_version, 3);
    mark_read(&app, "alice", d["id"].as_str().unwrap()).await;
    let sync = ws.next_json().await;
    assert_eq!(sync["type"], "sync", "{sync}");
    assert_eq!(sync["unread_count"], 0);
    assert_eq!(sync["state_version"], 4);
    assert_eq!(sync["last_seq"], 4);
    assert_eq!(
        sync["preferences"],
        json!({"muted": false, "mute_until": null, "channels": {"in_app": true, "web_push": true}, "types": {}})
    );
    app.state.hub.deliver(&user, &state_frame(4, 99));
    let e = notify(&app, "alice", "comment.created", None).await;
    let frame = ws.next_json().await;
    assert_eq!(frame["notification"]["id"], e["id"], "{frame}");
}

/// A long-poll that passes its state version answers as soon as another tab changes the read
/// state, with the new count: a poll-only tab's badge follows too.
#[tokio::test]
async fn a_long_poll_with_its_state_version_answers_when_the_read_state_changes() {
    let app = spawn_app().await;
    let n = notify(&app, "alice", "comment.created", None).await;
    let (_, first) = app.get_as("alice", "/v1/poll?after=1&timeout=0").await;
    assert_eq!(first["state_version"], 0);
    assert_eq!(first["unread_count"], 1);
    let waiting = {
        let base = app.base.clone();
        let token = app.token("alice");
        let client = app.client.clone();
        tokio::spawn(async move {
            client
                .get(format!("{base}/v1/poll?after=1&state_version=0&timeout=20"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    // The poll is registered once the node counts its connection.
    crate::support::wait_until("the poll waits", || async {
        (app.state
            .hub
            .connections_of(&belfry::model::UserId::parse("alice").unwrap())
            == 1)
            .then_some(())
    })
    .await;
    mark_read(&app, "alice", n["id"].as_str().unwrap()).await;
    let answer = tokio::time::timeout(DEADLINE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer["unread_count"], 0);
    assert_eq!(answer["state_version"], 1);
    assert_eq!(answer["notifications"], json!([]));
}
