//! `DashboardState`, the result of `state`, built from one control-plane
//! snapshot and the journals' tails.
//!
//! The legacy shape was written for a tree supervisor with notions sgw
//! lacks (health probes, generation fences). Those fields are present with
//! the nearest honest value, usually null, and each is documented here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use super::records::{
    EventRecord, LogRecord, ROOT_PATH, child_path, event_record, log_record, unix_nanos,
};
use crate::control::{StateSnapshot, TargetInfo};
use crate::journal::Record;
use crate::model::{ChildRecord, ChildState, Event, Failure, LogLine, ResourceUsage};

#[derive(Debug, Serialize)]
pub struct DashboardState {
    pub target: TargetSummary,
    pub topology: Topology,
    pub runtime_state: Vec<RuntimeState>,
    pub child_runtime_records: Vec<ChildRuntimeRecord>,
    pub recent_events: Vec<EventRecord>,
    pub recent_logs: Vec<LogRecord>,
    pub dropped_event_count: u64,
    pub dropped_log_count: u64,
    pub config_version: String,
    pub generated_at_unix_nanos: u64,
    pub state_generation: u64,
}

#[derive(Debug, Serialize)]
pub struct TargetSummary {
    pub target_id: String,
    pub display_name: String,
    pub registration_state: &'static str,
    pub connection_state: &'static str,
}

