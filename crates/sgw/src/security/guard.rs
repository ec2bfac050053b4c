//! [`Guarded`]: the control port as transports see it. Every operation
//! names its [`Operation`], whose class is fixed here and nowhere else, and
//! passes the one check (admission, class, rate) before the control plane
//! is touched; commands also pass the allowlist, idempotency and audit.
//! A transport cannot reach the control plane around it, so there is no
//! second classification to drift and no unclassified method to fail open.

use std::sync::Arc;

use super::{AuditRecord, MethodClass, Security};
use crate::control::{
    Caller, Command, CommandMeta, CommandReport, CommandRequest, ControlError, ControlPlane,
    StateSnapshot, TargetInfo, TreeChange,
};
use crate::journal::{EventJournal, LogJournal};
use crate::model::{ChildId, ChildRecord, CommandKind};

/// What a caller asks of the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Target info (`GetInfo`, legacy `hello`).
    Info,
    /// Every child (`GetState`, legacy `state`).
    State,
    /// One child (`GetChild`).
    Child,
    /// The event journal (`SubscribeEvents`, `events.subscribe`).
    Events,
    /// The log journal (`TailLogs`, `logs.tail`).
    Logs,
    /// The audit trail, which names other callers and their programs.
    AuditLog,
    /// A command, classed by its kind.
    Command(CommandKind),
    /// A reload or scale whose plan removes children: destructive, though
    /// the same command that only adds is not.
    Removing(CommandKind),
}

/// What a reload or scale is asked to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeTarget {
    /// The whole tree, from the configuration file read again.
    Reload,
    /// The instances of one group.
    Scale { group: ChildId, instances: u32 },
}

impl ChangeTarget {
    pub fn kind(&self) -> CommandKind {
        match self {
            ChangeTarget::Reload => CommandKind::ReloadConfig,
            ChangeTarget::Scale { .. } => CommandKind::ScaleChild,
        }
    }
}

impl Operation {
    /// The class every operation is authorized by.
    pub fn class(self) -> MethodClass {
        match self {
            Operation::Info
            | Operation::State
            | Operation::Child
            | Operation::Events
            | Operation::Logs => MethodClass::Read,
            Operation::AuditLog => MethodClass::Write,
            Operation::Command(kind) => MethodClass::of_command(kind),
            Operation::Removing(_) => MethodClass::Destructive,
        }
    }
}

/// A control plane behind the security guard. Cheap to clone.
#[derive(Debug)]
pub struct Guarded<C> {
    control: Arc<C>,
    security: Arc<Security>,
}

impl<C> Clone for Guarded<C> {
    fn clone(&self) -> Self {
        Self {
            control: Arc::clone(&self.control),
            security: Arc::clone(&self.security),
        }
    }
}

impl<C: ControlPlane> Guarded<C> {
    pub fn new(control: Arc<C>, security: Arc<Security>) -> Self {
        Self { control, security }
    }

    pub fn security(&self) -> &Arc<Security> {
        &self.security
    }

    /// The control plane without the guard: for the gateway's own tasks
    /// (relay registration, a dropped subscriber's last range), never to
    /// serve a caller.
    pub fn unguarded(&self) -> &C {
        &self.control
    }

    /// What is supervised, for the gateway's own use (not on a caller's
    /// behalf): the target id, the commands it supports.
    pub fn target(&self) -> TargetInfo {
        self.control.info()
    }

    /// The one check of every operation. `via` names the transport method
    /// in the audit trail (`grpc:/...`, `legacy:...`); it is only built
    /// for a denial.
    pub async fn check(
        &self,
        caller: &Caller,
        operation: Operation,
        via: impl FnOnce() -> String,
    ) -> Result<(), ControlError> {
        self.security
            .check_call(caller, via, operation.class())
            .await
            .map_err(ControlError::from)
    }

    pub async fn info(
        &self,
        caller: &Caller,
        via: impl FnOnce() -> String,
    ) -> Result<TargetInfo, ControlError> {
        self.check(caller, Operation::Info, via).await?;
        Ok(self.control.info())
    }

