//! A browser tab as the SDK keeps one: connected over WebSocket, SSE or long-poll, it applies
//! every frame the way `clients/js` does (items by id at their highest seq, read flags, the
//! unread count counted from the last count it was given, the state version, preferences; a
//! `sync` frame re-reads the first page) and can be compared with the store.
//!
//! Tests use it to assert convergence: every tab ends up showing exactly what the store holds,
//! with nothing else happening (no later event to repair a loss).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};

use super::{DEADLINE, Ended, TestApp, WsClient};

/// How a tab is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Ws,
    Sse,
    Poll,
}

/// What a tab shows of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub seq: i64,
    pub read: bool,
    pub count: i64,
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

enum Link {
    Ws(Box<WsClient>),
    Sse { body: Body, buffer: String },
    Poll { after: i64 },
}

/// One tab of one user on one node.
pub struct Tab {
    pub user: String,
    pub transport: Transport,
    base: String,
    token: String,
    client: reqwest::Client,
    link: Link,
    pub items: BTreeMap<String, Shown>,
    pub unread: i64,
    counted_through: i64,
    pub state_version: i64,
    pub preferences: Value,
    /// Every frame type received, in order (tests check what crossed).
    pub received: Vec<String>,
}

/// What the store holds for a user, read through the API.
#[derive(Debug, PartialEq)]
pub struct Truth {
    pub items: BTreeMap<String, Shown>,
    pub unread: i64,
    pub state_version: i64,
    pub preferences: Value,
}

fn shown(n: &Value) -> (String, Shown) {
    (
        n["id"].as_str().unwrap_or_default().to_owned(),
        Shown {
            seq: n["seq"].as_i64().unwrap_or_default(),
            read: !n["read_at"].is_null(),
            count: n["count"].as_i64().unwrap_or(1),
        },
    )
}

