//! Token errors that say what is wrong, in the 401 body and in the WebSocket's `error` frame and
//! close reason; integer `sub`s; `aud`/`iss` required when configured; `iat` in the future;
//! `?token=` only where a browser cannot send a header.

use futures_util::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{DEADLINE, JWT_SECRET, TestApp, WsClient, spawn_app, spawn_app_with};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: Value) -> String {
    sign(claims, JWT_SECRET)
}

fn sign(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The 401 message of `GET /v1/me/notifications` with `token`.
async fn http_refusal(app: &TestApp, token: &str) -> String {
    let response = app
        .client
        .get(format!("{}/v1/me/notifications", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

/// What a WebSocket refused for `token` (sent in an `auth` frame) shows: the `error` frame's
/// message, the close code and the close reason.
async fn ws_refusal(app: &TestApp, token: &str) -> (String, u16, String) {
    let mut ws = WsClient::connect(&format!("{}/v1/ws", app.ws_base)).await;
    ws.send_json(json!({"type": "auth", "token": token})).await;
    let mut message = String::new();
    loop {
        let next = tokio::time::timeout(DEADLINE, ws.stream.next())
            .await
            .expect("no frame in time");
        match next {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(frame["type"], "error", "{frame}");
                assert_eq!(frame["code"], "unauthorized", "{frame}");
                message = frame["message"].as_str().unwrap().to_owned();
            }
            Some(Ok(Message::Close(Some(close)))) => {
                return (message, u16::from(close.code), close.reason.to_string());
            }
            Some(Ok(_)) => continue,
            other => panic!("connection ended without a close frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn every_token_error_says_what_is_wrong_over_http_and_websocket() {
    let app = spawn_app_with(|c| c.auth.leeway_secs = 0).await;
    let exp = now() + 3600;
    let expired_at = 1_700_000_000u64; // 2023-11-14T22:13:20Z
    let cases: Vec<(&str, String, &str)> = vec![
        ("no exp", hs256(json!({"sub": "a"})), "exp is required"),
        (
            "exp not a number",
            hs256(json!({"sub": "a", "exp": "tomorrow"})),
            "exp is required",
        ),
        (
            "expired",
            hs256(json!({"sub": "a", "exp": expired_at})),
            "token expired at 2023-11-14T22:13:20Z (now ",
        ),
        (
            "not yet valid",
            hs256(json!({"sub": "a", "exp": exp, "nbf": exp - 60})),
            "token is not valid before ",
        ),
        (
            "issued in the future",
            hs256(json!({"sub": "a", "exp": exp, "iat": exp - 60})),
            "is in the future",
        ),
        (
            "no sub",
            hs256(json!({"exp": exp})),
            "sub is required (the user id, a string)",
        ),
        (
            "empty sub",
            hs256(json!({"sub": "", "exp": exp})),
            "sub must be a non-empty string",
        ),
        (
            "sub of another type",
            hs256(json!({"sub": true, "exp": exp})),
            "sub must be a non-empty string (or an integer)",
        ),
        (
            "sub with a space",
            hs256(json!({"sub": "a b", "exp": exp})),
            "sub must be a non-empty string of at most 128 characters",
        ),
        (
            "wrong secret",
            sign(json!({"sub": "a", "exp": exp}), "another-secret"),
            "signature does not verify",
        ),
        ("garbage", "abc.def.ghi".into(), "token is not a JWT"),
        (
            "alg none",
            // {"alg":"none","typ":"JWT"} . {"sub":"a","exp":9999999999} . (no signature)
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.".into(),
            "token is not a JWT",
        ),
        (
            "RS256 without a public key",
            // {"alg":"RS256","typ":"JWT"} . {"sub":"a","exp":9999999999} . "sig"
            "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.c2ln"
                .into(),
            "alg RS256 is not accepted",
        ),
        (
            "oversized",
            "a".repeat(10_000),
            "token is larger than 8192 bytes",
        ),
    ];
    for (what, token, expected) in &cases {
        let message = http_refusal(&app, token).await;
        assert!(
            message.starts_with(expected) || message.contains(expected),
            "{what}: HTTP said {message:?}, expected {expected:?}"
        );
        assert!(!message.contains(token.as_str()), "{what}: token echoed");
        let (frame, code, reason) = ws_refusal(&app, token).await;
        assert_eq!(code, 4001, "{what}");
        assert_eq!(
            frame, message,
            "{what}: the error frame says what HTTP says"
        );
        assert!(
            message.starts_with(&reason) && !reason.is_empty() && reason.len() <= 123,
            "{what}: close reason {reason:?} is not the message {message:?} (cut to 123 bytes)"
        );
    }
    // A bad token in the URL of the handshake is refused the same way.
    let expired = hs256(json!({"sub": "a", "exp": expired_at}));
    let mut ws = WsClient::connect(&format!("{}/v1/ws?token={expired}", app.ws_base)).await;
    let frame = ws.next_json().await;
    assert!(
        frame["message"]
            .as_str()
            .unwrap()
            .starts_with("token expired at 2023-11-14T22:13:20Z"),
        "{frame}"
    );
}

#[tokio::test]
async fn aud_and_iss_are_required_when_configured_and_must_match() {
    let app = spawn_app_with(|c| {
        c.auth.audience = Some("belfry".into());
        c.auth.issuer = Some("https://app.example".into());
    })
    .await;
    let exp = now() + 3600;
    let iss = "https://app.example";
    let cases = [
        (
            json!({"sub": "a", "exp": exp, "iss": iss}),
            "aud is required",
        ),
        (
            json!({"sub": "a", "exp": exp, "iss": iss, "aud": 7}),
            "aud is required",
        ),
        (
            json!({"sub": "a", "exp": exp, "iss": iss, "aud": "other"}),
            "aud does not match (expected \"belfry\")",
        ),
        (
            json!({"sub": "a", "exp": exp, "aud": "belfry"}),
            "iss is required",
        ),
        (
            json!({"sub": "a", "exp": exp, "aud": "belfry", "iss": 1}),
            "iss is required",
        ),
        (
            json!({"sub": "a", "exp": exp, "aud": "belfry", "iss": "https://evil.example"}),
            "iss does not match (expected \"https://app.example\")",
        ),
    ];
    for (claims, expected) in cases {
        let message = http_refusal(&app, &hs256(claims.clone())).await;
        assert!(message.starts_with(expected), "{claims}: {message:?}");
    }
    let good = hs256(json!({"sub": "a", "exp": exp, "aud": ["x", "belfry"], "iss": iss}));
    let (status, _) = status_of(&app, &good).await;
    assert_eq!(status, 200);
}

async fn status_of(app: &TestApp, token: &str) -> (u16, Value) {
    let response = app
        .client
        .get(format!("{}/v1/me/unread-count", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_integer_sub_is_the_user_named_by_its_decimal_text() {
    let app = spawn_app().await;
    app.notify("42", "t", json!({})).await;
    let token = hs256(json!({"sub": 42, "exp": now() + 3600}));
    let response = app
        .client
        .get(format!("{}/v1/me/notifications", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["notifications"].as_array().unwrap().len(), 1, "{body}");
    let ws = &mut WsClient::connect(&format!("{}/v1/ws", app.ws_base)).await;
    ws.send_json(json!({"type": "auth", "token": token})).await;
    assert_eq!(ws.next_json().await["user_id"], "42");
    // A float is no user id.
    let message = http_refusal(&app, &hs256(json!({"sub": 4.2, "exp": now() + 3600}))).await;
    assert_eq!(message, "sub must be a non-empty string (or an integer)");
}

#[tokio::test]
async fn a_token_issued_within_the_leeway_is_accepted() {
    let app = spawn_app().await;
    let token = hs256(json!({"sub": "a", "exp": now() + 3600, "iat": now() + 10}));
    assert_eq!(status_of(&app, &token).await.0, 200);
}

#[tokio::test]
async fn a_token_in_the_query_is_refused_except_by_the_websocket_and_sse() {
    let app = spawn_app().await;
    let token = app.token("alice");
    for path in [
        "/v1/me/notifications",
        "/v1/me/unread-count",
        "/v1/me/preferences",
        "/v1/poll?timeout=0",
    ] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let response = app
            .client
            .get(format!("{}{path}{sep}token={token}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("send `Authorization: Bearer <token>`"),
            "{path}: {message}"
        );
        // Even alongside a valid header: a token in a URL is a leak to refuse, not to ignore.
        let response = app
            .client
            .get(format!("{}{path}{sep}token={token}", app.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path} with a header too");
    }
    // EventSource cannot send a header: /v1/sse takes the query.
    let response = app
        .client
        .get(format!("{}/v1/sse?token={token}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    // So does the WebSocket handshake.
    app.ws_with_token(&token).await;
}

#[tokio::test]
async fn a_refused_refresh_says_why_and_keeps_the_connection() {
    let app = spawn_app().await;
    let (mut ws, _) = app.ws_ready("alice", None).await;
    let cases = [
        (
            hs256(json!({"sub": "alice", "exp": 1_700_000_000u64})),
            "token expired at 2023-11-14T22:13:20Z",
        ),
        (
            sign(json!({"sub": "alice", "exp": now() + 60}), "another-secret"),
            "signature does not verify",
        ),
        (hs256(json!({"sub": "alice"})), "exp is required"),
    ];
    for (reference, (token, expected)) in (1..).zip(cases) {
        ws.send_json(json!({"type": "auth", "token": token, "ref": reference}))
            .await;
        let answer = ws.next_json().await;
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["code"], "unauthorized");
        assert_eq!(answer["ref"], reference);
        let message = answer["message"].as_str().unwrap();
        assert!(message.starts_with(expected), "{message}");
    }
    app.notify("alice", "still.open", json!({})).await;
    assert_eq!(
        ws.next_of("notification").await["notification"]["type"],
        "still.open"
    );
}
