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
use crate::control::Denial;

/// `ControlError` → legacy error object, the one mapping of the legacy side.
pub fn to_legacy_error(error: &ControlError, target_id: &str) -> ErrorObject {
    let denied = |code, stage| (code, stage, error.to_string());
    let (code, stage, message) = match error {
        ControlError::Denied(denial) => match denial {
            Denial::PeerNotAllowed { .. } => denied(ErrorCode::PeerNotAllowed, Stage::IpcConnect),
            Denial::NotAuthorized { .. } | Denial::Unclassified { .. } => {
                denied(ErrorCode::PermissionDenied, Stage::CommandValidate)
            }
            Denial::RateLimited { .. } => denied(ErrorCode::RateLimited, Stage::CommandValidate),
            Denial::TooManyStreams { .. } => denied(ErrorCode::RateLimited, Stage::Subscription),
            Denial::RequestIdConflict { .. } => {
                denied(ErrorCode::RequestIdConflict, Stage::CommandValidate)
            }
            Denial::AuditUnavailable { .. } => {
                denied(ErrorCode::AuditUnavailable, Stage::CommandDispatch)
            }
            Denial::CommandNotAllowed { .. } => {
                denied(ErrorCode::CommandNotAllowed, Stage::CommandValidate)
            }
        },
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
        | ControlError::InvalidConfig { .. }
        | ControlError::PlanOutdated { .. }
        | ControlError::Unsupported { .. }
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

    /// Both protocols name every error with the same reason and agree on
    /// whether (and, for gRPC, when) it is worth retrying.
    #[test]
    fn both_protocols_agree_on_every_error() {
        use crate::transport::grpc::status::to_status;
        use tonic_types::StatusExt;
        let id = ChildId::new("a").expect("id");
        let errors = [
            ControlError::NotFound {
                id: "x".into(),
                known: vec![],
            },
            ControlError::AlreadyExists { id: id.clone() },
            ControlError::InvalidSpec(crate::model::SpecError::new("command", "empty")),
            ControlError::InvalidArgument {
                field: "f".into(),
                message: "m".into(),
            },
            ControlError::ConfirmationRequired {
                command: CommandKind::RemoveChild,
            },
            ControlError::ForbiddenInState {
                id: id.clone(),
                command: CommandKind::ResumeChild,
                state: crate::model::ChildState::Running,
                why: "w".into(),
            },
            ControlError::HasDependents {
                id: id.clone(),
                dependents: vec![id.clone()],
            },
            ControlError::SpawnFailed {
                id: id.clone(),
                message: "m".into(),
            },
            ControlError::ShuttingDown,
            ControlError::Internal {
                message: "m".into(),
            },
        ];
        let denials = [
            Denial::PeerNotAllowed {
                uid: 1,
                allowed: "root".into(),
            },
            Denial::NotAuthorized {
                who: "uid:1".into(),
                class: "write",
                needs: "root".into(),
            },
            Denial::RateLimited {
                uid: 1,
                retry_after: std::time::Duration::from_millis(250),
            },
            Denial::RequestIdConflict {
                request_id: "r".into(),
            },
            Denial::AuditUnavailable { reason: "r".into() },
            Denial::CommandNotAllowed {
                program: "/bin/x".into(),
            },
            Denial::Unclassified { method: "m".into() },
            Denial::TooManyStreams { uid: 1, max: 2 },
        ];
        let all = errors
            .into_iter()
            .chain(denials.into_iter().map(ControlError::Denied));
        let cases = all.map(|e| {
            (
                to_status(&e, "demo"),
                to_legacy_error(&e, "demo"),
                e.retry_after(),
            )
        });
        for (status, legacy, retry_after) in cases {
            let details = status.get_error_details();
            let info = details.error_info().expect("error info");
            assert_eq!(Some(info.reason.as_str()), legacy.reason, "{legacy:?}");
            let grpc_retry = details.retry_info().and_then(|r| r.retry_delay);
            assert_eq!(grpc_retry.is_some(), legacy.retryable, "{legacy:?}");
            assert_eq!(grpc_retry, retry_after, "{legacy:?}");
        }
    }

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
