//! Rate limits on the backend API: per API key (requests) and per recipient (notifications),
//! each a token bucket of `per_minute` with a burst. Exceeding one answers `429` with
//! `Retry-After`. Off (0) by default: the backend is trusted, and a limit is a policy choice.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::RateLimitConfig;
use crate::model::UserId;

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// What hit its limit, for the error message.
    pub what: String,
    /// How long until a retry can succeed.
    pub retry_after: Duration,
}

/// The configured limiters.
pub struct RateLimits {
    per_key: Option<Keyed>,
    per_recipient: Option<Keyed>,
    clock: DefaultClock,
}

fn limiter(per_minute: u32, burst: u32) -> Option<Keyed> {
    let per_minute = NonZeroU32::new(per_minute)?;
    let burst = NonZeroU32::new(burst).unwrap_or(per_minute);
    Some(RateLimiter::keyed(
        Quota::per_minute(per_minute).allow_burst(burst),
    ))
}

impl RateLimits {
    /// Limiters from configuration; a zero rate disables that limit.
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            per_key: limiter(config.api_key_per_minute, config.api_key_burst),
            per_recipient: limiter(config.recipient_per_minute, config.recipient_burst),
            clock: DefaultClock::default(),
        }
    }

    fn check(&self, limiter: &Keyed, key: &str, what: String) -> Result<(), Limited> {
        limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| Limited {
                what,
                retry_after: not_until
                    .wait_time_from(self.clock.now())
                    .max(Duration::from_secs(1)),
            })
    }

    /// Counts one request by the API key with fingerprint `key`.
    pub fn api_key(&self, key: &str) -> Result<(), Limited> {
        match &self.per_key {
            Some(limiter) => self.check(limiter, key, "this API key".into()),
            None => Ok(()),
        }
    }

    /// Counts one notification for each recipient; refuses when any is over its limit.
    pub fn recipients<'a>(
        &self,
        users: impl IntoIterator<Item = &'a UserId>,
    ) -> Result<(), Limited> {
        let Some(limiter) = &self.per_recipient else {
            return Ok(());
        };
        for user in users {
            self.check(limiter, user.as_str(), format!("recipient `{user}`"))?;
        }
        Ok(())
    }

    /// Forgets idle keys; call now and then so the maps do not grow without bound.
    pub fn prune(&self) {
        for limiter in [&self.per_key, &self.per_recipient].into_iter().flatten() {
            limiter.retain_recent();
        }
    }
}
