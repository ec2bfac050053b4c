//! `--json` output: each line is one response message of the RPC, built
//! field by field from the generated types. Field names are the proto's
//! (snake_case); enum values are their proto names (`CHILD_STATE_RUNNING`);
//! times are RFC 3339 strings and durations `"1.500s"` strings, as in the
//! proto3 JSON mapping. Unlike that mapping, 64-bit integers are JSON
//! numbers and unset fields are present (as `null`, `""`, `0` or `[]`), so
//! every object of one kind has the same keys.

use serde_json::{Map, Value, json};

use crate::pb;
use crate::pb::event::Detail;

fn time(t: Option<&prost_types::Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_string()))
}

fn duration(d: Option<&prost_types::Duration>) -> Value {
    d.map_or(Value::Null, |d| Value::String(d.to_string()))
}

/// An enum value by its proto name; unknown numbers stay numbers.
fn name<E: TryFrom<i32>>(raw: i32, as_str: fn(&E) -> &'static str) -> Value {
    E::try_from(raw).map_or(json!(raw), |value| json!(as_str(&value)))
}

pub fn info(info: &pb::GetInfoResponse) -> Value {
    let commands: Vec<Value> = info
        .supported_commands
        .iter()
        .map(|c| {
            json!({
                "command": name(c.command, pb::CommandType::as_str_name),
                "name": c.name,
                "idempotent": c.idempotent,
                "destructive": c.destructive,
            })
        })
        .collect();
    let limits = info.limits.as_ref().map_or(Value::Null, |l| {
        json!({
            "max_request_bytes": l.max_request_bytes,
            "max_response_bytes": l.max_response_bytes,
            "max_connections": l.max_connections,
            "idle_timeout": duration(l.idle_timeout.as_ref()),
        })
    });
    let containment = info.containment.as_ref().map_or(Value::Null, |c| {
        json!({
            "mode": name(c.mode, pb::ContainmentMode::as_str_name),
            "detail": c.detail,
            "controllers": c.controllers,
        })
    });
    let caller = info.caller.as_ref().map_or(Value::Null, |c| {
        json!({
            "uid": c.uid,
            "gid": c.gid,
            "pid": c.pid,
            "user_name": c.user_name,
            "connection_id": c.connection_id,
        })
    });
    json!({
        "protocol_version": info.protocol_version,
        "target_id": info.target_id,
        "display_name": info.display_name,
        "server_version": info.server_version,
        "supported_commands": commands,
        "limits": limits,
        "caller": caller,
        "containment": containment,
        "journal_id": info.journal_id,
    })
}

pub fn state(state: &pb::GetStateResponse) -> Value {
    json!({
        "children": state.children.iter().map(record).collect::<Vec<_>>(),
        "state_generation": state.state_generation,
        "last_event_sequence": state.last_event_sequence,
        "last_log_sequence": state.last_log_sequence,
        "dropped_event_count": state.dropped_event_count,
        "dropped_log_count": state.dropped_log_count,
        "generated_at": time(state.generated_at.as_ref()),
        "journal_id": state.journal_id,
    })
}

fn exit(exit: Option<&pb::ExitStatus>) -> Value {
    let Some(exit) = exit else {
        return Value::Null;
    };
    let mut object = Map::new();
    match exit.kind {
        Some(pb::exit_status::Kind::Code(code)) => {
            object.insert("code".into(), json!(code));
        }
        Some(pb::exit_status::Kind::Signal(signal)) => {
            object.insert("signal".into(), json!(signal));
        }
        None => {}
    }
    object.insert("description".into(), json!(exit.description));
    Value::Object(object)
}

fn spawn_error(error: Option<&pb::SpawnError>) -> Value {
    error.map_or(Value::Null, |e| {
        json!({
            "stage": name(e.stage, pb::SpawnStage::as_str_name),
            "path": e.path,
            "message": e.message,
            "description": e.description,
        })
    })
}

/// `{"exit": {...} | null, "spawn": {...} | null, "description": "..."}`.
fn failure(failure: Option<&pb::ChildFailure>) -> Value {
    let Some(failure) = failure else {
        return Value::Null;
    };
    let (exit_status, spawn) = match &failure.kind {
        Some(pb::child_failure::Kind::Exit(e)) => (Some(e), None),
        Some(pb::child_failure::Kind::Spawn(s)) => (None, Some(s)),
        Some(pb::child_failure::Kind::Unhealthy(_)) | None => (None, None),
    };
    json!({
        "exit": exit(exit_status),
        "spawn": spawn_error(spawn),
        "description": failure.description,
    })
}