/// The tree: the supervisor as root, each child under it, plus one
/// `dependency` edge per `depends_on` entry (from the dependent to what it
/// depends on).
#[derive(Debug, Serialize)]
pub struct Topology {
    pub root: &'static str,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// Child paths in declaration order (config order, then added ones).
    pub declaration_order: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Node {
    /// The node's path: unique, and stable across restarts.
    pub node_id: String,
    pub child_id: Option<String>,
    pub path: String,
    pub name: String,
    pub kind: &'static str,
    pub tags: Vec<String>,
    pub criticality: &'static str,
    pub state_summary: String,
    pub diagnostics: BTreeMap<&'static str, String>,
}

#[derive(Debug, Serialize)]
pub struct Edge {
    pub edge_id: String,
    pub source_path: String,
    pub target_path: String,
    pub kind: &'static str,
    pub order: u64,
}

#[derive(Debug, Serialize)]
pub struct RuntimeState {
    pub child_path: String,
    pub lifecycle_state: &'static str,
    /// sgw runs no health probes: always null.
    pub health: Option<&'static str>,
    /// `ready` once the process has been up for `ready_after`.
    pub readiness: &'static str,
    pub generation: u64,
    /// Every spawn is a new generation, so this equals `generation`.
    pub child_start_count: u64,
    pub restart_count: u64,
    pub last_failure: Option<String>,
    pub last_policy_decision: Option<&'static str>,
    pub shutdown_state: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct ChildRuntimeRecord {
    pub child_id: String,
    pub child_path: String,
    pub generation: u64,
    /// Automatic restarts within the current budget window.
    pub attempt: u32,
    pub status: Option<&'static str>,
    pub operation: &'static str,
    pub managed_child_state: &'static str,
    /// `alive` while a process exists, else `not_running`.
    pub liveness: &'static str,
    pub restart_limit: RestartLimit,
    pub stop_state: Option<&'static str>,
    pub failure: Option<String>,
    /// sgw fences by generation number alone, without phases: always null.
    pub generation_fence_phase: Option<&'static str>,
    pub pending_restart: bool,
    /// What the child's processes use (an sgw addition to the legacy
    /// shape); null without a process, or where nothing could be read.
    pub usage: Option<Usage>,
}

/// `ResourceUsage` in the legacy units: durations in milliseconds.
#[derive(Debug, Serialize)]
pub struct Usage {
    pub cpu_time_millis: u64,
    pub memory_bytes: u64,
    pub processes: u32,
    /// OOM kills in the child's cgroup; null where the kernel does not
    /// tell (no memory controller).
    pub oom_kills: Option<u64>,
}

impl From<&ResourceUsage> for Usage {
    fn from(usage: &ResourceUsage) -> Self {
        Usage {
            cpu_time_millis: u64::try_from(usage.cpu_time.as_millis()).unwrap_or(u64::MAX),
            memory_bytes: usage.memory_bytes,
            processes: usage.processes,
            oom_kills: usage.oom_kills,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RestartLimit {
    pub window_millis: u64,
    pub limit: u32,
    pub used: u32,
    pub remaining: u32,
    pub exhausted: bool,
    /// When the child entered its current state, the last moment its
    /// budget use could have changed.
    pub updated_at_unix_nanos: u64,
}

/// Everything `state` is made of, read by the caller.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub target: &'a TargetInfo,
    pub snapshot: &'a StateSnapshot,
    pub events: &'a [Arc<Record<Event>>],
    pub logs: &'a [Arc<Record<LogLine>>],
    /// `(registration_state, connection_state)`.
    pub registration: (&'static str, &'static str),
    pub config_version: String,
}

pub fn dashboard_state(inputs: &Inputs<'_>) -> DashboardState {
    let target_id = &inputs.target.target_id;
    let children = &inputs.snapshot.children;
    DashboardState {
        target: TargetSummary {
            target_id: target_id.clone(),
            display_name: inputs.target.display_name.clone(),
            registration_state: inputs.registration.0,
            connection_state: inputs.registration.1,
        },
        topology: topology(inputs.target, children),
        runtime_state: children.iter().map(runtime_state).collect(),
        child_runtime_records: children.iter().map(runtime_record).collect(),
        recent_events: inputs
            .events
            .iter()
            .map(|record| event_record(target_id, &inputs.config_version, record))
            .collect(),
        recent_logs: inputs
            .logs
            .iter()
            .map(|record| log_record(target_id, record))
            .collect(),
        dropped_event_count: inputs.snapshot.dropped_events,
        dropped_log_count: inputs.snapshot.dropped_logs,
        config_version: inputs.config_version.clone(),
        generated_at_unix_nanos: unix_nanos(SystemTime::now()),
        state_generation: inputs.snapshot.state_generation,
    }
}

fn topology(target: &TargetInfo, children: &[ChildRecord]) -> Topology {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for child in children {
        *counts.entry(child.state.as_str()).or_default() += 1;
    }
    let mut diagnostics: BTreeMap<&'static str, String> = counts
        .into_iter()
        .map(|(state, count)| (state, count.to_string()))
        .collect();
    diagnostics.insert("children", children.len().to_string());
    let mut nodes = vec![Node {
        node_id: ROOT_PATH.to_owned(),
        child_id: None,
        path: ROOT_PATH.to_owned(),
        name: target.display_name.clone(),
        kind: "root_supervisor",
        tags: Vec::new(),
        // The supervisor going down takes every child with it.
        criticality: "critical",
        state_summary: "supervising".to_owned(),
        diagnostics,
    }];
    let mut edges = Vec::new();
    for child in children {
        let path = child_path(&child.id);
        edges.push(Edge {
            edge_id: format!("parent_child:{ROOT_PATH}->{path}"),
            source_path: ROOT_PATH.to_owned(),
            target_path: path.clone(),
            kind: "parent_child",
            order: edges.len() as u64,
        });
        for dependency in &child.spec.depends_on {
            let target_path = child_path(dependency);
            edges.push(Edge {
                edge_id: format!("dependency:{path}->{target_path}"),
                source_path: path.clone(),
                target_path,
                kind: "dependency",
                order: edges.len() as u64,
            });
        }
        nodes.push(child_node(child, path));
    }
    Topology {
        root: ROOT_PATH,
        nodes,
        edges,
        declaration_order: children.iter().map(|c| child_path(&c.id)).collect(),
    }
}

fn child_node(child: &ChildRecord, path: String) -> Node {
    let mut diagnostics = BTreeMap::from([("command", child.spec.command.join(" "))]);
    if let Some(pid) = child.pid {
        diagnostics.insert("pid", pid.to_string());
    }
    if !child.detail.is_empty() {
        diagnostics.insert("detail", child.detail.clone());
    }
    if let Some(exit) = child.last_exit {
        diagnostics.insert("last_exit", exit.to_string());
    }
    if let Some(failure) = &child.last_failure {
        diagnostics.insert("last_failure", failure.to_string());
    }
    if !child.status_text.is_empty() {
        diagnostics.insert("status_text", child.status_text.clone());
    }
    Node {
        node_id: path.clone(),
        child_id: Some(child.id.to_string()),
        path,
        name: child.id.to_string(),
        kind: "child_task",
        tags: child.spec.tags.clone(),
        criticality: child.spec.criticality.as_str(),
        state_summary: child.state.as_str().to_owned(),
        diagnostics,
    }
}

/// Stopped by its own policy (it exited, or could not be spawned, and is
/// not restarted), rather than by a command, which always leaves a detail
/// saying so (a spawn failure's detail is the failure itself).
fn stopped_by_policy(child: &ChildRecord) -> bool {
    let spawn_failed = matches!(&child.last_failure, Some(Failure::Spawn(error)) if child.detail == error.to_string());
    child.state == ChildState::Stopped
        && ((child.last_exit.is_some() && child.detail.is_empty()) || spawn_failed)
}

/// Why the child is not running as it should, if it failed: commanded
/// stops (pause, remove, shutdown) are not failures.
fn failure(child: &ChildRecord) -> Option<String> {
    let failed_exit = child
        .last_exit
        .filter(|exit| !exit.is_success(&child.spec.success_codes))
        .map(|exit| exit.to_string());
    match child.state {
        ChildState::Backoff if !child.detail.is_empty() => Some(child.detail.clone()),
        ChildState::Backoff => failed_exit,
        ChildState::Quarantined | ChildState::Blocked => Some(child.detail.clone()),
        ChildState::Stopped if stopped_by_policy(child) => {
            if child.detail.is_empty() {
                failed_exit
            } else {
                Some(child.detail.clone())
            }
        }
        _ => None,
    }
}

pub(super) fn runtime_state(child: &ChildRecord) -> RuntimeState {
    RuntimeState {
        child_path: child_path(&child.id),
        lifecycle_state: child.state.as_str(),
        health: None,
        readiness: if child.state == ChildState::Running {
            "ready"
        } else {
            "not_ready"
        },
        generation: child.generation,
        child_start_count: child.generation,
        restart_count: child.restart_count,
        last_failure: failure(child),
        last_policy_decision: match child.state {
            ChildState::Backoff => Some("restart_scheduled"),
            ChildState::Quarantined => Some("quarantined"),
            ChildState::Stopped if stopped_by_policy(child) => Some("no_restart"),
            _ => None,
        },
        shutdown_state: (child.state == ChildState::Stopping).then_some("stopping"),
    }
}

pub(super) fn runtime_record(child: &ChildRecord) -> ChildRuntimeRecord {
    let budget = &child.budget;
    ChildRuntimeRecord {
        child_id: child.id.to_string(),
        child_path: child_path(&child.id),
        generation: child.generation,
        attempt: budget.used,
        status: Some(match child.state {
            ChildState::Starting if child.pid.is_some() => "running",
            ChildState::Starting | ChildState::Blocked => "starting",
            ChildState::Running => "ready",
            ChildState::Stopping => "cancelling",
            ChildState::Backoff
            | ChildState::Stopped
            | ChildState::Paused
            | ChildState::Quarantined => "stopped",
        }),
        operation: match child.state {
            ChildState::Paused => "paused",
            ChildState::Quarantined => "quarantined",
            _ => "active",
        },
        managed_child_state: match child.state {
            ChildState::Paused => "paused",
            ChildState::Quarantined => "quarantined",
            _ => "running",
        },
        liveness: if child.pid.is_some() {
            "alive"
        } else {
            "not_running"
        },
        restart_limit: RestartLimit {
            window_millis: u64::try_from(budget.window.as_millis()).unwrap_or(u64::MAX),
            limit: budget.max,
            used: budget.used,
            remaining: budget.remaining(),
            exhausted: budget.exhausted(),
            updated_at_unix_nanos: unix_nanos(child.since),
        },
        stop_state: match child.state {
            ChildState::Stopping => Some("stopping"),
            ChildState::Stopped | ChildState::Paused | ChildState::Quarantined => Some("stopped"),
            _ => None,
        },
        failure: failure(child),
        generation_fence_phase: None,
        pending_restart: child.state == ChildState::Backoff,
        usage: child.usage.as_ref().map(Usage::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A child runtime record's `usage` (an addition to the legacy shape):
    /// CPU time in milliseconds, `oom_kills` null where unknown.
    #[test]
    fn usage_in_legacy_units() {
        let usage = ResourceUsage {
            cpu_time: Duration::from_millis(1250),
            memory_bytes: 12 << 20,
            processes: 3,
            oom_kills: None,
        };
        assert_eq!(
            serde_json::to_value(Usage::from(&usage)).expect("serializes"),
            serde_json::json!({
                "cpu_time_millis": 1250,
                "memory_bytes": 12 << 20,
                "processes": 3,
                "oom_kills": null,
            })
        );
    }
}
