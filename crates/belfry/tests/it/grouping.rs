//! Grouping: events with the same `group_key` collapse into one inbox item that counts its
//! actors, updated live in place on every tab, and resumed as one `updated` frame.

use serde_json::{Value, json};

use crate::support::{TestApp, spawn_app, spawn_app_with};

/// A like of post 1 by `actor`, for `user`; returns the stored ref.
async fn like(app: &TestApp, user: &str, actor: &str) -> Value {
    let (status, body) = app
        .backend_post(
            "/v1/notifications",
            &json!({"recipients": [user], "type": "post.liked", "group_key": "post:1:likes",
                    "actor": actor, "data": {"post_id": 1, "actor_name": actor}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["notifications"][0].clone()
}

async fn inbox(app: &TestApp, user: &str) -> Value {
    let (status, page) = app.get_as(user, "/v1/me/notifications").await;
    assert_eq!(status, 200, "{page}");
    page
}

#[tokio::test]
async fn ten_likes_within_the_window_become_one_item_with_count_ten_updated_live_on_every_tab() {
    let app = spawn_app().await;
    let (mut tab1, _) = app.ws_ready("author", None).await;
    let (mut tab2, _) = app.ws_ready("author", None).await;

    let mut refs = Vec::new();
    for i in 0..10 {
        refs.push(like(&app, "author", &format!("fan{i}")).await);
    }

    let id = refs[0]["id"].clone();
    assert!(refs.iter().all(|r| r["id"] == id), "one item: {refs:?}");
    for tab in [&mut tab1, &mut tab2] {
        let first = tab.next_json().await;
        assert_eq!(first["type"], "notification", "{first}");
        assert_eq!(first["notification"]["count"], 1);
        let mut last_seq = first["seq"].as_i64().unwrap();
        for count in 2..=10 {
            let frame = tab.next_json().await;
            assert_eq!(frame["type"], "updated", "{frame}");
            assert_eq!(frame["notification"]["id"], id);
            assert_eq!(frame["notification"]["count"], count);
            assert_eq!(frame["notification"]["actor_count"], count);
            let seq = frame["seq"].as_i64().unwrap();
            assert!(seq > last_seq, "seq only grows on a connection");
            assert_eq!(frame["notification"]["seq"], seq);
            last_seq = seq;
        }
    }

    let page = inbox(&app, "author").await;
    let items = page["notifications"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let item = &items[0];
    assert_eq!(item["id"], id);
    assert_eq!(item["count"], 10);
    assert_eq!(item["actor_count"], 10);
    assert_eq!(
        item["actors"].as_array().unwrap().len(),
        10,
        "max_actors = 10"
    );
    assert_eq!(item["actors"][0], "fan9", "most recent first");
    assert_eq!(
        item["data"]["actor_name"], "fan9",
        "the newest event's data"
    );
    assert!(item["updated_at"].is_string());
    assert_eq!(page["unread_count"], 1, "unread counts items, not events");
    assert_eq!(page["last_seq"], item["seq"]);
}

#[tokio::test]
async fn a_resuming_client_gets_the_grouped_item_once_as_an_updated_frame() {
    let app = spawn_app().await;
    for i in 0..3 {
        like(&app, "author", &format!("fan{i}")).await;
    }
    let (mut ws, hello) = app.ws_ready("author", Some(0)).await;
    assert_eq!(hello["unread_count"], 1);
    let frame = ws.next_json().await;
    assert_eq!(frame["type"], "updated", "{frame}");
    assert_eq!(frame["notification"]["count"], 3);
    // Nothing else is replayed: the next frame is the next notification.
    let later = app.notify("author", "comment.created", json!({})).await;
    let next = ws.next_json().await;
    assert_eq!(next["type"], "notification", "{next}");
    assert_eq!(next["seq"], later);
}

#[tokio::test]
async fn one_actor_liking_twice_counts_two_events_and_one_actor() {
    let app = spawn_app().await;
    like(&app, "author", "alice").await;
    like(&app, "author", "bob").await;
    like(&app, "author", "alice").await;
    let page = inbox(&app, "author").await;
    let item = &page["notifications"][0];
    assert_eq!(item["count"], 3);
    assert_eq!(item["actor_count"], 2);
    assert_eq!(item["actors"], json!(["alice", "bob"]));
}

#[tokio::test]
async fn a_read_item_is_not_grown_again_a_new_item_starts() {
    let app = spawn_app().await;
    let first = like(&app, "author", "alice").await;
    like(&app, "author", "bob").await;
    let (status, body) = app
        .post_as(
            "author",
            "/v1/me/notifications/read",
            json!({"ids": [first["id"]]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let third = like(&app, "author", "carol").await;
    assert_ne!(third["id"], first["id"]);
    let page = inbox(&app, "author").await;
    let items = page["notifications"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{page}");
    assert_eq!(items[0]["count"], 1);
    assert_eq!(items[0]["actors"], json!(["carol"]));
    assert_eq!(items[1]["count"], 2);
    assert_eq!(page["unread_count"], 1);
}

#[tokio::test]
async fn grouping_keeps_users_and_keys_apart_and_can_be_turned_off() {
    let app = spawn_app().await;
    like(&app, "author", "alice").await;
    like(&app, "someone-else", "alice").await;
    let (status, _) = app
        .backend_post(
            "/v1/notifications",
            &json!({"recipients": ["author"], "type": "post.liked",
                    "group_key": "post:2:likes", "actor": "bob"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        inbox(&app, "author").await["notifications"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        inbox(&app, "someone-else").await["notifications"][0]["count"],
        1
    );

    let off = spawn_app_with(|c| c.grouping.window_secs = 0).await;
    like(&off, "author", "alice").await;
    like(&off, "author", "bob").await;
    let page = inbox(&off, "author").await;
    assert_eq!(page["notifications"].as_array().unwrap().len(), 2, "{page}");
    assert_eq!(page["unread_count"], 2);
}

#[tokio::test]
async fn a_bad_actor_is_a_422_naming_the_field() {
    let app = spawn_app().await;
    let (status, body) = app
        .backend_post(
            "/v1/notifications",
            &json!({"recipients": ["u"], "type": "t", "actor": "x".repeat(129)}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["fields"].get("actor").is_some(), "{body}");
}
