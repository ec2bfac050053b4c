//! A child's output rate limit, journald's `RateLimitBurst` /
//! `RateLimitIntervalSec` model: up to `burst` lines pass at once (a
//! governor token bucket refilling `burst` per `interval`); the first line
//! refused opens a window of one `interval` in which every line is dropped
//! and only counted, then a single notice says how many.
//!
//! The window matters: without it a saturated bucket would let one line
//! through every `interval / burst` and a notice would follow each.

use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Dropped, and counted.
    Drop,
}

#[derive(Debug, Default)]
struct Window {
    /// Lines dropped and not yet announced.
    suppressed: u64,
    /// Lines are dropped until then.
    until: Option<Instant>,
}

/// One child's limit, shared by its stdout and stderr and kept across its
/// restarts (a crash loop does not earn a fresh burst each time).
#[derive(Debug)]
pub struct RateGate {
    pub burst: u32,
    pub interval: Duration,
    limiter: Option<DefaultDirectRateLimiter>,
    window: Mutex<Window>,
}

impl RateGate {
    /// `burst` 0: no limit.
    pub fn new(burst: u32, interval: Duration) -> Self {
        let limiter = NonZeroU32::new(burst)
            .filter(|_| !interval.is_zero())
            .map(|burst| {
                let period = (interval / burst.get()).max(Duration::from_nanos(1));
                let quota = Quota::with_period(period)
                    .unwrap_or_else(|| Quota::per_second(burst))
                    .allow_burst(burst);
                RateLimiter::direct(quota)
            });
        Self {
            burst,
            interval,
            limiter,
            window: Mutex::new(Window::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a limit applies at all.
    pub fn limited(&self) -> bool {
        self.limiter.is_some()
    }

    /// Decides one line at `now`.
    pub fn admit(&self, now: Instant) -> Verdict {
        let Some(limiter) = &self.limiter else {
            return Verdict::Pass;
        };
        let mut window = self.lock();
        if let Some(until) = window.until {
            if now < until {
                window.suppressed += 1;
                return Verdict::Drop;
            }
            window.until = None;
        }
        if limiter.check().is_ok() {
            Verdict::Pass
        } else {
            window.until = Some(now + self.interval);
            window.suppressed += 1;
            Verdict::Drop
        }
    }

    /// Whether lines are being dropped at `now`.
    pub fn suppressing(&self, now: Instant) -> bool {
        self.lock().until.is_some_and(|until| now < until)
    }

    /// Counts lines dropped in bulk while suppressing.
    pub fn dropped(&self, lines: u64) {
        if lines > 0 {
            self.lock().suppressed += lines;
        }
    }

    /// When the window ends, if dropped lines wait to be announced then.
    pub fn notice_due(&self) -> Option<Instant> {
        let window = self.lock();
        window.until.filter(|_| window.suppressed > 0)
    }

    /// The count to announce once the window is over at `now` (ending it).
    pub fn take_if_over(&self, now: Instant) -> Option<u64> {
        let mut window = self.lock();
        if window.until.is_some_and(|until| now < until) {
            return None;
        }
        window.until = None;
        Some(std::mem::take(&mut window.suppressed)).filter(|&n| n > 0)
    }

    /// The count to announce now, window or not (the stream ended).
    pub fn take(&self) -> Option<u64> {
        Some(std::mem::take(&mut self.lock().suppressed)).filter(|&n| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_a_window_drops_and_counts() {
        let gate = RateGate::new(3, Duration::from_secs(30));
        let now = Instant::now();
        let verdicts: Vec<Verdict> = (0..5).map(|_| gate.admit(now)).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Pass,
                Verdict::Pass,
                Verdict::Pass,
                Verdict::Drop,
                Verdict::Drop
            ]
        );
        assert!(gate.suppressing(now));
        gate.dropped(10);
        assert_eq!(gate.take_if_over(now), None, "the window is not over");
        assert_eq!(gate.notice_due(), Some(now + Duration::from_secs(30)));
        let later = now + Duration::from_secs(31);
        assert_eq!(gate.take_if_over(later), Some(12));
        assert_eq!(gate.take_if_over(later), None, "announced once");
        assert!(!gate.suppressing(later));
    }

    #[test]
    fn burst_zero_is_no_limit() {
        let gate = RateGate::new(0, Duration::from_secs(30));
        let now = Instant::now();
        assert!(!gate.limited());
        assert!((0..100_000).all(|_| gate.admit(now) == Verdict::Pass));
        assert_eq!(gate.take(), None);
    }
}
