//! `ControlError` → `tonic::Status`, in one flat match. Every status carries
//! a `google.rpc.ErrorInfo` whose reason is the snake_case code the legacy
//! protocol uses, and `RetryInfo` where retrying helps.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::control::ControlError;
use crate::control::Denial;

/// `ControlError` → `tonic::Status`, the one mapping of the gRPC side. The
/// `ErrorInfo.domain` of every error is the gateway's target id.
pub fn to_status(error: &ControlError, target_id: &str) -> Status {
    let code = match error {
        ControlError::NotFound { .. } => Code::NotFound,
        ControlError::AlreadyExists { .. } => Code::AlreadyExists,
        ControlError::InvalidSpec(_) | ControlError::InvalidArgument { .. } => {
            Code::InvalidArgument
        }
        ControlError::ConfirmationRequired { .. }
        | ControlError::ForbiddenInState { .. }
        | ControlError::HasDependents { .. }
        | ControlError::SpawnFailed { .. } => Code::FailedPrecondition,
        ControlError::ShuttingDown => Code::Unavailable,
        ControlError::InvalidConfig { .. } => Code::InvalidArgument,
        ControlError::PlanOutdated { .. } => Code::Aborted,
        ControlError::Unsupported { .. } => Code::Unimplemented,
        ControlError::Internal { .. } => Code::Internal,
        ControlError::Denied(
            Denial::PeerNotAllowed { .. }
            | Denial::NotAuthorized { .. }
            | Denial::CommandNotAllowed { .. }
            | Denial::Unclassified { .. },
        ) => Code::PermissionDenied,
        ControlError::Denied(Denial::RateLimited { .. } | Denial::TooManyStreams { .. }) => {
            Code::ResourceExhausted
        }
        ControlError::Denied(Denial::RequestIdConflict { .. }) => Code::AlreadyExists,
        ControlError::Denied(Denial::AuditUnavailable { .. }) => Code::Unavailable,
    };
    with_details(
        code,
        error.to_string(),
        error.code(),
        target_id,
        error.retry_after(),
    )
}

/// The canonical upper-case name of a gRPC status code, as the contract
/// and every gRPC implementation write it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A status with `ErrorInfo` (and `RetryInfo` when `retry_after` is set).
pub fn with_details(
    code: Code,
    message: String,
    reason: &str,
    domain: &str,
    retry_after: Option<Duration>,
) -> Status {
    let mut details =
        ErrorDetails::with_error_info(reason, domain, std::collections::HashMap::new());
    if let Some(delay) = retry_after {
        details.set_retry_info(Some(delay));
    }
    Status::with_error_details(code, message, details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChildId, CommandKind};

    #[test]
    fn every_error_carries_its_code_as_error_info() {
        let cases = [
            (
                ControlError::NotFound {
                    id: "x".into(),
                    known: vec![],
                },
                Code::NotFound,
            ),
            (
                ControlError::ConfirmationRequired {
                    command: CommandKind::RemoveChild,
                },
                Code::FailedPrecondition,
            ),
            (
                ControlError::AlreadyExists {
                    id: ChildId::new("a").expect("id"),
                },
                Code::AlreadyExists,
            ),
            (ControlError::ShuttingDown, Code::Unavailable),
        ];
        for (error, code) in cases {
            let status = to_status(&error, "demo");
            assert_eq!(status.code(), code);
            let details = status.get_error_details();
            let info = details.error_info().expect("error info");
            assert_eq!(info.reason, error.code());
            assert_eq!(info.domain, "demo");
            assert_eq!(details.retry_info().is_some(), error.is_retryable());
        }
    }
}
