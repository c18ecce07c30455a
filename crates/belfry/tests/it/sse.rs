//! Server-Sent Events: the same frames, `id: <seq>`, and `Last-Event-ID` resume.

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::{DEADLINE, TestApp, spawn_app, spawn_app_with};

/// A minimal SSE reader over a real HTTP response.
struct SseClient {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

#[derive(Debug)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: Value,
}

impl SseClient {
    async fn open(app: &TestApp, user: &str, last_event_id: Option<&str>) -> Self {
        Self::open_with_token(app, &app.token(user), last_event_id).await
    }

    async fn open_with_token(app: &TestApp, token: &str, last_event_id: Option<&str>) -> Self {
        let mut request = app.client.get(format!("{}/v1/sse?token={token}", app.base));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = String::from("message");
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a comment (keep-alive)
                }
                return SseEvent {
                    event,
                    id,
                    data: serde_json::from_str(&data).unwrap(),
                };
            }
            let chunk = tokio::time::timeout(DEADLINE, self.body.next())
                .await
                .expect("no SSE event in time")
                .expect("stream ended")
                .unwrap();
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Waits for the server to end the stream (keep-alive comments are skipped).
    async fn ended(&mut self) {
        loop {
            match tokio::time::timeout(DEADLINE, self.body.next())
                .await
                .expect("the stream did not end in time")
            {
                None => return,
                Some(Ok(chunk)) => {
                    let text = String::from_utf8_lossy(&chunk);
                    assert!(
                        text.lines().all(|l| l.is_empty() || l.starts_with(':')),
                        "an event after the end: {text}"
                    );
                }
                Some(Err(_)) => return,
            }
        }
    }
}

#[tokio::test]
async fn an_sse_stream_ends_at_its_tokens_exp_with_an_unauthorized_error() {
    let app = spawn_app_with(|c| c.auth.leeway_secs = 0).await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(crate::support::JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let mut sse = SseClient::open_with_token(&app, &token, None).await;
    assert_eq!(sse.next().await.event, "hello");
    let last = sse.next().await;
    assert_eq!(last.event, "error", "{:?}", last.data);
    assert_eq!(last.data["code"], "unauthorized");
    assert!(
        last.data["message"]
            .as_str()
            .unwrap()
            .starts_with("token expired at "),
        "{:?}",
        last.data
    );
    sse.ended().await;
}

#[tokio::test]
async fn sse_streams_hello_then_notifications_with_their_seq_as_id() {
    let app = spawn_app().await;
    app.notify("alice", "t", json!({})).await;
    let mut sse = SseClient::open(&app, "alice", None).await;
    let hello = sse.next().await;
    assert_eq!(hello.event, "hello");
    assert_eq!(hello.data["unread_count"], 1);
    app.notify("alice", "live", json!({"n": 1})).await;
    let event = sse.next().await;
    assert_eq!(event.event, "notification");
    assert_eq!(event.id.as_deref(), Some("2"));
    assert_eq!(event.data["notification"]["type"], "live");
    // Another user's notification does not appear; read state does.
    app.notify("bob", "not.yours", json!({})).await;
    app.post_as("alice", "/v1/me/notifications/read-all", json!({}))
        .await;
    let state = sse.next().await;
    assert_eq!(state.event, "state");
    assert_eq!(state.data["unread_count"], 0);
}

#[tokio::test]
async fn last_event_id_resumes_exactly_after_that_seq() {
    let app = spawn_app().await;
    for i in 1..=4 {
        app.notify("alice", "t", json!({"i": i})).await;
    }
    let mut sse = SseClient::open(&app, "alice", Some("2")).await;
    assert_eq!(sse.next().await.event, "hello");
    assert_eq!(sse.next().await.id.as_deref(), Some("3"));
    assert_eq!(sse.next().await.id.as_deref(), Some("4"));
    app.notify("alice", "t", json!({"i": 5})).await;
    assert_eq!(sse.next().await.id.as_deref(), Some("5"));
}

#[tokio::test]
async fn sse_without_a_valid_token_is_401_with_a_json_body() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/v1/sse?token=nope", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
}
