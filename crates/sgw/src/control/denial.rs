use std::time::Duration;

use super::error::DEFAULT_RETRY_AFTER;

/// Why the security guard refused a call: part of the one error
/// vocabulary ([`ControlError::Denied`](super::ControlError::Denied)), so each transport maps it in the
/// same single place as every other error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("uid {uid} may not connect: only {allowed} may")]
    PeerNotAllowed { uid: u32, allowed: String },
    #[error("{who} may not call {class} methods: they need {needs}")]
    NotAuthorized {
        who: String,
        class: &'static str,
        needs: String,
    },
    #[error("rate limit for uid {uid} exceeded: retry in {} ms", retry_after.as_millis())]
    RateLimited { uid: u32, retry_after: Duration },
    #[error("request id {request_id:?} was already used for a different command")]
    RequestIdConflict { request_id: String },
    #[error(
        "the audit record could not be written ({reason}); write and destructive commands are refused"
    )]
    AuditUnavailable { reason: String },
    #[error(
        "AddChild may only start programs listed in [security.add_child] allowed_commands; {program} is not"
    )]
    CommandNotAllowed { program: String },
    /// A method without an authorization class: refused rather than
    /// guessed, so a new RPC is closed until someone classifies it.
    #[error("{method} has no authorization class and is refused")]
    Unclassified { method: String },
    /// Streams hold memory for as long as they are open; each uid gets a
    /// bounded number.
    #[error("uid {uid} has {max} streams open already; close one first")]
    TooManyStreams { uid: u32, max: usize },
}

impl Denial {
    /// The snake_case code both protocols report.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::PeerNotAllowed { .. } => "peer_not_allowed",
            Denial::NotAuthorized { .. } => "permission_denied",
            Denial::RateLimited { .. } => "rate_limited",
            Denial::RequestIdConflict { .. } => "request_id_conflict",
            Denial::AuditUnavailable { .. } => "audit_unavailable",
            Denial::CommandNotAllowed { .. } => "command_not_allowed",
            Denial::Unclassified { .. } => "method_unclassified",
            Denial::TooManyStreams { .. } => "too_many_streams",
        }
    }

    /// When the same call may succeed: the one source both protocols use
    /// (gRPC `RetryInfo`, legacy `retryable`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Denial::RateLimited { retry_after, .. } => Some(*retry_after),
            Denial::AuditUnavailable { .. } => Some(DEFAULT_RETRY_AFTER),
            Denial::PeerNotAllowed { .. }
            | Denial::NotAuthorized { .. }
            | Denial::RequestIdConflict { .. }
            | Denial::CommandNotAllowed { .. }
            | Denial::Unclassified { .. }
            | Denial::TooManyStreams { .. } => None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.retry_after().is_some()
    }
}