impl Tab {
    /// Opens a tab of `user` on `app`: reads the first page like the SDK, then connects.
    pub async fn open(app: &TestApp, user: &str, transport: Transport) -> Self {
        let mut tab = Self {
            user: user.to_owned(),
            transport,
            base: app.base.clone(),
            token: app.token(user),
            client: app.client.clone(),
            link: Link::Poll { after: 0 },
            items: BTreeMap::new(),
            unread: 0,
            counted_through: 0,
            state_version: 0,
            preferences: Value::Null,
            received: Vec::new(),
        };
        tab.reload().await;
        tab.preferences = tab.get("/v1/me/preferences").await;
        let since = tab.counted_through;
        tab.link = match transport {
            Transport::Ws => {
                let url = format!("{}/v1/ws?token={}&since={since}", app.ws_base, tab.token);
                let mut ws = WsClient::connect(&url).await;
                let hello = ws.next_json().await;
                assert_eq!(hello["type"], "hello", "{hello}");
                tab.apply(&hello).await;
                Link::Ws(Box::new(ws))
            }
            Transport::Sse => {
                let response = tab
                    .client
                    .get(format!("{}/v1/sse?since={since}", tab.base))
                    .bearer_auth(&tab.token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let mut link = Link::Sse {
                    body: Box::pin(response.bytes_stream()),
                    buffer: String::new(),
                };
                let hello = Self::next_sse(&mut link, DEADLINE).await.unwrap();
                assert_eq!(hello["type"], "hello", "{hello}");
                tab.apply(&hello).await;
                link
            }
            Transport::Poll => Link::Poll { after: since },
        };
        tab
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// Re-reads the first page (what the SDK does on `sync` and after a reconnect).
    async fn reload(&mut self) {
        let page = self.get("/v1/me/notifications?limit=100").await;
        self.items = page["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(shown)
            .collect();
        self.unread = page["unread_count"].as_i64().unwrap();
        self.counted_through = page["last_seq"].as_i64().unwrap();
        self.state_version = page["state_version"].as_i64().unwrap_or(0);
    }

    async fn next_sse(link: &mut Link, within: Duration) -> Option<Value> {
        let Link::Sse { body, buffer } = link else {
            return None;
        };
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return serde_json::from_str(&data).ok();
            }
            match tokio::time::timeout_at(deadline, body.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(chunk))) => buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(_) => panic!("the SSE stream ended"),
            }
        }
    }

    /// Receives and applies what arrives within `within` (one poll, for a long-poll tab).
    pub async fn pump(&mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            let frame = match &mut self.link {
                Link::Ws(ws) => match ws.try_next_json(left).await {
                    Ok(frame) => frame,
                    Err(Ended::Closed(code)) => panic!("tab closed with {code}"),
                    Err(Ended::Dropped) => panic!("tab dropped"),
                },
                Link::Sse { .. } => Self::next_sse(&mut self.link, left).await,
                Link::Poll { after } => {
                    let after = *after;
                    let secs = left.as_secs().clamp(1, 2);
                    let answer = self
                        .get(&format!(
                            "/v1/poll?after={after}&state_version={}&timeout={secs}",
                            self.state_version
                        ))
                        .await;
                    self.apply_poll(&answer).await;
                    return;
                }
            };
            match frame {
                Some(frame) => self.apply(&frame).await,
                None => return,
            }
        }
    }

    async fn apply_poll(&mut self, answer: &Value) {
        self.received.push("poll".into());
        for n in answer["notifications"].as_array().unwrap() {
            let (id, item) = shown(n);
            self.items.insert(id, item);
        }
        if let Link::Poll { after } = &mut self.link {
            *after = answer["last_seq"].as_i64().unwrap();
        }
        let version = answer["state_version"].as_i64().unwrap_or(0);
        if version > self.state_version {
            // The read state or preferences moved: re-read them, as the SDK does.
            self.reload().await;
            self.preferences = self.get("/v1/me/preferences").await;
        }
        self.unread = answer["unread_count"].as_i64().unwrap();
        self.state_version = self.state_version.max(version);
    }

    /// A `state` or `preferences` frame: never one the tab is past already.
    fn versioned(&mut self, frame: &Value) {
        let version = frame["version"].as_i64().unwrap_or(0);
        assert!(
            version == 0 || version > self.state_version,
            "a stale {} frame reached the tab: {frame} (tab at version {})",
            frame["type"],
            self.state_version
        );
        self.state_version = self.state_version.max(version);
    }

    async fn apply(&mut self, frame: &Value) {
        let kind = frame["type"].as_str().unwrap_or_default().to_owned();
        self.received.push(kind.clone());
        match kind.as_str() {
            "hello" => {
                self.unread = frame["unread_count"].as_i64().unwrap();
                self.counted_through = frame["last_seq"].as_i64().unwrap();
                self.state_version = frame["state_version"].as_i64().unwrap_or(0);
            }
            "notification" | "updated" => {
                let (id, item) = shown(&frame["notification"]);
                let known = self.items.get(&id).map(|held| held.seq);
                if known.is_some_and(|seq| seq >= item.seq) {
                    return;
                }
                if known.is_none() && !item.read && item.seq > self.counted_through {
                    self.unread += 1;
                }
                self.items.insert(id, item);
            }
            "state" => {
                self.versioned(frame);
                let change = frame["change"].as_str().unwrap();
                if frame["all"] == true {
                    let up_to = frame["up_to_seq"].as_i64().unwrap();
                    for item in self.items.values_mut().filter(|i| i.seq <= up_to) {
                        item.read = true;
                    }
                } else {
                    for id in frame["ids"].as_array().unwrap() {
                        let id = id.as_str().unwrap();
                        match change {
                            "deleted" => {
                                self.items.remove(id);
                            }
                            "read" | "unread" => {
                                if let Some(item) = self.items.get_mut(id) {
                                    item.read = change == "read";
                                }
                            }
                            _ => {}
                        }
                    }
                }
                self.unread = frame["unread_count"].as_i64().unwrap();
                self.counted_through = frame["last_seq"].as_i64().unwrap();
            }
            "preferences" => {
                self.versioned(frame);
                self.preferences = frame["preferences"].clone();
            }
            "sync" => {
                self.reload().await;
                self.unread = frame["unread_count"].as_i64().unwrap();
                self.counted_through = frame["last_seq"].as_i64().unwrap();
                self.state_version = frame["state_version"].as_i64().unwrap();
                self.preferences = frame["preferences"].clone();
            }
            _ => {}
        }
    }

    /// What the store holds for this tab's user.
    pub async fn truth(&self) -> Truth {
        let page = self.get("/v1/me/notifications?limit=100").await;
        Truth {
            items: page["notifications"]
                .as_array()
                .unwrap()
                .iter()
                .map(shown)
                .collect(),
            unread: page["unread_count"].as_i64().unwrap(),
            state_version: page["state_version"].as_i64().unwrap_or(0),
            preferences: self.get("/v1/me/preferences").await,
        }
    }

    /// What this tab shows, in the shape of [`Truth`].
    pub fn shows(&self) -> Truth {
        Truth {
            items: self.items.clone(),
            unread: self.unread,
            state_version: self.state_version,
            preferences: self.preferences.clone(),
        }
    }
}

/// Pumps every tab until each shows what the store holds, or fails after `within`, printing
/// the first difference. Nothing is sent to the server meanwhile but the tabs' own reads.
pub async fn converge(tabs: &mut [Tab], within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    for tab in tabs.iter_mut() {
        loop {
            let truth = tab.truth().await;
            let shows = tab.shows();
            if shows == truth {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "{:?} tab of {} did not converge within {within:?}:\n shows {shows:?}\n store {truth:?}\n received {:?}",
                    tab.transport, tab.user, tab.received
                );
            }
            tab.pump(Duration::from_millis(200)).await;
        }
    }
}

/// A preferences document muting `kind` in-app and pushing nothing else special, numbered so
/// that successive changes differ.
pub fn preferences_muting(kind: &str) -> Value {
    json!({"types": {kind: {"in_app": false}}})
}
