//! The per-connection budget of client frames: a token bucket refilled at
//! `ws.max_frames_per_second`, `ws.frames_burst` deep. A client over it is closed with 4011, so
//! one connection cannot make the server parse, answer and store without bound.

use std::num::NonZeroU32;

use governor::clock::DefaultClock;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::config::WsConfig;

/// One connection's frame budget; unlimited when `ws.max_frames_per_second` is 0.
pub struct FrameBudget(Option<RateLimiter<NotKeyed, InMemoryState, DefaultClock>>);

impl FrameBudget {
    /// A full bucket for a new connection.
    pub fn new(config: &WsConfig) -> Self {
        Self(NonZeroU32::new(config.max_frames_per_second).map(|rate| {
            let burst = NonZeroU32::new(config.frames_burst).unwrap_or(rate);
            RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
        }))
    }

    /// Takes one frame from the budget; false when it is spent.
    pub fn admit(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|limiter| limiter.check().is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_second: u32, burst: u32) -> FrameBudget {
        FrameBudget::new(&WsConfig {
            max_frames_per_second: per_second,
            frames_burst: burst,
            ..WsConfig::default()
        })
    }

    #[test]
    fn a_burst_is_admitted_and_the_next_frame_is_not() {
        let budget = budget(1, 5);
        assert!((0..5).all(|_| budget.admit()));
        assert!(!budget.admit());
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let budget = budget(0, 0);
        assert!((0..10_000).all(|_| budget.admit()));
    }
}
