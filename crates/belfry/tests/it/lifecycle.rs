//! Start, stop and restart: graceful shutdown tells clients to reconnect, and a restart on the
//! same database keeps everything.

use serde_json::json;

use crate::support::{Ended, spawn_app};

#[tokio::test]
async fn shutdown_tells_connected_clients_to_reconnect_with_4010() {
    let mut app = spawn_app().await;
    let (mut ws, _) = app.ws_ready("alice", None).await;
    app.stop().await;
    assert_eq!(ws.closed().await, Ended::Closed(4010));
}

#[tokio::test]
async fn a_restart_on_the_same_database_keeps_notifications_read_state_and_sequences() {
    let app = spawn_app().await;
    for i in 1..=3 {
        app.notify("alice", "t", json!({"i": i})).await;
    }
    let (_, page) = app.get_as("alice", "/v1/me/notifications").await;
    let newest = page["notifications"][0]["id"].clone();
    app.post_as(
        "alice",
        "/v1/me/notifications/read",
        json!({"ids": [newest]}),
    )
    .await;
    let (status, _) = app
        .backend_post(
            "/v1/notifications",
            &json!({"recipients": ["alice"], "type": "t", "idempotency_key": "k"}),
        )
        .await;
    assert_eq!(status, 201);

    let app = app.restart().await;

    let (_, page) = app.get_as("alice", "/v1/me/notifications").await;
    assert_eq!(page["notifications"].as_array().unwrap().len(), 4);
    assert_eq!(page["unread_count"], 3);
    assert_eq!(page["last_seq"], 4);
    let (status, _) = app
        .backend_post(
            "/v1/notifications",
            &json!({"recipients": ["alice"], "type": "t", "idempotency_key": "k"}),
        )
        .await;
    assert_eq!(status, 200, "idempotency keys survive a restart");
    assert_eq!(
        app.notify("alice", "t", json!({})).await,
        5,
        "seq continues"
    );
    let (mut ws, _) = app.ws_ready("alice", Some(3)).await;
    assert_eq!(ws.next_json().await["seq"], 4);
    assert_eq!(ws.next_json().await["seq"], 5);
}

#[tokio::test]
async fn notifications_acknowledged_during_shutdown_are_durable() {
    let mut app = spawn_app().await;
    let mut acknowledged = Vec::new();
    let client = app.client.clone();
    let url = format!("{}/v1/notifications", app.base);
    let publisher = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..500 {
            let sent = client
                .post(&url)
                .bearer_auth(crate::support::API_KEY)
                .json(&json!({"recipients": ["alice"], "type": "t", "data": {"i": i}}))
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 201 => {
                    let body: serde_json::Value = r.json().await.unwrap();
                    acked.push(body["notifications"][0]["id"].as_str().unwrap().to_owned());
                }
                _ => break,
            }
        }
        acked
    });
    crate::support::wait_until("some notifications are stored", || async {
        (crate::support::metric(&app.metrics().await, "belfry_notifications_stored_total") >= 20.0)
            .then_some(())
    })
    .await;
    app.stop().await;
    acknowledged.extend(publisher.await.unwrap());
    assert!(!acknowledged.is_empty());

    let app = app.restart().await;
    let (_, count) = app.get_as("alice", "/v1/me/unread-count").await;
    assert!(
        count["unread_count"].as_u64().unwrap() >= acknowledged.len() as u64,
        "every acknowledged notification survived: {count} vs {}",
        acknowledged.len()
    );
}

#[tokio::test]
async fn health_readiness_openapi_and_docs_are_served() {
    let app = spawn_app().await;
    let get = |path: &str| reqwest::get(format!("{}{path}", app.base));
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let spec: serde_json::Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    for path in [
        "/v1/notifications",
        "/v1/me/notifications",
        "/v1/poll",
        "/v1/ws",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    let docs = get("/docs/").await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

#[tokio::test]
async fn with_the_store_unavailable_the_api_answers_503_and_acknowledges_nothing() {
    let app = spawn_app().await;
    app.notify("alice", "before", json!({})).await;
    app.state.store.close().await;

    let (status, body) = app
        .backend_post(
            "/v1/notifications",
            &json!({"recipients": ["alice"], "type": "t"}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    let (status, _) = app.get_as("alice", "/v1/me/notifications").await;
    assert_eq!(status, 503);
    let ready = reqwest::get(format!("{}/readyz", app.base)).await.unwrap();
    assert_eq!(ready.status(), 503);
    let text = app.metrics().await;
    assert_eq!(
        crate::support::metric(&text, "belfry_store_unavailable_total"),
        2.0
    );
}
