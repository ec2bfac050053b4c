//! The one-line formats of the journals: time, sequence and child for
//! events; time, child and stream for log lines; gap lines for losses.

use super::{command_name, exit, pb_duration, short, time};
use crate::pb;
use crate::pb::event::Detail;

/// One event: time, sequence, child (`-` for tree-wide), what happened.
pub fn event(event: &pb::Event) -> String {
    let child = if event.child_id.is_empty() {
        "-"
    } else {
        &event.child_id
    };
    let what = event.detail.as_ref().map_or_else(
        || short(event.event_type, pb::EventType::as_str_name, "EVENT_TYPE_"),
        describe,
    );
    format!(
        "{} {:>6} {child:<12} {what}",
        time(event.time.as_ref()),
        event.sequence
    )
}

/// What happened, without time, sequence or child (`sgw top` shows those in
/// columns of its own).
pub fn describe(detail: &Detail) -> String {
    match detail {
        Detail::ChildAdded(_) => "added".into(),
        Detail::WaitingForDependencies(d) => format!("waiting for {}", d.pending.join(", ")),
        Detail::ChildStarting(d) => {
            format!("starting (generation {}, pid {})", d.generation, d.pid)
        }
        Detail::ChildRunning(d) => format!("running (generation {}, pid {})", d.generation, d.pid),
        Detail::SpawnFailed(d) => {
            format!("spawn failed (generation {}): {}", d.generation, d.error)
        }
        Detail::DependencyUnavailable(d) => match &d.dependency {
            Some(p) => format!(
                "dependency {} will not become running by itself: {}",
                p.child_id, p.reason
            ),
            None => "dependency unavailable".into(),
        },
        Detail::ChildBlocked(d) => format!(
            "blocked after {}: waiting for {}",
            pb_duration(d.waited.as_ref()),
            super::pending(&d.pending)
        ),
        Detail::ChildUnhealthy(d) => format!(
            "unhealthy, stopping it (generation {}): {}",
            d.generation,
            d.cause.as_ref().map_or("", |c| c.description.as_str())
        ),
        Detail::ChildExited(d) => format!(
            "exited: {} after {} (generation {}, pid {})",
            exit(d.exit.as_ref()),
            pb_duration(d.uptime.as_ref()),
            d.generation,
            d.pid
        ),
        Detail::RestartScheduled(d) => format!(
            "restart #{} in {}",
            d.attempt,
            pb_duration(d.delay.as_ref())
        ),
        Detail::ChildStopping(d) => format!(
            "stopping with {} (generation {}, SIGKILL after {})",
            d.signal,
            d.generation,
            pb_duration(d.timeout.as_ref())
        ),
        Detail::StopEscalated(d) => format!(
            "stop timed out: process group {} killed (generation {})",
            d.pid, d.generation
        ),
        Detail::BackoffReset(_) => "backoff reset".into(),
        Detail::ChildQuarantined(d) => format!("quarantined: {}", d.reason),
        Detail::ChildPaused(_) => "paused".into(),
        Detail::ChildResumed(_) => "resumed".into(),
        Detail::ChildRemoved(_) => "removed".into(),
        Detail::CommandAccepted(d) => {
            let mut text = format!(
                "command {} accepted: {} by {}",
                d.command_id,
                command_name(d.command),
                d.requested_by
            );
            if !d.reason.is_empty() {
                text.push_str(&format!(" ({})", d.reason));
            }
            if !d.request_id.is_empty() {
                text.push_str(&format!(" [request {}]", d.request_id));
            }
            text
        }
        Detail::CommandCompleted(d) if d.error_code.is_empty() => {
            format!("command {} done: {}", d.command_id, d.outcome)
        }
        Detail::CommandCompleted(d) => format!(
            "command {} failed: {} [{}]",
            d.command_id, d.outcome, d.error_code
        ),
        Detail::ShutdownStarted(_) => "shutdown started".into(),
        Detail::ShutdownCompleted(_) => "shutdown completed".into(),
        Detail::LeftoverKilled(d) => {
            let processes: Vec<String> = d
                .processes
                .iter()
                .map(|p| format!("{} ({})", p.pid, p.command))
                .collect();
            format!(
                "killed {} leftover process{} of a previous instance in {}: {}",
                d.processes.len(),
                if d.processes.len() == 1 { "" } else { "es" },
                d.found_in,
                processes.join(", ")
            )
        }
        Detail::ChangePlanned(d) => {
            let what = match pb::CommandType::try_from(d.command) {
                Ok(pb::CommandType::ScaleChild) => "scale",
                _ => "reload",
            };
            let plan = d.plan.clone().unwrap_or_default();
            format!("{what} plan: {}", plan_line(&plan))
        }
        Detail::ChildUpdated(d) => format!(
            "spec updated ({}){}",
            d.changed.join(", "),
            if d.restarted {
                "; restarted for it"
            } else {
                "; applied without a restart"
            }
        ),
        Detail::RuntimeRestored(d) => {
            let parts: Vec<String> = [
                ("paused", &d.paused),
                ("quarantined", &d.quarantined),
                ("added", &d.added),
                ("removed", &d.removed),
                ("config overrides", &d.overridden),
            ]
            .iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(what, ids)| format!("{what}: {}", ids.join(", ")))
            .collect();
            format!(
                "runtime changes from before the restart applied again ({})",
                parts.join("; ")
            )
        }
        Detail::OomKilled(d) => {
            let limit = if d.memory_max.is_empty() {
                String::new()
            } else {
                format!(" over memory_max {}", d.memory_max)
            };
            format!(
                "OOM-killed{limit} (generation {}, {} OOM kill{} in its cgroup)",
                d.generation,
                d.oom_kills,
                if d.oom_kills == 1 { "" } else { "s" }
            )
        }
    }
}

