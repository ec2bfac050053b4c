//! Domain ⇄ protobuf conversions, all in one place. Domain types never
//! derive prost; the generated types never leak into the engine.

use std::time::{Duration, SystemTime};

use super::Limits;
use crate::control::{CommandMeta, CommandReport, ControlError, StateSnapshot, TargetInfo};
use crate::journal::{Gap, GapReason, Record};
use crate::model::{
    Backoff, BudgetStatus, Bytes, ChangePlan, ChildId, ChildLogs, ChildRecord, ChildSpec,
    ChildState, CommandKind, ContainmentInfo, ContainmentKind, CpuMax, Criticality, Event,
    EventKind, EventType, Exit, Failure, LeftoverProcess, LogLine, LogStream, PendingDependency,
    QuarantineReason, ResourceUsage, RestartBudget, RestartPolicy, Rlimit, Severity, SpawnError,
    SpawnStage, SpecError, Umask, echo,
};
use crate::model::{Check, HttpTarget, Probe, Ready, TcpTarget, Unhealthy};
use crate::pb;
use crate::pb::event::Detail;
use crate::security::AuditRecord;
use crate::transport::peer::Caller;

pub fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}

pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}

/// A client-supplied child id.
pub fn child_id(field: &str, raw: &str) -> Result<ChildId, ControlError> {
    ChildId::new(raw).map_err(|error| ControlError::InvalidArgument {
        field: field.to_owned(),
        message: error.to_string(),
    })
}

pub fn child_ids(field: &str, raw: &[String]) -> Result<Vec<ChildId>, ControlError> {
    raw.iter().map(|id| child_id(field, id)).collect()
}

pub fn meta(meta: Option<pb::CommandMeta>) -> CommandMeta {
    let meta = meta.unwrap_or_default();
    CommandMeta {
        request_id: meta.request_id,
        requested_by: meta.requested_by,
        reason: meta.reason,
        confirm: meta.confirm,
    }
}

pub fn command_type(kind: CommandKind) -> pb::CommandType {
    match kind {
        CommandKind::RestartChild => pb::CommandType::RestartChild,
        CommandKind::PauseChild => pb::CommandType::PauseChild,
        CommandKind::ResumeChild => pb::CommandType::ResumeChild,
        CommandKind::QuarantineChild => pb::CommandType::QuarantineChild,
        CommandKind::RemoveChild => pb::CommandType::RemoveChild,
        CommandKind::AddChild => pb::CommandType::AddChild,
        CommandKind::ShutdownTree => pb::CommandType::ShutdownTree,
        CommandKind::ReloadConfig => pb::CommandType::ReloadConfig,
        CommandKind::ScaleChild => pb::CommandType::ScaleChild,
    }
}

pub fn state(state: ChildState) -> pb::ChildState {
    match state {
        ChildState::Starting => pb::ChildState::Starting,
        ChildState::Running => pb::ChildState::Running,
        ChildState::Backoff => pb::ChildState::Backoff,
        ChildState::Stopping => pb::ChildState::Stopping,
        ChildState::Stopped => pb::ChildState::Stopped,
        ChildState::Paused => pb::ChildState::Paused,
        ChildState::Quarantined => pb::ChildState::Quarantined,
        ChildState::Blocked => pb::ChildState::Blocked,
    }
}

fn criticality(c: Criticality) -> pb::Criticality {
    match c {
        Criticality::Critical => pb::Criticality::Critical,
        Criticality::Standard => pb::Criticality::Standard,
        Criticality::BestEffort => pb::Criticality::BestEffort,
    }
}

fn restart_policy(p: RestartPolicy) -> pb::RestartPolicy {
    match p {
        RestartPolicy::Always => pb::RestartPolicy::Always,
        RestartPolicy::OnFailure => pb::RestartPolicy::OnFailure,
        RestartPolicy::Never => pb::RestartPolicy::Never,
    }
}

pub fn exit(exit: Exit) -> pb::ExitStatus {
    pb::ExitStatus {
        kind: Some(match exit {
            Exit::Code(code) => pb::exit_status::Kind::Code(code),
            Exit::Signal(signal) => pb::exit_status::Kind::Signal(signal),
        }),
        description: exit.to_string(),
    }
}

pub fn spawn_error(error: &SpawnError) -> pb::SpawnError {
    pb::SpawnError {
        stage: match error.stage {
            SpawnStage::Chdir => pb::SpawnStage::Chdir,
            SpawnStage::Exec => pb::SpawnStage::Exec,
            SpawnStage::Setuid => pb::SpawnStage::Setuid,
            SpawnStage::Limits => pb::SpawnStage::Limits,
            SpawnStage::Cgroup => pb::SpawnStage::Cgroup,
            SpawnStage::Notify => pb::SpawnStage::Notify,
        } as i32,
        path: error.path.display().to_string(),
        message: error.message.clone(),
        description: error.to_string(),
    }
}

pub fn failure(failure: &Failure) -> pb::ChildFailure {
    pb::ChildFailure {
        kind: Some(match failure {
            Failure::Exit(e) => pb::child_failure::Kind::Exit(exit(*e)),
            Failure::Spawn(error) => pb::child_failure::Kind::Spawn(spawn_error(error)),
            Failure::Unhealthy(cause) => pb::child_failure::Kind::Unhealthy(unhealthy(cause)),
        }),
        description: failure.to_string(),
    }
}

