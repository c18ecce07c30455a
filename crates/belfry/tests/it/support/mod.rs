//! Test support: a real Belfry on a random port with its own database (a fresh SQLite file, or a
//! fresh PostgreSQL database when `BELFRY_TEST_DATABASE_URL` is set), typed helpers for the
//! backend and client APIs, a WebSocket client, and `wait_until` (tests wait on conditions with
//! a deadline, never on fixed sleeps).

#![allow(dead_code)]

pub mod brokers;
pub mod tab;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use belfry::auth::Auth;
use belfry::model::UserId;
use belfry::{App, Config};
use futures_util::{SinkExt, StreamExt};
use secrecy::SecretString;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// How long any single wait in a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub const API_KEY: &str = "test-api-key";
pub const JWT_SECRET: &str = "test-jwt-secret";

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,belfry=debug")
            .with_test_writer()
            .try_init();
    }
}

/// A running server.
pub struct TestApp {
    pub base: String,
    pub ws_base: String,
    pub client: reqwest::Client,
    pub config: Config,
    pub dir: Arc<TempDir>,
    auth: Auth,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<()>>,
    pub state: belfry::AppState,
}

/// A PostgreSQL server URL (`postgres://postgres@127.0.0.1:5432/postgres`): when set, every
/// `test_config` gets a fresh database on that server instead of a SQLite file.
pub const TEST_DATABASE_URL: &str = "BELFRY_TEST_DATABASE_URL";

pub fn test_config(dir: &TempDir) -> Config {
    let mut config = Config::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database_url = match std::env::var(TEST_DATABASE_URL) {
        Ok(server) if !server.is_empty() => create_postgres_database(&server),
        _ => {
            let db: PathBuf = dir.path().join("belfry.db");
            format!("sqlite://{}", db.display())
        }
    };
    config.auth.api_keys = vec![SecretString::from(API_KEY)];
    config.auth.jwt_secret = Some(SecretString::from(JWT_SECRET));
    config.auth.secrets_file = dir.path().join("secrets.toml");
    config.store.sqlite_synchronous = "normal".into();
    config
}

/// Creates `belfry_test_<uuid>` on the server at `server` and returns its URL. Restarts and the
/// nodes of one test share it through their config. It is not dropped afterwards (a config may
/// outlive every app built from it); the UUID keeps names from colliding. To clean up:
/// `psql -Atc "SELECT 'DROP DATABASE ' || datname || ';' FROM pg_database
///  WHERE datname LIKE 'belfry\_test\_%'" | psql`.
fn create_postgres_database(server: &str) -> String {
    use sqlx::Connection;

    let name = format!("belfry_test_{}", uuid::Uuid::new_v4().simple());
    let mut url = reqwest::Url::parse(server).expect("BELFRY_TEST_DATABASE_URL is not a URL");
    url.set_path(&name);
    let server = server.to_owned();
    let create = format!("CREATE DATABASE {name}");
    // `test_config` is synchronous and called inside a test's runtime: connect from a thread of
    // its own.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut admin = sqlx::PgConnection::connect(&server)
                .await
                .expect("cannot connect to BELFRY_TEST_DATABASE_URL");
            sqlx::raw_sql(sqlx::AssertSqlSafe(create))
                .execute(&mut admin)
                .await
                .unwrap();
            admin.close().await.unwrap();
        });
    })
    .join()
    .unwrap();
    url.to_string()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    tweak(&mut config);
    start(config, dir).await
}

pub async fn start(config: Config, dir: Arc<TempDir>) -> TestApp {
    init_logs();
    let shutdown = CancellationToken::new();
    let app = App::build(config.clone(), shutdown.clone()).await.unwrap();
    let addr = app.local_addr();
    let state = app.state().clone();
    let handle = tokio::spawn(async move {
        app.run_until_stopped().await.unwrap();
    });
    TestApp {
        base: format!("http://{addr}"),
        ws_base: format!("ws://{addr}"),
        client: reqwest::Client::new(),
        auth: Auth::new(&config.auth).unwrap(),
        config,
        dir,
        shutdown,
        handle: Some(handle),
        state,
    }
}

impl TestApp {
    /// A valid one-hour token for `user`.
    pub fn token(&self, user: &str) -> String {
        self.auth
            .mint(&UserId::parse(user).unwrap(), Duration::from_secs(3600))
            .unwrap()
            .0
    }