fn dependency(p: &pb::PendingDependency) -> Value {
    json!({
        "child_id": p.child_id,
        "reason": p.reason,
        "can_become_ready": p.can_become_ready,
    })
}

fn pending(pending: &[pb::PendingDependency]) -> Value {
    pending.iter().map(dependency).collect()
}

pub fn record(record: &pb::ChildRecord) -> Value {
    let budget = record.budget.as_ref().map_or(Value::Null, |b| {
        json!({
            "max": b.max,
            "window": duration(b.window.as_ref()),
            "used": b.used,
            "remaining": b.remaining,
            "exhausted": b.exhausted,
        })
    });
    json!({
        "child_id": record.child_id,
        "state": name(record.state, pb::ChildState::as_str_name),
        "pid": record.pid,
        "generation": record.generation,
        "restart_count": record.restart_count,
        "last_exit": exit(record.last_exit.as_ref()),
        "last_failure": failure(record.last_failure.as_ref()),
        "waiting_for": pending(&record.waiting_for),
        "backoff_until": time(record.backoff_until.as_ref()),
        "budget": budget,
        "criticality": name(record.criticality, pb::Criticality::as_str_name),
        "tags": record.tags,
        "since": time(record.since.as_ref()),
        "detail": record.detail,
        "status_text": record.status_text,
        "spec": record.spec.as_ref().map_or(Value::Null, spec),
        "usage": record.usage.as_ref().map_or(Value::Null, usage),
    })
}

/// `{"cpu_time": "1.250s", "memory_bytes": 12582912, "processes": 3, "oom_kills": 0 | null}`.
fn usage(usage: &pb::ResourceUsage) -> Value {
    json!({
        "cpu_time": duration(usage.cpu_time.as_ref()),
        "memory_bytes": usage.memory_bytes,
        "processes": usage.processes,
        "oom_kills": usage.oom_kills,
    })
}

pub fn spec(spec: &pb::ChildSpec) -> Value {
    let backoff = spec.backoff.as_ref().map_or(Value::Null, |b| {
        json!({
            "initial": duration(b.initial.as_ref()),
            "max": duration(b.max.as_ref()),
            "multiplier": b.multiplier,
            "jitter": b.jitter,
            "reset_after": duration(b.reset_after.as_ref()),
        })
    });
    let budget = spec.restart_budget.as_ref().map_or(
        Value::Null,
        |b| json!({"max": b.max, "window": duration(b.window.as_ref())}),
    );
    let env: std::collections::BTreeMap<_, _> = spec.env.iter().collect();
    json!({
        "id": spec.id,
        "command": spec.command,
        "restart": name(spec.restart, pb::RestartPolicy::as_str_name),
        "backoff": backoff,
        "restart_budget": budget,
        "stop_signal": spec.stop_signal,
        "stop_timeout": duration(spec.stop_timeout.as_ref()),
        "env": env,
        "cwd": spec.cwd,
        "depends_on": spec.depends_on,
        "criticality": name(spec.criticality, pb::Criticality::as_str_name),
        "tags": spec.tags,
        "autostart": spec.autostart,
        "ready_after": duration(spec.ready_after.as_ref()),
        "success_codes": spec.success_codes,
        "start_timeout": duration(spec.start_timeout.as_ref()),
        "user": spec.user,
        "group": spec.group,
        "umask": spec.umask,
        "rlimits": spec.rlimits.iter().collect::<std::collections::BTreeMap<_, _>>(),
        "memory_max": spec.memory_max,
        "cpu_max": spec.cpu_max,
        "cpu_weight": spec.cpu_weight,
        "pids_max": spec.pids_max,
    })
}

/// A `XxxChildResponse` / `ShutdownTreeResponse`: `{"result": {...}}`.
pub fn command_response(result: &pb::CommandResult) -> Value {
    json!({"result": {
        "command_id": result.command_id,
        "command": name(result.command, pb::CommandType::as_str_name),
        "outcome": result.outcome,
        "child": result.child.as_ref().map_or(Value::Null, record),
        "completed_at": time(result.completed_at.as_ref()),
    }})
}