pub fn unhealthy(cause: &Unhealthy) -> pb::Unhealthy {
    let description = cause.to_string();
    match cause {
        Unhealthy::Probe {
            probe,
            output,
            failures,
        } => pb::Unhealthy {
            kind: pb::UnhealthyKind::HealthProbe as i32,
            probe: probe.clone(),
            output: output.clone(),
            failures: *failures,
            timeout: None,
            description,
        },
        Unhealthy::Watchdog { timeout } => pb::Unhealthy {
            kind: pb::UnhealthyKind::Watchdog as i32,
            probe: String::new(),
            output: String::new(),
            failures: 0,
            timeout: Some(duration(*timeout)),
            description,
        },
        Unhealthy::NotReady {
            timeout,
            probe,
            output,
        } => pb::Unhealthy {
            kind: pb::UnhealthyKind::NotReady as i32,
            probe: probe.clone(),
            output: output.clone(),
            failures: 0,
            timeout: Some(duration(*timeout)),
            description,
        },
    }
}

fn probe(probe: &Probe) -> pb::Probe {
    pb::Probe {
        check: Some(match &probe.check {
            Check::Exec(command) => pb::probe::Check::Exec(pb::ExecCheck {
                command: command.clone(),
            }),
            Check::Tcp(target) => pb::probe::Check::Tcp(target.to_string()),
            Check::Http(target) => pb::probe::Check::Http(target.to_string()),
        }),
        interval: Some(duration(probe.interval)),
        timeout: Some(duration(probe.timeout)),
        threshold: probe.threshold.unwrap_or_default(),
    }
}

fn ready(ready: &Ready) -> pb::Ready {
    pb::Ready {
        kind: Some(match ready {
            Ready::Notify => pb::ready::Kind::Notify(true),
            Ready::Probe(p) => pb::ready::Kind::Probe(probe(p)),
        }),
    }
}

/// A probe from `AddChild`; `key` names it in errors (`ready`, `health`).
fn probe_from_pb(key: &str, raw: pb::Probe) -> Result<Probe, ControlError> {
    let field = |name: &str| format!("{key}.{name}");
    let check = match raw.check {
        Some(pb::probe::Check::Exec(exec)) => Check::Exec(exec.command),
        Some(pb::probe::Check::Tcp(text)) => {
            Check::Tcp(TcpTarget::try_from(text).map_err(|m| spec_error(&field("tcp"), m))?)
        }
        Some(pb::probe::Check::Http(text)) => {
            Check::Http(HttpTarget::try_from(text).map_err(|m| spec_error(&field("http"), m))?)
        }
        None => {
            return Err(spec_error(
                key,
                "a probe needs exactly one of exec, tcp or http",
            ));
        }
    };
    let defaults = Probe::new(check);
    Ok(Probe {
        interval: from_duration(&field("interval"), raw.interval, defaults.interval)?,
        timeout: from_duration(&field("timeout"), raw.timeout, defaults.timeout)?,
        threshold: (raw.threshold != 0).then_some(raw.threshold),
        check: defaults.check,
    })
}

fn ready_from_pb(raw: pb::Ready) -> Result<Ready, ControlError> {
    match raw.kind {
        Some(pb::ready::Kind::Notify(true)) => Ok(Ready::Notify),
        Some(pb::ready::Kind::Probe(p)) => probe_from_pb("ready", p).map(Ready::Probe),
        Some(pb::ready::Kind::Notify(false)) | None => Err(spec_error(
            "ready",
            "set notify = true or a probe (or leave ready unset)",
        )),
    }
}

pub fn pending_dependency(pending: &PendingDependency) -> pb::PendingDependency {
    pb::PendingDependency {
        child_id: pending.id.to_string(),
        reason: pending.status.to_string(),
        can_become_ready: pending.status.can_become_ready(),
    }
}

fn budget(b: &BudgetStatus) -> pb::BudgetStatus {
    pb::BudgetStatus {
        max: b.max,
        window: Some(duration(b.window)),
        used: b.used,
        remaining: b.remaining(),
        exhausted: b.exhausted(),
    }
}

