use crate::model::{ChildId, ChildSpec, CommandKind};

use super::TreeChange;

use super::ControlError;

/// A command and its target.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Restart(ChildId),
    Pause(ChildId),
    Resume(ChildId),
    Quarantine(ChildId),
    Remove(ChildId),
    Add(Box<ChildSpec>),
    Shutdown,
    /// Apply a reload's plan (made by `ControlPlane::plan_reload`).
    Reload(Box<TreeChange>),
    /// Apply a scale's plan (made by `ControlPlane::plan_scale`).
    Scale {
        group: ChildId,
        instances: u32,
        change: Box<TreeChange>,
    },
}

impl Command {
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Restart(_) => CommandKind::RestartChild,
            Command::Pause(_) => CommandKind::PauseChild,
            Command::Resume(_) => CommandKind::ResumeChild,
            Command::Quarantine(_) => CommandKind::QuarantineChild,
            Command::Remove(_) => CommandKind::RemoveChild,
            Command::Add(_) => CommandKind::AddChild,
            Command::Shutdown => CommandKind::ShutdownTree,
            Command::Reload(_) => CommandKind::ReloadConfig,
            Command::Scale { .. } => CommandKind::ScaleChild,
        }
    }

    /// Whether the caller must confirm (and hold the destructive class):
    /// remove and shutdown always, a reload or scale when it removes.
    pub fn is_destructive(&self) -> bool {
        match self {
            Command::Reload(change) | Command::Scale { change, .. } => {
                !change.plan.remove.is_empty()
            }
            other => other.kind().is_destructive(),
        }
    }

    /// The child the command is about, if any (the new child for add).
    pub fn child_id(&self) -> Option<&ChildId> {
        match self {
            Command::Restart(id)
            | Command::Pause(id)
            | Command::Resume(id)
            | Command::Quarantine(id)
            | Command::Remove(id) => Some(id),
            Command::Add(spec) => Some(&spec.id),
            Command::Scale { group, .. } => Some(group),
            Command::Shutdown | Command::Reload(_) => None,
        }
    }
}

/// Who asked and why; carried into the journal and the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandMeta {
    /// Client-chosen id for idempotency and correlation (may be empty).
    pub request_id: String,
    pub requested_by: String,
    pub reason: String,
    /// Explicit confirmation, required for destructive commands.
    pub confirm: bool,
}

/// A command that passed the checks every implementation would otherwise
/// repeat: destructive commands are confirmed, added specs are valid. The
/// fields are private so an unchecked request cannot reach a control plane.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRequest {
    command: Command,
    meta: CommandMeta,
}

impl CommandRequest {
    pub fn new(command: Command, meta: CommandMeta) -> Result<Self, ControlError> {
        let kind = command.kind();
        if command.is_destructive() && !meta.confirm {
            return Err(ControlError::ConfirmationRequired { command: kind });
        }
        if let Command::Add(spec) = &command {
            spec.validate().map_err(ControlError::InvalidSpec)?;
        }
        Ok(Self { command, meta })
    }

    pub fn command(&self) -> &Command {
        &self.command
    }

    pub fn meta(&self) -> &CommandMeta {
        &self.meta
    }

    pub fn into_parts(self) -> (Command, CommandMeta) {
        (self.command, self.meta)
    }
}
