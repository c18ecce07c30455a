//! Credentials: API keys for the backend, JWTs for users, on HTTP and WebSocket.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::{API_KEY, Ended, JWT_SECRET, WsClient, spawn_app, spawn_app_with};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn status_with_token(app: &crate::support::TestApp, token: &str) -> (u16, Value) {
    let response = app
        .client
        .get(format!("{}/v1/me/notifications", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn the_backend_api_refuses_missing_and_wrong_keys() {
    let app = spawn_app().await;
    let body = json!({"recipients": ["a"], "type": "t"});
    let url = format!("{}/v1/notifications", app.base);
    let missing = app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let wrong = app
        .client
        .post(&url)
        .bearer_auth("not-the-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let answer: Value = wrong.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "unauthorized");
    // A user token is not an API key.
    let user = app
        .client
        .post(&url)
        .bearer_auth(app.token("a"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(user.status(), 401);
    // And an API key is not a user token.
    let (status, _) = status_with_token(&app, API_KEY).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn bad_user_tokens_are_401_on_http() {
    let app = spawn_app().await;
    let exp = now() + 3600;
    let cases = [
        (
            "expired",
            hs256(json!({"sub": "a", "exp": now() - 3600}), JWT_SECRET),
        ),
        (
            "wrong secret",
            hs256(json!({"sub": "a", "exp": exp}), "other-secret"),
        ),
        ("no exp", hs256(json!({"sub": "a"}), JWT_SECRET)),
        (
            "not yet valid",
            hs256(json!({"sub": "a", "exp": exp, "nbf": exp - 60}), JWT_SECRET),
        ),
        (
            "alg none",
            // {"alg":"none","typ":"JWT"} . {"sub":"a","exp":9999999999} . (no signature)
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.".into(),
        ),
        ("garbage", "abc.def.ghi".into()),
        ("oversized", "a".repeat(10_000)),
    ];
    for (what, token) in cases {
        let (status, body) = status_with_token(&app, &token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{what}");
        assert!(
            !body.to_string().contains(&token),
            "{what}: token echoed back"
        );
    }
    let (status, body) = status_with_token(
        &app,
        &hs256(json!({"sub": "a", "exp": now() - 3600}), JWT_SECRET),
    )
    .await;
    assert_eq!(status, 401);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("token expired at "), "{message}");
}

#[tokio::test]
async fn audience_and_issuer_are_checked_when_configured() {
    let app = spawn_app_with(|c| {
        c.auth.audience = Some("belfry".into());
        c.auth.issuer = Some("https://app.example".into());
    })
    .await;
    let exp = now() + 3600;
    let good = hs256(
        json!({"sub": "a", "exp": exp, "aud": "belfry", "iss": "https://app.example"}),
        JWT_SECRET,
    );
    assert_eq!(status_with_token(&app, &good).await.0, 200);
    let wrong_aud = hs256(
        json!({"sub": "a", "exp": exp, "aud": "other", "iss": "https://app.example"}),
        JWT_SECRET,
    );
    assert_eq!(status_with_token(&app, &wrong_aud).await.0, 401);
    let wrong_iss = hs256(
        json!({"sub": "a", "exp": exp, "aud": "belfry", "iss": "https://evil.example"}),
        JWT_SECRET,
    );
    assert_eq!(status_with_token(&app, &wrong_iss).await.0, 401);
}

#[tokio::test]
async fn a_websocket_with_a_bad_token_is_closed_with_4001() {
    let app = spawn_app().await;
    let expired = hs256(json!({"sub": "a", "exp": now() - 3600}), JWT_SECRET);
    let mut ws = WsClient::connect(&format!("{}/v1/ws?token={expired}", app.ws_base)).await;
    assert_eq!(ws.closed().await, Ended::Closed(4001));

    let mut ws = WsClient::connect(&format!("{}/v1/ws", app.ws_base)).await;
    ws.send_json(json!({"type": "auth", "token": "garbage"}))
        .await;
    assert_eq!(ws.closed().await, Ended::Closed(4001));
}

#[tokio::test]
async fn the_auth_frame_authenticates_without_a_token_in_the_url() {
    let app = spawn_app().await;
    app.notify("alice", "t", json!({})).await;
    let mut ws = WsClient::connect(&format!("{}/v1/ws", app.ws_base)).await;
    ws.send_json(json!({"type": "auth", "token": app.token("alice"), "since": 0}))
        .await;
    let hello = ws.next_json().await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["user_id"], "alice");
    let backlog = ws.next_json().await;
    assert_eq!(
        backlog["seq"], 1,
        "since in the auth frame resumes: {backlog}"
    );
}

#[tokio::test]
async fn a_websocket_that_never_authenticates_is_closed_with_4002() {
    let app = spawn_app_with(|c| c.ws.auth_timeout_secs = 1).await;
    let mut ws = WsClient::connect(&format!("{}/v1/ws", app.ws_base)).await;
    assert_eq!(ws.closed().await, Ended::Closed(4002));
}

#[tokio::test]
async fn a_connection_is_closed_with_4001_when_its_token_expires_unless_refreshed() {
    let app = spawn_app_with(|c| c.auth.leeway_secs = 0).await;
    let short = hs256(json!({"sub": "alice", "exp": now() + 2}), JWT_SECRET);
    let mut refreshed = WsClient::connect(&format!("{}/v1/ws?token={short}", app.ws_base)).await;
    let mut expiring = WsClient::connect(&format!("{}/v1/ws?token={short}", app.ws_base)).await;
    assert_eq!(refreshed.next_json().await["type"], "hello");
    assert_eq!(expiring.next_json().await["type"], "hello");
    refreshed
        .send_json(json!({"type": "auth", "token": app.token("alice"), "ref": 1}))
        .await;
    assert_eq!(
        refreshed.next_json().await,
        json!({"type": "ack", "ref": 1})
    );

    assert_eq!(expiring.closed().await, Ended::Closed(4001));
    // The refreshed connection outlives the first token and still delivers.
    app.notify("alice", "after.expiry", json!({})).await;
    let frame = refreshed.next_of("notification").await;
    assert_eq!(frame["notification"]["type"], "after.expiry");
}

#[tokio::test]
async fn a_refresh_token_for_another_user_is_refused() {
    let app = spawn_app().await;
    let (mut ws, _) = app.ws_ready("alice", None).await;
    ws.send_json(json!({"type": "auth", "token": app.token("mallory"), "ref": 9}))
        .await;
    let answer = ws.next_json().await;
    assert_eq!(answer["type"], "error");
    assert_eq!(answer["code"], "forbidden");
    assert_eq!(answer["ref"], 9);
}

#[tokio::test]
async fn a_refresh_whose_exp_is_near_the_end_of_time_keeps_the_connection_alive() {
    let app = spawn_app().await;
    let (mut ws, _) = app.ws_ready("alice", None).await;
    for (reference, exp) in [(1, u64::MAX), (2, u64::MAX / 2), (3, now() + 3600)] {
        let token = hs256(json!({"sub": "alice", "exp": exp}), JWT_SECRET);
        ws.send_json(json!({"type": "auth", "token": token, "ref": reference}))
            .await;
        assert_eq!(
            ws.next_json().await,
            json!({"type": "ack", "ref": reference})
        );
    }
    app.notify("alice", "still.here", json!({})).await;
    let frame = ws.next_of("notification").await;
    assert_eq!(frame["notification"]["type"], "still.here");
}

#[tokio::test]
async fn a_refresh_with_a_narrower_token_leaves_the_rooms_it_no_longer_grants() {
    let app = spawn_app().await;
    let wide = app.token_with("alice", |c| c.rooms = vec!["doc:*".into(), "chat:*".into()]);
    let mut ws = app.ws_with_token(&wide).await;
    for (reference, room) in [(1, "doc:1"), (2, "chat:1")] {
        ws.send_json(json!({"type": "join", "room": room, "ref": reference}))
            .await;
        assert_eq!(ws.next_of("joined").await["ref"], reference);
    }
    let narrow = app.token_with("alice", |c| c.rooms_read = vec!["chat:*".into()]);
    ws.send_json(json!({"type": "auth", "token": narrow, "ref": 3}))
        .await;
    let notice = ws.next_json().await;
    assert_eq!(notice["type"], "error", "{notice}");
    assert_eq!(notice["code"], "forbidden");
    assert_eq!(
        notice["message"],
        "left room `doc:1`: the refreshed token does not grant it"
    );
    assert_eq!(ws.next_json().await, json!({"type": "ack", "ref": 3}));
    // Out of doc:1; still in chat:1, read-only now.
    ws.send_json(json!({"type": "publish", "room": "doc:1", "data": 1, "ref": 4}))
        .await;
    let answer = ws.next_of("error").await;
    assert_eq!(answer["message"], "join `doc:1` before publishing");
    ws.send_json(json!({"type": "publish", "room": "chat:1", "data": 1, "ref": 5}))
        .await;
    let answer = ws.next_of("error").await;
    assert_eq!(answer["message"], "read-only in `chat:1`");
    ws.send_json(json!({"type": "leave", "room": "chat:1", "ref": 6}))
        .await;
    assert_eq!(ws.next_json().await, json!({"type": "ack", "ref": 6}));
}
