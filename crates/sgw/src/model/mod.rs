//! The supervisor's vocabulary, shared by the engine, the journal, the
//! control port and the transports. Nothing here does I/O.

mod command;
mod event;
mod id;
mod log;
mod plan;
mod probe;
mod resources;
mod spec;
mod state;

pub use command::CommandKind;
pub use event::{Event, EventKind, EventType, QuarantineReason, Severity};
pub use id::{ChildId, InvalidChildId, echo};
pub use log::{ChildLogs, LogLine, LogPolicy, LogStream};
pub use plan::{ChangePlan, ChildUpdate};
pub use probe::{
    Check, HEALTH_THRESHOLD, HttpTarget, Probe, READY_THRESHOLD, Ready, TcpTarget, Unhealthy,
};
pub use resources::{
    Bytes, CgroupLimits, ContainmentInfo, ContainmentKind, ContainmentPreference, CpuMax,
    LeftoverProcess, ResourceUsage,
};
pub use spec::{
    Backoff, ChildSpec, Criticality, MAX_INSTANCES, RestartBudget, RestartPolicy, Rlimit,
    SpecError, StopSignal, Umask, parse_duration,
};
pub use state::{
    BudgetStatus, ChildRecord, ChildState, DependencyStatus, Exit, Failure, PendingDependency,
    SpawnError, SpawnStage,
};
