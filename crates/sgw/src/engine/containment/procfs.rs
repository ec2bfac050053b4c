//! What the containment code reads from `/proc`: a process's parent, group,
//! state, start time and usage, its command line and environment marker.
//! Every reader tolerates the process vanishing under it (None / empty).

use std::fs;
use std::time::Duration;

/// The fields of `/proc/PID/stat` containment needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    /// `R`, `S`, `Z`, ...
    pub state: u8,
    /// User + system time in clock ticks.
    pub cpu_ticks: u64,
    /// Start time in clock ticks after boot: with the pid, it names one
    /// process even after the pid is reused.
    pub start_ticks: u64,
    /// Resident pages.
    pub rss_pages: u64,
}

impl Stat {
    pub fn is_zombie(&self) -> bool {
        self.state == b'Z'
    }
}

/// Reads `/proc/PID/stat`. The name field may hold spaces and parentheses,
/// so the fields are counted after its last `)`.
pub fn stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &text)
}

fn parse_stat(pid: u32, text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name; field N is at N - 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let number = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    Some(Stat {
        pid,
        state: *fields.first()?.as_bytes().first()?,
        ppid: u32::try_from(number(4)?).ok()?,
        pgid: u32::try_from(number(5)?).ok()?,
        cpu_ticks: number(14)? + number(15)?,
        start_ticks: number(22)?,
        rss_pages: number(24)?,
    })
}

/// Every process id in `/proc`.
pub fn pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

/// One reading of every process: the view the subreaper mode finds a
/// child's members in.
pub fn snapshot() -> Vec<Stat> {
    pids().into_iter().filter_map(stat).collect()
}

/// The command line with spaces between arguments, or `[comm]` for a
/// kernel thread or a zombie (empty cmdline).
pub fn command_line(pid: u32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if args.is_empty() {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        return format!("[{}]", comm.trim_end());
    }
    args.join(" ")
}

/// The value of variable `name` in the environment the process was
/// started with (`/proc/PID/environ`; readable for our own uid and root).
pub fn environment_value(pid: u32, name: &str) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    raw.split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

/// The direct children of this process, whichever of its threads they
/// belong to (`/proc/self/task/*/children`).
pub fn own_children() -> Vec<u32> {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Clock ticks per second, for `cpu_ticks`.
pub fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

pub fn ticks_to_duration(ticks: u64) -> Duration {
    let per_second = ticks_per_second();
    Duration::from_secs(ticks / per_second)
        + Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second)
}

pub fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_survives_names_with_spaces_and_parentheses() {
        let line = "42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 987 1000 33 18446744073709551615";
        let stat = parse_stat(42, line).expect("parses");
        assert_eq!((stat.ppid, stat.pgid, stat.state), (7, 42, b'S'));
        assert_eq!(
            (stat.cpu_ticks, stat.start_ticks, stat.rss_pages),
            (11, 987, 33)
        );
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let stat = stat(me).expect("own stat");
        assert_eq!(stat.pid, me);
        assert!(stat.start_ticks > 0);
        assert!(pids().contains(&me));
        assert!(!command_line(me).is_empty());
    }
}
