//! A page on another origin: CORS on the client routes (`http.cors_allowed_origins`), none on
//! the backend routes, and the WebSocket handshake's `Origin` check (`ws.allowed_origins`).

use reqwest::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::support::{API_KEY, DEADLINE, TestApp, spawn_app, spawn_app_with};

const PAGE: &str = "http://127.0.0.1:5173";

async fn preflight(app: &TestApp, path: &str, method: &str, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, format!("{}{path}", app.base))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type,last-event-id",
        )
        .send()
        .await
        .unwrap()
}

fn allow_origin(response: &reqwest::Response) -> Option<&str> {
    response
        .headers()
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn client_routes_answer_a_configured_origin_preflight_included_without_a_token() {
    let app = spawn_app_with(|c| c.http.cors_allowed_origins = vec![PAGE.into()]).await;
    for (path, method) in [
        ("/v1/me/notifications", "GET"),
        ("/v1/me/notifications/read", "POST"),
        ("/v1/me/notifications/read-all", "POST"),
        ("/v1/me/unread-count", "GET"),
        ("/v1/me/preferences", "PUT"),
        ("/v1/me/push-subscriptions", "DELETE"),
        ("/v1/sse", "GET"),
        ("/v1/poll", "GET"),
    ] {
        let response = preflight(&app, path, method, PAGE).await;
        assert!(
            response.status().is_success(),
            "{method} {path}: {}",
            response.status()
        );
        assert_eq!(allow_origin(&response), Some(PAGE), "{method} {path}");
        let headers = response.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        for needed in ["authorization", "content-type", "last-event-id"] {
            assert!(headers.contains(needed), "{path}: {headers}");
        }
        let methods = response.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap();
        assert!(methods.contains(method), "{path}: {methods}");
        assert_eq!(response.headers()["access-control-max-age"], "600");
    }
    // The real request, and its error answers, carry the header too (a page can read a 401).
    let ok = app
        .client
        .get(format!("{}/v1/me/notifications", app.base))
        .header("Origin", PAGE)
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(allow_origin(&ok), Some(PAGE));
    let refused = app
        .client
        .get(format!("{}/v1/me/notifications", app.base))
        .header("Origin", PAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(allow_origin(&refused), Some(PAGE));
}

#[tokio::test]
async fn other_origins_and_the_backend_routes_get_no_cors() {
    let app = spawn_app_with(|c| c.http.cors_allowed_origins = vec![PAGE.into()]).await;
    let other = preflight(&app, "/v1/me/notifications", "GET", "http://evil.example").await;
    assert_eq!(allow_origin(&other), None);
    for (path, method) in [
        ("/v1/notifications", "POST"),
        ("/v1/notifications/batch", "POST"),
        ("/v1/users/alice/preferences", "PUT"),
        ("/v1/rooms/doc:1/messages", "POST"),
    ] {
        let response = preflight(&app, path, method, PAGE).await;
        assert_eq!(allow_origin(&response), None, "{path}");
        let real = app
            .client
            .post(format!("{}{path}", app.base))
            .header("Origin", PAGE)
            .bearer_auth(API_KEY)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(allow_origin(&real), None, "{path}");
    }
}

#[tokio::test]
async fn without_configured_origins_no_route_answers_cross_origin() {
    let app = spawn_app().await;
    let response = preflight(&app, "/v1/me/notifications", "GET", PAGE).await;
    assert_eq!(allow_origin(&response), None);
    let real = app
        .client
        .get(format!("{}/v1/me/notifications", app.base))
        .header("Origin", PAGE)
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(allow_origin(&real), None);
}

#[tokio::test]
async fn a_star_allows_any_origin() {
    let app = spawn_app_with(|c| c.http.cors_allowed_origins = vec!["*".into()]).await;
    let response = preflight(&app, "/v1/me/notifications", "GET", "http://any.example").await;
    assert_eq!(allow_origin(&response), Some("*"));
}

/// The status of a WebSocket handshake sent with `origin`.
async fn handshake_status(app: &TestApp, origin: Option<&str>) -> u16 {
    let url = format!("{}/v1/ws?token={}", app.ws_base, app.token("alice"));
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", HeaderValue::from_str(origin).unwrap());
    }
    let connect = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request))
        .await
        .expect("handshake timed out");
    match connect {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            let text = String::from_utf8_lossy(body);
            if response.status() == 403 {
                assert!(text.contains("may not open a WebSocket"), "{text}");
            }
            response.status().as_u16()
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

#[tokio::test]
async fn a_websocket_handshake_from_a_foreign_origin_gets_403() {
    let app = spawn_app().await;
    let own = app.base.clone();
    assert_eq!(handshake_status(&app, None).await, 101, "not a browser");
    assert_eq!(handshake_status(&app, Some(&own)).await, 101, "same origin");
    assert_eq!(handshake_status(&app, Some(PAGE)).await, 403);
    assert_eq!(handshake_status(&app, Some("null")).await, 403);

    // The CORS list is the default; ws.allowed_origins overrides it.
    let app = spawn_app_with(|c| c.http.cors_allowed_origins = vec![PAGE.into()]).await;
    assert_eq!(handshake_status(&app, Some(PAGE)).await, 101);
    assert_eq!(
        handshake_status(&app, Some("http://evil.example")).await,
        403
    );
    let app = spawn_app_with(|c| {
        c.http.cors_allowed_origins = vec![PAGE.into()];
        c.ws.allowed_origins = Some(vec!["http://other.example".into()]);
    })
    .await;
    assert_eq!(handshake_status(&app, Some(PAGE)).await, 403);
    assert_eq!(
        handshake_status(&app, Some("http://other.example")).await,
        101
    );
}
