//! `ControlService`: validate, call the control port, map the result.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{Shared, conv, peer};
use crate::control::{Caller, Command, CommandRequest, ControlError, ControlPlane};
use crate::model::CommandKind;
use crate::pb;
use crate::pb::control_service_server::ControlService;
use crate::security::{ChangeTarget, Operation};

/// How a call is named in the audit trail.
fn via(method: &'static str) -> impl FnOnce() -> String {
    move || format!("grpc:/supervisor.gateway.v1.ControlService/{method}")
}

/// The `ControlService` implementation over any control plane.
#[derive(Debug)]
pub struct ControlApi<C> {
    shared: Arc<Shared<C>>,
}

impl<C> ControlApi<C> {
    pub(super) fn new(shared: Arc<Shared<C>>) -> Self {
        Self { shared }
    }
}

impl<C: ControlPlane> ControlApi<C> {
    fn status(&self, error: &ControlError) -> Status {
        self.shared.status(error)
    }

    /// Runs a command on behalf of `peer` through the guard (class, rate,
    /// allowlist, idempotency, audit). An empty `requested_by` is filled
    /// from the kernel's word on who the caller is.
    async fn command(
        &self,
        peer: &Arc<Caller>,
        kind: CommandKind,
        command: Result<Command, ControlError>,
        meta: Option<pb::CommandMeta>,
    ) -> Result<pb::CommandResult, Status> {
        let mut meta = conv::meta(meta);
        if meta.requested_by.trim().is_empty() {
            meta.requested_by = peer.describe();
        }
        let request = command.and_then(|command| CommandRequest::new(command, meta));
        let via = via(kind.rpc_name())();
        let (report, replayed) = self
            .shared
            .guard
            .execute(peer, &via, kind, request)
            .await
            .map_err(|e| self.status(&e))?;
        Ok(conv::report(&report, replayed))
    }

    /// A reload or scale: the plan, and the result unless it was a dry run.
    async fn change(
        &self,
        peer: &Arc<Caller>,
        kind: CommandKind,
        target: Result<ChangeTarget, ControlError>,
        meta: Option<pb::CommandMeta>,
        dry_run: bool,
    ) -> Result<(Option<pb::ChangePlan>, Option<pb::CommandResult>), Status> {
        let mut meta = conv::meta(meta);
        if meta.requested_by.trim().is_empty() {
            meta.requested_by = peer.describe();
        }
        let via = via(kind.rpc_name())();
        let (change, report) = self
            .shared
            .guard
            .change(peer, &via, kind, target, meta, dry_run)
            .await
            .map_err(|e| self.status(&e))?;
        Ok((
            Some(conv::change_plan(&change.plan)),
            report.map(|(report, replayed)| conv::report(&report, replayed)),
        ))
    }

    fn child_id(&self, raw: &str) -> Result<crate::model::ChildId, ControlError> {
        conv::child_id("child_id", raw)
    }
}

