//! Transports: the session loops that carry a user's feed over WebSocket, Server-Sent Events
//! and long-poll.
//!
//! They own the per-connection ordering guarantee: within one connection `seq` only increases,
//! nothing is sent twice, and a gap (a publish that raced the connection's start, an event lost
//! by the broker, a reconnect with `since`) is filled from the store before anything later is
//! sent. They never touch another user's connections and never decide what is stored.

pub mod budget;
mod gate;
pub mod poll;
pub mod sse;
pub mod ws;

use std::collections::VecDeque;
use std::sync::Arc;

use crate::app::AppState;
use crate::broker::{Topic, Watch};
use crate::hub::{RegisterError, Registration};
use crate::model::{Notification, Seq, UserId};
use crate::protocol::{Event, ServerFrame, VERSION};
use crate::store::{Store, StoreError};

/// How many notifications one catch-up read fetches.
const CATCH_UP_PAGE: u32 = 256;

/// Why a feed could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The hub refused the connection.
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One connection's ordered, gap-free stream of events for one user.
///
/// Opening registers with the hub *first*, makes the broker deliver the user's events to this
/// node *second*, and reads the store *last*, so every notification is either in the store read
/// or in the outbox (or both, and then deduplicated by `seq`).
pub struct Feed {
    user: UserId,
    store: Arc<dyn Store>,
    registration: Registration,
    _watch: Watch,
    last_sent: Seq,
    catching_up: bool,
    pending: VecDeque<Arc<Event>>,
}

impl Feed {
    /// Opens a feed resuming after `since` (or starting at the user's latest notification).
    /// Returns the feed and its `hello` frame.
    pub async fn open(
        state: &AppState,
        user: &UserId,
        since: Option<Seq>,
    ) -> Result<(Self, Event), OpenError> {
        let heartbeat_ms = state.config.ws.heartbeat_interval_secs.saturating_mul(1000);
        let store = Arc::clone(&state.store);
        // Order matters: hub first, broker second, store last (see the type's doc).
        let registration = state.hub.register(user)?;
        let watch = Watch::start(&state.broker, Topic::User(user.clone())).await;
        let counts = store.counts(user).await?;
        // A `since` beyond the user's last seq (a client of a database that was reset) is
        // treated as "up to date"; the hello's `last_seq` lets such a client notice.
        let last_sent = since.unwrap_or(counts.last_seq).clamp(0, counts.last_seq);
        let hello = ServerFrame::Hello {
            v: VERSION,
            conn_id: format!("c{}", registration.id()),
            user_id: user.as_str(),
            unread_count: counts.unread,
            last_seq: counts.last_seq,
            heartbeat_ms,
        }
        .encode();
        let feed = Self {
            user: user.clone(),
            store,
            registration,
            _watch: watch,
            last_sent,
            catching_up: last_sent < counts.last_seq,
            pending: VecDeque::new(),
        };
        Ok((feed, hello))
    }

    /// The next event to send, or `None` when the hub dropped this connection.
    ///
    /// Cancel-safe: state only changes after an await completes, so dropping this future in a
    /// `select!` loses nothing.
    pub async fn next(&mut self) -> Result<Option<Arc<Event>>, StoreError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            if self.catching_up {
                let page = self
                    .store
                    .after(&self.user, self.last_sent, None, CATCH_UP_PAGE)
                    .await?;
                self.catching_up = page.len() == CATCH_UP_PAGE as usize;
                for notification in &page {
                    self.last_sent = notification.seq;
                    self.pending.push_back(Arc::new(encode(notification)));
                }
                continue;
            }
            let Some(event) = self.registration.outbox.recv().await else {
                return Ok(None);
            };
            if event.is_resync() {
                self.catching_up = true;
                continue;
            }
            match event.seq {
                None => return Ok(Some(event)),
                Some(seq) if seq <= self.last_sent => continue,
                Some(seq) if seq == self.last_sent + 1 => {
                    self.last_sent = seq;
                    return Ok(Some(event));
                }
                // A gap: read everything after `last_sent` from the store, which includes this
                // event (it was committed before it was published).
                Some(_) => self.catching_up = true,
            }
        }
    }

    /// Cancelled when the hub found this connection's outbox full.
    pub fn slow_token(&self) -> tokio_util::sync::CancellationToken {
        self.registration.slow.clone()
    }

    /// This connection's node-local id.
    pub fn conn_id(&self) -> u64 {
        self.registration.id()
    }

    /// The highest `seq` sent so far.
    pub fn last_sent(&self) -> Seq {
        self.last_sent
    }
}

fn encode(notification: &Notification) -> Event {
    ServerFrame::delivering(notification).encode()
}
