//! Human output: aligned tables for `state`, `child` and `info`, short
//! words for enum values; `journal` has the one-line-per-record formats.

mod journal;

pub use journal::{describe, event, gap, log_line};

use std::time::{Duration, SystemTime};

use crate::model::{ContainmentInfo, ResourceUsage};
use crate::pb;

/// `CHILD_STATE_RUNNING` → `running`: the proto name without its prefix.
fn short<E: TryFrom<i32>>(raw: i32, as_str: fn(&E) -> &'static str, prefix: &str) -> String {
    match E::try_from(raw) {
        Ok(value) => {
            let name = as_str(&value);
            name.strip_prefix(prefix)
                .unwrap_or(name)
                .to_ascii_lowercase()
        }
        Err(_) => raw.to_string(),
    }
}

pub fn state_name(raw: i32) -> String {
    short(raw, pb::ChildState::as_str_name, "CHILD_STATE_")
}

/// `EVENT_TYPE_CHILD_EXITED` → `child_exited`.
pub fn event_type_name(raw: i32) -> String {
    short(raw, pb::EventType::as_str_name, "EVENT_TYPE_")
}

fn command_name(raw: i32) -> String {
    short(raw, pb::CommandType::as_str_name, "COMMAND_TYPE_")
}

/// `2025-01-31T12:00:00.123Z`: always millisecond precision, so lines align.
pub fn time(t: Option<&prost_types::Timestamp>) -> String {
    match t.map(|t| SystemTime::try_from(*t)) {
        Some(Ok(time)) => humantime::format_rfc3339_millis(time).to_string(),
        Some(Err(_)) => t.map(ToString::to_string).unwrap_or_default(),
        None => "-".repeat(24),
    }
}

/// `250ms`, `3.01s`, `2m05s`, `1h02m`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if secs < 60 {
        let text = format!("{:.2}", d.as_secs_f64());
        format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// `512B`, `64K`, `12.3M`, `2G`: binary units, one decimal at most.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if n < 1024 {
        return format!("{n}B");
    }
    #[allow(clippy::cast_precision_loss)] // one decimal is shown
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    format!(
        "{}{}",
        text.strip_suffix(".0").unwrap_or(&text),
        UNITS[unit]
    )
}

/// The `CPU` and `MEM` cells: `1.2s`, `12.3M`; `-` without usage.
pub fn usage_cells(usage: Option<&pb::ResourceUsage>) -> (String, String) {
    match usage.map(ResourceUsage::from) {
        Some(u) => (duration(u.cpu_time), bytes(u.memory_bytes)),
        None => ("-".to_owned(), "-".to_owned()),
    }
}

fn pb_duration(d: Option<&prost_types::Duration>) -> String {
    d.and_then(|d| Duration::try_from(*d).ok())
        .map_or_else(|| "?".to_owned(), duration)
}

fn exit(exit: Option<&pb::ExitStatus>) -> String {
    exit.map_or_else(|| "-".to_owned(), |e| e.description.clone())
}