#[tonic::async_trait]
impl<C: ControlPlane> ControlService for ControlApi<C> {
    async fn get_info(
        &self,
        request: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::GetInfoResponse>, Status> {
        let caller = peer(&request)?;
        self.shared
            .guard
            .check(&caller, Operation::Info, via("GetInfo"))
            .await
            .map_err(|e| self.status(&e))?;
        let mut info = self.shared.info.clone();
        info.caller = Some(conv::peer(&caller));
        Ok(Response::new(info))
    }

    async fn get_state(
        &self,
        request: Request<pb::GetStateRequest>,
    ) -> Result<Response<pb::GetStateResponse>, Status> {
        let caller = peer(&request)?;
        let snapshot = self
            .shared
            .guard
            .state(&caller, via("GetState"))
            .await
            .map_err(|e| self.status(&e))?;
        Ok(Response::new(conv::snapshot(&snapshot)))
    }

    async fn get_child(
        &self,
        request: Request<pb::GetChildRequest>,
    ) -> Result<Response<pb::GetChildResponse>, Status> {
        let caller = peer(&request)?;
        let id = self.child_id(&request.get_ref().child_id);
        let record = self
            .shared
            .guard
            .child(&caller, via("GetChild"), id)
            .await
            .map_err(|e| self.status(&e))?;
        Ok(Response::new(pb::GetChildResponse {
            child: Some(conv::record(&record)),
        }))
    }

    async fn restart_child(
        &self,
        request: Request<pb::RestartChildRequest>,
    ) -> Result<Response<pb::RestartChildResponse>, Status> {
        let caller = peer(&request)?;
        let body = request.into_inner();
        let command = self.child_id(&body.child_id).map(Command::Restart);
        let result = self
            .command(&caller, CommandKind::RestartChild, command, body.meta)
            .await?;
        Ok(Response::new(pb::RestartChildResponse {
            result: Some(result),
        }))
    }

    async fn pause_child(
        &self,
        request: Request<pb::PauseChildRequest>,
    ) -> Result<Response<pb::PauseChildResponse>, Status> {
        let caller = peer(&request)?;
        let body = request.into_inner();
        let command = self.child_id(&body.child_id).map(Command::Pause);
        let result = self
            .command(&caller, CommandKind::PauseChild, command, body.meta)
            .await?;
        Ok(Response::new(pb::PauseChildResponse {
            result: Some(result),
        }))
    }

    async fn resume_child(
        &self,
        request: Request<pb::ResumeChildRequest>,
    ) -> Result<Response<pb::ResumeChildResponse>, Status> {
        let caller = peer(&request)?;
        let body = request.into_inner();
        let command = self.child_id(&body.child_id).map(Command::Resume);
        let result = self
            .command(&caller, CommandKind::ResumeChild, command, body.meta)
            .await?;
        Ok(Response::new(pb::ResumeChildResponse {
            result: Some(result),
        }))
    }

    async fn quarantine_child(
        &self,
        request: Request<pb::QuarantineChildRequest>,
    ) -> Result<Response<pb::QuarantineChildResponse>, Status> {
        let caller = peer(&request)?;
        let body = request.into_inner();
        let command = self.child_id(&body.child_id).map(Command::Quarantine);
        let result = self
            .command(&caller, CommandKind::QuarantineChild, command, body.meta)
            .await?;
        Ok(Response::new(pb::QuarantineChildResponse {
            result: Some(result),
        }))
    }

    async fn remove_child(
        &self,
        request: Request<pb::RemoveChildRequest>,
    ) -> Result<Response<pb::RemoveChildResponse>, Status> {
        let caller = peer(&request)?;
        let body = request.into_inner();
        let command = self.child_id(&body.child_id).map(Command::Remove);
        let result = self
            .command(&caller, CommandKind::RemoveChild, command, body.meta)
            .await?;
        Ok(Response::new(pb::RemoveChildResponse {
            result: Some(result),
        }))
    }

    async fn add_child(
        &self,
        request: Request<pb::AddChildRequest>,
    ) -> Result<Response<pb::AddChildResponse>, Status> {
        let caller = peer(&request)?;
        let body = request.into_inner();
        let command = body
            .spec
            .ok_or_else(|| ControlError::InvalidArgument {
                field: "spec".to_owned(),
                message: "is required".to_owned(),
            })
            .and_then(conv::spec_from_pb)
            .map(|spec| Command::Add(Box::new(spec)));
        let result = self
            .command(&caller, CommandKind::AddChild, command, body.meta)
            .await?;
        Ok(Response::new(pb::AddChildResponse {
            result: Some(result),
        }))
    }

    async fn shutdown_tree(
        &self,
        request: Request<pb::ShutdownTreeRequest>,
    ) -> Result<Response<pb::ShutdownTreeResponse>, Status> {
        let caller = peer(&request)?;
        let body = request.into_inner();
        let result = self
            .command(
                &caller,
                CommandKind::ShutdownTree,
                Ok(Command::Shutdown),
                body.meta,
            )
            .await?;
        Ok(Response::new(pb::ShutdownTreeResponse {
            result: Some(result),
        }))
    }

    async fn reload_config(
        &self,
        request: Request<pb::ReloadConfigRequest>,
    ) -> Result<Response<pb::ReloadConfigResponse>, Status> {
        let caller = peer(&request)?;
        let body = request.into_inner();
        let (plan, result) = self
            .change(
                &caller,
                CommandKind::ReloadConfig,
                Ok(ChangeTarget::Reload),
                body.meta,
                body.dry_run,
            )
            .await?;
        Ok(Response::new(pb::ReloadConfigResponse { result, plan }))
    }

    async fn scale_child(
        &self,
        request: Request<pb::ScaleChildRequest>,
    ) -> Result<Response<pb::ScaleChildResponse>, Status> {
        let caller = peer(&request)?;
        let body = request.into_inner();
        let target = self
            .child_id(&body.child_id)
            .map(|group| ChangeTarget::Scale {
                group,
                instances: body.instances,
            });
        let (plan, result) = self
            .change(
                &caller,
                CommandKind::ScaleChild,
                target,
                body.meta,
                body.dry_run,
            )
            .await?;
        Ok(Response::new(pb::ScaleChildResponse { result, plan }))
    }

    async fn get_audit_log(
        &self,
        request: Request<pb::GetAuditLogRequest>,
    ) -> Result<Response<pb::GetAuditLogResponse>, Status> {
        let caller = peer(&request)?;
        let limit = match request.get_ref().limit {
            0 => 1_000,
            n => n.min(1_000),
        };
        let records = self
            .shared
            .guard
            .audit_log(&caller, via("GetAuditLog"), limit as usize)
            .await
            .map_err(|e| self.status(&e))?;
        Ok(Response::new(pb::GetAuditLogResponse {
            records: records.iter().map(conv::audit_record).collect(),
        }))
    }
}
