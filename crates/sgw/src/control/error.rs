use std::time::Duration;

use super::Denial;
use crate::model::{ChildId, ChildState, CommandKind, SpecError};

/// The retry delay suggested where nothing more precise is known.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Everything a control-plane call can fail with. Transports map this once
/// each (`transport::grpc::status`, `transport::legacy::error`); the
/// [`code`](ControlError::code) is the snake_case name both protocols share.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ControlError {
    #[error("no child named {id:?} (known children: {})", join(known))]
    NotFound { id: String, known: Vec<ChildId> },

    #[error("a child named {id} already exists")]
    AlreadyExists { id: ChildId },

    #[error("invalid child spec: {0}")]
    InvalidSpec(SpecError),

    #[error("invalid argument {field}: {message}")]
    InvalidArgument { field: String, message: String },

    #[error("{}", confirmation_message(*command))]
    ConfirmationRequired { command: CommandKind },

    #[error("cannot {command} {id} while it is {state}: {why}")]
    ForbiddenInState {
        id: ChildId,
        command: CommandKind,
        state: ChildState,
        why: String,
    },

    #[error(
        "cannot remove {id}: {} depend on it; remove those first",
        join(dependents)
    )]
    HasDependents {
        id: ChildId,
        dependents: Vec<ChildId>,
    },

    #[error("could not start {id}: {message}")]
    SpawnFailed { id: ChildId, message: String },

    #[error("the supervisor is shutting down")]
    ShuttingDown,

    /// The configuration read for a reload is invalid; nothing changed.
    #[error("invalid configuration, nothing changed: {message}")]
    InvalidConfig { message: String },

    /// The tree changed between a plan and its application.
    #[error("the tree changed since the plan was made ({why}); nothing changed, ask again")]
    PlanOutdated { why: String },

    /// This control plane does not offer the operation.
    #[error("this supervisor does not support {what}")]
    Unsupported { what: &'static str },

    /// A bug: a task panicked or an invariant broke. Reported, not hidden.
    #[error("internal error: {message}")]
    Internal { message: String },

    /// The security guard refused the call (who, what class, how often).
    #[error(transparent)]
    Denied(#[from] Denial),
}

/// At most this many ids are listed in a message (it travels in a header).
const LISTED_IDS: usize = 16;

/// A reload or scale needs confirm only when its plan removes children,
/// so its refusal says so and how to see which.
fn confirmation_message(command: CommandKind) -> String {
    match command {
        CommandKind::ReloadConfig | CommandKind::ScaleChild => format!(
            "{command} would remove children and requires confirm = true \
             (dry_run = true shows the plan without changing anything)"
        ),
        _ => format!("{command} is destructive and requires confirm = true"),
    }
}

fn join(ids: &[ChildId]) -> String {
    if ids.is_empty() {
        return "none".to_owned();
    }
    let mut listed = ids
        .iter()
        .take(LISTED_IDS)
        .map(ChildId::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > LISTED_IDS {
        listed.push_str(&format!(" and {} more", ids.len() - LISTED_IDS));
    }
    listed
}

impl ControlError {
    /// The stable machine-readable code (gRPC `ErrorInfo.reason`, legacy
    /// error `code`).
    pub fn code(&self) -> &'static str {
        match self {
            ControlError::NotFound { .. } => "child_not_found",
            ControlError::AlreadyExists { .. } => "child_already_exists",
            ControlError::InvalidSpec(_) => "invalid_child_spec",
            ControlError::InvalidArgument { .. } => "invalid_argument",
            ControlError::ConfirmationRequired { .. } => "confirmation_required",
            ControlError::ForbiddenInState { .. } => "forbidden_in_state",
            ControlError::HasDependents { .. } => "has_dependents",
            ControlError::SpawnFailed { .. } => "spawn_failed",
            ControlError::ShuttingDown => "shutting_down",
            ControlError::InvalidConfig { .. } => "invalid_config",
            ControlError::PlanOutdated { .. } => "plan_outdated",
            ControlError::Unsupported { .. } => "unsupported",
            ControlError::Internal { .. } => "internal",
            ControlError::Denied(denial) => denial.code(),
        }
    }

    /// When the same call may succeed without changes: the one source both
    /// protocols use (gRPC `RetryInfo`, legacy `retryable`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ControlError::ShuttingDown | ControlError::PlanOutdated { .. } => {
                Some(DEFAULT_RETRY_AFTER)
            }
            ControlError::Denied(denial) => denial.retry_after(),
            ControlError::NotFound { .. }
            | ControlError::AlreadyExists { .. }
            | ControlError::InvalidSpec(_)
            | ControlError::InvalidArgument { .. }
            | ControlError::ConfirmationRequired { .. }
            | ControlError::ForbiddenInState { .. }
            | ControlError::HasDependents { .. }
            | ControlError::SpawnFailed { .. }
            | ControlError::InvalidConfig { .. }
            | ControlError::Unsupported { .. }
            | ControlError::Internal { .. } => None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.retry_after().is_some()
    }
}
