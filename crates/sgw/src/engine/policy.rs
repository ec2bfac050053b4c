//! Restart policy as pure functions of a child's history, so every decision
//! can be tested without processes or clocks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::model::{Backoff, BudgetStatus, ChildSpec, Failure, RestartBudget, RestartPolicy};

/// What to do after a process exited on its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Schedule restart number `attempt` (1-based, since the last reset)
    /// after `delay`.
    Restart { attempt: u32, delay: Duration },
    /// The policy does not restart this exit.
    Stop,
    /// The budget has no room for another restart.
    Quarantine { restarts: u32, window: Duration },
}

/// A child's restart history.
#[derive(Debug, Default)]
pub struct RestartTracker {
    /// Consecutive automatic restarts since the last backoff reset.
    attempts: u32,
    /// When each automatic restart within the budget window was scheduled.
    recent: VecDeque<Instant>,
}

impl RestartTracker {
    /// Decides what follows a run that ended on its own (an exit, or a
    /// spawn that failed, which `on_failure` restarts like a failed exit);
    /// records the restart if there is one. `unit` is a uniform random
    /// number in [0, 1) for the jitter.
    pub fn on_end(
        &mut self,
        spec: &ChildSpec,
        ended: &Failure,
        now: Instant,
        unit: f64,
    ) -> Decision {
        let restart = match spec.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => match ended {
                Failure::Exit(exit) => !exit.is_success(&spec.success_codes),
                Failure::Spawn(_) | Failure::Unhealthy(_) => true,
            },
            RestartPolicy::Never => false,
        };
        if !restart {
            return Decision::Stop;
        }
        self.expire(&spec.restart_budget, now);
        if self.recent.len() >= spec.restart_budget.max as usize {
            return Decision::Quarantine {
                restarts: spec.restart_budget.max,
                window: spec.restart_budget.window,
            };
        }
        self.recent.push_back(now);
        self.attempts = self.attempts.saturating_add(1);
        Decision::Restart {
            attempt: self.attempts,
            delay: backoff_delay(&spec.backoff, self.attempts, unit),
        }
    }

    /// The child stayed up long enough: back off from the start again.
    pub fn reset_backoff(&mut self) {
        self.attempts = 0;
    }

    /// An operator intervened (restart, resume): forget the history so a
    /// quarantined child gets its full budget back.
    pub fn reset_all(&mut self) {
        self.attempts = 0;
        self.recent.clear();
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn status(&mut self, budget: &RestartBudget, now: Instant) -> BudgetStatus {
        self.expire(budget, now);
        BudgetStatus {
            max: budget.max,
            window: budget.window,
            used: u32::try_from(self.recent.len()).unwrap_or(u32::MAX),
        }
    }

    fn expire(&mut self, budget: &RestartBudget, now: Instant) {
        while let Some(&oldest) = self.recent.front() {
            if now.saturating_duration_since(oldest) >= budget.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
    }
}

/// `initial * multiplier^(attempt-1)`, capped at `max`, then scaled by a
/// factor in `[1 - jitter, 1 + jitter)` and capped at `max` again.
pub fn backoff_delay(backoff: &Backoff, attempt: u32, unit: f64) -> Duration {
    let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let base = backoff.initial.as_secs_f64() * backoff.multiplier.powi(exponent);
    let capped = base.min(backoff.max.as_secs_f64());
    let factor = 1.0 + backoff.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
    Duration::from_secs_f64((capped * factor).clamp(0.0, backoff.max.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChildId, Exit, SpawnError, SpawnStage};

    fn spec(policy: RestartPolicy) -> ChildSpec {
        let mut spec = ChildSpec::new(ChildId::new("t").expect("id"), vec!["true".into()]);
        spec.restart = policy;
        spec.backoff.jitter = 0.0;
        spec.restart_budget = RestartBudget {
            max: 3,
            window: Duration::from_secs(60),
        };
        spec
    }

    #[test]
    fn delays_grow_exponentially_and_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            multiplier: 2.0,
            jitter: 0.0,
            reset_after: Duration::from_secs(1),
        };
        let delays: Vec<_> = (1..=6)
            .map(|a| backoff_delay(&b, a, 0.5).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let b = Backoff {
            jitter: 0.2,
            ..Backoff::default()
        };
        assert_eq!(backoff_delay(&b, 1, 0.0).as_millis(), 80);
        assert_eq!(backoff_delay(&b, 1, 0.5).as_millis(), 100);
        assert!(backoff_delay(&b, 1, 0.999).as_millis() <= 120);
    }

    #[test]
    fn policies_decide_per_exit() {
        let now = Instant::now();
        let mut t = RestartTracker::default();
        assert_eq!(
            t.on_end(
                &spec(RestartPolicy::Never),
                &Failure::Exit(Exit::Code(1)),
                now,
                0.5
            ),
            Decision::Stop
        );
        assert_eq!(
            t.on_end(
                &spec(RestartPolicy::OnFailure),
                &Failure::Exit(Exit::Code(0)),
                now,
                0.5
            ),
            Decision::Stop
        );
        assert!(matches!(
            t.on_end(
                &spec(RestartPolicy::OnFailure),
                &Failure::Exit(Exit::Signal(9)),
                now,
                0.5
            ),
            Decision::Restart { attempt: 1, .. }
        ));
        assert!(matches!(
            t.on_end(
                &spec(RestartPolicy::Always),
                &Failure::Exit(Exit::Code(0)),
                now,
                0.5
            ),
            Decision::Restart { attempt: 2, .. }
        ));
    }

    #[test]
    fn budget_exhaustion_quarantines_and_window_expiry_frees() {
        let spec = spec(RestartPolicy::Always);
        let start = Instant::now();
        let mut t = RestartTracker::default();
        for _ in 0..3 {
            assert!(matches!(
                t.on_end(&spec, &Failure::Exit(Exit::Code(1)), start, 0.5),
                Decision::Restart { .. }
            ));
        }
        assert_eq!(
            t.on_end(&spec, &Failure::Exit(Exit::Code(1)), start, 0.5),
            Decision::Quarantine {
                restarts: 3,
                window: Duration::from_secs(60)
            }
        );
        assert!(t.status(&spec.restart_budget, start).exhausted());
        let later = start + Duration::from_secs(61);
        assert_eq!(t.status(&spec.restart_budget, later).used, 0);
        assert!(matches!(
            t.on_end(&spec, &Failure::Exit(Exit::Code(1)), later, 0.5),
            Decision::Restart { attempt: 4, .. }
        ));
        t.reset_backoff();
        assert!(matches!(
            t.on_end(&spec, &Failure::Exit(Exit::Code(1)), later, 0.5),
            Decision::Restart { attempt: 1, .. }
        ));
    }

    #[test]
    fn spawn_failures_restart_unless_never() {
        let now = Instant::now();
        let failed = Failure::Spawn(SpawnError {
            stage: SpawnStage::Exec,
            path: "/nope".into(),
            message: "No such file or directory".into(),
        });
        let mut t = RestartTracker::default();
        assert!(matches!(
            t.on_end(&spec(RestartPolicy::OnFailure), &failed, now, 0.5),
            Decision::Restart { attempt: 1, .. }
        ));
        assert_eq!(
            t.on_end(&spec(RestartPolicy::Never), &failed, now, 0.5),
            Decision::Stop
        );
    }
}
