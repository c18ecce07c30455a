//! The inbox over HTTP: listing, counts, read state, pagination, and isolation between users.

use serde_json::json;

use crate::support::spawn_app;

#[tokio::test]
async fn a_stored_notification_is_listed_and_counted_for_its_recipient() {
    let app = spawn_app().await;
    let seq = app
        .notify("alice", "comment.created", json!({"post_id": 7}))
        .await;
    assert_eq!(seq, 1);

    let (status, page) = app.get_as("alice", "/v1/me/notifications").await;
    assert_eq!(status, 200);
    assert_eq!(page["unread_count"], 1);
    assert_eq!(page["last_seq"], 1);
    let item = &page["notifications"][0];
    assert_eq!(item["type"], "comment.created");
    assert_eq!(item["data"]["post_id"], 7);
    assert_eq!(item["user_id"], "alice");
    assert!(item["read_at"].is_null());

    let (_, count) = app.get_as("alice", "/v1/me/unread-count").await;
    assert_eq!(
        count,
        json!({"unread_count": 1, "last_seq": 1, "state_version": 0})
    );
}

#[tokio::test]
async fn one_request_to_many_recipients_gives_each_their_own_sequence() {
    let app = spawn_app().await;
    app.notify("bob", "t", json!({})).await;
    let (status, body) = app
        .backend_post(
            "/v1/notifications",
            &json!({"recipients": ["alice", "bob", "alice"], "type": "t"}),
        )
        .await;
    assert_eq!(status, 201);
    let refs = body["notifications"].as_array().unwrap();
    assert_eq!(refs.len(), 2, "duplicate recipients are collapsed: {body}");
    assert_eq!(refs[0]["user_id"], "alice");
    assert_eq!(refs[0]["seq"], 1);
    assert_eq!(refs[1]["user_id"], "bob");
    assert_eq!(refs[1]["seq"], 2);
}

#[tokio::test]
async fn users_never_see_or_change_each_others_notifications() {
    let app = spawn_app().await;
    app.notify("alice", "secret.for.alice", json!({"x": 1}))
        .await;
    let (_, page) = app.get_as("alice", "/v1/me/notifications").await;
    let alice_id = page["notifications"][0]["id"].as_str().unwrap().to_owned();

    let (_, bob_page) = app.get_as("bob", "/v1/me/notifications").await;
    assert_eq!(bob_page["notifications"], json!([]));
    assert_eq!(bob_page["unread_count"], 0);

    let (status, changed) = app
        .post_as(
            "bob",
            "/v1/me/notifications/read",
            json!({"ids": [alice_id]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(changed["changed"], 0);
    let (status, _) = app
        .user_request(
            reqwest::Method::DELETE,
            "bob",
            &format!("/v1/me/notifications/{alice_id}"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .post_as("bob", "/v1/me/notifications/read-all", json!({}))
        .await;
    assert_eq!(status, 200);

    let (_, page) = app.get_as("alice", "/v1/me/notifications").await;
    assert_eq!(
        page["unread_count"], 1,
        "bob's actions left alice's inbox alone"
    );
    assert_eq!(page["notifications"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn read_unread_seen_archive_and_delete_change_the_counts() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.notify("alice", "t", json!({"i": i})).await;
    }
    let (_, page) = app.get_as("alice", "/v1/me/notifications").await;
    let ids: Vec<String> = page["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();

    let (_, r) = app
        .post_as(
            "alice",
            "/v1/me/notifications/read",
            json!({"ids": [ids[0]]}),
        )
        .await;
    assert_eq!(r, json!({"changed": 1, "unread_count": 2}));
    let (_, r) = app
        .post_as(
            "alice",
            "/v1/me/notifications/unread",
            json!({"ids": [ids[0]]}),
        )
        .await;
    assert_eq!(r, json!({"changed": 1, "unread_count": 3}));
    let (_, r) = app
        .post_as(
            "alice",
            "/v1/me/notifications/seen",
            json!({"ids": [ids[1]]}),
        )
        .await;
    assert_eq!(r["changed"], 1);
    let (_, r) = app
        .post_as(
            "alice",
            "/v1/me/notifications/archive",
            json!({"ids": [ids[2]]}),
        )
        .await;
    assert_eq!(r, json!({"changed": 1, "unread_count": 2}));
    let (_, archived) = app
        .get_as("alice", "/v1/me/notifications?archived=true")
        .await;
    assert_eq!(archived["notifications"][0]["id"], ids[2].as_str());

    let (status, _) = app
        .user_request(
            reqwest::Method::DELETE,
            "alice",
            &format!("/v1/me/notifications/{}", ids[1]),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, r) = app
        .post_as("alice", "/v1/me/notifications/read-all", json!({}))
        .await;
    // The unread one and the archived one (archived items are not counted, but are read too).
    assert_eq!(r, json!({"changed": 2, "unread_count": 0}));

    let (_, unread) = app
        .get_as("alice", "/v1/me/notifications?unread=true")
        .await;
    assert_eq!(unread["notifications"], json!([]));
}

#[tokio::test]
async fn cursor_pages_are_stable_while_new_notifications_arrive() {
    let app = spawn_app().await;
    for i in 1..=5 {
        app.notify("alice", "t", json!({"i": i})).await;
    }
    let (_, first) = app.get_as("alice", "/v1/me/notifications?limit=2").await;
    let seqs = |page: &serde_json::Value| -> Vec<i64> {
        page["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["seq"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&first), vec![5, 4]);
    // New notifications arrive between page fetches.
    for i in 6..=8 {
        app.notify("alice", "t", json!({"i": i})).await;
    }
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app
        .get_as(
            "alice",
            &format!("/v1/me/notifications?limit=2&cursor={cursor}"),
        )
        .await;
    assert_eq!(seqs(&second), vec![3, 2]);
    let cursor = second["next_cursor"].as_str().unwrap();
    let (_, third) = app
        .get_as(
            "alice",
            &format!("/v1/me/notifications?limit=2&cursor={cursor}"),
        )
        .await;
    assert_eq!(seqs(&third), vec![1]);
    assert!(third["next_cursor"].is_null());
}

#[tokio::test]
async fn the_type_filter_and_expiry_narrow_the_list() {
    let app = spawn_app().await;
    app.notify("alice", "post.liked", json!({})).await;
    app.notify("alice", "comment.created", json!({})).await;
    let (status, _) = app
        .backend_post(
            "/v1/notifications",
            &json!({"recipients": ["alice"], "type": "soon.gone",
                    "expires_at": "2999-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, liked) = app
        .get_as("alice", "/v1/me/notifications?type=post.liked")
        .await;
    assert_eq!(liked["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(liked["notifications"][0]["type"], "post.liked");
    let (_, all) = app.get_as("alice", "/v1/me/notifications").await;
    assert_eq!(
        all["notifications"][0]["expires_at"],
        "2999-01-01T00:00:00Z"
    );
}
