//! Journal records in their legacy shapes (`EventRecord`, `LogRecord`),
//! shared by `state` (recent events and logs) and the pushes. Sequences are
//! the journal's own, so they match what gRPC subscribers see.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};

use crate::journal::Record;
use crate::model::{ChildId, ChildRecord, Event, EventKind, LogLine, LogStream};

/// The path of the tree's root node: the supervisor itself.
pub const ROOT_PATH: &str = "/";

/// A child's node path. The tree is flat (every child hangs off the root),
/// so the path is the id under the root.
pub fn child_path(id: &ChildId) -> String {
    format!("/{id}")
}

/// Nanoseconds since the Unix epoch; 0 for a time before it (a clock set
/// far back), saturating far in the future.
pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `config_version`: a content hash (64-bit FNV-1a) of the children's specs
/// in declaration order. It changes when a child is added or removed and
/// is stable while the tree's configuration is; it is not comparable across
/// builds of sgw.
pub fn config_version(children: &[ChildRecord]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for child in children {
        for byte in format!("{:?}\n", child.spec).bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("fnv1a64:{hash:016x}")
}

#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub target_id: String,
    pub sequence: u64,
    /// The command id for command events (`cmd-7`), else null.
    pub correlation_id: Option<String>,
    pub event_type: &'static str,
    pub severity: &'static str,
    /// The child's node path, or the root for tree-wide events.
    pub target_path: String,
    pub child_id: Option<String>,
    pub occurred_at_unix_nanos: u64,
    pub config_version: String,
    pub payload: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogRecord {
    pub target_id: String,
    pub sequence: u64,
    /// Output lines belong to no command: always null.
    pub correlation_id: Option<String>,
    /// `info` for stdout, `warning` for stderr: the only severity a
    /// captured line carries is the pipe it came from.
    pub severity: &'static str,
    pub message: String,
    /// `child_id`, `stream`, `generation`, and `truncated` when the line
    /// continues in the next record.
    pub fields: BTreeMap<&'static str, String>,
    pub occurred_at_unix_nanos: u64,
}

pub fn event_record(target_id: &str, config_version: &str, record: &Record<Event>) -> EventRecord {
    let event = &record.body;
    let correlation_id = match &event.kind {
        EventKind::CommandAccepted { command_id, .. }
        | EventKind::CommandCompleted { command_id, .. } => Some(command_id.clone()),
        _ => None,
    };
    EventRecord {
        target_id: target_id.to_owned(),
        sequence: record.sequence,
        correlation_id,
        event_type: event.kind.event_type().as_str(),
        severity: event.kind.severity().as_str(),
        target_path: event
            .child_id
            .as_ref()
            .map_or_else(|| ROOT_PATH.to_owned(), child_path),
        child_id: event.child_id.as_ref().map(ToString::to_string),
        occurred_at_unix_nanos: unix_nanos(record.time),
        config_version: config_version.to_owned(),
        payload: payload(&event.kind),
    }
}

pub fn log_record(target_id: &str, record: &Record<LogLine>) -> LogRecord {
    let line = &record.body;
    let mut fields = BTreeMap::from([
        ("child_id", line.child_id.to_string()),
        ("stream", line.stream.as_str().to_owned()),
        ("generation", line.generation.to_string()),
    ]);
    if line.truncated {
        fields.insert("truncated", "true".to_owned());
    }
    if line.suppressed > 0 {
        fields.insert("suppressed", line.suppressed.to_string());
    }
    LogRecord {
        target_id: target_id.to_owned(),
        sequence: record.sequence,
        correlation_id: None,
        severity: match line.stream {
            LogStream::Stdout => "info",
            LogStream::Stderr => "warning",
        },
        message: line.text.clone(),
        fields,
        occurred_at_unix_nanos: unix_nanos(record.time),
    }
}

/// The event's details; durations in milliseconds.
fn payload(kind: &EventKind) -> Value {
    match kind {
        EventKind::ChildAdded
        | EventKind::BackoffReset
        | EventKind::ChildPaused
        | EventKind::ChildResumed
        | EventKind::ChildRemoved
        | EventKind::ShutdownStarted
        | EventKind::ShutdownCompleted => json!({}),
        EventKind::WaitingForDependencies { pending } => {
            json!({ "pending": pending.iter().map(ToString::to_string).collect::<Vec<_>>() })
        }
        EventKind::ChildStarting { generation, pid }
        | EventKind::ChildRunning { generation, pid }
        | EventKind::StopEscalated { generation, pid } => {
            json!({ "generation": generation, "pid": pid })
        }
        EventKind::SpawnFailed { generation, error } => json!({
            "generation": generation,
            "error": error.to_string(),
            "stage": error.stage.as_str(),
            "path": error.path.display().to_string(),
            "message": error.message,
        }),
        EventKind::DependencyUnavailable { dependency } => json!({
            "dependency": dependency.id.to_string(),
            "reason": dependency.status.to_string(),
            "can_become_ready": dependency.status.can_become_ready(),
        }),
        EventKind::ChildBlocked { waited, pending } => json!({
            "waited_millis": millis(*waited),
            "pending": pending.iter().map(|p| json!({
                "child_id": p.id.to_string(),
                "reason": p.status.to_string(),
                "can_become_ready": p.status.can_become_ready(),
            })).collect::<Vec<_>>(),
        }),
        EventKind::ChildExited {
            generation,
            pid,
            exit,
            uptime,
        } => json!({
            "generation": generation,
            "pid": pid,
            "exit": exit.to_string(),
            "exit_code": match exit { crate::model::Exit::Code(code) => Some(*code), crate::model::Exit::Signal(_) => None },
            "signal": match exit { crate::model::Exit::Signal(signal) => Some(*signal), crate::model::Exit::Code(_) => None },
            "uptime_millis": millis(*uptime),
        }),
        EventKind::RestartScheduled { attempt, delay } => {
            json!({ "attempt": attempt, "delay_millis": millis(*delay) })
        }
        EventKind::ChildUnhealthy { generation, cause } => json!({
            "generation": generation,
            "cause": cause.to_string(),
        }),
        EventKind::ChildStopping {
            generation,
            signal,
            timeout,
        } => json!({
            "generation": generation,
            "signal": signal.to_string(),
            "timeout_millis": millis(*timeout),
        }),
        EventKind::ChildQuarantined { reason } => json!({
            "reason": reason.to_string(),
            "budget_exhausted": matches!(reason, crate::model::QuarantineReason::BudgetExhausted { .. }),
            "after": match reason {
                crate::model::QuarantineReason::BudgetExhausted { after, .. } => Some(after.to_string()),
                crate::model::QuarantineReason::Command => None,
            },
        }),
        EventKind::CommandAccepted {
            command_id,
            command,
            request_id,
            requested_by,
            reason,
        } => json!({
            "command_id": command_id,
            "command": command.as_str(),
            "request_id": request_id,
            "requested_by": requested_by,
            "reason": reason,
        }),
        EventKind::CommandCompleted {
            command_id,
            command,
            outcome,
            error_code,
        } => json!({
            "command_id": command_id,
            "command": command.as_str(),
            "outcome": outcome,
            "error_code": error_code,
        }),
        EventKind::LeftoverKilled {
            processes,
            found_in,
        } => json!({
            "processes": processes
                .iter()
                .map(|p| json!({ "pid": p.pid, "command": p.command }))
                .collect::<Vec<_>>(),
            "found_in": found_in,
        }),
        EventKind::OomKilled {
            generation,
            oom_kills,
            memory_max,
        } => json!({
            "generation": generation,
            "oom_kills": oom_kills,
            "memory_max_bytes": memory_max.map(|m| m.0),
        }),
        EventKind::RuntimeRestored {
            paused,
            quarantined,
            added,
            removed,
            overridden,
        } => json!({
            "paused": paused,
            "quarantined": quarantined,
            "added": added,
            "removed": removed,
            "overridden": overridden,
        }),
        EventKind::ChangePlanned { command, plan } => json!({
            "command": command.as_str(),
            "add": plan.add,
            "update": plan.update.iter().map(|u| json!({
                "child_id": u.id,
                "changed": u.changed,
                "restart": u.restart,
            })).collect::<Vec<_>>(),
            "remove": plan.remove,
            "unchanged": plan.unchanged,
            "not_applied": plan.not_applied,
        }),
        EventKind::ChildUpdated { changed, restarted } => json!({
            "changed": changed,
            "restarted": restarted,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Bytes, LeftoverProcess};

    /// The two containment events in the legacy shape: plain numbers and
    /// strings, the limit in bytes (null when none).
    #[test]
    fn leftover_and_oom_payloads() {
        let leftover = EventKind::LeftoverKilled {
            processes: vec![LeftoverProcess {
                pid: 42,
                command: "sleep 1000".into(),
            }],
            found_in: "/sys/fs/cgroup/sgw/web".into(),
        };
        assert_eq!(
            payload(&leftover),
            json!({
                "processes": [{"pid": 42, "command": "sleep 1000"}],
                "found_in": "/sys/fs/cgroup/sgw/web",
            })
        );
        let oom = EventKind::OomKilled {
            generation: 3,
            oom_kills: 2,
            memory_max: Some(Bytes(64 << 20)),
        };
        assert_eq!(
            payload(&oom),
            json!({"generation": 3, "oom_kills": 2, "memory_max_bytes": 64 << 20})
        );
        let unlimited = EventKind::OomKilled {
            generation: 1,
            oom_kills: 1,
            memory_max: None,
        };
        assert_eq!(payload(&unlimited)["memory_max_bytes"], Value::Null);
        assert_eq!(leftover.event_type().as_str(), "leftover_killed");
        assert_eq!(oom.event_type().as_str(), "oom_killed");
    }
}