pub fn spec(spec: &ChildSpec) -> pb::ChildSpec {
    pb::ChildSpec {
        id: spec.id.to_string(),
        command: spec.command.clone(),
        restart: restart_policy(spec.restart) as i32,
        backoff: Some(pb::Backoff {
            initial: Some(duration(spec.backoff.initial)),
            max: Some(duration(spec.backoff.max)),
            multiplier: spec.backoff.multiplier,
            jitter: Some(spec.backoff.jitter),
            reset_after: Some(duration(spec.backoff.reset_after)),
        }),
        restart_budget: Some(pb::RestartBudget {
            max: spec.restart_budget.max,
            window: Some(duration(spec.restart_budget.window)),
        }),
        stop_signal: spec.stop_signal.to_string(),
        stop_timeout: Some(duration(spec.stop_timeout)),
        env: spec.env.clone().into_iter().collect(),
        cwd: spec
            .cwd
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        depends_on: spec.depends_on.iter().map(ToString::to_string).collect(),
        criticality: criticality(spec.criticality) as i32,
        tags: spec.tags.clone(),
        autostart: Some(spec.autostart),
        ready_after: Some(duration(spec.ready_after)),
        success_codes: spec.success_codes.clone(),
        start_timeout: Some(duration(spec.start_timeout)),
        user: spec.user.clone().unwrap_or_default(),
        group: spec.group.clone().unwrap_or_default(),
        umask: spec.umask.map(|m| m.to_string()).unwrap_or_default(),
        rlimits: spec
            .rlimits
            .iter()
            .map(|(limit, value)| (limit.as_str().to_owned(), *value))
            .collect(),
        memory_max: spec.memory_max.map(|m| m.to_string()).unwrap_or_default(),
        cpu_max: spec.cpu_max.map(|c| c.to_string()).unwrap_or_default(),
        cpu_weight: spec.cpu_weight.map(u32::from).unwrap_or_default(),
        pids_max: spec.pids_max.unwrap_or_default(),
        logs: child_logs(&spec.logs),
        ready: spec.ready.as_ref().map(ready),
        health: spec.health.as_ref().map(probe),
        watchdog: spec.watchdog.map(duration),
        ready_timeout: Some(duration(spec.ready_timeout)),
    }
}

/// `None` when the child sets nothing of its own.
fn child_logs(logs: &ChildLogs) -> Option<pb::ChildLogs> {
    (*logs != ChildLogs::default()).then(|| pb::ChildLogs {
        memory_bytes: logs.memory_bytes.map_or(0, |b| b.0),
        max_bytes: logs.max_bytes.map(|b| b.0),
        backups: logs.backups,
        rate_burst: logs.rate_burst,
        rate_interval: logs.rate_interval.map(duration),
    })
}

fn child_logs_from_pb(raw: pb::ChildLogs) -> Result<ChildLogs, ControlError> {
    Ok(ChildLogs {
        memory_bytes: (raw.memory_bytes != 0).then_some(Bytes(raw.memory_bytes)),
        max_bytes: raw.max_bytes.map(Bytes),
        backups: raw.backups,
        rate_burst: raw.rate_burst,
        rate_interval: raw
            .rate_interval
            .map(|d| from_duration("logs.rate_interval", Some(d), Duration::ZERO))
            .transpose()?,
    })
}

/// The public face of `spec` for clients outside the gateway (the CLI's
/// `sgw add FILE`): `pb::ChildSpec::from(&spec)`. Trait impls are visible
/// wherever both types are, so this module can stay private to the gateway.
impl From<&ChildSpec> for pb::ChildSpec {
    fn from(child: &ChildSpec) -> Self {
        spec(child)
    }
}

pub fn record(record: &ChildRecord) -> pb::ChildRecord {
    pb::ChildRecord {
        child_id: record.id.to_string(),
        state: state(record.state) as i32,
        pid: record.pid,
        generation: record.generation,
        restart_count: record.restart_count,
        last_exit: record.last_exit.map(exit),
        backoff_until: record.backoff_until.map(timestamp),
        budget: Some(budget(&record.budget)),
        criticality: criticality(record.spec.criticality) as i32,
        tags: record.spec.tags.clone(),
        since: Some(timestamp(record.since)),
        detail: record.detail.clone(),
        spec: Some(spec(&record.spec)),
        last_failure: record.last_failure.as_ref().map(failure),
        waiting_for: record.waiting_for.iter().map(pending_dependency).collect(),
        usage: record.usage.as_ref().map(usage),
        status_text: record.status_text.clone(),
    }
}

pub fn usage(usage: &ResourceUsage) -> pb::ResourceUsage {
    pb::ResourceUsage {
        cpu_time: Some(duration(usage.cpu_time)),
        memory_bytes: usage.memory_bytes,
        processes: usage.processes,
        oom_kills: usage.oom_kills,
    }
}

/// The inverse of `usage` above, for clients (`sgw state`, `sgw child`).
impl From<&pb::ResourceUsage> for ResourceUsage {
    fn from(raw: &pb::ResourceUsage) -> Self {
        ResourceUsage {
            cpu_time: raw
                .cpu_time
                .and_then(|d| Duration::try_from(d).ok())
                .unwrap_or_default(),
            memory_bytes: raw.memory_bytes,
            processes: raw.processes,
            oom_kills: raw.oom_kills,
        }
    }
}

pub fn containment(info: &ContainmentInfo) -> pb::Containment {
    pb::Containment {
        mode: match info.kind {
            ContainmentKind::Cgroup => pb::ContainmentMode::Cgroup,
            ContainmentKind::Subreaper => pb::ContainmentMode::Subreaper,
        } as i32,
        detail: info.detail.clone(),
        controllers: info.controllers.clone(),
    }
}

/// The inverse of `containment` above, for clients (`sgw info` prints it with
/// `ContainmentInfo`'s `Display`). The raw mode number is the error for a
/// mode this build does not know (a newer server's) or UNSPECIFIED.
impl TryFrom<&pb::Containment> for ContainmentInfo {
    type Error = i32;
    fn try_from(raw: &pb::Containment) -> Result<Self, i32> {
        let kind = match pb::ContainmentMode::try_from(raw.mode) {
            Ok(pb::ContainmentMode::Cgroup) => ContainmentKind::Cgroup,
            Ok(pb::ContainmentMode::Subreaper) => ContainmentKind::Subreaper,
            Ok(pb::ContainmentMode::Unspecified) | Err(_) => return Err(raw.mode),
        };
        Ok(ContainmentInfo {
            kind,
            detail: raw.detail.clone(),
            controllers: raw.controllers.clone(),
        })
    }
}

