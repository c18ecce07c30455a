//! What the server writes to its log: a real `belfry serve` process, logging every crate at
//! debug level (Belfry itself at trace), and then every crate at trace, is sent valid and invalid
//! tokens and API keys every way a client can send them; its whole stderr must contain none of
//! them, nor a signature.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{API_KEY, DEADLINE, JWT_SECRET, WsClient};

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

/// Removes ANSI colour sequences (`ESC [ … m`), which the text format puts around field names.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A `belfry serve` child whose stderr is collected line by line.
struct Server {
    child: tokio::process::Child,
    log: Arc<Mutex<Vec<String>>>,
    base: String,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(format: &str, filter: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("belfry.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndatabase_url = \"sqlite://{}\"\n\
                 [auth]\napi_keys = [\"{API_KEY}\"]\njwt_secret = \"{JWT_SECRET}\"\n\
                 [ws]\nauth_timeout_secs = 2\n\
                 [log]\nfilter = \"{filter}\"\nformat = \"{format}\"\n",
                dir.path().join("belfry.db").display()
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_belfry"))
            .args(["--config", config.to_str().unwrap(), "serve"])
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            let mut addr_tx = Some(addr_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                let line = strip_ansi(&line);
                if line.contains("belfry listening")
                    && let Some(rest) = line.split("127.0.0.1:").nth(1)
                {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    if let Some(tx) = addr_tx.take() {
                        let _ = tx.send(port);
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let port = tokio::time::timeout(DEADLINE, addr_rx)
            .await
            .expect("the server did not log its address")
            .expect("the server exited before listening");
        Server {
            child,
            log,
            base: format!("127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// Stops the server with SIGTERM and returns its whole log.
    async fn stop(mut self) -> String {
        let pid = self.child.id().unwrap().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("the server did not stop")
            .unwrap();
        // The reader task sees EOF once the process is gone; wait for it to have read it all.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let done = self
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("belfry stopped"));
            if done || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.log.lock().unwrap().join("\n")
    }
}

/// Sends `token` every way a client can: HTTP header and query, WebSocket query and `auth`
/// frame, SSE and long-poll query.
async fn present(server: &Server, client: &reqwest::Client, token: &str) {
    let http = format!("http://{}", server.base);
    let _ = client
        .get(format!("{http}/v1/me/notifications"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let _ = client
        .get(format!("{http}/v1/poll?timeout=0&token={token}"))
        .send()
        .await
        .unwrap();
    // An SSE stream that authenticates stays open: read only the head.
    let _ = tokio::time::timeout(
        DEADLINE,
        client.get(format!("{http}/v1/sse?token={token}")).send(),
    )
    .await
    .unwrap()
    .unwrap();
    // A query the server refuses (unknown parameter) with the token in it.
    let _ = client
        .get(format!("{http}/v1/sse?token={token}&bogus=1"))
        .send()
        .await
        .unwrap();
    let ws = format!("ws://{}", server.base);
    let mut socket = WsClient::connect(&format!("{ws}/v1/ws?token={token}")).await;
    let _ = socket.try_next_json(Duration::from_millis(500)).await;
    let mut socket = WsClient::connect(&format!("{ws}/v1/ws")).await;
    let _ = socket
        .stream
        .send(Message::Text(
            json!({"type": "auth", "token": token}).to_string().into(),
        ))
        .await;
    let _ = socket.try_next_json(Duration::from_millis(500)).await;
}

/// Runs the scenario against a server logging with `filter`; returns its whole log.
async fn scenario(format: &str, filter: &str) -> String {
    let server = Server::start(format, filter).await;
    let client = reqwest::Client::new();
    let exp = now() + 3600;
    let alice = hs256(json!({"sub": "alice", "exp": exp}), JWT_SECRET);
    let bob = hs256(json!({"sub": "bob", "exp": exp}), JWT_SECRET);
    let wrong_key = "bk_wrong_key_never_logged_5f1d".to_owned();
    let bad = [
        hs256(json!({"sub": "alice", "exp": now() - 3600}), JWT_SECRET),
        hs256(
            json!({"sub": "alice", "exp": exp, "nbf": exp - 60}),
            JWT_SECRET,
        ),
        hs256(json!({"sub": "alice", "exp": exp}), "some-other-secret"),
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.".to_owned(),
        format!("oversized{}", "Zq9".repeat(4000)),
        "garbage.tokenNeverLogged.c2lnbmF0dXJl".to_owned(),
    ];
    for token in bad.iter().chain([&alice, &bob]) {
        present(&server, &client, token).await;
    }
    // A refresh with another user's token on an open connection.
    let mut socket = WsClient::connect(&format!("ws://{}/v1/ws?token={alice}", server.base)).await;
    let _ = socket.next_json().await;
    socket
        .send_json(json!({"type": "auth", "token": bob, "ref": 1}))
        .await;
    let refused = socket.next_of("error").await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    // The backend API with a wrong key, and with the right one.
    for key in [wrong_key.as_str(), API_KEY] {
        let _ = client
            .post(format!("http://{}/v1/notifications", server.base))
            .bearer_auth(key)
            .json(&json!({"recipients": ["alice"], "type": "t"}))
            .send()
            .await
            .unwrap();
    }
    // A closing handshake, waited for: the server logs the close frame (at debug) before the
    // stop.
    socket.stream.close(None).await.unwrap();
    tokio::time::timeout(DEADLINE, async {
        while let Some(Ok(_)) = socket.stream.next().await {}
    })
    .await
    .expect("the server did not complete the closing handshake");

    let log = server.stop().await;

    // The capture sees what it must: the server's own debug lines, including a refused token.
    assert!(log.contains("belfry listening"), "{log}");
    // Its stderr is a pipe, not a terminal: no colour codes.
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log that goes to a pipe:\n{log}"
    );
    assert!(
        log.contains("websocket auth refused"),
        "the debug line of a refused WebSocket token is missing: the capture is blind\n{log}"
    );
    let mut secrets: Vec<(String, String)> = vec![
        ("the API key".into(), API_KEY.into()),
        ("a wrong API key".into(), wrong_key.clone()),
        ("the JWT secret".into(), JWT_SECRET.into()),
    ];
    for (i, token) in bad.iter().chain([&alice, &bob]).enumerate() {
        secrets.push((format!("token {i}"), token.clone()));
        if let Some(signature) = token.rsplit('.').next().filter(|s| s.len() >= 16) {
            secrets.push((format!("the signature of token {i}"), signature.to_owned()));
        }
    }
    for (what, secret) in secrets {
        if let Some(line) = log.lines().find(|l| l.contains(&secret)) {
            panic!("{format} log contains {what}: {line}");
        }
    }
    log
}

#[tokio::test]
async fn no_token_key_or_secret_reaches_the_text_log() {
    scenario("text", "debug,belfry=trace").await;
}

#[tokio::test]
async fn no_token_key_or_secret_reaches_the_json_log() {
    scenario("json", "debug,belfry=trace").await;
}

/// At `trace`, tungstenite would log every frame it receives (an `auth` frame holds a token):
/// Belfry caps the WebSocket and HTTP crates below trace whatever the filter says.
#[tokio::test]
async fn no_token_key_or_secret_reaches_the_log_even_at_trace() {
    let log = scenario(
        "text",
        "trace,tungstenite=trace,tokio_tungstenite::compat=trace",
    )
    .await;
    // Without the cap this test fails on tungstenite's `Received message {"token":…}`.
    assert!(
        log.lines().any(|l| l.contains(" DEBUG tungstenite")),
        "tungstenite's debug lines (the close frame) should remain\n{log}"
    );
}
