//! One live connection, WebSocket or Server-Sent Events, read as a sequence of text frames.
//!
//! WebSocket sockets are bound to their loopback source address before they connect; SSE
//! streams go through a `reqwest` client bound to it (`local_address`), one client per source
//! address, one TCP connection per stream.

use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::dialect::{Dialect, Frame};

/// Which live transport clients use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// WebSocket.
    Ws,
    /// Server-Sent Events (receive only).
    Sse,
}

impl Transport {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
        }
    }
}

type Ws = WebSocketStream<TcpStream>;
type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// An open connection whose `hello` (and, for a room, `joined`) has arrived.
pub enum Conn {
    /// A WebSocket.
    Ws(Box<Ws>),
    /// An SSE stream and the bytes of a partly received event.
    Sse(Body, Vec<u8>),
}

/// What reading a connection gave.
pub enum Next {
    /// A text frame (a WebSocket text message, or the data of one SSE event).
    Text(String),
    /// The connection ended: a close code, an error kind or `eof`.
    Closed(String),
}

/// Where and how to connect.
pub struct Endpoint<'a> {
    /// The server.
    pub server: SocketAddr,
    /// The loopback address to connect from.
    pub source: SocketAddr,
    /// The server's API.
    pub dialect: Dialect,
    /// The transport.
    pub transport: Transport,
    /// For SSE: the client bound to `source`.
    pub http: &'a reqwest::Client,
}

impl Conn {
    /// Connects with the user's `token`, resuming after `since` where the server can, joins
    /// `room` when given, and returns once the session is live.
    pub async fn open(
        at: &Endpoint<'_>,
        token: &str,
        since: Option<i64>,
        room: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut conn = match at.transport {
            Transport::Ws => {
                let path = at.dialect.ws_path(token, since, room);
                Conn::Ws(Box::new(open_ws(at.source, at.server, &path).await?))
            }
            Transport::Sse => {
                if room.is_some() {
                    bail!("rooms need a WebSocket (SSE is receive-only)");
                }
                let url = format!("http://{}{}", at.server, at.dialect.sse_path(token, since));
                let response = at
                    .http
                    .get(url)
                    .header("accept", "text/event-stream")
                    .send()
                    .await
                    .context("connect")?;
                let status = response.status();
                if !status.is_success() {
                    bail!("HTTP {status}");
                }
                Conn::Sse(Box::pin(response.bytes_stream()), Vec::new())
            }
        };
        conn.expect(at.dialect, Frame::Hello).await?;
        if let Some(room) = room
            && let Some(join) = at.dialect.join_frame(room)
        {
            conn.send(join).await?;
            conn.expect(at.dialect, Frame::Joined).await?;
        }
        Ok(conn)
    }

    /// Reads frames until `want` arrives; anything else first is ignored, an error frame or a
    /// close fails.
    async fn expect(&mut self, dialect: Dialect, want: Frame) -> anyhow::Result<()> {
        loop {
            match self.next().await {
                Next::Text(text) => match dialect.parse(&text) {
                    frame if frame == want => return Ok(()),
                    Frame::Error(code) => bail!("error frame {code} before {want:?}"),
                    _ => continue,
                },
                Next::Closed(why) => bail!("{why} before {want:?}"),
            }
        }
    }

    async fn send(&mut self, text: String) -> anyhow::Result<()> {
        match self {
            Conn::Ws(ws) => Ok(ws.send(Message::text(text)).await?),
            Conn::Sse(..) => bail!("SSE is receive-only"),
        }
    }

    /// The next text frame. Cancel-safe: a partly read SSE event stays buffered.
    pub async fn next(&mut self) -> Next {
        match self {
            Conn::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => return Next::Text(text.as_str().to_owned()),
                    Some(Ok(Message::Close(close))) => {
                        return Next::Closed(
                            close.map_or_else(|| "close".into(), |c| format!("close {}", c.code)),
                        );
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Next::Closed(format!("error: {e}")),
                    None => return Next::Closed("eof".into()),
                }
            },
            Conn::Sse(body, buffer) => loop {
                if let Some(data) = take_event(buffer) {
                    match data {
                        Some(text) => return Next::Text(text),
                        None => continue,
                    }
                }
                match body.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    Some(Err(e)) => return Next::Closed(format!("error: {e}")),
                    None => return Next::Closed("eof".into()),
                }
            },
        }
    }

    /// Closes politely (a WebSocket close frame; an SSE stream is just dropped).
    pub async fn close(self) {
        if let Conn::Ws(mut ws) = self {
            let _ = WebSocketStream::close(&mut *ws, None).await;
        }
    }
}

async fn open_ws(source: SocketAddr, server: SocketAddr, path: &str) -> anyhow::Result<Ws> {
    let socket = match server {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket
        .bind(source)
        .with_context(|| format!("bind {source}"))?;
    let stream = socket.connect(server).await.context("connect")?;
    stream.set_nodelay(true)?;
    // Small buffers: thousands of mostly idle clients share this process.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let url = format!("ws://{server}{path}");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .context("handshake")?;
    Ok(ws)
}

/// Removes one complete SSE event from the front of `buffer`: `None` when none is complete
/// yet, `Some(None)` for an event without data (a comment, a keep-alive), `Some(Some(data))`
/// otherwise (data lines joined with newlines).
fn take_event(buffer: &mut Vec<u8>) -> Option<Option<String>> {
    let end = buffer.windows(2).position(|w| w == b"\n\n")?;
    let event: Vec<u8> = buffer.drain(..end + 2).collect();
    let text = String::from_utf8_lossy(&event[..end]);
    let mut data: Option<String> = None;
    for line in text.lines() {
        let Some(value) = line.strip_prefix("data:") else {
            continue;
        };
        let value = value.strip_prefix(' ').unwrap_or(value);
        match &mut data {
            Some(d) => {
                d.push('\n');
                d.push_str(value);
            }
            None => data = Some(value.to_owned()),
        }
    }
    Some(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split_and_comments_skipped() {
        let mut buffer =
            b"event: hello\ndata: {\"a\":1}\n\n: ping\n\nid: 3\ndata: x\ndata: y\n\nda".to_vec();
        assert_eq!(take_event(&mut buffer), Some(Some("{\"a\":1}".into())));
        assert_eq!(take_event(&mut buffer), Some(None));
        assert_eq!(take_event(&mut buffer), Some(Some("x\ny".into())));
        assert_eq!(take_event(&mut buffer), None);
        assert_eq!(buffer, b"da");
    }
}