pub fn snapshot(snapshot: &StateSnapshot) -> pb::GetStateResponse {
    pb::GetStateResponse {
        children: snapshot.children.iter().map(record).collect(),
        state_generation: snapshot.state_generation,
        last_event_sequence: snapshot.last_event_sequence,
        last_log_sequence: snapshot.last_log_sequence,
        dropped_event_count: snapshot.dropped_events,
        dropped_log_count: snapshot.dropped_logs,
        generated_at: Some(timestamp(SystemTime::now())),
        journal_id: snapshot.journal_id.clone(),
    }
}

/// `replayed`: the report is the first answer to a repeated request id.
pub fn report(report: &CommandReport, replayed: bool) -> pb::CommandResult {
    pb::CommandResult {
        command_id: report.command_id.clone(),
        command: command_type(report.command) as i32,
        outcome: report.outcome.clone(),
        child: report.child.as_ref().map(record),
        completed_at: Some(timestamp(report.completed_at)),
        replayed,
    }
}

/// `GetInfo`'s answer without the caller.
pub fn info(target: &TargetInfo, limits: &Limits) -> pb::GetInfoResponse {
    pb::GetInfoResponse {
        protocol_version: pb::PROTOCOL_VERSION.to_owned(),
        target_id: target.target_id.clone(),
        display_name: target.display_name.clone(),
        server_version: target.server_version.clone(),
        supported_commands: target
            .supported_commands
            .iter()
            .map(|&kind| pb::SupportedCommand {
                command: command_type(kind) as i32,
                name: kind.as_str().to_owned(),
                idempotent: kind.is_idempotent(),
                destructive: kind.is_destructive(),
            })
            .collect(),
        limits: Some(pb::Limits {
            max_request_bytes: limits.max_request_bytes as u64,
            max_response_bytes: limits.max_response_bytes as u64,
            max_connections: u32::try_from(limits.shares.max_connections).unwrap_or(u32::MAX),
            idle_timeout: Some(duration(limits.idle_timeout)),
            max_connections_per_uid: u32::try_from(limits.shares.per_uid).unwrap_or(u32::MAX),
            reserved_connections: u32::try_from(limits.shares.reserved).unwrap_or(u32::MAX),
            handshake_timeout: Some(duration(limits.handshake_timeout)),
            request_timeout: Some(duration(limits.request_timeout)),
            max_streams_per_uid: u32::try_from(limits.max_streams_per_uid).unwrap_or(u32::MAX),
            max_tail_bytes: limits.max_tail_bytes as u64,
        }),
        caller: None,
        containment: Some(containment(&target.containment)),
        journal_id: target.journal_id.clone(),
    }
}

pub fn peer(peer: &Caller) -> pb::PeerIdentity {
    pb::PeerIdentity {
        uid: peer.uid,
        gid: peer.gid,
        pid: peer.pid.unwrap_or_default(),
        user_name: peer.user_name.clone().unwrap_or_default(),
        connection_id: peer.connection_id,
    }
}

pub fn audit_record(record: &AuditRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        time: Some(timestamp(
            SystemTime::UNIX_EPOCH + Duration::from_millis(record.time_ms),
        )),
        caller: Some(pb::PeerIdentity {
            uid: record.uid,
            gid: record.gid,
            pid: record.pid.unwrap_or_default(),
            user_name: record.user_name.clone().unwrap_or_default(),
            connection_id: record.connection_id,
        }),
        executable: record.executable.clone().unwrap_or_default(),
        same_process: record.same_process,
        method: record.method.clone(),
        request_id: record.request_id.clone(),
        requested_by: record.requested_by.clone(),
        reason: record.reason.clone(),
        decision: record.decision.to_owned(),
        outcome: record.outcome.clone(),
    }
}

pub fn gap(gap: &Gap) -> pb::Gap {
    pb::Gap {
        first_missing: gap.first_missing,
        last_missing: gap.last_missing,
        reason: match gap.reason {
            GapReason::Evicted => pb::GapReason::Evicted,
            GapReason::Lagged => pb::GapReason::Lagged,
            GapReason::Lost => pb::GapReason::Lost,
        } as i32,
    }
}

