//! The control port: the one trait every transport calls, so an application
//! can embed the gateway over its own supervisor. The engine in
//! [`crate::engine`] is this crate's implementation.

mod caller;
mod denial;
mod error;
mod plan;
mod request;

use std::future::Future;
use std::time::SystemTime;

pub use caller::{Caller, process_start_time};
pub use denial::Denial;
pub use error::{ControlError, DEFAULT_RETRY_AFTER};
pub use plan::{ConfigSource, Reloaded, TreeChange};
pub use request::{Command, CommandMeta, CommandRequest};

use crate::journal::{EventJournal, LogJournal};
use crate::model::{ChildId, ChildRecord, CommandKind, ContainmentInfo, Event, EventType, LogLine};

/// Who is being supervised and what it accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetInfo {
    pub target_id: String,
    pub display_name: String,
    pub server_version: String,
    pub supported_commands: Vec<CommandKind>,
    /// How children's descendants are contained on this host.
    pub containment: ContainmentInfo,
    /// Which journal the event and log sequences belong to: stable across
    /// restarts while the journal is kept on disk, new at every start
    /// otherwise. A client resuming by sequence sends the id it saw.
    pub journal_id: String,
}

/// Every child plus the journal positions at the moment of the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct StateSnapshot {
    /// In declaration order (config order, then added children).
    pub children: Vec<ChildRecord>,
    /// Incremented on every change of any child's record.
    pub state_generation: u64,
    pub last_event_sequence: u64,
    pub last_log_sequence: u64,
    /// Events published but no longer retained.
    pub dropped_events: u64,
    pub dropped_logs: u64,
    /// The journal the sequences belong to.
    pub journal_id: String,
}

/// What a completed command reports.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandReport {
    pub command_id: String,
    pub command: CommandKind,
    /// What happened, for people ("restarted", "already paused", ...).
    pub outcome: String,
    /// The child's record after the command (none for shutdown, remove).
    pub child: Option<ChildRecord>,
    pub completed_at: SystemTime,
}

/// The supervisor operations the transports need.
///
/// Implementations must serialize commands on one child and may run
/// commands on different children in parallel. Errors are [`ControlError`]s,
/// which each transport maps to its wire form in one place. The journals are
/// part of the port: subscriptions read them directly, so streaming never
/// goes through the command path.
pub trait ControlPlane: Send + Sync + 'static {
    fn info(&self) -> TargetInfo;

    fn state(&self) -> impl Future<Output = StateSnapshot> + Send;

    fn child(&self, id: &ChildId)
    -> impl Future<Output = Result<ChildRecord, ControlError>> + Send;

    /// Runs a validated command to completion.
    fn execute(
        &self,
        request: CommandRequest,
    ) -> impl Future<Output = Result<CommandReport, ControlError>> + Send;

    /// Works out what reloading the configuration would change, changing
    /// nothing; `Command::Reload` applies it. A control plane without a
    /// configuration to read again does not support reloads.
    fn plan_reload(&self) -> impl Future<Output = Result<TreeChange, ControlError>> + Send {
        async {
            Err(ControlError::Unsupported {
                what: "reloading the configuration",
            })
        }
    }

    /// Works out which instances of `group` to add or remove so that
    /// `instances` run; `Command::Scale` applies it.
    fn plan_scale(
        &self,
        group: &ChildId,
        instances: u32,
    ) -> impl Future<Output = Result<TreeChange, ControlError>> + Send {
        let _ = (group, instances);
        async {
            Err(ControlError::Unsupported {
                what: "scaling instance groups",
            })
        }
    }

    fn events(&self) -> &EventJournal;

    fn logs(&self) -> &LogJournal;

    /// Resolves once the whole tree has been shut down (by `ShutdownTree`
    /// or by the embedding application), so servers know when to exit.
    fn terminated(&self) -> impl Future<Output = ()> + Send;
}

/// Which events a subscriber wants. Empty lists match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub child_ids: Vec<ChildId>,
    pub event_types: Vec<EventType>,
}

impl EventFilter {
    pub fn matches(&self, event: &Event) -> bool {
        (self.child_ids.is_empty()
            || event
                .child_id
                .as_ref()
                .is_some_and(|id| self.child_ids.contains(id)))
            && (self.event_types.is_empty() || self.event_types.contains(&event.kind.event_type()))
    }
}

/// Which log lines a subscriber wants. Empty matches every child.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub child_ids: Vec<ChildId>,
}

impl LogFilter {
    pub fn matches(&self, line: &LogLine) -> bool {
        self.child_ids.is_empty() || self.child_ids.contains(&line.child_id)
    }
}