/// `db: autostart = false; cache: backoff`.
fn pending(pending: &[pb::PendingDependency]) -> String {
    pending
        .iter()
        .map(|p| format!("{}: {}", p.child_id, p.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The `state` table; the last column is not padded.
pub fn state_table(state: &pb::GetStateResponse) -> String {
    let mut rows = vec![[
        "ID".to_owned(),
        "STATE".to_owned(),
        "PID".to_owned(),
        "CPU".to_owned(),
        "MEM".to_owned(),
        "GEN".to_owned(),
        "RESTARTS".to_owned(),
        "LAST EXIT".to_owned(),
        "DETAIL".to_owned(),
    ]];
    for child in &state.children {
        let (cpu, mem) = usage_cells(child.usage.as_ref());
        rows.push([
            child.child_id.clone(),
            state_name(child.state),
            child.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            cpu,
            mem,
            child.generation.to_string(),
            child.restart_count.to_string(),
            exit(child.last_exit.as_ref()),
            detail(child, state.generated_at.as_ref()),
        ]);
    }
    table(&rows)
}

fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The record's own detail, or its sd_notify `STATUS=`, or when a BACKOFF
/// child restarts.
pub fn detail(child: &pb::ChildRecord, now: Option<&prost_types::Timestamp>) -> String {
    if !child.detail.is_empty() {
        return child.detail.clone();
    }
    if !child.status_text.is_empty() {
        return child.status_text.clone();
    }
    let until = child
        .backoff_until
        .and_then(|t| SystemTime::try_from(t).ok());
    let now = now.and_then(|t| SystemTime::try_from(*t).ok());
    match (until, now) {
        (Some(until), Some(now)) => {
            let wait = until.duration_since(now).unwrap_or_default();
            format!("restart in {}", duration(wait))
        }
        _ => String::new(),
    }
}

/// `sgw child ID`: the record, then the spec it runs with.
pub fn child(record: &pb::ChildRecord) -> String {
    let mut rows: Vec<[String; 2]> = vec![
        ["id".into(), record.child_id.clone()],
        ["state".into(), state_name(record.state)],
        ["since".into(), time(record.since.as_ref())],
        [
            "pid".into(),
            record.pid.map_or_else(|| "-".into(), |p| p.to_string()),
        ],
        ["generation".into(), record.generation.to_string()],
        ["restarts".into(), record.restart_count.to_string()],
        ["last exit".into(), exit(record.last_exit.as_ref())],
    ];
    if let Some(usage) = record.usage.as_ref().map(ResourceUsage::from) {
        rows.push(["cpu time".into(), duration(usage.cpu_time)]);
        rows.push(["memory".into(), bytes(usage.memory_bytes)]);
        rows.push(["processes".into(), usage.processes.to_string()]);
        rows.push([
            "oom kills".into(),
            usage
                .oom_kills
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
        ]);
    }
    if let Some(failure) = &record.last_failure {
        rows.push(["last failure".into(), failure.description.clone()]);
    }
    if !record.waiting_for.is_empty() {
        rows.push(["waiting for".into(), pending(&record.waiting_for)]);
    }
    if let Some(b) = &record.budget {
        rows.push([
            "budget".into(),
            format!(
                "{} of {} restarts used per {}{}",
                b.used,
                b.max,
                pb_duration(b.window.as_ref()),
                if b.exhausted { " (exhausted)" } else { "" }
            ),
        ]);
    }
    if record.backoff_until.is_some() {
        rows.push(["restart at".into(), time(record.backoff_until.as_ref())]);
    }
    if !record.detail.is_empty() {
        rows.push(["detail".into(), record.detail.clone()]);
    }
    if !record.status_text.is_empty() {
        rows.push(["status".into(), record.status_text.clone()]);
    }
    if let Some(spec) = &record.spec {
        rows.push(["command".into(), shell_words(&spec.command)]);
        rows.push([
            "restart".into(),
            short(
                spec.restart,
                pb::RestartPolicy::as_str_name,
                "RESTART_POLICY_",
            ),
        ]);
        if let Some(limits) = limits(spec) {
            rows.push(["limits".into(), limits]);
        }
        if !spec.depends_on.is_empty() {
            rows.push(["depends on".into(), spec.depends_on.join(", ")]);
            rows.push([
                "start timeout".into(),
                pb_duration(spec.start_timeout.as_ref()),
            ]);
        }
    }
    rows.push([
        "criticality".into(),
        short(
            record.criticality,
            pb::Criticality::as_str_name,
            "CRITICALITY_",
        ),
    ]);
    if !record.tags.is_empty() {
        rows.push(["tags".into(), record.tags.join(", ")]);
    }
    table(&rows)
}

/// `memory_max 512M, cpu_max 50%, cpu_weight 200, pids_max 64`: the cgroup
/// limits that are set, or `None`.
fn limits(spec: &pb::ChildSpec) -> Option<String> {
    let mut set = Vec::new();
    if !spec.memory_max.is_empty() {
        set.push(format!("memory_max {}", spec.memory_max));
    }
    if !spec.cpu_max.is_empty() {
        set.push(format!("cpu_max {}", spec.cpu_max));
    }
    if spec.cpu_weight != 0 {
        set.push(format!("cpu_weight {}", spec.cpu_weight));
    }
    if spec.pids_max != 0 {
        set.push(format!("pids_max {}", spec.pids_max));
    }
    (!set.is_empty()).then(|| set.join(", "))
}

/// A command line as a person would type it (quoted where needed).
fn shell_words(words: &[String]) -> String {
    let quote = |w: &String| {
        if !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
        {
            w.clone()
        } else {
            format!("'{}'", w.replace('\'', r"'\''"))
        }
    };
    words.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// `sgw info`.
pub fn info(info: &pb::GetInfoResponse, socket: &std::path::Path) -> String {
    let mut rows: Vec<[String; 2]> = vec![
        [
            "target".into(),
            format!("{} ({})", info.target_id, info.display_name),
        ],
        ["socket".into(), socket.display().to_string()],
        ["server".into(), format!("sgw {}", info.server_version)],
        ["protocol".into(), info.protocol_version.clone()],
    ];
    if let Some(c) = &info.containment {
        // An older server sends none; a newer one may send a mode this
        // build does not know: shown by number.
        let text = ContainmentInfo::try_from(c).map_or_else(
            |mode| format!("unknown mode {mode} ({})", c.detail),
            |known| known.to_string(),
        );
        rows.push(["containment".into(), text]);
    }
    if !info.journal_id.is_empty() {
        rows.push(["journal".into(), info.journal_id.clone()]);
    }
    if let Some(c) = &info.caller {
        let user = if c.user_name.is_empty() {
            String::new()
        } else {
            format!(" ({})", c.user_name)
        };
        rows.push([
            "you are".into(),
            format!(
                "uid {}{user}, gid {}, pid {}, connection {}",
                c.uid, c.gid, c.pid, c.connection_id
            ),
        ]);
    }
    let commands: Vec<String> = info
        .supported_commands
        .iter()
        .map(|c| {
            if c.destructive {
                format!("{} (needs --yes)", c.name)
            } else {
                c.name.clone()
            }
        })
        .collect();
    rows.push(["commands".into(), commands.join(", ")]);
    if let Some(l) = &info.limits {
        rows.push([
            "limits".into(),
            format!(
                "request {} B, response {} B, {} connections, idle timeout {}",
                l.max_request_bytes,
                l.max_response_bytes,
                l.max_connections,
                pb_duration(l.idle_timeout.as_ref())
            ),
        ]);
    }
    table(&rows)
}

/// `web: restarted (generation 3, pid 812); now running [command c-17]`.
/// `child_id` names the subject when the result has no record (remove).
/// A reload's or scale's plan, one step per line.
pub fn change_plan(what: &str, plan: &pb::ChangePlan) -> String {
    let mut text = format!("{what} plan:\n");
    for id in &plan.add {
        text.push_str(&format!("  add       {id}\n"));
    }
    for update in &plan.update {
        text.push_str(&format!(
            "  update    {} ({}; {})\n",
            update.child_id,
            update.changed.join(", "),
            if update.restart {
                "restart"
            } else {
                "no restart"
            }
        ));
    }
    for id in &plan.remove {
        text.push_str(&format!("  remove    {id}\n"));
    }
    if plan.add.is_empty() && plan.update.is_empty() && plan.remove.is_empty() {
        text.push_str("  no change\n");
    }
    text.push_str(&format!("  unchanged {}\n", plan.unchanged.len()));
    for setting in &plan.not_applied {
        text.push_str(&format!("  not applied: {setting}\n"));
    }
    text
}

pub fn command(result: &pb::CommandResult, child_id: Option<&str>) -> String {
    let subject = match (&result.child, child_id) {
        (Some(child), _) => child.child_id.clone(),
        (None, Some(id)) => id.to_owned(),
        (None, None) => command_name(result.command),
    };
    let now = result
        .child
        .as_ref()
        .map(|c| format!("; now {}", state_name(c.state)))
        .unwrap_or_default();
    format!(
        "{subject}: {}{now} [command {}]",
        result.outcome, result.command_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
        assert_eq!(duration(Duration::from_millis(3010)), "3.01s");
        assert_eq!(duration(Duration::from_secs(2)), "2s");
        assert_eq!(duration(Duration::from_secs(125)), "2m05s");
        assert_eq!(duration(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn byte_counts_read_naturally() {
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(64 << 10), "64K");
        assert_eq!(bytes(12_897_484), "12.3M");
        assert_eq!(bytes(2 << 30), "2G");
        assert_eq!(bytes(5 << 40), "5T");
    }

    #[test]
    fn usage_cells_are_dashes_without_usage() {
        assert_eq!(usage_cells(None), ("-".to_owned(), "-".to_owned()));
        let usage = pb::ResourceUsage {
            cpu_time: Some(prost_types::Duration {
                seconds: 1,
                nanos: 200_000_000,
            }),
            memory_bytes: 12_897_484,
            processes: 2,
            oom_kills: None,
        };
        assert_eq!(
            usage_cells(Some(&usage)),
            ("1.2s".to_owned(), "12.3M".to_owned())
        );
    }

    #[test]
    fn table_aligns_columns_without_trailing_spaces() {
        let rows = [
            ["ID".to_owned(), "STATE".to_owned(), "DETAIL".to_owned()],
            ["ticker".to_owned(), "running".to_owned(), String::new()],
        ];
        assert_eq!(table(&rows), "ID      STATE    DETAIL\nticker  running\n");
    }

    #[test]
    fn shell_words_quote_what_needs_it() {
        let words = [
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            "echo 'hi'".to_owned(),
        ];
        assert_eq!(shell_words(&words), r"/bin/sh -c 'echo '\''hi'\'''");
    }
}