pub fn event_type(t: EventType) -> pb::EventType {
    use pb::EventType as P;
    match t {
        EventType::ChildAdded => P::ChildAdded,
        EventType::WaitingForDependencies => P::WaitingForDependencies,
        EventType::ChildStarting => P::ChildStarting,
        EventType::ChildRunning => P::ChildRunning,
        EventType::SpawnFailed => P::SpawnFailed,
        EventType::ChildExited => P::ChildExited,
        EventType::RestartScheduled => P::RestartScheduled,
        EventType::ChildStopping => P::ChildStopping,
        EventType::StopEscalated => P::StopEscalated,
        EventType::BackoffReset => P::BackoffReset,
        EventType::ChildQuarantined => P::ChildQuarantined,
        EventType::ChildPaused => P::ChildPaused,
        EventType::ChildResumed => P::ChildResumed,
        EventType::ChildRemoved => P::ChildRemoved,
        EventType::CommandAccepted => P::CommandAccepted,
        EventType::CommandCompleted => P::CommandCompleted,
        EventType::ShutdownStarted => P::ShutdownStarted,
        EventType::ShutdownCompleted => P::ShutdownCompleted,
        EventType::DependencyUnavailable => P::DependencyUnavailable,
        EventType::ChildBlocked => P::ChildBlocked,
        EventType::ChildUnhealthy => P::ChildUnhealthy,
        EventType::LeftoverKilled => P::LeftoverKilled,
        EventType::OomKilled => P::OomKilled,
        EventType::RuntimeRestored => P::RuntimeRestored,
        EventType::ChangePlanned => P::ChangePlanned,
        EventType::ChildUpdated => P::ChildUpdated,
    }
}

/// Event type filters from a request; UNSPECIFIED and unknown numbers are
/// refused rather than silently matching nothing.
pub fn event_types(raw: &[i32]) -> Result<Vec<EventType>, ControlError> {
    raw.iter()
        .map(|&n| {
            EventType::ALL
                .into_iter()
                .find(|t| event_type(*t) as i32 == n)
                .ok_or_else(|| ControlError::InvalidArgument {
                    field: "event_types".to_owned(),
                    message: format!("{n} is not a known EventType"),
                })
        })
        .collect()
}

fn severity(s: Severity) -> pb::Severity {
    match s {
        Severity::Info => pb::Severity::Info,
        Severity::Warning => pb::Severity::Warning,
        Severity::Error => pb::Severity::Error,
    }
}

fn detail(kind: &EventKind) -> Detail {
    match kind {
        EventKind::ChildAdded => Detail::ChildAdded(pb::ChildAdded {}),
        EventKind::WaitingForDependencies { pending } => {
            Detail::WaitingForDependencies(pb::WaitingForDependencies {
                pending: pending.iter().map(ToString::to_string).collect(),
            })
        }
        EventKind::ChildStarting { generation, pid } => Detail::ChildStarting(pb::ChildStarting {
            generation: *generation,
            pid: *pid,
        }),
        EventKind::ChildRunning { generation, pid } => Detail::ChildRunning(pb::ChildRunning {
            generation: *generation,
            pid: *pid,
        }),
        EventKind::SpawnFailed { generation, error } => Detail::SpawnFailed(pb::SpawnFailed {
            generation: *generation,
            error: error.to_string(),
            spawn: Some(spawn_error(error)),
        }),
        EventKind::DependencyUnavailable { dependency } => {
            Detail::DependencyUnavailable(pb::DependencyUnavailable {
                dependency: Some(pending_dependency(dependency)),
            })
        }
        EventKind::ChildBlocked { waited, pending } => Detail::ChildBlocked(pb::ChildBlocked {
            waited: Some(duration(*waited)),
            pending: pending.iter().map(pending_dependency).collect(),
        }),
        EventKind::ChildExited {
            generation,
            pid,
            exit: e,
            uptime,
        } => Detail::ChildExited(pb::ChildExited {
            generation: *generation,
            pid: *pid,
            exit: Some(exit(*e)),
            uptime: Some(duration(*uptime)),
        }),
        EventKind::RestartScheduled { attempt, delay } => {
            Detail::RestartScheduled(pb::RestartScheduled {
                attempt: *attempt,
                delay: Some(duration(*delay)),
            })
        }
        EventKind::ChildStopping {
            generation,
            signal,
            timeout,
        } => Detail::ChildStopping(pb::ChildStopping {
            generation: *generation,
            signal: signal.to_string(),
            timeout: Some(duration(*timeout)),
        }),
        EventKind::StopEscalated { generation, pid } => Detail::StopEscalated(pb::StopEscalated {
            generation: *generation,
            pid: *pid,
        }),
        EventKind::ChildUnhealthy { generation, cause } => {
            Detail::ChildUnhealthy(pb::ChildUnhealthy {
                generation: *generation,
                cause: Some(unhealthy(cause)),
            })
        }
        EventKind::BackoffReset => Detail::BackoffReset(pb::BackoffReset {}),
        EventKind::ChildQuarantined { reason } => Detail::ChildQuarantined(pb::ChildQuarantined {
            reason: reason.to_string(),
            budget_exhausted: matches!(reason, QuarantineReason::BudgetExhausted { .. }),
            after: match reason {
                QuarantineReason::BudgetExhausted { after, .. } => Some(failure(after)),
                QuarantineReason::Command => None,
            },
        }),
        EventKind::ChildPaused => Detail::ChildPaused(pb::ChildPaused {}),
        EventKind::ChildResumed => Detail::ChildResumed(pb::ChildResumed {}),
        EventKind::ChildRemoved => Detail::ChildRemoved(pb::ChildRemoved {}),
        EventKind::CommandAccepted {
            command_id,
            command,
            request_id,
            requested_by,
            reason,
        } => Detail::CommandAccepted(pb::CommandAccepted {
            command_id: command_id.clone(),
            command: command_type(*command) as i32,
            request_id: request_id.clone(),
            requested_by: requested_by.clone(),
            reason: reason.clone(),
        }),
        EventKind::CommandCompleted {
            command_id,
            command,
            outcome,
            error_code,
        } => Detail::CommandCompleted(pb::CommandCompleted {
            command_id: command_id.clone(),
            command: command_type(*command) as i32,
            outcome: outcome.clone(),
            error_code: error_code.as_deref().unwrap_or_default().to_owned(),
        }),
        EventKind::ShutdownStarted => Detail::ShutdownStarted(pb::ShutdownStarted {}),
        EventKind::ShutdownCompleted => Detail::ShutdownCompleted(pb::ShutdownCompleted {}),
        EventKind::LeftoverKilled {
            processes,
            found_in,
        } => Detail::LeftoverKilled(pb::LeftoverKilled {
            processes: processes.iter().map(leftover_process).collect(),
            found_in: found_in.clone(),
        }),
        EventKind::OomKilled {
            generation,
            oom_kills,
            memory_max,
        } => Detail::OomKilled(pb::OomKilled {
            generation: *generation,
            oom_kills: *oom_kills,
            memory_max: memory_max.map(|m| m.to_string()).unwrap_or_default(),
        }),
        EventKind::RuntimeRestored {
            paused,
            quarantined,
            added,
            removed,
            overridden,
        } => {
            let ids = |ids: &[ChildId]| ids.iter().map(ToString::to_string).collect();
            Detail::RuntimeRestored(pb::RuntimeRestored {
                paused: ids(paused),
                quarantined: ids(quarantined),
                added: ids(added),
                removed: ids(removed),
                overridden: ids(overridden),
            })
        }
        EventKind::ChangePlanned { command, plan } => Detail::ChangePlanned(pb::ChangePlanned {
            command: command_type(*command) as i32,
            plan: Some(change_plan(plan)),
        }),
        EventKind::ChildUpdated { changed, restarted } => Detail::ChildUpdated(pb::ChildUpdated {
            changed: changed.clone(),
            restarted: *restarted,
        }),
    }
}

