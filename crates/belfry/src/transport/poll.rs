//! Long-poll: answer at once when the user has notifications after `after`, else wait for one
//! (or the timeout, or shutdown) and answer then. A poll never answers after its token's `exp`:
//! a wait that reaches `exp` ends there with [`PollError::Expired`] (401 "token expired at …"),
//! and the client polls again with a fresh token from where it was.

use std::time::Duration;

use crate::app::AppState;
use crate::auth::{TokenError, User, expiry_deadline};
use crate::hub::RegisterError;
use crate::model::{Notification, Seq, UserId};
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
}

/// Waits up to `timeout`, and never past the token's `exp`, for notifications of `user` after
/// `after`.
pub async fn poll(
    state: &AppState,
    principal: &User,
    after: Seq,
    timeout: Duration,
) -> Result<PollOutcome, PollError> {
    let user: &UserId = &principal.id;
    // Register before reading, so a notification committed between the read and the wait
    // still wakes this poll.
    let mut registration = state.hub.register(user)?;
    let watch =
        crate::broker::Watch::start(&state.broker, crate::broker::Topic::User(user.clone())).await;
    let mut notifications = state.store.after(user, after, None, POLL_LIMIT).await?;
    if notifications.is_empty() {
        let now = tokio::time::Instant::now();
        let deadline = now.checked_add(timeout).unwrap_or(now);
        let expiry = expiry_deadline(principal.expires_at);
        loop {
            let woke = tokio::select! {
                () = state.shutdown.cancelled() => false,
                () = tokio::time::sleep_until(deadline) => false,
                () = tokio::time::sleep_until(expiry) => {
                    return Err(PollError::Expired(TokenError::expired_now(principal.expires_at)));
                }
                () = registration.slow.cancelled() => true,
                event = registration.outbox.recv() => match event {
                    Some(event) => event.is_resync() || event.seq.is_some_and(|seq| seq > after),
                    None => false,
                },
            };
            if woke {
                notifications = state.store.after(user, after, None, POLL_LIMIT).await?;
            }
            if !notifications.is_empty() || !woke {
                break;
            }
        }
    }
    drop(watch);
    drop(registration);
    let counts = state.store.counts(user).await?;
    let last_seq = notifications.last().map_or(after, |n| n.seq);
    Ok(PollOutcome {
        notifications,
        last_seq,
        unread_count: counts.unread,
    })
}
