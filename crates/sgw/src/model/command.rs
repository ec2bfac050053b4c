use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The commands the control plane accepts, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CommandKind {
    RestartChild,
    PauseChild,
    ResumeChild,
    QuarantineChild,
    RemoveChild,
    AddChild,
    ShutdownTree,
    ReloadConfig,
    ScaleChild,
}

impl CommandKind {
    pub const ALL: [CommandKind; 9] = [
        CommandKind::RestartChild,
        CommandKind::PauseChild,
        CommandKind::ResumeChild,
        CommandKind::QuarantineChild,
        CommandKind::RemoveChild,
        CommandKind::AddChild,
        CommandKind::ShutdownTree,
        CommandKind::ReloadConfig,
        CommandKind::ScaleChild,
    ];

    /// Whether the legacy protocol (`dashboard-ipc.v1`) carries this
    /// command: a reload or scale exists only on gRPC.
    pub fn is_legacy(self) -> bool {
        !matches!(self, CommandKind::ReloadConfig | CommandKind::ScaleChild)
    }

    /// The snake_case name both protocols use.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::RestartChild => "restart_child",
            CommandKind::PauseChild => "pause_child",
            CommandKind::ResumeChild => "resume_child",
            CommandKind::QuarantineChild => "quarantine_child",
            CommandKind::RemoveChild => "remove_child",
            CommandKind::AddChild => "add_child",
            CommandKind::ShutdownTree => "shutdown_tree",
            CommandKind::ReloadConfig => "reload_config",
            CommandKind::ScaleChild => "scale_child",
        }
    }

    /// The gRPC method that carries this command.
    pub fn rpc_name(self) -> &'static str {
        match self {
            CommandKind::RestartChild => "RestartChild",
            CommandKind::PauseChild => "PauseChild",
            CommandKind::ResumeChild => "ResumeChild",
            CommandKind::QuarantineChild => "QuarantineChild",
            CommandKind::RemoveChild => "RemoveChild",
            CommandKind::AddChild => "AddChild",
            CommandKind::ShutdownTree => "ShutdownTree",
            CommandKind::ReloadConfig => "ReloadConfig",
            CommandKind::ScaleChild => "ScaleChild",
        }
    }

    /// Commands whose effect cannot be undone by another command; callers
    /// must confirm them explicitly. A reload or scale is destructive only
    /// when its plan removes children (`Command::is_destructive`).
    pub fn is_destructive(self) -> bool {
        matches!(
            self,
            CommandKind::RemoveChild | CommandKind::AddChild | CommandKind::ShutdownTree
        )
    }

    /// Whether repeating the command leaves the same state (pause twice is
    /// paused; restart twice restarts twice).
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            CommandKind::PauseChild | CommandKind::ResumeChild | CommandKind::QuarantineChild
        )
    }
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CommandKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CommandKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or(())
    }
}
