//! Rooms: broadcast with the sender excluded, permission to join and publish, presence per user
//! (not per tab), bounds with clear errors, across nodes through the broker.

use belfry::config::BrokerKind;
use serde_json::{Value, json};

use crate::support::{TestApp, WsClient, spawn_app, spawn_app_with, start, test_config};

fn member_of(app: &TestApp, user: &str, pattern: &str) -> String {
    app.token_with(user, |c| c.rooms = vec![pattern.to_owned()])
}

async fn join(ws: &mut WsClient, room: &str, reference: u64) -> Value {
    ws.send_json(json!({"type": "join", "room": room, "ref": reference}))
        .await;
    loop {
        let frame = ws.next_json().await;
        if frame["ref"] == reference {
            return frame;
        }
    }
}

#[tokio::test]
async fn a_message_reaches_every_other_member_but_not_the_sending_tab() {
    let app = spawn_app().await;
    let mut a1 = app.ws_with_token(&member_of(&app, "alice", "todo:*")).await;
    let mut a2 = app.ws_with_token(&member_of(&app, "alice", "todo:*")).await;
    let mut bob = app.ws_with_token(&member_of(&app, "bob", "todo:*")).await;
    for (ws, r) in [(&mut a1, 1), (&mut a2, 2), (&mut bob, 3)] {
        assert_eq!(join(ws, "todo:1", r).await["type"], "joined");
    }
    a1.send_json(json!({"type": "publish", "room": "todo:1", "data": {"add": "milk"}, "ref": 9}))
        .await;
    for ws in [&mut a2, &mut bob] {
        let message = ws.next_of("message").await;
        assert_eq!(message["room"], "todo:1");
        assert_eq!(message["from"], "alice");
        assert_eq!(message["data"], json!({"add": "milk"}));
        assert!(message["at"].as_str().unwrap().ends_with('Z'));
    }
    // The sender gets its ack and nothing else: a ping right after answers first.
    a1.send_json(json!({"type": "ping", "ref": 10})).await;
    let mut frames = Vec::new();
    loop {
        let frame = a1.next_json().await;
        if frame["type"] == "pong" {
            break;
        }
        frames.push(frame);
    }
    assert!(frames.iter().all(|f| f["type"] != "message"), "{frames:?}");
    assert!(
        frames
            .iter()
            .any(|f| f == &json!({"type": "ack", "ref": 9}))
    );

    // The backend can publish too; everyone gets it, with no `from`.
    let (status, _) = app
        .backend_post(
            "/v1/rooms/todo:1/messages",
            &json!({"data": {"clear": true}}),
        )
        .await;
    assert_eq!(status, 202);
    for ws in [&mut a1, &mut a2, &mut bob] {
        let message = ws.next_of("message").await;
        assert_eq!(message["data"], json!({"clear": true}));
        assert!(message.get("from").is_none());
    }
}

#[tokio::test]
async fn joining_and_publishing_need_permission() {
    let app = spawn_app().await;
    let mut nobody = app.ws_with_token(&app.token("mallory")).await;
    let refused = join(&mut nobody, "todo:1", 1).await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "forbidden");
    nobody
        .send_json(json!({"type": "publish", "room": "todo:1", "data": 1, "ref": 2}))
        .await;
    assert_eq!(nobody.next_json().await["code"], "forbidden");

    // A read-only room token lets her in, but not publish.
    let ticket = app.token_with("mallory", |c| c.room = Some("todo:1".into()));
    nobody
        .send_json(json!({"type": "join", "room": "todo:1", "token": ticket, "ref": 3}))
        .await;
    assert_eq!(nobody.next_json().await["type"], "joined");
    nobody
        .send_json(json!({"type": "publish", "room": "todo:1", "data": 1, "ref": 4}))
        .await;
    let error = nobody.next_json().await;
    assert_eq!(error["code"], "forbidden", "{error}");
    // A ticket for another room, or another user's ticket, opens nothing.
    let other_user = app.token_with("bob", |c| c.room = Some("todo:2".into()));
    nobody
        .send_json(json!({"type": "join", "room": "todo:2", "token": other_user, "ref": 5}))
        .await;
    assert_eq!(nobody.next_json().await["code"], "forbidden");
    let reading = app.token_with("eve", |c| c.rooms_read = vec!["news:*".into()]);
    let mut eve = app.ws_with_token(&reading).await;
    assert_eq!(join(&mut eve, "news:today", 1).await["type"], "joined");
    assert_eq!(join(&mut eve, "todo:1", 2).await["code"], "forbidden");
}

