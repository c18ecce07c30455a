//! Bad input gets a 4xx with a JSON body naming what is wrong, and stores nothing.

use serde_json::{Value, json};

use crate::support::{API_KEY, spawn_app, spawn_app_with};

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn malformed_and_invalid_requests_name_the_field() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"recipients": ["a"], "type": "t", "colour": 1}),
            400,
            "colour",
        ),
        (json!({"recipients": "a", "type": "t"}), 400, "recipients"),
        (json!({"recipients": [], "type": "t"}), 422, "recipients"),
        (
            json!({"recipients": ["a b"], "type": "t"}),
            422,
            "recipients[0]",
        ),
        (
            json!({"recipients": ["a"], "type": "has space"}),
            422,
            "type",
        ),
        (
            json!({"recipients": ["a"], "type": "t", "data": [1]}),
            422,
            "data",
        ),
        (
            json!({"recipients": ["a"], "type": "t", "data": {"x": "y".repeat(20_000)}}),
            422,
            "data",
        ),
        (
            json!({"recipients": ["a"], "type": "t", "expires_at": "2001-01-01T00:00:00Z"}),
            422,
            "expires_at",
        ),
        (
            json!({"recipients": ["a"], "type": "t", "expires_at": "tomorrow"}),
            400,
            "expires_at",
        ),
        (json!({"type": "t"}), 400, "recipients"),
    ];
    for (body, status, field) in cases {
        let (got, answer) = app.backend_post("/v1/notifications", &body).await;
        assert_eq!(got, status, "{body} → {answer}");
        let text = answer.to_string();
        assert!(
            text.contains(field),
            "{body} → {answer} should name {field}"
        );
        if status == 422 {
            assert_eq!(error_code(&answer), "validation");
            assert!(answer["error"]["fields"].get(field).is_some(), "{answer}");
        } else {
            assert_eq!(error_code(&answer), "bad_request");
        }
    }
    let (_, count) = app.get_as("a", "/v1/me/unread-count").await;
    assert_eq!(count["unread_count"], 0, "nothing was stored");
}

#[tokio::test]
async fn not_json_and_wrong_content_type_are_400() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/v1/notifications", app.base))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "bad_request");

    let response = app
        .client
        .post(format!("{}/v1/notifications", app.base))
        .bearer_auth(API_KEY)
        .body(r#"{"recipients":["a"],"type":"t"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let app = spawn_app_with(|c| c.limits.max_body_bytes = 1024).await;
    let (status, body) = app
        .backend_post(
            "/v1/notifications",
            &json!({"recipients": ["a"], "type": "t", "data": {"x": "y".repeat(4096)}}),
        )
        .await;
    assert_eq!(status, 413);
    assert_eq!(error_code(&body), "payload_too_large");
}