/// A reload's or scale's plan.
pub fn change_plan(plan: &ChangePlan) -> pb::ChangePlan {
    let ids = |ids: &[ChildId]| ids.iter().map(ToString::to_string).collect();
    pb::ChangePlan {
        add: ids(&plan.add),
        update: plan
            .update
            .iter()
            .map(|update| pb::ChildUpdate {
                child_id: update.id.to_string(),
                changed: update.changed.clone(),
                restart: update.restart,
            })
            .collect(),
        remove: ids(&plan.remove),
        unchanged: ids(&plan.unchanged),
        not_applied: plan.not_applied.clone(),
    }
}

fn leftover_process(process: &LeftoverProcess) -> pb::LeftoverProcess {
    pb::LeftoverProcess {
        pid: process.pid,
        command: process.command.clone(),
    }
}

pub fn event(record: &Record<Event>) -> pb::Event {
    pb::Event {
        sequence: record.sequence,
        time: Some(timestamp(record.time)),
        child_id: record
            .body
            .child_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        event_type: event_type(record.body.kind.event_type()) as i32,
        severity: severity(record.body.kind.severity()) as i32,
        detail: Some(detail(&record.body.kind)),
    }
}

pub fn log_line(record: &Record<LogLine>) -> pb::LogLine {
    pb::LogLine {
        sequence: record.sequence,
        time: Some(timestamp(record.time)),
        child_id: record.body.child_id.to_string(),
        stream: match record.body.stream {
            LogStream::Stdout => pb::LogStream::Stdout,
            LogStream::Stderr => pb::LogStream::Stderr,
        } as i32,
        text: record.body.text.clone(),
        truncated: record.body.truncated,
        generation: record.body.generation,
        suppressed: record.body.suppressed,
    }
}

fn spec_error(field: &str, message: impl Into<String>) -> ControlError {
    ControlError::InvalidSpec(SpecError::new(field, message))
}

fn from_duration(
    field: &str,
    d: Option<prost_types::Duration>,
    default: Duration,
) -> Result<Duration, ControlError> {
    match d {
        None => Ok(default),
        Some(d) => {
            Duration::try_from(d).map_err(|_| spec_error(field, "must be a non-negative duration"))
        }
    }
}

