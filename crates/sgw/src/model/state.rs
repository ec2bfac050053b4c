use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::{ChildId, ChildSpec, ResourceUsage, Unhealthy};

/// Where a child is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// Waited for its dependencies longer than `start_timeout`. Still
    /// waiting: it starts as soon as they are RUNNING; the record's
    /// `waiting_for` and detail say which are not, and why.
    Blocked,
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
            ChildState::Blocked => "blocked",
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// The step of starting a process that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpawnStage {
    /// Changing to the child's `cwd` (systemd's `200/CHDIR`).
    Chdir,
    /// Executing the program: not found, not executable, a bad interpreter
    /// (systemd's `203/EXEC`). Resource failures of the fork itself
    /// (`EAGAIN`, `EMFILE`) cannot be told apart from these and are
    /// reported here too.
    Exec,
    /// Taking the child's `user`/`group` (systemd's `217/USER`).
    Setuid,
    /// Setting its `umask` and `rlimits` (systemd's `205/LIMITS`).
    Limits,
    /// Making or joining its cgroup, or setting its cgroup limits
    /// (systemd's `219/CGROUP`).
    Cgroup,
    /// Making the child's sd_notify socket (`ready = "notify"`,
    /// `watchdog`).
    Notify,
}

impl SpawnStage {
    pub fn as_str(self) -> &'static str {
        match self {
            SpawnStage::Chdir => "chdir",
            SpawnStage::Exec => "exec",
            SpawnStage::Setuid => "setuid",
            SpawnStage::Limits => "setrlimit",
            SpawnStage::Cgroup => "cgroup",
            SpawnStage::Notify => "notify",
        }
    }
}

impl fmt::Display for SpawnStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A process that could not be started: which step failed, on what path,
/// and the operating system's words. Displays as
/// `exec: /usr/bin/foo: No such file or directory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnError {
    pub stage: SpawnStage,
    /// What the step acted on: the `cwd` for `chdir`, the program (as
    /// written in `command`) for `exec`.
    pub path: PathBuf,
    /// The error, e.g. `No such file or directory`.
    pub message: String,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.stage,
            self.path.display(),
            self.message
        )
    }
}

/// How a run of a child ended without anyone asking it to: its process
/// exited on its own, or it never ran. No exit code is made up for a
/// process that never existed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// The process ran and exited (or was killed) on its own.
    Exit(Exit),
    /// The process could not be started.
    Spawn(SpawnError),
    /// sgw stopped the process: it was not healthy (`health`, `watchdog`,
    /// `ready_timeout`).
    Unhealthy(Unhealthy),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Exit(exit) => exit.fmt(f),
            Failure::Spawn(error) => error.fmt(f),
            Failure::Unhealthy(cause) => cause.fmt(f),
        }
    }
}

/// Why a dependency is not RUNNING, as a dependent waiting for it sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DependencyStatus {
    /// Its current state (never RUNNING here).
    State(ChildState),
    /// It was never started because of `autostart = false`.
    AutostartOff,
    /// It is no longer supervised.
    Removed,
}

impl DependencyStatus {
    /// Whether it can become RUNNING without an operator: false for a
    /// dependency that is stopped, paused, quarantined, blocked itself,
    /// never started (`autostart = false`) or removed.
    pub fn can_become_ready(self) -> bool {
        match self {
            DependencyStatus::State(state) => matches!(
                state,
                ChildState::Starting
                    | ChildState::Running
                    | ChildState::Backoff
                    | ChildState::Stopping
            ),
            DependencyStatus::AutostartOff | DependencyStatus::Removed => false,
        }
    }
}

impl fmt::Display for DependencyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DependencyStatus::State(state) => state.fmt(f),
            DependencyStatus::AutostartOff => f.write_str("autostart = false"),
            DependencyStatus::Removed => f.write_str("removed"),
        }
    }
}

/// A dependency a child is waiting for, and why it is not RUNNING.
/// Displays as `db: autostart = false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDependency {
    pub id: ChildId,
    pub status: DependencyStatus,
}

impl fmt::Display for PendingDependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.id, self.status)
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
    /// How the last process ended (a real process: a spawn failure has
    /// no exit).
    pub last_exit: Option<Exit>,
    /// The last run that failed: a spawn error, or a process that exited
    /// on its own with a status outside `success_codes`. Kept after
    /// quarantine, restarts and later successes, as history.
    pub last_failure: Option<Failure>,
    /// The dependencies it is waiting for (state STARTING before a spawn,
    /// or BLOCKED), with why each is not RUNNING; empty otherwise.
    pub waiting_for: Vec<PendingDependency>,
    /// When the scheduled automatic restart fires (state BACKOFF).
    pub backoff_until: Option<SystemTime>,
    pub budget: BudgetStatus,
    /// When the child entered its current state.
    pub since: SystemTime,
    /// Human-readable why: the quarantine reason (with the failure that
    /// ended the budget), the dependencies awaited and why, the spawn error.
    pub detail: String,
    /// What its processes use, measured for this snapshot (none without a
    /// process, or where nothing could be read).
    pub usage: Option<ResourceUsage>,
    /// The last `STATUS=` the child sent over sd_notify (this run's; empty
    /// when it sent none).
    pub status_text: String,
    pub spec: Arc<ChildSpec>,
}