#[tokio::test]
async fn a_batch_with_one_bad_item_stores_nothing() {
    let app = spawn_app().await;
    let (status, body) = app
        .backend_post(
            "/v1/notifications/batch",
            &json!({"notifications": [
                {"recipients": ["alice"], "type": "ok"},
                {"recipients": ["alice"], "type": "not ok"},
            ]}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        body["error"]["fields"]
            .get("notifications[1].type")
            .is_some(),
        "{body}"
    );
    let (_, count) = app.get_as("alice", "/v1/me/unread-count").await;
    assert_eq!(
        count,
        json!({"unread_count": 0, "last_seq": 0, "state_version": 0})
    );

    let (status, body) = app
        .backend_post(
            "/v1/notifications/batch",
            &json!({"notifications": [
                {"recipients": ["alice"], "type": "a"},
                {"recipients": ["alice", "bob"], "type": "b"},
            ]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["results"][1]["notifications"][0]["seq"], 2);
}

#[tokio::test]
async fn a_repeated_idempotency_key_creates_nothing_and_replays_the_first_result() {
    let app = spawn_app().await;
    let request = json!({"recipients": ["alice"], "type": "t", "idempotency_key": "order-1"});
    let (first_status, first) = app.backend_post("/v1/notifications", &request).await;
    assert_eq!(first_status, 201);
    let response = app
        .client
        .post(format!("{}/v1/notifications", app.base))
        .bearer_auth(API_KEY)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    let replay: Value = response.json().await.unwrap();
    assert_eq!(replay["notifications"], first["notifications"]);
    assert_eq!(replay["replayed"], true);

    let (_, count) = app.get_as("alice", "/v1/me/unread-count").await;
    assert_eq!(count["unread_count"], 1);

    let different = json!({"recipients": ["alice"], "type": "other", "idempotency_key": "order-1"});
    let (status, body) = app.backend_post("/v1/notifications", &different).await;
    assert_eq!(status, 409);
    assert_eq!(error_code(&body), "conflict");
}

#[tokio::test]
async fn concurrent_repeats_of_one_idempotency_key_store_it_once() {
    let app = spawn_app().await;
    let request = json!({"recipients": ["alice"], "type": "t", "idempotency_key": "race"});
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = app.client.clone();
        let url = format!("{}/v1/notifications", app.base);
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(API_KEY)
                .json(&request)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (status, body["notifications"][0]["id"].clone())
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        let (status, id) = task.await.unwrap();
        assert!(status == 200 || status == 201);
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every caller got the same notification");
    let (_, count) = app.get_as("alice", "/v1/me/unread-count").await;
    assert_eq!(count["unread_count"], 1);
}

#[tokio::test]
async fn bad_ids_and_limits_on_the_client_api_are_422() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_as(
            "alice",
            "/v1/me/notifications/read",
            json!({"ids": ["nope"]}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(body["error"]["fields"].get("ids[0]").is_some(), "{body}");
    let (status, _) = app.get_as("alice", "/v1/me/notifications?limit=0").await;
    assert_eq!(status, 422);
    let (status, _) = app.get_as("alice", "/v1/me/notifications?cursor=abc").await;
    assert_eq!(status, 422);
    let (status, body) = app.get_as("alice", "/v1/me/notifications?bogus=1").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.get_as("alice", "/v1/nowhere").await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test]
async fn a_plain_get_of_the_websocket_endpoint_gets_a_json_400() {
    let app = spawn_app().await;
    let response = reqwest::get(format!("{}/v1/ws", app.base)).await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "bad_request", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("WebSocket"),
        "{body}"
    );
}

#[tokio::test]
async fn json_arrays_are_refused_where_an_object_is_expected() {
    let app = spawn_app().await;
    let backend = [
        ("/v1/notifications", json!([["u1"], "t"])),
        ("/v1/notifications/batch", json!([[[["u1"], "t"]]])),
        (
            "/v1/notifications/batch",
            json!({"notifications": [[["u1"], "t"]]}),
        ),
    ];
    for (path, body) in backend {
        let (status, answer) = app.backend_post(path, &body).await;
        assert_eq!(status, 400, "{path} {body} → {answer}");
        assert_eq!(error_code(&answer), "bad_request", "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("expected a JSON object"),
            "{answer}"
        );
    }
    let (_, count) = app.get_as("u1", "/v1/me/unread-count").await;
    assert_eq!(count["unread_count"], 0, "nothing was stored");

    let (status, _) = app
        .user_request(
            reqwest::Method::PUT,
            "u1",
            "/v1/me/preferences",
            Some(json!({"muted": true})),
        )
        .await;
    assert_eq!(status, 200);
    for body in [
        json!([]),
        json!([false]),
        json!({"channels": [false, false]}),
        json!({"types": {"t": [false, false]}}),
    ] {
        let (status, answer) = app
            .user_request(
                reqwest::Method::PUT,
                "u1",
                "/v1/me/preferences",
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(error_code(&answer), "bad_request", "{answer}");
    }
    let (_, preferences) = app.get_as("u1", "/v1/me/preferences").await;
    assert_eq!(
        preferences["muted"], true,
        "the user is still muted: {preferences}"
    );

    let (status, answer) = app
        .post_as("u1", "/v1/me/notifications/read", json!([[]]))
        .await;
    assert_eq!(status, 400, "{answer}");
}

/// Asserts `response` carries the JSON error body with `code`; returns the body.
async fn json_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let what = format!("{} {}", response.status(), response.url());
    assert_eq!(response.status(), status, "{what}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: {content_type}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), code, "{what}: {body}");
    body
}

#[tokio::test]
async fn a_wrong_method_and_a_path_segment_that_is_not_utf8_get_the_json_error_body() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        (reqwest::Method::DELETE, "/v1/notifications", "POST"),
        (reqwest::Method::GET, "/v1/notifications/batch", "POST"),
        (reqwest::Method::POST, "/healthz", "GET"),
        (reqwest::Method::PATCH, "/v1/me/preferences", "GET"),
    ] {
        let response = app
            .client
            .request(method, format!("{}{path}", app.base))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        let allowed = response.headers()["allow"].to_str().unwrap().to_owned();
        assert!(allowed.contains(allow), "{path}: Allow: {allowed}");
        json_error(response, 405, "method_not_allowed").await;
    }

    let token = app.token("alice");
    for (method, path, key) in [
        (
            reqwest::Method::DELETE,
            "/v1/me/notifications/%FF%FE",
            token.as_str(),
        ),
        (reqwest::Method::GET, "/v1/users/%FF/preferences", API_KEY),
        (reqwest::Method::POST, "/v1/rooms/%C3%28/messages", API_KEY),
    ] {
        let response = app
            .client
            .request(method, format!("{}{path}", app.base))
            .bearer_auth(key)
            .json(&json!({"data": {}}))
            .send()
            .await
            .unwrap();
        json_error(response, 400, "bad_request").await;
    }
}

#[tokio::test]
async fn a_request_with_very_many_bad_ids_gets_a_short_answer() {
    let app = spawn_app().await;
    let many: Vec<String> = (0..100_000).map(|i| format!("x{i}")).collect();
    let bad_users: Vec<String> = (0..100_000).map(|i| format!("u {i}")).collect();

    // Over the count limit: refused on the count alone, one field.
    let cases = [
        (
            "/v1/me/notifications/read",
            json!({"ids": many}),
            true,
            "ids",
        ),
        (
            "/v1/notifications",
            json!({"recipients": bad_users, "type": "t"}),
            false,
            "recipients",
        ),
        (
            "/v1/notifications/batch",
            json!({"notifications": [{"recipients": bad_users, "type": "t"}]}),
            false,
            "notifications",
        ),
        (
            "/v1/notifications/batch",
            json!({"notifications": vec![json!({"recipients": [], "type": "t"}); 50_000]}),
            false,
            "notifications",
        ),
    ];
    for (path, body, as_user, field) in cases {
        let response = if as_user {
            app.client
                .post(format!("{}{path}", app.base))
                .bearer_auth(app.token("alice"))
        } else {
            app.client
                .post(format!("{}{path}", app.base))
                .bearer_auth(API_KEY)
        }
        .json(&body)
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), 422, "{path}");
        let text = response.text().await.unwrap();
        assert!(
            text.len() < 1024,
            "{path}: {} bytes: {text:.300}",
            text.len()
        );
        let answer: Value = serde_json::from_str(&text).unwrap();
        let fields = answer["error"]["fields"].as_object().unwrap();
        assert_eq!(fields.len(), 1, "{path}: {answer}");
        assert!(fields.contains_key(field), "{path}: {answer}");
    }

    // Within the limit, every element is checked but at most 20 problems are listed.
    let few: Vec<String> = (0..1000).map(|i| format!("x{i}")).collect();
    let (status, answer) = app
        .post_as("alice", "/v1/me/notifications/read", json!({"ids": few}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        answer["error"]["fields"].as_object().unwrap().len(),
        20,
        "{answer}"
    );
    assert_eq!(
        answer["error"]["message"],
        "1000 fields are invalid; the first 20 are listed"
    );
}

#[tokio::test]
async fn a_nul_character_in_a_text_input_is_a_client_error_not_a_database_outage() {
    let (private, _) = belfry::push::generate_vapid_keys();
    let app = spawn_app_with(|c| {
        c.push.vapid_private_key = Some(secrecy::SecretString::from(private));
        c.push.subject = "mailto:ops@belfry.test".into();
    })
    .await;
    for path in [
        "/v1/me/notifications?type=%00",
        "/v1/me/notifications?type=a%00b",
    ] {
        let (status, body) = app.get_as("alice", path).await;
        assert_eq!(status, 422, "{path} → {body}");
        assert!(body["error"]["fields"].get("type").is_some(), "{body}");
    }
    for (body, field) in [
        (
            json!({"recipients": ["a"], "type": "t", "data": {"x": "a\u{0}b"}}),
            "data",
        ),
        (
            json!({"recipients": ["a"], "type": "t", "data": {"k\u{0}": 1}}),
            "data",
        ),
        (
            json!({"recipients": ["a"], "type": "t", "data": {"l": [{"m": "\u{0}"}]}}),
            "data",
        ),
        (
            json!({"recipients": ["a\u{0}"], "type": "t"}),
            "recipients[0]",
        ),
        (
            json!({"recipients": ["a"], "type": "t", "group_key": "\u{0}"}),
            "group_key",
        ),
        (
            json!({"recipients": ["a"], "type": "t", "actor": "\u{0}"}),
            "actor",
        ),
    ] {
        let (status, answer) = app.backend_post("/v1/notifications", &body).await;
        assert_eq!(status, 422, "{body} → {answer}");
        assert!(answer["error"]["fields"].get(field).is_some(), "{answer}");
    }
    // A backslash followed by `u0000` is text, not a NUL.
    let (status, answer) = app
        .backend_post(
            "/v1/notifications",
            &json!({"recipients": ["a"], "type": "t", "data": {"x": "\\u0000"}}),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let endpoint = "https://push.example/\u{0}";
    let subscription = json!({"endpoint": endpoint, "keys": {"p256dh": "x", "auth": "y"}});
    for (method, body) in [
        (reqwest::Method::POST, subscription),
        (reqwest::Method::DELETE, json!({"endpoint": endpoint})),
    ] {
        let (status, answer) = app
            .user_request(method, "alice", "/v1/me/push-subscriptions", Some(body))
            .await;
        assert_eq!(status, 422, "{answer}");
        assert!(
            answer["error"]["fields"].get("endpoint").is_some(),
            "{answer}"
        );
    }
    let (status, answer) = app
        .user_request(
            reqwest::Method::PUT,
            "alice",
            "/v1/me/preferences",
            Some(json!({"types": {"t\u{0}": {"in_app": false}}})),
        )
        .await;
    assert_eq!(status, 422, "{answer}");

    let metrics = app.metrics().await;
    assert_eq!(
        crate::support::metric(&metrics, "belfry_store_unavailable_total"),
        0.0,
        "{metrics}"
    );
}

/// Below the edge's validation, the store still tells a refused value from an outage: on
/// PostgreSQL a NUL in text is SQLSTATE 22021, a data exception, not "database unavailable".
#[tokio::test]
async fn the_store_reports_a_value_the_database_refuses_as_rejected_not_unavailable() {
    use belfry::store::{ListQuery, StoreError};

    let app = spawn_app().await;
    let postgres = app.config.database_url.starts_with("postgres");
    let user = belfry::model::UserId::parse("alice").unwrap();
    let query = ListQuery {
        before: None,
        limit: 10,
        unread_only: false,
        kind: Some("a\u{0}b".into()),
        archived: false,
    };
    let listed = app.state.store.list(&user, &query).await;
    let removed = app
        .state
        .store
        .remove_push_subscription(Some(&user), "https://push.example/\u{0}")
        .await;
    if postgres {
        assert!(matches!(listed, Err(StoreError::Rejected(_))), "{listed:?}");
        assert!(
            matches!(removed, Err(StoreError::Rejected(_))),
            "{removed:?}"
        );
    } else {
        // SQLite stores a NUL like any other character.
        assert!(listed.unwrap().is_empty());
        assert!(!removed.unwrap());
    }
    let response = reqwest::get(format!("{}/readyz", app.base)).await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn every_answer_carries_the_browser_security_headers() {
    let app = spawn_app().await;
    let token = app.token("alice");
    for (path, key) in [
        ("/docs/", None),
        ("/openapi.json", None),
        ("/healthz", None),
        ("/v1/me/notifications", Some(token.as_str())),
        ("/v1/me/notifications", None),
        ("/v1/nowhere", None),
    ] {
        let mut request = app.client.get(format!("{}{path}", app.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        let headers = response.headers();
        let what = format!("{path} ({})", response.status());
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("content-security-policy", "frame-ancestors 'none'"),
            ("referrer-policy", "no-referrer"),
        ] {
            assert_eq!(
                headers.get(name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{what}: {name}"
            );
        }
    }
}