pub fn gap(gap: &pb::Gap) -> Value {
    json!({
        "first_missing": gap.first_missing,
        "last_missing": gap.last_missing,
        "reason": name(gap.reason, pb::GapReason::as_str_name),
    })
}

/// A `SubscribeEventsResponse` carrying an event: `{"event": {...}}`.
pub fn event(event: &pb::Event) -> Value {
    let mut object = Map::new();
    object.insert("sequence".into(), json!(event.sequence));
    object.insert("time".into(), time(event.time.as_ref()));
    object.insert("child_id".into(), json!(event.child_id));
    object.insert(
        "event_type".into(),
        name(event.event_type, pb::EventType::as_str_name),
    );
    object.insert(
        "severity".into(),
        name(event.severity, pb::Severity::as_str_name),
    );
    if let Some(detail) = &event.detail {
        let (field, value) = detail_json(detail);
        object.insert(field.into(), value);
    }
    json!({"event": object})
}

/// The `detail` oneof: the field's name and its message.
fn detail_json(detail: &Detail) -> (&'static str, Value) {
    let empty = || json!({});
    match detail {
        Detail::ChildAdded(_) => ("child_added", empty()),
        Detail::WaitingForDependencies(d) => {
            ("waiting_for_dependencies", json!({"pending": d.pending}))
        }
        Detail::ChildStarting(d) => (
            "child_starting",
            json!({"generation": d.generation, "pid": d.pid}),
        ),
        Detail::ChildRunning(d) => (
            "child_running",
            json!({"generation": d.generation, "pid": d.pid}),
        ),
        Detail::SpawnFailed(d) => (
            "spawn_failed",
            json!({
                "generation": d.generation,
                "error": d.error,
                "spawn": spawn_error(d.spawn.as_ref()),
            }),
        ),
        Detail::DependencyUnavailable(d) => (
            "dependency_unavailable",
            json!({"dependency": d.dependency.as_ref().map_or(Value::Null, dependency)}),
        ),
        Detail::ChildBlocked(d) => (
            "child_blocked",
            json!({"waited": duration(d.waited.as_ref()), "pending": pending(&d.pending)}),
        ),
        Detail::ChildUnhealthy(d) => (
            "child_unhealthy",
            json!({
                "generation": d.generation,
                "cause": d.cause.as_ref().map_or(Value::Null, |c| json!({
                    "kind": name(c.kind, pb::UnhealthyKind::as_str_name),
                    "probe": c.probe,
                    "output": c.output,
                    "failures": c.failures,
                    "timeout": duration(c.timeout.as_ref()),
                    "description": c.description,
                })),
            }),
        ),
        Detail::ChildExited(d) => (
            "child_exited",
            json!({
                "generation": d.generation,
                "pid": d.pid,
                "exit": exit(d.exit.as_ref()),
                "uptime": duration(d.uptime.as_ref()),
            }),
        ),
        Detail::RestartScheduled(d) => (
            "restart_scheduled",
            json!({"attempt": d.attempt, "delay": duration(d.delay.as_ref())}),
        ),
        Detail::ChildStopping(d) => (
            "child_stopping",
            json!({
                "generation": d.generation,
                "signal": d.signal,
                "timeout": duration(d.timeout.as_ref()),
            }),
        ),
        Detail::StopEscalated(d) => (
            "stop_escalated",
            json!({"generation": d.generation, "pid": d.pid}),
        ),
        Detail::BackoffReset(_) => ("backoff_reset", empty()),
        Detail::ChildQuarantined(d) => (
            "child_quarantined",
            json!({
                "reason": d.reason,
                "budget_exhausted": d.budget_exhausted,
                "after": failure(d.after.as_ref()),
            }),
        ),
        Detail::ChildPaused(_) => ("child_paused", empty()),
        Detail::ChildResumed(_) => ("child_resumed", empty()),
        Detail::ChildRemoved(_) => ("child_removed", empty()),
        Detail::CommandAccepted(d) => (
            "command_accepted",
            json!({
                "command_id": d.command_id,
                "command": name(d.command, pb::CommandType::as_str_name),
                "request_id": d.request_id,
                "requested_by": d.requested_by,
                "reason": d.reason,
            }),
        ),
        Detail::CommandCompleted(d) => (
            "command_completed",
            json!({
                "command_id": d.command_id,
                "command": name(d.command, pb::CommandType::as_str_name),
                "outcome": d.outcome,
                "error_code": d.error_code,
            }),
        ),
        Detail::ShutdownStarted(_) => ("shutdown_started", empty()),
        Detail::ShutdownCompleted(_) => ("shutdown_completed", empty()),
        Detail::LeftoverKilled(d) => (
            "leftover_killed",
            json!({
                "processes": d
                    .processes
                    .iter()
                    .map(|p| json!({"pid": p.pid, "command": p.command}))
                    .collect::<Vec<_>>(),
                "found_in": d.found_in,
            }),
        ),
        Detail::ChangePlanned(d) => (
            "change_planned",
            json!({
                "command": pb::CommandType::try_from(d.command)
                    .map(|c| c.as_str_name())
                    .unwrap_or("COMMAND_TYPE_UNSPECIFIED"),
                "plan": d.plan.as_ref().map(change_plan),
            }),
        ),
        Detail::ChildUpdated(d) => (
            "child_updated",
            json!({"changed": d.changed, "restarted": d.restarted}),
        ),
        Detail::RuntimeRestored(d) => (
            "runtime_restored",
            json!({
                "paused": d.paused,
                "quarantined": d.quarantined,
                "added": d.added,
                "removed": d.removed,
                "overridden": d.overridden,
            }),
        ),
        Detail::OomKilled(d) => (
            "oom_killed",
            json!({
                "generation": d.generation,
                "oom_kills": d.oom_kills,
                "memory_max": d.memory_max,
            }),
        ),
    }
}

