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

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use crate::app::AppState;
use crate::broker::{Topic, Watch};
use crate::hub::{RegisterError, Registration};
use crate::model::{Notification, Seq, StateVersion, UserId};
use crate::preferences::Preferences;
use crate::protocol::{Event, ServerFrame, VERSION};
use crate::store::{Counts, Store, StoreError};

/// How many notifications one catch-up read fetches.
const CATCH_UP_PAGE: u32 = 256;

/// How long a feed holds back notifications that arrived after a gap, waiting for the outbox to
/// fill it, before it reads the gap from the store. Concurrent requests for one user commit in
/// one group and publish from their own tasks, so `seq` 7 often reaches the outbox a moment
/// before 6: with a read per gap, every connection of a busy user read the store for every
/// such swap (a broadcast to 1 000 connections of one user spent most of its time there).
/// A notification the broker really lost arrives this much later.
pub const GAP_HOLD: Duration = Duration::from_millis(100);

/// At most this many notifications are held back; one more reads the gap from the store.
const MAX_HELD: usize = 256;

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
    /// Notifications that arrived after a gap, by `seq`, held back until the gap fills.
    held: BTreeMap<Seq, Arc<Event>>,
    /// When the held-back notifications stop waiting and the gap is read from the store;
    /// `Some` exactly while `held` is not empty.
    hold_until: Option<tokio::time::Instant>,
    /// Events without a `seq` (state changes, room messages) that arrived while notifications
    /// were held back: they go out after the gap is filled, in arrival order.
    after_gap: VecDeque<Arc<Event>>,
    /// The state version of the newest read-state or preferences change this connection was
    /// sent (in `hello`, a `state`, `preferences` or `sync` frame). A versioned frame at or
    /// below it is stale and dropped; one beyond the next means a change was lost: the feed
    /// then sends `sync`.
    state_version: StateVersion,
    /// Set when the state may be stale (a resync, a version gap): the next step reads the
    /// store's counts and sends `sync` when its version is ahead.
    verify_state: bool,
    store_reads: Counter,
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
            state_version: counts.state_version,
            heartbeat_ms,
        }
        .encode();
        // Everything up to these counts is in this connection's hello or its catch-up read.
        state.hub.observe(user, counts.position());
        let feed = Self {
            user: user.clone(),
            store,
            registration,
            _watch: watch,
            last_sent,
            catching_up: last_sent < counts.last_seq,
            pending: VecDeque::new(),
            held: BTreeMap::new(),
            hold_until: None,
            after_gap: VecDeque::new(),
            state_version: counts.state_version,
            verify_state: false,
            store_reads: state.metrics.feed_store_reads.clone(),
        };
        Ok((feed, hello))
    }

    /// The next event to send, or `None` when the hub dropped this connection.
    ///
    /// Notifications go out in `seq` order. One that arrives after a gap is held back for up to
    /// [`GAP_HOLD`] while the outbox fills the gap; then (or when a seq-less event arrives, or
    /// too many are held) everything after `last_sent` is read from the store, which has every
    /// committed notification, held ones included.
    ///
    /// Cancel-safe: state only changes after an await completes, so dropping this future in a
    /// `select!` loses nothing.
    pub async fn next(&mut self) -> Result<Option<Arc<Event>>, StoreError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            if self.catching_up {
                self.store_reads.inc();
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
            if self.verify_state {
                let counts = self.store.counts(&self.user).await?;
                let behind = counts.state_version > self.state_version;
                let preferences = if behind {
                    self.store
                        .preferences(std::slice::from_ref(&self.user))
                        .await?
                } else {
                    Vec::new()
                };
                self.verify_state = false;
                if behind {
                    self.state_version = counts.state_version;
                    let preferences = preferences.into_iter().next().map(|(_, p)| p);
                    return Ok(Some(Arc::new(sync_event(counts, preferences))));
                }
                continue;
            }
            // The gap, if any, is filled: held-back notifications and deferred events go next.
            if let Some(event) = self.take_held() {
                return Ok(Some(event));
            }
            if self.held.is_empty()
                && let Some(event) = self.after_gap.pop_front()
            {
                if let Some(event) = self.admit(event) {
                    return Ok(Some(event));
                }
                continue;
            }
            let received = match self.hold_until {
                Some(until) => {
                    tokio::select! {
                        event = self.registration.outbox.recv() => Some(event),
                        () = tokio::time::sleep_until(until) => None,
                    }
                }
                None => Some(self.registration.outbox.recv().await),
            };
            let Some(received) = received else {
                // The gap did not fill in time: read it (and what was held) from the store.
                self.read_gap_from_store();
                continue;
            };
            let Some(event) = received else {
                return Ok(None);
            };
            if event.is_resync() {
                self.read_gap_from_store();
                self.catching_up = true;
                self.verify_state = true;
                continue;
            }
            match event.seq {
                None if self.held.is_empty() => {
                    if let Some(event) = self.admit(event) {
                        return Ok(Some(event));
                    }
                }
                None => {
                    // Keep it behind the held notifications; stop waiting for the gap.
                    self.after_gap.push_back(event);
                    self.read_gap_from_store();
                }
                Some(seq) if seq <= self.last_sent => {}
                Some(seq) if seq == self.last_sent + 1 => {
                    self.last_sent = seq;
                    return Ok(Some(event));
                }
                Some(seq) => {
                    self.held.insert(seq, event);
                    if self.held.len() > MAX_HELD {
                        self.read_gap_from_store();
                    } else if self.hold_until.is_none() {
                        self.hold_until = Some(tokio::time::Instant::now() + GAP_HOLD);
                    }
                }
            }
        }
    }

    /// Lets a seq-less event through, unless it is a versioned change this connection already
    /// has (`None`). A change beyond the next version means one was lost on the way: it is
    /// dropped too, and the store's state goes out instead (`sync`, which covers it).
    fn admit(&mut self, event: Arc<Event>) -> Option<Arc<Event>> {
        let Some(version) = event.version else {
            return Some(event);
        };
        if version <= self.state_version {
            return None;
        }
        if version > self.state_version + 1 {
            self.verify_state = true;
            return None;
        }
        self.state_version = version;
        Some(event)
    }

    /// The next held-back notification, if the gap before it is filled. Drops held ones that
    /// were sent meanwhile.
    fn take_held(&mut self) -> Option<Arc<Event>> {
        while let Some(entry) = self.held.first_entry() {
            let seq = *entry.key();
            if seq <= self.last_sent {
                entry.remove();
            } else if seq == self.last_sent + 1 {
                self.last_sent = seq;
                let event = entry.remove();
                if self.held.is_empty() {
                    self.hold_until = None;
                }
                return Some(event);
            } else {
                return None;
            }
        }
        self.hold_until = None;
        None
    }

    /// Gives up waiting for the gap: the store read that follows returns everything after
    /// `last_sent`, held notifications included.
    fn read_gap_from_store(&mut self) {
        if !self.held.is_empty() {
            self.held.clear();
            self.catching_up = true;
        }
        self.hold_until = None;
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

fn sync_event(counts: Counts, preferences: Option<Preferences>) -> Event {
    let preferences = preferences.unwrap_or_default();
    ServerFrame::Sync {
        unread_count: counts.unread,
        last_seq: counts.last_seq,
        state_version: counts.state_version,
        preferences: &preferences,
    }
    .encode()
}
