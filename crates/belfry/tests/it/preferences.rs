//! Preferences: a muted notification is kept in history but never delivered live (WebSocket,
//! resume, long-poll); changes reach every tab; bad documents are refused with the field named.

use serde_json::{Value, json};

use crate::support::{TestApp, spawn_app, spawn_app_with};

async fn put_preferences(app: &TestApp, user: &str, body: Value) -> (u16, Value) {
    app.user_request(reqwest::Method::PUT, user, "/v1/me/preferences", Some(body))
        .await
}

async fn notify(app: &TestApp, users: &[&str], kind: &str) -> Value {
    let (status, body) = app
        .backend_post(
            "/v1/notifications",
            &json!({"recipients": users, "type": kind}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

#[tokio::test]
async fn muting_a_type_stops_live_delivery_but_keeps_history() {
    let app = spawn_app().await;
    let (mut ws, _) = app.ws_ready("u1", None).await;
    let (status, body) = put_preferences(
        &app,
        "u1",
        json!({"types": {"post.liked": {"in_app": false}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["types"]["post.liked"]["in_app"], false);
    let frame = ws.next_json().await;
    assert_eq!(frame["type"], "preferences", "{frame}");
    assert_eq!(frame["preferences"], body);

    let liked = notify(&app, &["u1"], "post.liked").await;
    assert_eq!(liked["notifications"][0]["muted"], true, "{liked}");
    let commented = notify(&app, &["u1"], "comment.created").await;
    assert!(commented["notifications"][0].get("muted").is_none());

    // The like (lower seq) was never sent: the next frame is the comment.
    let next = ws.next_json().await;
    assert_eq!(next["type"], "notification", "{next}");
    assert_eq!(next["notification"]["type"], "comment.created");

    let (_, page) = app.get_as("u1", "/v1/me/notifications").await;
    let items = page["notifications"].as_array().unwrap();
    assert_eq!(items.len(), 2, "history keeps the muted one: {page}");
    assert_eq!(items[1]["type"], "post.liked");
    assert_eq!(items[1]["muted"], true);
    assert!(items[1]["read_at"].is_string(), "stored read");
    assert_eq!(page["unread_count"], 1);

    // Resume and long-poll skip it too.
    let (mut resumed, _) = app.ws_ready("u1", Some(0)).await;
    let first = resumed.next_json().await;
    assert_eq!(first["notification"]["type"], "comment.created", "{first}");
    let (status, polled) = app.get_as("u1", "/v1/poll?after=0&timeout=1").await;
    assert_eq!(status, 200);
    let polled: Vec<&Value> = polled["notifications"].as_array().unwrap().iter().collect();
    assert_eq!(polled.len(), 1, "{polled:?}");
    assert_eq!(polled[0]["type"], "comment.created");
}

#[tokio::test]
async fn global_mute_and_mute_until_silence_everything_until_they_end() {
    let app = spawn_app().await;
    put_preferences(&app, "u1", json!({"muted": true})).await;
    let all = notify(&app, &["u1", "u2"], "t").await;
    assert_eq!(all["notifications"][0]["muted"], true);
    assert!(
        all["notifications"][1].get("muted").is_none(),
        "u2 is not muted"
    );

    let soon = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    put_preferences(&app, "u1", json!({"mute_until": soon})).await;
    let during = notify(&app, &["u1"], "t").await;
    assert_eq!(during["notifications"][0]["muted"], true);

    put_preferences(&app, "u1", json!({"mute_until": "2001-01-01T00:00:00Z"})).await;
    let after = notify(&app, &["u1"], "t").await;
    assert!(after["notifications"][0].get("muted").is_none(), "{after}");
    let (_, count) = app.get_as("u1", "/v1/me/unread-count").await;
    assert_eq!(count["unread_count"], 1);
}

#[tokio::test]
async fn with_muted_drop_a_muted_recipient_gets_nothing_stored() {
    let app = spawn_app_with(|c| c.preferences.muted = belfry::model::MutedAction::Drop).await;
    put_preferences(&app, "quiet", json!({"channels": {"in_app": false}})).await;
    let body = notify(&app, &["quiet", "loud"], "t").await;
    let refs = body["notifications"].as_array().unwrap();
    assert_eq!(refs.len(), 1, "{body}");
    assert_eq!(refs[0]["user_id"], "loud");
    let (_, page) = app.get_as("quiet", "/v1/me/notifications").await;
    assert_eq!(page["notifications"].as_array().unwrap().len(), 0);
    assert_eq!(page["last_seq"], 0);
}

#[tokio::test]
async fn preferences_default_validate_and_are_shared_with_the_backend() {
    let app = spawn_app().await;
    let (status, defaults) = app.get_as("u1", "/v1/me/preferences").await;
    assert_eq!(status, 200);
    assert_eq!(
        defaults,
        json!({"muted": false, "mute_until": null,
               "channels": {"in_app": true, "web_push": true}, "types": {}})
    );

    let (status, body) = put_preferences(
        &app,
        "u1",
        json!({"mute_until": "next week", "types": {"not a type": {}}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let fields = &body["error"]["fields"];
    assert!(fields.get("mute_until").is_some(), "{body}");
    assert!(fields.get("types.not a type").is_some(), "{body}");
    let (status, body) = put_preferences(&app, "u1", json!({"mute": true})).await;
    assert_eq!(status, 400, "unknown field: {body}");
    let (status, body) = put_preferences(&app, "u1", json!({"muted": "yes"})).await;
    assert_eq!(status, 400, "wrong type: {body}");

    // The backend sets them; the user's open tab hears about it and reads the same document.
    let (mut ws, _) = app.ws_ready("u1", None).await;
    let response = app
        .client
        .put(format!("{}/v1/users/u1/preferences", app.base))
        .bearer_auth(crate::support::API_KEY)
        .json(&json!({"channels": {"web_push": false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let frame = ws.next_of("preferences").await;
    assert_eq!(frame["preferences"]["channels"]["web_push"], false);
    assert_eq!(frame["preferences"]["channels"]["in_app"], true);
    let (_, mine) = app.get_as("u1", "/v1/me/preferences").await;
    assert_eq!(mine, frame["preferences"]);
    let (_, other) = app.get_as("u2", "/v1/me/preferences").await;
    assert_eq!(other, defaults, "another user's are untouched");

    let response = app
        .client
        .get(format!("{}/v1/users/u1/preferences", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        401,
        "the backend route needs the API key"
    );
}