/// `reload` / `scale`: `{"plan": {...}, "result": {...}}` (no result for a
/// dry run).
pub fn change_response(plan: &pb::ChangePlan, result: Option<&pb::CommandResult>) -> Value {
    let mut value = json!({"plan": change_plan(plan), "dry_run": result.is_none()});
    if let Some(result) = result {
        value["result"] = command_response(result)["result"].clone();
    }
    value
}

/// A reload's or scale's plan.
pub fn change_plan(plan: &pb::ChangePlan) -> Value {
    json!({
        "add": plan.add,
        "update": plan.update.iter().map(|u| json!({
            "child_id": u.child_id,
            "changed": u.changed,
            "restart": u.restart,
        })).collect::<Vec<_>>(),
        "remove": plan.remove,
        "unchanged": plan.unchanged,
        "not_applied": plan.not_applied,
    })
}

/// A `TailLogsResponse` carrying a line: `{"line": {...}}`.
pub fn log_line(line: &pb::LogLine) -> Value {
    json!({"line": {
        "sequence": line.sequence,
        "time": time(line.time.as_ref()),
        "child_id": line.child_id,
        "stream": name(line.stream, pb::LogStream::as_str_name),
        "text": line.text,
        "truncated": line.truncated,
        "generation": line.generation,
        "suppressed": line.suppressed,
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_json_uses_proto_names_and_the_oneof_field() {
        let event = pb::Event {
            sequence: 7,
            time: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: 5_000_000,
            }),
            child_id: "web".into(),
            event_type: pb::EventType::ChildExited as i32,
            severity: pb::Severity::Warning as i32,
            detail: Some(Detail::ChildExited(pb::ChildExited {
                generation: 2,
                pid: 99,
                exit: Some(pb::ExitStatus {
                    kind: Some(pb::exit_status::Kind::Code(3)),
                    description: "exit code 3".into(),
                }),
                uptime: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 500_000_000,
                }),
            })),
        };
        let value = super::event(&event);
        assert_eq!(value["event"]["event_type"], "EVENT_TYPE_CHILD_EXITED");
        assert_eq!(value["event"]["time"], "1970-01-01T00:00:00.005Z");
        assert_eq!(value["event"]["child_exited"]["exit"]["code"], 3);
        assert_eq!(value["event"]["child_exited"]["uptime"], "1.500s");
        assert_eq!(name::<pb::ChildState>(42, pb::ChildState::as_str_name), 42);
    }
}
