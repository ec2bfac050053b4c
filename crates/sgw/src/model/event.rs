use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    Bytes, ChangePlan, ChildId, CommandKind, Exit, Failure, LeftoverProcess, PendingDependency,
    SpawnError, StopSignal, Unhealthy,
};

/// One lifecycle fact. Published to the event journal, which gives it its
/// sequence and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The child the fact is about; `None` for tree-wide facts.
    pub child_id: Option<ChildId>,
    pub kind: EventKind,
}

/// Why a child was quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuarantineReason {
    /// It needed more automatic restarts than its budget allows; `after`
    /// is the end of the run that needed one too many.
    BudgetExhausted {
        restarts: u32,
        window: Duration,
        after: Failure,
    },
    /// An operator asked for it.
    Command,
}

impl std::fmt::Display for QuarantineReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuarantineReason::BudgetExhausted {
                restarts,
                window,
                after,
            } => write!(
                f,
                "restart budget exhausted ({restarts} restarts within {}) after: {after}",
                humantime::format_duration(*window)
            ),
            QuarantineReason::Command => f.write_str("quarantined by command"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    ChildAdded,
    /// Waiting for these dependencies to be RUNNING before spawning.
    WaitingForDependencies {
        pending: Vec<ChildId>,
    },
    /// A process was spawned.
    ChildStarting {
        generation: u64,
        pid: u32,
    },
    /// The process has been up for `ready_after`.
    ChildRunning {
        generation: u64,
        pid: u32,
    },
    /// The process could not be started (no exit: it never ran).
    SpawnFailed {
        generation: u64,
        error: SpawnError,
    },
    /// A dependency the child waits for will not become RUNNING without an
    /// operator (autostart = false, stopped, paused, quarantined, blocked,
    /// removed). Published once per dependency and status while waiting.
    DependencyUnavailable {
        dependency: PendingDependency,
    },
    /// The child waited `start_timeout` for its dependencies: it is BLOCKED
    /// on `pending` (and still starts once they are RUNNING).
    ChildBlocked {
        waited: Duration,
        pending: Vec<PendingDependency>,
    },
    ChildExited {
        generation: u64,
        pid: u32,
        exit: Exit,
        uptime: Duration,
    },
    RestartScheduled {
        attempt: u32,
        delay: Duration,
    },
    /// The stop signal was sent to the process group.
    ChildStopping {
        generation: u64,
        signal: StopSignal,
        timeout: Duration,
    },
    /// The process group did not exit within the stop timeout: SIGKILLed.
    StopEscalated {
        generation: u64,
        pid: u32,
    },
    /// The child stayed up for `reset_after`: the next failure backs off
    /// from the initial delay again.
    BackoffReset,
    ChildQuarantined {
        reason: QuarantineReason,
    },
    ChildPaused,
    ChildResumed,
    ChildRemoved,
    CommandAccepted {
        command_id: String,
        command: CommandKind,
        request_id: String,
        requested_by: String,
        reason: String,
    },
    CommandCompleted {
        command_id: String,
        command: CommandKind,
        /// What the command did, or why it failed.
        outcome: String,
        /// The error code when it failed (borrowed when published, owned
        /// when read back from the store).
        error_code: Option<Cow<'static, str>>,
    },
    ShutdownStarted,
    ShutdownCompleted,
    /// Processes a previous sgw instance left running (it was killed, or
    /// crashed) were found at start and killed before any child started.
    LeftoverKilled {
        processes: Vec<LeftoverProcess>,
        /// Where they were found: the cgroup path, or the process group and
        /// environment marker of the previous instance.
        found_in: String,
    },
    /// What operators changed at runtime before the last stop of sgw was
    /// applied again at start (`state_dir/runtime.sqlite3`); `overridden`:
    /// records dropped because the config changed those children since.
    RuntimeRestored {
        paused: Vec<ChildId>,
        quarantined: Vec<ChildId>,
        added: Vec<ChildId>,
        removed: Vec<ChildId>,
        overridden: Vec<ChildId>,
    },
    /// sgw ended a run that stopped being healthy (a `health` probe, the
    /// watchdog, `ready_timeout`); the stop and the restart policy's
    /// decision follow.
    ChildUnhealthy {
        generation: u64,
        cause: Unhealthy,
    },
    /// The kernel OOM-killed a process in the child's cgroup (`memory_max`).
    OomKilled {
        generation: u64,
        /// OOM kills in the child's cgroup since it was created.
        oom_kills: u64,
        memory_max: Option<Bytes>,
    },
    /// A reload or scale worked out what to change; the steps' own events
    /// (`ChildAdded`, `ChildUpdated`, `ChildRemoved`) follow.
    ChangePlanned {
        command: CommandKind,
        plan: ChangePlan,
    },
    /// A reload replaced the child's spec; `restarted`: the running
    /// process was restarted for it.
    ChildUpdated {
        changed: Vec<String>,
        restarted: bool,
    },
}

/// Event kinds by name, for filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    ChildAdded,
    WaitingForDependencies,
    ChildStarting,
    ChildRunning,
    SpawnFailed,
    ChildExited,
    RestartScheduled,
    ChildStopping,
    StopEscalated,
    BackoffReset,
    ChildQuarantined,
    ChildPaused,
    ChildResumed,
    ChildRemoved,
    CommandAccepted,
    CommandCompleted,
    ShutdownStarted,
    ShutdownCompleted,
    DependencyUnavailable,
    ChildBlocked,
    ChildUnhealthy,
    LeftoverKilled,
    OomKilled,
    RuntimeRestored,
    ChangePlanned,
    ChildUpdated,
}