    /// A valid one-hour token for `user` with extra claims (room grants, a room ticket).
    pub fn token_with(&self, user: &str, extra: impl FnOnce(&mut belfry::auth::Claims)) -> String {
        self.auth
            .mint_with(
                &UserId::parse(user).unwrap(),
                Duration::from_secs(3600),
                extra,
            )
            .unwrap()
            .0
    }

    /// Opens a WebSocket with `token` and consumes its `hello`.
    pub async fn ws_with_token(&self, token: &str) -> WsClient {
        let mut ws = WsClient::connect(&format!("{}/v1/ws?token={token}", self.ws_base)).await;
        let hello = ws.next_json().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        ws
    }

    /// POST with the API key; returns status and JSON body.
    pub async fn backend_post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(API_KEY)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Notifies `user`; returns the stored seq.
    pub async fn notify(&self, user: &str, kind: &str, data: Value) -> i64 {
        let (status, body) = self
            .backend_post(
                "/v1/notifications",
                &json!({"recipients": [user], "type": kind, "data": data}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["notifications"][0]["seq"].as_i64().unwrap()
    }

    /// A request as `user` (JWT); returns status and JSON body.
    pub async fn user_request(
        &self,
        method: reqwest::Method,
        user: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token(user));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_as(&self, user: &str, path: &str) -> (u16, Value) {
        self.user_request(reqwest::Method::GET, user, path, None)
            .await
    }

    pub async fn post_as(&self, user: &str, path: &str, body: Value) -> (u16, Value) {
        self.user_request(reqwest::Method::POST, user, path, Some(body))
            .await
    }

    /// Opens a WebSocket as `user` (token in the query), resuming after `since`.
    pub async fn ws(&self, user: &str, since: Option<i64>) -> WsClient {
        let mut url = format!("{}/v1/ws?token={}", self.ws_base, self.token(user));
        if let Some(since) = since {
            url.push_str(&format!("&since={since}"));
        }
        WsClient::connect(&url).await
    }

    /// Opens a WebSocket as `user` and consumes its `hello`.
    pub async fn ws_ready(&self, user: &str, since: Option<i64>) -> (WsClient, Value) {
        let mut ws = self.ws(user, since).await;
        let hello = ws.next_json().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        (ws, hello)
    }

    /// Prometheus text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Graceful stop, waiting for the server to finish.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(DEADLINE, handle)
                .await
                .expect("server did not stop in time")
                .unwrap();
        }
    }

    /// Stops this server and starts a new one on the same database (new port).
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        start(config, Arc::clone(&self.dir)).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A WebSocket test client.
pub struct WsClient {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What a client observed when the connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Closed(u16),
    Dropped,
}

impl WsClient {
    pub async fn connect(url: &str) -> Self {
        let (stream, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        Self { stream }
    }

    /// The next text frame as JSON; panics on close or after the deadline.
    pub async fn next_json(&mut self) -> Value {
        match self.try_next_json(DEADLINE).await {
            Ok(Some(v)) => v,
            Ok(None) => panic!("no frame within {DEADLINE:?}"),
            Err(ended) => panic!("connection ended: {ended:?}"),
        }
    }

    /// The next text frame, `Ok(None)` after `within`, `Err` when the connection ended.
    pub async fn try_next_json(&mut self, within: Duration) -> Result<Option<Value>, Ended> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return Ok(None),
                Ok(next) => next,
            };
            match next {
                Some(Ok(Message::Text(text))) => {
                    return Ok(Some(serde_json::from_str(&text).unwrap()));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(frame.map_or(Ended::Dropped, |f| Ended::Closed(u16::from(f.code))));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(Ended::Dropped),
            }
        }
    }

    /// Reads frames until one of `kind` arrives.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next_json().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn closed(&mut self) -> Ended {
        loop {
            match self.try_next_json(DEADLINE).await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("connection not closed within {DEADLINE:?}"),
                Err(ended) => return ended,
            }
        }
    }

    pub async fn send_json(&mut self, value: Value) {
        self.stream
            .send(Message::Text(value.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn close(mut self) {
        let _ = self
            .stream
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: WsCloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
}

/// Polls `check` until it returns `Some`, failing the test after `DEADLINE`.
pub async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of an unlabelled metric in Prometheus text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}