#[tokio::test]
async fn presence_counts_a_user_with_two_tabs_once() {
    let app = spawn_app().await;
    let mut bob = app.ws_with_token(&member_of(&app, "bob", "*")).await;
    join(&mut bob, "doc:7", 1).await;
    let mut a1 = app.ws_with_token(&member_of(&app, "alice", "*")).await;
    let mut a2 = app.ws_with_token(&member_of(&app, "alice", "*")).await;
    let joined = join(&mut a1, "doc:7", 1).await;
    assert_eq!(joined["members"], json!(["alice", "bob"]));
    let joined = join(&mut a2, "doc:7", 1).await;
    assert_eq!(joined["members"], json!(["alice", "bob"]), "alice once");

    let arrival = bob.next_of("presence").await;
    assert_eq!(
        arrival,
        json!({"type": "presence", "room": "doc:7", "event": "join", "user_id": "alice"})
    );
    a1.send_json(json!({"type": "leave", "room": "doc:7", "ref": 5}))
        .await;
    assert_eq!(a1.next_json().await, json!({"type": "ack", "ref": 5}));
    a2.close().await; // the last tab goes: alice leaves
    let departure = bob.next_of("presence").await;
    assert_eq!(
        departure["event"], "leave",
        "one leave, after the last tab: {departure}"
    );
    assert_eq!(departure["user_id"], "alice");
}

#[tokio::test]
async fn room_bounds_answer_with_an_error_frame_and_keep_the_socket() {
    let app = spawn_app_with(|c| {
        c.rooms.max_rooms_per_connection = 2;
        c.rooms.max_users_per_room = 1;
        c.rooms.max_message_bytes = 64;
        c.rooms.publish_per_second = 1;
        c.rooms.publish_burst = 1;
    })
    .await;
    let mut alice = app.ws_with_token(&member_of(&app, "alice", "*")).await;
    join(&mut alice, "r:1", 1).await;
    join(&mut alice, "r:2", 2).await;
    let third = join(&mut alice, "r:3", 3).await;
    assert_eq!(third["code"], "limit_exceeded", "{third}");

    let mut bob = app.ws_with_token(&member_of(&app, "bob", "*")).await;
    let full = join(&mut bob, "r:1", 1).await;
    assert_eq!(full["code"], "limit_exceeded", "{full}");

    alice
        .send_json(json!({"type": "publish", "room": "r:1", "data": "x".repeat(100), "ref": 4}))
        .await;
    assert_eq!(alice.next_json().await["code"], "payload_too_large");
    alice
        .send_json(json!({"type": "publish", "room": "r:1", "data": 1, "ref": 5}))
        .await;
    assert_eq!(alice.next_json().await, json!({"type": "ack", "ref": 5}));
    alice
        .send_json(json!({"type": "publish", "room": "r:1", "data": 2, "ref": 6}))
        .await;
    assert_eq!(alice.next_json().await["code"], "rate_limited");
    let bad = join(&mut alice, "bad room", 7).await;
    assert_eq!(bad["code"], "validation");
    // Still connected.
    alice.send_json(json!({"type": "ping", "ref": 8})).await;
    assert_eq!(alice.next_json().await["type"], "pong");
}

#[tokio::test]
async fn rooms_span_nodes_with_messages_and_presence() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.broker.kind = BrokerKind::Redis;
    config.broker.url = Some("redis://127.0.0.1:6379".into());
    config.broker.prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let a = start(config.clone(), dir.clone()).await;
    let b = start(config, dir).await;

    let mut alice = a.ws_with_token(&member_of(&a, "alice", "*")).await;
    join(&mut alice, "board:1", 1).await;
    let mut bob = b.ws_with_token(&member_of(&b, "bob", "*")).await;
    let joined = join(&mut bob, "board:1", 1).await;
    // Bob's node learns about alice either in the snapshot or right after, by presence.
    if !joined["members"]
        .as_array()
        .unwrap()
        .contains(&json!("alice"))
    {
        let presence = bob.next_of("presence").await;
        assert_eq!(presence["user_id"], "alice");
    }
    let arrival = alice.next_of("presence").await;
    assert_eq!(arrival["user_id"], "bob");
    assert_eq!(arrival["event"], "join");

    bob.send_json(json!({"type": "publish", "room": "board:1", "data": {"x": 1}}))
        .await;
    let message = alice.next_of("message").await;
    assert_eq!(message["from"], "bob");
    bob.close().await;
    let departure = alice.next_of("presence").await;
    assert_eq!(departure["event"], "leave");
    assert_eq!(departure["user_id"], "bob");
}
