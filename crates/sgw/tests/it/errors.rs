//! Every control-plane error reaches both protocols over a real socket with
//! the same reason code and the same verdict on retrying, through the real
//! gRPC and legacy stacks over a scripted control plane (no process is
//! spawned: the outcome is the control plane's, the mapping is under test).

use std::sync::Arc;

use serde_json::json;
use supervisor_gateway::control::{ControlError, Denial};
use supervisor_gateway::model::{ChildId, ChildState, CommandKind, SpecError};
use supervisor_gateway::pb;
use tonic_types::StatusExt;

use crate::support::fake::ScriptedControl;
use crate::support::legacy::LegacyClient;
use crate::support::*;

fn all_errors() -> Vec<ControlError> {
    let id = ChildId::new("web").expect("id");
    vec![
        ControlError::NotFound {
            id: "web".into(),
            known: vec![],
        },
        ControlError::AlreadyExists { id: id.clone() },
        ControlError::InvalidSpec(SpecError::new("command", "empty")),
        ControlError::InvalidArgument {
            field: "f".into(),
            message: "m".into(),
        },
        ControlError::ForbiddenInState {
            id: id.clone(),
            command: CommandKind::RestartChild,
            state: ChildState::Quarantined,
            why: "quarantined".into(),
        },
        ControlError::HasDependents {
            id: id.clone(),
            dependents: vec![id.clone()],
        },
        ControlError::SpawnFailed {
            id,
            message: "exec: /nope: No such file or directory".into(),
        },
        ControlError::ShuttingDown,
        ControlError::Internal {
            message: "bug".into(),
        },
        ControlError::Denied(Denial::AuditUnavailable {
            reason: "disk full".into(),
        }),
    ]
}

/// Each scripted error, answered to a gRPC RestartChild and to a legacy
/// `command.restart_child`: same reason on both, RetryInfo exactly where
/// legacy says `retryable`, and every request reached the control plane.
#[tokio::test]
async fn control_errors_map_alike_on_both_protocols() {
    let errors = all_errors();
    // Each error is answered twice: once per protocol.
    let script = errors.iter().flat_map(|e| [Err(e.clone()), Err(e.clone())]);
    let control = Arc::new(ScriptedControl::new("fake", script));
    let served = GatewayBuilder::new(vec![]).serve(Arc::clone(&control));
    let mut grpc = served.client().await.control;
    let mut legacy = LegacyClient::connect(&served.path).await;
    for (n, error) in errors.iter().enumerate() {
        let status = grpc
            .restart_child(pb::RestartChildRequest {
                child_id: "web".into(),
                meta: None,
            })
            .await
            .expect_err("scripted error");
        let details = status.get_error_details();
        let reason = details.error_info().map(|i| i.reason.clone());
        assert_eq!(reason.as_deref(), Some(error.code()), "{error:?}");
        let reply = legacy
            .call(json!({
                "request_id": format!("r-{n}"),
                "method": "command.restart_child",
                "params": {
                    "command_id": format!("c-{n}"), "target_id": "fake",
                    "command": "restart_child",
                    "target": {"child_path": "/web", "child_manifest": null},
                    "reason": "errors test", "requested_by": "errors test",
                    "confirmed": false, "requested_at_unix_nanos": 0
                }
            }))
            .await;
        let legacy_error = if reply["ok"] == true {
            &reply["result"]["result"]["error"]
        } else {
            &reply["error"]
        };
        assert_eq!(legacy_error["reason"], error.code(), "{reply}");
        assert_eq!(
            legacy_error["retryable"],
            details.retry_info().is_some(),
            "{error:?}: {reply}"
        );
    }
    assert_eq!(control.executed().len(), errors.len() * 2);
    served.shutdown().await;
}
