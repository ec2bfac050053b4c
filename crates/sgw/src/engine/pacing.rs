//! One restart rate for the whole supervisor.
//!
//! Backoff is per child, so a hundred children crash-looping at a 10 ms
//! backoff ask for ten thousand spawns a second, and the host (including
//! the control plane that should let an operator stop the storm) spends
//! its CPU on `fork`/`exec`. Automatic restarts therefore also take a token
//! from one bucket shared by every child; a child without a token stays in
//! BACKOFF until it gets one. Operator commands (restart, resume) and
//! first starts are not paced: they are deliberate, and bounded by the
//! size of the tree.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// `[supervisor] restart_rate`: automatic restarts per second across all
/// children, with a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartRate {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Default for RestartRate {
    fn default() -> Self {
        Self {
            per_second: NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// The shared bucket; `None` inside means unlimited.
pub(crate) struct Pacer {
    limiter: Option<DefaultDirectRateLimiter>,
    clock: DefaultClock,
    /// Waiters line up here (tokio's mutex is FIFO), so only the head
    /// of the line polls the bucket: restarts go out in the order they
    /// became due, and a hundred waiters cost one timer, not a hundred.
    line: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("limited", &self.limiter.is_some())
            .finish()
    }
}

impl Pacer {
    pub(crate) fn new(rate: Option<RestartRate>) -> Self {
        Self {
            limiter: rate.map(|rate| {
                RateLimiter::direct(Quota::per_second(rate.per_second).allow_burst(rate.burst))
            }),
            clock: DefaultClock::default(),
            line: tokio::sync::Mutex::new(()),
        }
    }

    /// Resolves once a restart may go ahead. Cancel-safe: a waiter that
    /// a command interrupts leaves the line and costs no token.
    pub(crate) async fn ready(&self) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        let _turn = self.line.lock().await;
        while let Err(not_until) = limiter.check() {
            tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
        }
    }
}