impl EventType {
    pub const ALL: [EventType; 26] = [
        EventType::ChildAdded,
        EventType::WaitingForDependencies,
        EventType::ChildStarting,
        EventType::ChildRunning,
        EventType::SpawnFailed,
        EventType::ChildExited,
        EventType::RestartScheduled,
        EventType::ChildStopping,
        EventType::StopEscalated,
        EventType::BackoffReset,
        EventType::ChildQuarantined,
        EventType::ChildPaused,
        EventType::ChildResumed,
        EventType::ChildRemoved,
        EventType::CommandAccepted,
        EventType::CommandCompleted,
        EventType::ShutdownStarted,
        EventType::ShutdownCompleted,
        EventType::DependencyUnavailable,
        EventType::ChildBlocked,
        EventType::ChildUnhealthy,
        EventType::LeftoverKilled,
        EventType::OomKilled,
        EventType::RuntimeRestored,
        EventType::ChangePlanned,
        EventType::ChildUpdated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ChildAdded => "child_added",
            EventType::WaitingForDependencies => "waiting_for_dependencies",
            EventType::ChildStarting => "child_starting",
            EventType::ChildRunning => "child_running",
            EventType::SpawnFailed => "spawn_failed",
            EventType::ChildExited => "child_exited",
            EventType::RestartScheduled => "restart_scheduled",
            EventType::ChildStopping => "child_stopping",
            EventType::StopEscalated => "stop_escalated",
            EventType::BackoffReset => "backoff_reset",
            EventType::ChildQuarantined => "child_quarantined",
            EventType::ChildPaused => "child_paused",
            EventType::ChildResumed => "child_resumed",
            EventType::ChildRemoved => "child_removed",
            EventType::CommandAccepted => "command_accepted",
            EventType::CommandCompleted => "command_completed",
            EventType::ShutdownStarted => "shutdown_started",
            EventType::ShutdownCompleted => "shutdown_completed",
            EventType::DependencyUnavailable => "dependency_unavailable",
            EventType::ChildBlocked => "child_blocked",
            EventType::ChildUnhealthy => "child_unhealthy",
            EventType::LeftoverKilled => "leftover_killed",
            EventType::OomKilled => "oom_killed",
            EventType::RuntimeRestored => "runtime_restored",
            EventType::ChangePlanned => "change_planned",
            EventType::ChildUpdated => "child_updated",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// How loudly a dashboard should show an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl EventKind {
    pub fn event_type(&self) -> EventType {
        match self {
            EventKind::ChildAdded => EventType::ChildAdded,
            EventKind::WaitingForDependencies { .. } => EventType::WaitingForDependencies,
            EventKind::ChildStarting { .. } => EventType::ChildStarting,
            EventKind::ChildRunning { .. } => EventType::ChildRunning,
            EventKind::SpawnFailed { .. } => EventType::SpawnFailed,
            EventKind::ChildExited { .. } => EventType::ChildExited,
            EventKind::RestartScheduled { .. } => EventType::RestartScheduled,
            EventKind::ChildStopping { .. } => EventType::ChildStopping,
            EventKind::StopEscalated { .. } => EventType::StopEscalated,
            EventKind::BackoffReset => EventType::BackoffReset,
            EventKind::ChildQuarantined { .. } => EventType::ChildQuarantined,
            EventKind::ChildPaused => EventType::ChildPaused,
            EventKind::ChildResumed => EventType::ChildResumed,
            EventKind::ChildRemoved => EventType::ChildRemoved,
            EventKind::CommandAccepted { .. } => EventType::CommandAccepted,
            EventKind::CommandCompleted { .. } => EventType::CommandCompleted,
            EventKind::ShutdownStarted => EventType::ShutdownStarted,
            EventKind::ShutdownCompleted => EventType::ShutdownCompleted,
            EventKind::DependencyUnavailable { .. } => EventType::DependencyUnavailable,
            EventKind::ChildBlocked { .. } => EventType::ChildBlocked,
            EventKind::ChildUnhealthy { .. } => EventType::ChildUnhealthy,
            EventKind::LeftoverKilled { .. } => EventType::LeftoverKilled,
            EventKind::OomKilled { .. } => EventType::OomKilled,
            EventKind::RuntimeRestored { .. } => EventType::RuntimeRestored,
            EventKind::ChangePlanned { .. } => EventType::ChangePlanned,
            EventKind::ChildUpdated { .. } => EventType::ChildUpdated,
        }
    }

    pub fn severity(&self) -> Severity {
        match self {
            EventKind::SpawnFailed { .. }
            | EventKind::ChildQuarantined { .. }
            | EventKind::ChildBlocked { .. }
            | EventKind::OomKilled { .. } => Severity::Error,
            EventKind::ChildExited { exit, .. } if *exit != Exit::Code(0) => Severity::Warning,
            EventKind::StopEscalated { .. }
            | EventKind::RestartScheduled { .. }
            | EventKind::DependencyUnavailable { .. }
            | EventKind::ChildUnhealthy { .. }
            | EventKind::LeftoverKilled { .. } => Severity::Warning,
            EventKind::CommandCompleted {
                error_code: Some(_),
                ..
            } => Severity::Warning,
            _ => Severity::Info,
        }
    }
}

impl Event {
    pub fn child(child_id: &ChildId, kind: EventKind) -> Self {
        Self {
            child_id: Some(child_id.clone()),
            kind,
        }
    }

    pub fn tree(kind: EventKind) -> Self {
        Self {
            child_id: None,
            kind,
        }
    }
}