/// `-- gap: events 5..9 were not received (evicted) --`.
pub fn gap(gap: &pb::Gap, what: &str) -> String {
    let reason = short(gap.reason, pb::GapReason::as_str_name, "GAP_REASON_");
    let why = match reason.as_str() {
        "evicted" => "no longer retained by the server",
        "lagged" => "this client fell too far behind",
        _ => "unknown reason",
    };
    format!(
        "-- gap: {what} {}..{} were not received ({reason}: {why}) --",
        gap.first_missing, gap.last_missing
    )
}

/// One captured line: time, child and stream, text.
pub fn log_line(line: &pb::LogLine) -> String {
    let stream = match pb::LogStream::try_from(line.stream) {
        Ok(pb::LogStream::Stderr) => "err",
        _ => "out",
    };
    let more = if line.suppressed > 0 {
        " [suppressed]"
    } else if line.truncated {
        " [truncated]"
    } else {
        ""
    };
    format!(
        "{} {}[{stream}] {}{more}",
        time(line.time.as_ref()),
        line.child_id,
        line.text
    )
}

/// A change plan on one line: `add a, b; update c (command: restart);
/// remove d; 3 unchanged`.
fn plan_line(plan: &pb::ChangePlan) -> String {
    let mut parts = Vec::new();
    if !plan.add.is_empty() {
        parts.push(format!("add {}", plan.add.join(", ")));
    }
    if !plan.update.is_empty() {
        let updates: Vec<String> = plan
            .update
            .iter()
            .map(|u| {
                format!(
                    "{} ({}{})",
                    u.child_id,
                    u.changed.join(", "),
                    if u.restart { ": restart" } else { "" }
                )
            })
            .collect();
        parts.push(format!("update {}", updates.join(", ")));
    }
    if !plan.remove.is_empty() {
        parts.push(format!("remove {}", plan.remove.join(", ")));
    }
    if parts.is_empty() {
        parts.push("no change".to_owned());
    }
    parts.push(format!("{} unchanged", plan.unchanged.len()));
    if !plan.not_applied.is_empty() {
        parts.push(format!(
            "not applied until sgw restarts: {}",
            plan.not_applied.join("; ")
        ));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_events_read_as_sentences() {
        let leftover = Detail::LeftoverKilled(pb::LeftoverKilled {
            processes: vec![
                pb::LeftoverProcess {
                    pid: 41,
                    command: "sleep 1000".into(),
                },
                pb::LeftoverProcess {
                    pid: 42,
                    command: "worker --fork".into(),
                },
            ],
            found_in: "/sys/fs/cgroup/sgw/web".into(),
        });
        assert_eq!(
            describe(&leftover),
            "killed 2 leftover processes of a previous instance in /sys/fs/cgroup/sgw/web: \
             41 (sleep 1000), 42 (worker --fork)"
        );
        let oom = Detail::OomKilled(pb::OomKilled {
            generation: 3,
            oom_kills: 1,
            memory_max: "64M".into(),
        });
        assert_eq!(
            describe(&oom),
            "OOM-killed over memory_max 64M (generation 3, 1 OOM kill in its cgroup)"
        );
    }
}
