//! Long-poll: answer at once when the user has notifications after `after`, else wait for one
//! (or the timeout, or shutdown) and answer then. A poll never answers after its token's `exp`:
//! a wait that reaches `exp` ends there with [`PollError::Expired`] (401 "token expired at …"),
//! and the client polls again with a fresh token from where it was.

use std::time::Duration;

use crate::app::AppState;
use crate::auth::{TokenError, User, expiry_deadline};
use crate::hub::RegisterError;
use crate::model::{Notification, Seq, StateVersion, UserId};
use crate::store::StoreError;

/// Most notifications one poll returns.
pub const POLL_LIMIT: u32 = 100;

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The user holds too many live connections.
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// The token expired while the poll waited.
    #[error(transparent)]
    Expired(TokenError),
}

/// What a poll returns.
#[derive(Debug)]
pub struct PollOutcome {
    /// Notifications after `after`, oldest first.
    pub notifications: Vec<Notification>,
    /// The value to pass as `after` next time.
    pub last_seq: Seq,
    /// The unread count now.
    pub unread_count: i64,
    /// The user's state version now: pass it as `state_version` next time.
    pub state_version: StateVersion,
}

/// Waits up to `timeout`, and never past the token's `exp`, for notifications of `user` after
/// `after`, or (when the client passed the state version it has) for a read-state or
/// preferences change beyond `known_version`.
pub async fn poll(
    state: &AppState,
    principal: &User,
    after: Seq,
    known_version: Option<StateVersion>,
    timeout: Duration,
) -> Result<PollOutcome, PollError> {
    let user: &UserId = &principal.id;
    // Register before reading, so a change committed between the read and the wait still
    // wakes this poll.
    let mut registration = state.hub.register(user)?;
    let _watch =
        crate::broker::Watch::start(&state.broker, crate::broker::Topic::User(user.clone())).await;
    let now = tokio::time::Instant::now();
    let deadline = now.checked_add(timeout).unwrap_or(now);
    let expiry = expiry_deadline(principal.expires_at);
    loop {
        let counts = state.store.counts(user).await?;
        state.hub.observe(user, counts.position());
        let notifications = if counts.last_seq > after {
            state.store.after(user, after, None, POLL_LIMIT).await?
        } else {
            Vec::new()
        };
        let state_moved = known_version.is_some_and(|known| counts.state_version > known);
        let last_seq = notifications.last().map_or(after, |n| n.seq);
        let outcome = PollOutcome {
            notifications,
            last_seq,
            unread_count: counts.unread,
            state_version: counts.state_version,
        };
        if !outcome.notifications.is_empty() || state_moved {
            return Ok(outcome);
        }
        let woke = loop {
            let event = tokio::select! {
                () = state.shutdown.cancelled() => break false,
                () = tokio::time::sleep_until(deadline) => break false,
                () = tokio::time::sleep_until(expiry) => {
                    return Err(PollError::Expired(TokenError::expired_now(principal.expires_at)));
                }
                () = registration.slow.cancelled() => break true,
                event = registration.outbox.recv() => event,
            };
            let Some(event) = event else { break false };
            let news = event.is_resync()
                || event.seq.is_some_and(|seq| seq > after)
                || known_version.is_some_and(|known| event.version.is_some_and(|v| v > known));
            if news {
                break true;
            }
        };
        if !woke {
            return Ok(outcome);
        }
    }
}
