//! `ControlError` → legacy error object, in one flat match.
//!
//! The legacy protocol has two codes for control-plane failures: a request
//! that can never succeed as written is `validation_failed` (answered
//! `ok: false`), and a command the supervisor refused is `command_failed`
//! (answered `ok: true`, `accepted: false`). The precise control-plane code
//! travels alongside as `reason`, the same string gRPC puts in
//! `ErrorInfo.reason`, so both protocols name a failure the same way.

use super::protocol::{ErrorCode, ErrorObject, Stage};
use crate::control::ControlError;
use crate::transport::security::Denial;

/// `Denial` → legacy error object: the security pipeline's refusals, with
/// the same snake_case code gRPC puts in `ErrorInfo.reason`.
pub fn denial_to_legacy(denial: &Denial, target_id: &str) -> ErrorObject {
    let (code, stage) = match denial {
        Denial::PeerNotAllowed { .. } => (ErrorCode::PeerNotAllowed, Stage::IpcConnect),
        Denial::NotAuthorized { .. } => (ErrorCode::PermissionDenied, Stage::CommandValidate),
        Denial::RateLimited { .. } => (ErrorCode::RateLimited, Stage::CommandValidate),
        Denial::RequestIdConflict { .. } => (ErrorCode::RequestIdConflict, Stage::CommandValidate),
        Denial::AuditUnavailable { .. } => (ErrorCode::AuditUnavailable, Stage::CommandDispatch),
        Denial::CommandNotAllowed { .. } => (ErrorCode::CommandNotAllowed, Stage::CommandValidate),
    };
    ErrorObject {
        code,
        stage,
        target_id: Some(target_id.to_owned()),
        message: denial.to_string(),
        retryable: matches!(
            denial,
            Denial::RateLimited { .. } | Denial::AuditUnavailable { .. }
        ),
        reason: Some(denial.code()),
    }
}

pub fn to_legacy_error(error: &ControlError, target_id: &str) -> ErrorObject {
    let (code, stage, message) = match error {
        ControlError::InvalidArgument { message, .. } => (
            ErrorCode::ValidationFailed,
            Stage::CommandValidate,
            message.clone(),
        ),
        ControlError::InvalidSpec(_) => (
            ErrorCode::ValidationFailed,
            Stage::CommandValidate,
            error.to_string(),
        ),
        ControlError::ConfirmationRequired { .. } => (
            ErrorCode::ValidationFailed,
            Stage::CommandValidate,
            "dangerous command requires confirmation".to_owned(),
        ),
        ControlError::NotFound { .. }
        | ControlError::AlreadyExists { .. }
        | ControlError::ForbiddenInState { .. }
        | ControlError::HasDependents { .. }
        | ControlError::SpawnFailed { .. }
        | ControlError::ShuttingDown
        | ControlError::Internal { .. } => (
            ErrorCode::CommandFailed,
            Stage::CommandDispatch,
            error.to_string(),
        ),
    };
    ErrorObject {
        code,
        stage,
        target_id: Some(target_id.to_owned()),
        message,
        retryable: error.is_retryable(),
        reason: Some(error.code()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChildId, CommandKind};

    #[test]
    fn validation_and_dispatch_failures_are_told_apart() {
        let confirm = to_legacy_error(
            &ControlError::ConfirmationRequired {
                command: CommandKind::RemoveChild,
            },
            "demo",
        );
        assert_eq!(confirm.code, ErrorCode::ValidationFailed);
        assert_eq!(confirm.message, "dangerous command requires confirmation");
        assert_eq!(confirm.reason, Some("confirmation_required"));

        let exists = to_legacy_error(
            &ControlError::AlreadyExists {
                id: ChildId::new("a").expect("id"),
            },
            "demo",
        );
        assert_eq!(
            (exists.code, exists.stage),
            (ErrorCode::CommandFailed, Stage::CommandDispatch)
        );
        assert!(!exists.retryable);

        let closing = to_legacy_error(&ControlError::ShuttingDown, "demo");
        assert!(closing.retryable);
        assert_eq!(closing.target_id.as_deref(), Some("demo"));
    }
}