/// A `ChildSpec` from `AddChild`: unset fields take the same defaults as
/// the config file. Field-level rules are checked here; cross-field rules
/// by `ChildSpec::validate` when the request is built.
pub fn spec_from_pb(raw: pb::ChildSpec) -> Result<ChildSpec, ControlError> {
    let id = ChildId::new(&raw.id).map_err(|e| spec_error("id", e.to_string()))?;
    let mut spec = ChildSpec::new(id, raw.command);
    spec.restart = match pb::RestartPolicy::try_from(raw.restart) {
        Ok(pb::RestartPolicy::Unspecified) => RestartPolicy::default(),
        Ok(pb::RestartPolicy::Always) => RestartPolicy::Always,
        Ok(pb::RestartPolicy::OnFailure) => RestartPolicy::OnFailure,
        Ok(pb::RestartPolicy::Never) => RestartPolicy::Never,
        Err(_) => return Err(spec_error("restart", "unknown RestartPolicy")),
    };
    if let Some(b) = raw.backoff {
        let defaults = Backoff::default();
        spec.backoff = Backoff {
            initial: from_duration("backoff.initial", b.initial, defaults.initial)?,
            max: from_duration("backoff.max", b.max, defaults.max)?,
            multiplier: if b.multiplier == 0.0 {
                defaults.multiplier
            } else {
                b.multiplier
            },
            jitter: b.jitter.unwrap_or(defaults.jitter),
            reset_after: from_duration("backoff.reset_after", b.reset_after, defaults.reset_after)?,
        };
    }
    if let Some(b) = raw.restart_budget {
        let defaults = RestartBudget::default();
        spec.restart_budget = RestartBudget {
            max: if b.max == 0 { defaults.max } else { b.max },
            window: from_duration("restart_budget.window", b.window, defaults.window)?,
        };
    }
    if !raw.stop_signal.is_empty() {
        spec.stop_signal = raw
            .stop_signal
            .parse()
            .map_err(|message: String| spec_error("stop_signal", message))?;
    }
    spec.stop_timeout = from_duration("stop_timeout", raw.stop_timeout, spec.stop_timeout)?;
    spec.env = raw.env.into_iter().collect();
    if !raw.cwd.is_empty() {
        spec.cwd = Some(raw.cwd.into());
    }
    spec.depends_on = raw
        .depends_on
        .iter()
        .map(|d| ChildId::new(d).map_err(|e| spec_error("depends_on", e.to_string())))
        .collect::<Result<_, _>>()?;
    spec.criticality = match pb::Criticality::try_from(raw.criticality) {
        Ok(pb::Criticality::Unspecified) => Criticality::default(),
        Ok(pb::Criticality::Critical) => Criticality::Critical,
        Ok(pb::Criticality::Standard) => Criticality::Standard,
        Ok(pb::Criticality::BestEffort) => Criticality::BestEffort,
        Err(_) => return Err(spec_error("criticality", "unknown Criticality")),
    };
    spec.tags = raw.tags;
    spec.autostart = raw.autostart.unwrap_or(true);
    spec.ready_after = from_duration("ready_after", raw.ready_after, Duration::ZERO)?;
    spec.start_timeout = from_duration("start_timeout", raw.start_timeout, spec.start_timeout)?;
    if !raw.success_codes.is_empty() {
        spec.success_codes = raw.success_codes;
    }
    spec.user = Some(raw.user).filter(|u| !u.is_empty());
    spec.group = Some(raw.group).filter(|g| !g.is_empty());
    if !raw.umask.is_empty() {
        spec.umask = Some(Umask::try_from(raw.umask).map_err(|m| spec_error("umask", m))?);
    }
    for (name, value) in raw.rlimits {
        let limit = Rlimit::ALL
            .into_iter()
            .find(|l| l.as_str() == name)
            .ok_or_else(|| spec_error("rlimits", format!("unknown limit {:?}", echo(&name))))?;
        spec.rlimits.insert(limit, value);
    }
    if !raw.memory_max.is_empty() {
        spec.memory_max = Some(
            raw.memory_max
                .parse::<Bytes>()
                .map_err(|m| spec_error("memory_max", m))?,
        );
    }
    if !raw.cpu_max.is_empty() {
        spec.cpu_max = Some(CpuMax::try_from(raw.cpu_max).map_err(|m| spec_error("cpu_max", m))?);
    }
    if raw.cpu_weight != 0 {
        spec.cpu_weight = Some(
            u16::try_from(raw.cpu_weight)
                .map_err(|_| spec_error("cpu_weight", "must be between 1 and 10000"))?,
        );
    }
    if raw.pids_max != 0 {
        spec.pids_max = Some(raw.pids_max);
    }
    if let Some(logs) = raw.logs {
        spec.logs = child_logs_from_pb(logs)?;
    }
    spec.ready = raw.ready.map(ready_from_pb).transpose()?;
    spec.health = raw.health.map(|p| probe_from_pb("health", p)).transpose()?;
    spec.watchdog = raw
        .watchdog
        .map(|d| from_duration("watchdog", Some(d), Duration::ZERO))
        .transpose()?;
    spec.ready_timeout = from_duration("ready_timeout", raw.ready_timeout, spec.ready_timeout)?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pb::ChildSpec::from` (what `sgw add FILE` sends) and `spec_from_pb`
    /// (what the server makes of it) round-trip every field.
    #[test]
    fn spec_round_trips_through_the_public_conversion() {
        let mut original = ChildSpec::new(
            ChildId::new("web").expect("id"),
            vec!["/bin/sh".into(), "-c".into(), "exit 3".into()],
        );
        original.restart = RestartPolicy::Always;
        original.backoff.initial = Duration::from_millis(250);
        original.backoff.jitter = 0.0;
        original.restart_budget.max = 9;
        original.stop_signal = "SIGINT".parse().expect("signal");
        original.env.insert("A".into(), "1".into());
        original.cwd = Some("/tmp".into());
        original.depends_on = vec![ChildId::new("db").expect("id")];
        original.criticality = Criticality::BestEffort;
        original.tags = vec!["x".into()];
        original.autostart = false;
        original.ready_after = Duration::from_secs(2);
        original.success_codes = vec![0, 3];
        original.start_timeout = Duration::from_secs(5);
        original.user = Some("www".into());
        original.group = Some("100".into());
        original.umask = Some(Umask::try_from("0027".to_owned()).expect("umask"));
        original.rlimits.insert(Rlimit::Nofile, 4096);
        original.rlimits.insert(Rlimit::Core, 0);
        original.memory_max = Some(Bytes(512 << 20));
        original.cpu_max = Some(CpuMax { percent: 150 });
        original.cpu_weight = Some(200);
        original.pids_max = Some(64);
        original.logs = ChildLogs {
            memory_bytes: Some(Bytes(2 << 20)),
            max_bytes: Some(Bytes(0)),
            backups: Some(2),
            rate_burst: Some(0),
            rate_interval: Some(Duration::from_secs(5)),
        };
        original.ready = Some(Ready::Probe(Probe {
            threshold: Some(2),
            ..Probe::new(Check::Http(
                HttpTarget::try_from("http://127.0.0.1:8080/healthz".to_owned()).expect("url"),
            ))
        }));
        original.health = Some(Probe::new(Check::Exec(vec!["/bin/check".into()])));
        original.watchdog = Some(Duration::from_secs(10));
        original.ready_timeout = Duration::from_secs(30);
        let sent = pb::ChildSpec::from(&original);
        assert_eq!(sent.memory_max, "512M");
        assert_eq!(sent.cpu_max, "150%");
        assert_eq!(spec_from_pb(sent), Ok(original));
    }

    /// Unset limits are empty strings and zeros on the wire, and come back
    /// unset (not as a zero limit).
    #[test]
    fn unset_limits_round_trip_as_unset() {
        let original = ChildSpec::new(ChildId::new("web").expect("id"), vec!["true".into()]);
        let sent = pb::ChildSpec::from(&original);
        assert_eq!(
            (
                sent.memory_max.as_str(),
                sent.cpu_max.as_str(),
                sent.cpu_weight,
                sent.pids_max
            ),
            ("", "", 0, 0)
        );
        assert_eq!(spec_from_pb(sent), Ok(original.clone()));
        assert_eq!(original.limits(), crate::model::CgroupLimits::default());
    }

    /// A limit that does not parse is an InvalidSpec naming its field, as
    /// every other field's is.
    #[test]
    fn bad_limits_are_invalid_spec_naming_the_field() {
        let base = pb::ChildSpec::from(&ChildSpec::new(
            ChildId::new("web").expect("id"),
            vec!["true".into()],
        ));
        for (raw, field) in [
            (
                pb::ChildSpec {
                    memory_max: "12X".into(),
                    ..base.clone()
                },
                "memory_max",
            ),
            (
                pb::ChildSpec {
                    cpu_max: "50".into(),
                    ..base.clone()
                },
                "cpu_max",
            ),
            (
                pb::ChildSpec {
                    cpu_weight: 70_000,
                    ..base.clone()
                },
                "cpu_weight",
            ),
        ] {
            match spec_from_pb(raw) {
                Err(ControlError::InvalidSpec(error)) => assert_eq!(error.field, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    /// Usage, containment and the two new events convert field by field;
    /// usage and containment come back to the domain for the CLI.
    #[test]
    fn usage_containment_and_new_events_convert() {
        let measured = ResourceUsage {
            cpu_time: Duration::from_millis(1250),
            memory_bytes: 12 << 20,
            processes: 3,
            oom_kills: Some(1),
        };
        let sent = usage(&measured);
        assert_eq!(sent.oom_kills, Some(1));
        assert_eq!(ResourceUsage::from(&sent), measured);
        let info = ContainmentInfo {
            kind: ContainmentKind::Cgroup,
            detail: "/sys/fs/cgroup/sgw".into(),
            controllers: vec!["cpu".into(), "memory".into()],
        };
        let sent = containment(&info);
        assert_eq!(sent.mode, pb::ContainmentMode::Cgroup as i32);
        assert_eq!(ContainmentInfo::try_from(&sent), Ok(info));
        assert_eq!(
            ContainmentInfo::try_from(&pb::Containment::default()),
            Err(0)
        );
        let leftover = EventKind::LeftoverKilled {
            processes: vec![LeftoverProcess {
                pid: 42,
                command: "sleep 1000".into(),
            }],
            found_in: "/sys/fs/cgroup/sgw/web".into(),
        };
        match detail(&leftover) {
            Detail::LeftoverKilled(d) => {
                assert_eq!(d.processes[0].pid, 42);
                assert_eq!(d.processes[0].command, "sleep 1000");
                assert_eq!(d.found_in, "/sys/fs/cgroup/sgw/web");
            }
            other => panic!("{other:?}"),
        }
        let oom = EventKind::OomKilled {
            generation: 2,
            oom_kills: 1,
            memory_max: Some(Bytes(64 << 20)),
        };
        match detail(&oom) {
            Detail::OomKilled(d) => assert_eq!(
                (d.generation, d.oom_kills, d.memory_max.as_str()),
                (2, 1, "64M")
            ),
            other => panic!("{other:?}"),
        }
        for t in [EventType::LeftoverKilled, EventType::OomKilled] {
            assert_eq!(event_types(&[event_type(t) as i32]), Ok(vec![t]));
        }
    }
}
