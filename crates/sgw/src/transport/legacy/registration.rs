//! The registration payload (in `hello`, and upserted to a relay) and the
//! relay heartbeat.
//!
//! The heartbeat is one task: every interval it connects to the relay,
//! writes the payload as one line and reads one ack line. Serving never
//! waits for it.
//!
//! The ack is awaited for up to the lease, not the interval: a relay busy
//! for longer than an interval still holds the registration, and giving up
//! early only makes it fail to write an ack it was about to send. After a
//! transport failure (refused or dropped connection, no ack, malformed ack)
//! the next attempt comes sooner, with a backoff from 100 ms doubling up to
//! the interval, so a restarted relay sees the gateway again within a
//! fraction of the lease; the task never gives up on those. A retryable
//! rejection waits for the next interval; a non-retryable one ends the task.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::control::TargetInfo;
use crate::model::{ChildRecord, CommandKind};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Registration {
    pub target_id: String,
    pub display_name: String,
    /// The socket a legacy client should connect to.
    pub ipc_path: String,
    pub lease_seconds: u64,
    pub supported_commands: Vec<SupportedCommand>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SupportedCommand {
    pub name: &'static str,
    pub idempotent: bool,
    /// How long a client should wait for the result before giving up.
    pub timeout_seconds: u64,
}

/// Slack added to the stop timeouts a command may have to wait for.
const TIMEOUT_MARGIN_SECONDS: u64 = 5;

/// The payload for the current tree. Command timeouts follow the children's
/// stop timeouts: a command that stops a child may wait for the longest one;
/// a shutdown stops the children one after another.
pub fn registration(
    info: &TargetInfo,
    children: &[ChildRecord],
    ipc_path: &str,
    lease_seconds: u64,
) -> Registration {
    let stop = |child: &ChildRecord| child.spec.stop_timeout.as_secs_f64().ceil() as u64;
    let longest = children.iter().map(stop).max().unwrap_or(0);
    let total: u64 = children.iter().map(stop).sum();
    let supported_commands = info
        .supported_commands
        .iter()
        .filter(|kind| kind.is_legacy())
        .map(|&kind| SupportedCommand {
            name: kind.as_str(),
            idempotent: kind.is_idempotent(),
            timeout_seconds: TIMEOUT_MARGIN_SECONDS
                + match kind {
                    CommandKind::RestartChild
                    | CommandKind::PauseChild
                    | CommandKind::QuarantineChild
                    | CommandKind::RemoveChild => longest,
                    CommandKind::ResumeChild | CommandKind::AddChild => 0,
                    CommandKind::ShutdownTree
                    | CommandKind::ReloadConfig
                    | CommandKind::ScaleChild => total,
                },
        })
        .collect();
    Registration {
        target_id: info.target_id.clone(),
        display_name: info.display_name.clone(),
        ipc_path: ipc_path.to_owned(),
        lease_seconds,
        supported_commands,
    }
}

/// Where the registration stands, as `state` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No relay configured: clients connect to us directly.
    Direct,
    /// Configured; no attempt has finished yet.
    Connecting,
    Registered {
        at: Instant,
    },
    /// The last attempt failed; `last_ok` is the last accepted upsert.
    Retrying {
        last_ok: Option<Instant>,
    },
    /// The relay refused the registration for good; the heartbeat stopped.
    Rejected,
}

impl Status {
    /// `(registration_state, connection_state)` in the legacy vocabulary.
    /// A registration older than the lease has lapsed at the relay.
    pub fn describe(self, lease: Duration) -> (&'static str, &'static str) {
        let live = |at: Instant| at.elapsed() < lease;
        match self {
            Status::Direct => ("active", "connected"),
            Status::Connecting => ("active", "connecting"),
            Status::Registered { at } if live(at) => ("active", "registered"),
            Status::Retrying { last_ok: Some(at) } if live(at) => ("active", "reconnecting"),
            Status::Registered { .. } | Status::Retrying { last_ok: Some(_) } => {
                ("expired", "expired")
            }
            Status::Retrying { last_ok: None } => ("active", "unavailable"),
            Status::Rejected => ("rejected", "unavailable"),
        }
    }
}