    pub async fn state(
        &self,
        caller: &Caller,
        via: impl FnOnce() -> String,
    ) -> Result<StateSnapshot, ControlError> {
        self.check(caller, Operation::State, via).await?;
        Ok(self.control.state().await)
    }

    /// One child. The id arrives as parsed by the transport: a malformed
    /// one is reported only to a caller allowed to ask.
    pub async fn child(
        &self,
        caller: &Caller,
        via: impl FnOnce() -> String,
        id: Result<ChildId, ControlError>,
    ) -> Result<ChildRecord, ControlError> {
        self.check(caller, Operation::Child, via).await?;
        self.control.child(&id?).await
    }

    /// The event journal, to subscribe to.
    pub async fn events(
        &self,
        caller: &Caller,
        via: impl FnOnce() -> String,
    ) -> Result<&EventJournal, ControlError> {
        self.check(caller, Operation::Events, via).await?;
        Ok(self.control.events())
    }

    /// The log journal, to tail.
    pub async fn logs(
        &self,
        caller: &Caller,
        via: impl FnOnce() -> String,
    ) -> Result<&LogJournal, ControlError> {
        self.check(caller, Operation::Logs, via).await?;
        Ok(self.control.logs())
    }

    /// The newest `n` command records of the audit trail.
    pub async fn audit_log(
        &self,
        caller: &Caller,
        via: impl FnOnce() -> String,
        n: usize,
    ) -> Result<Vec<AuditRecord>, ControlError> {
        self.check(caller, Operation::AuditLog, via).await?;
        Ok(self.security.audit().recent(n))
    }

    /// Plans a reload or scale for `caller` and, unless `dry_run`, applies
    /// it as a command (journaled, audited, idempotent like the others).
    /// The class is the plan's: write, or destructive (with confirm) when
    /// it removes children. Returns the plan, and the report when applied.
    ///
    /// The target arrives as parsed by the transport: as for
    /// [`Self::execute`], a refused caller learns nothing from validation.
    pub async fn change(
        &self,
        caller: &Arc<Caller>,
        via: &str,
        kind: CommandKind,
        target: Result<ChangeTarget, ControlError>,
        meta: CommandMeta,
        dry_run: bool,
    ) -> Result<(TreeChange, Option<(CommandReport, bool)>), ControlError> {
        self.check(caller, Operation::Command(kind), || via.to_owned())
            .await?;
        let target = target?;
        if target.kind() != kind {
            return Err(ControlError::Internal {
                message: format!("{via} built a {} change instead of {kind}", target.kind()),
            });
        }
        let change = match &target {
            ChangeTarget::Reload => self.control.plan_reload().await?,
            ChangeTarget::Scale { group, instances } => {
                self.control.plan_scale(group, *instances).await?
            }
        };
        if dry_run {
            return Ok((change, None));
        }
        let command = match target {
            ChangeTarget::Reload => Command::Reload(Box::new(change.clone())),
            ChangeTarget::Scale { group, instances } => Command::Scale {
                group,
                instances,
                change: Box::new(change.clone()),
            },
        };
        if command.is_destructive() {
            self.check(caller, Operation::Removing(kind), || via.to_owned())
                .await?;
        }
        let request = CommandRequest::new(command, meta)?;
        let report = self
            .security
            .run_command(&self.control, caller, via, request)
            .await?;
        Ok((change, Some(report)))
    }

    /// Runs a command of `kind` for `caller`; `true` with the report when it
    /// was an idempotent replay of an earlier request with the same id. The
    /// request arrives as built by the transport: authorization comes
    /// first, so a refused caller learns nothing from validation.
    pub async fn execute(
        &self,
        caller: &Arc<Caller>,
        via: &str,
        kind: CommandKind,
        request: Result<CommandRequest, ControlError>,
    ) -> Result<(CommandReport, bool), ControlError> {
        self.check(caller, Operation::Command(kind), || via.to_owned())
            .await?;
        let request = request?;
        if request.command().kind() != kind {
            return Err(ControlError::Internal {
                message: format!(
                    "{via} built a {} command instead of {kind}",
                    request.command().kind()
                ),
            });
        }
        self.security
            .run_command(&self.control, caller, via, request)
            .await
    }
}
