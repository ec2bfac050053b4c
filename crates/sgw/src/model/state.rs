use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;

use super::{ChildId, ChildSpec};

/// Where a child is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildState {
    /// Waiting for dependencies, or spawned and not yet `ready_after` old.
    Starting,
    Running,
    /// Exited; an automatic restart is scheduled.
    Backoff,
    /// A stop is in progress (signal sent, waiting for exit or escalation).
    Stopping,
    /// Not running and not scheduled to run: never started (`autostart =
    /// false`) or exited under a policy that does not restart.
    Stopped,
    /// Stopped by a command; held until resume or restart.
    Paused,
    /// Stopped because it kept failing (or by a command); no automatic
    /// restarts until resume or restart.
    Quarantined,
}

impl ChildState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildState::Starting => "starting",
            ChildState::Running => "running",
            ChildState::Backoff => "backoff",
            ChildState::Stopping => "stopping",
            ChildState::Stopped => "stopped",
            ChildState::Paused => "paused",
            ChildState::Quarantined => "quarantined",
        }
    }

    /// Whether a process for this child may exist right now.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            ChildState::Starting | ChildState::Running | ChildState::Stopping
        )
    }
}

impl fmt::Display for ChildState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn from_status(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            // Neither code nor signal only happens for stopped/continued
            // statuses, which `wait` does not report.
            (None, None) => Exit::Code(-1),
        }
    }

    pub fn is_success(self, success_codes: &[i32]) -> bool {
        matches!(self, Exit::Code(code) if success_codes.contains(&code))
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(number) => match Signal::try_from(number) {
                Ok(signal) => write!(f, "killed by {}", signal.as_str()),
                Err(_) => write!(f, "killed by signal {number}"),
            },
        }
    }
}

/// Restart budget use at the moment of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStatus {
    pub max: u32,
    pub window: Duration,
    /// Automatic restarts within the current window.
    pub used: u32,
}

impl BudgetStatus {
    pub fn remaining(&self) -> u32 {
        self.max.saturating_sub(self.used)
    }

    pub fn exhausted(&self) -> bool {
        self.used >= self.max
    }
}

/// A consistent snapshot of one child, as published by its owner task.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildRecord {
    pub id: ChildId,
    pub state: ChildState,
    /// The process id (also its process group id) while a process exists.
    pub pid: Option<u32>,
    /// Incremented on every spawn; fences facts about older processes.
    pub generation: u64,
    /// Automatic and commanded restarts since the child was added.
    pub restart_count: u64,
    pub last_exit: Option<Exit>,
    /// When the scheduled automatic restart fires (state BACKOFF).
    pub backoff_until: Option<SystemTime>,
    pub budget: BudgetStatus,
    /// When the child entered its current state.
    pub since: SystemTime,
    /// Human-readable why: the quarantine reason, the dependencies awaited,
    /// the spawn error.
    pub detail: String,
    pub spec: Arc<ChildSpec>,
}
