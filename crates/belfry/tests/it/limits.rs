//! Limits against hostile clients: slow or silent HTTP clients (slowloris) are cut off by the
//! header-read timeout, the node-wide connection cap, the per-connection frame rate, the auth
//! deadline that pings cannot extend, and the conformance echo endpoint being off by default.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{DEADLINE, Ended, WsClient, metric, spawn_app, spawn_app_with, wait_until};

/// A client that dribbles the headers of a WebSocket upgrade one line at a time. Returns when
/// the server closes the connection (or panics after `DEADLINE`), with what the server wrote.
async fn dribble_until_closed(addr: &str) -> (Duration, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /v1/ws HTTP/1.1\r\nHost: belfry\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        assert!(
            started.elapsed() < DEADLINE,
            "the server kept a slow client for {DEADLINE:?}"
        );
        // Waiting for the server to act is the pacing: one more header line per 100 ms of
        // silence from the server.
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (started.elapsed(), answer),
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {
                if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    return (started.elapsed(), answer);
                }
            }
        }
    }
}

fn addr(app: &crate::support::TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn a_client_sending_its_handshake_headers_slowly_is_cut_off_at_the_header_read_timeout() {
    let app = spawn_app_with(|c| c.http.header_read_timeout_secs = 1).await;
    let (held, answer) = dribble_until_closed(&addr(&app)).await;
    assert!(
        held >= Duration::from_millis(900),
        "closed after {held:?}, before the timeout: not the timeout at work"
    );
    assert!(
        !String::from_utf8_lossy(&answer).contains(" 101 "),
        "a slow handshake was upgraded"
    );
}

#[tokio::test]
async fn slow_clients_hold_no_slot_while_others_are_served_and_all_are_dropped() {
    let app = spawn_app_with(|c| c.http.header_read_timeout_secs = 1).await;
    let target = addr(&app);
    let slow: Vec<_> = (0..20)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move { dribble_until_closed(&target).await })
        })
        .collect();
    // While they dribble, a real client connects, authenticates and gets its notification.
    let (mut ws, _) = app.ws_ready("alice", None).await;
    app.notify("alice", "t", json!({})).await;
    assert_eq!(ws.next_of("notification").await["seq"], 1);
    for client in slow {
        let (held, _) = client.await.unwrap();
        assert!(held >= Duration::from_millis(900), "{held:?}");
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_header_read_timeout() {
    let app = spawn_app_with(|c| c.http.header_read_timeout_secs = 1).await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .expect("a connection that sends nothing was kept open");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_keep_alive_connection_serves_requests_then_closes_when_idle() {
    let app = spawn_app_with(|c| c.http.header_read_timeout_secs = 1).await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    for _ in 0..2 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: belfry\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
    let idle = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .expect("an idle keep-alive connection was kept open");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(idle.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn the_node_connection_limit_refuses_any_user_with_4429_and_429_until_a_slot_frees() {
    let app = spawn_app_with(|c| c.ws.max_connections_per_node = 2).await;
    let (alice, _) = app.ws_ready("alice", None).await;
    let (_bob, _) = app.ws_ready("bob", None).await;

    let mut carol = app.ws("carol", None).await;
    assert_eq!(carol.closed().await, Ended::Closed(4429));
    let response = app
        .client
        .get(format!("{}/v1/sse", app.base))
        .bearer_auth(app.token("carol"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this node"),
        "{body}"
    );

    alice.close().await;
    wait_until("alice's slot is free", || async {
        (metric(&app.metrics().await, "belfry_connections") == 1.0).then_some(())
    })
    .await;
    let (_carol, hello) = app.ws_ready("carol", None).await;
    assert_eq!(hello["user_id"], "carol");
}

#[tokio::test]
async fn a_client_sending_frames_faster_than_allowed_is_closed_with_4011() {
    let app = spawn_app_with(|c| {
        c.ws.max_frames_per_second = 1;
        c.ws.frames_burst = 5;
    })
    .await;
    let (mut ws, _) = app.ws_ready("alice", None).await;
    for i in 0..5 {
        ws.send_json(json!({"type": "ping", "ref": i})).await;
        assert_eq!(ws.next_of("pong").await["ref"], i, "within the burst");
    }
    for i in 5..50 {
        if ws
            .stream
            .send(Message::Text(
                json!({"type": "ping", "ref": i}).to_string().into(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(ws.closed().await, Ended::Closed(4011));
}

#[tokio::test]
async fn the_frame_limit_counts_websocket_pings_too_even_before_auth() {
    let app = spawn_app_with(|c| {
        c.ws.max_frames_per_second = 1;
        c.ws.frames_burst = 5;
    })
    .await;
    let mut ws = WsClient::connect(&format!("{}/v1/ws", app.ws_base)).await;
    for _ in 0..50 {
        if ws.stream.send(Message::Ping(vec![1].into())).await.is_err() {
            break;
        }
    }
    assert_eq!(ws.closed().await, Ended::Closed(4011));
}

#[tokio::test]
async fn the_default_frame_limit_lets_a_busy_client_through() {
    let app = spawn_app().await;
    let (mut ws, _) = app.ws_ready("alice", None).await;
    for i in 0..app.config.ws.frames_burst {
        ws.send_json(json!({"type": "ping", "ref": i})).await;
    }
    for i in 0..app.config.ws.frames_burst {
        assert_eq!(ws.next_of("pong").await["ref"], i);
    }
}

#[tokio::test]
async fn pings_before_auth_do_not_extend_the_auth_timeout() {
    let app = spawn_app_with(|c| c.ws.auth_timeout_secs = 1).await;
    let mut ws = WsClient::connect(&format!("{}/v1/ws", app.ws_base)).await;
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < DEADLINE,
            "an unauthenticated client kept its socket by pinging"
        );
        // A ping every 200 ms of silence from the server; the server must close regardless.
        match ws.try_next_json(Duration::from_millis(200)).await {
            Err(ended) => {
                assert_eq!(ended, Ended::Closed(4002));
                break;
            }
            Ok(Some(frame)) => panic!("unexpected frame before auth: {frame}"),
            Ok(None) => {
                let _ = ws.stream.send(Message::Ping(vec![1].into())).await;
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn the_conformance_echo_endpoint_is_off_unless_configured() {
    let app = spawn_app().await;
    let response = reqwest::get(format!("{}/v1/ws/echo", app.base))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    let app = spawn_app_with(|c| c.ws.echo_endpoint = true).await;
    let mut ws = WsClient::connect(&format!("{}/v1/ws/echo", app.ws_base)).await;
    ws.stream
        .send(Message::Binary(vec![0, 1, 2].into()))
        .await
        .unwrap();
    ws.send_json(json!({"echo": true})).await;
    let mut binary = None;
    loop {
        match tokio::time::timeout(DEADLINE, futures_util::StreamExt::next(&mut ws.stream))
            .await
            .unwrap()
        {
            Some(Ok(Message::Binary(data))) => binary = Some(data.to_vec()),
            Some(Ok(Message::Text(text))) => {
                assert_eq!(text.as_str(), r#"{"echo":true}"#);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(binary, Some(vec![0, 1, 2]));
}

/// Sends `head` (request line and headers announcing a body), then, when given, `trickle` (a
/// byte of the body, or a chunk) per 200 ms of silence from the server. Returns when the server closes the
/// connection (or panics after `DEADLINE`), with the time taken and what the server wrote.
async fn send_body_slowly(addr: &str, head: &str, trickle: Option<&[u8]>) -> (Duration, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            started.elapsed() < DEADLINE,
            "the server kept a client that sends no body for {DEADLINE:?}: {}",
            String::from_utf8_lossy(&answer)
        );
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {
                return (started.elapsed(), String::from_utf8_lossy(&answer).into());
            }
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) if trickle.is_some() => {
                if stream.write_all(trickle.unwrap_or_default()).await.is_err() {
                    return (started.elapsed(), String::from_utf8_lossy(&answer).into());
                }
            }
            Err(_) => {}
        }
    }
}

#[tokio::test]
async fn a_request_body_that_never_arrives_or_trickles_is_answered_408_at_the_body_read_timeout() {
    let app = spawn_app_with(|c| c.http.body_read_timeout_secs = 1).await;
    let token = app.token("alice");
    let heads: [(String, &[u8]); 3] = [
        (
            format!(
                "POST /v1/notifications HTTP/1.1\r\nHost: belfry\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
                crate::support::API_KEY
            ),
            b" ",
        ),
        (
            format!(
                "PUT /v1/me/preferences HTTP/1.1\r\nHost: belfry\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            ),
            b" ",
        ),
        (
            format!(
                "POST /v1/me/notifications/read HTTP/1.1\r\nHost: belfry\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
            ),
            b"1\r\n \r\n",
        ),
    ];
    for (head, piece) in &heads {
        for trickle in [None, Some(*piece)] {
            let (took, answer) = send_body_slowly(&addr(&app), head, trickle).await;
            let what = format!("{} (trickle: {trickle:?})", head.lines().next().unwrap());
            assert!(answer.starts_with("HTTP/1.1 408"), "{what}: {answer}");
            assert!(
                answer.contains("content-type: application/json"),
                "{what}: {answer}"
            );
            assert!(
                answer.contains(r#""code":"request_timeout""#),
                "{what}: {answer}"
            );
            assert!(took >= Duration::from_millis(900), "{what}: {took:?}");
            // One byte per 200 ms would take 20 s to send 100: the deadline does not move.
            assert!(took < Duration::from_secs(5), "{what}: {took:?}");
        }
    }
    // A route that does not read its body answers at once, and the connection does not wait
    // for the body either.
    let head = format!(
        "POST /v1/me/notifications/read-all HTTP/1.1\r\nHost: belfry\r\n\
         Authorization: Bearer {token}\r\nContent-Length: 100\r\n\r\n"
    );
    let (_, answer) = send_body_slowly(&addr(&app), &head, None).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn connections_over_the_http_connection_limit_are_refused_with_429_until_one_closes() {
    let app = spawn_app_with(|c| c.http.max_connections = 2).await;
    // Two clients that send nothing (or would send a body never) hold the two slots; the
    // server accepts in order, so both are counted before a third is accepted.
    let first = TcpStream::connect(addr(&app)).await.unwrap();
    let _second = TcpStream::connect(addr(&app)).await.unwrap();
    let mut third = TcpStream::connect(addr(&app)).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, third.read_to_end(&mut answer))
        .await
        .expect("a connection over the limit was kept open")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains(r#""code":"rate_limited""#), "{answer}");

    drop(first);
    let client = reqwest::Client::new();
    wait_until("a slot frees when a connection closes", || async {
        let response = client
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
}
