//! How children are contained and what they use: the vocabulary of cgroup
//! limits, resource usage and the containment mode, shared by the config,
//! the engine and the transports.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A byte count written as an integer or with a binary suffix
/// (`"512M"`, `"2G"`, `"64K"`), as systemd's `MemoryMax=` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ByteText", into = "u64")]
pub struct Bytes(pub u64);

impl From<Bytes> for u64 {
    fn from(bytes: Bytes) -> u64 {
        bytes.0
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ByteText {
    Number(u64),
    Text(String),
}

impl TryFrom<ByteText> for Bytes {
    type Error = String;
    fn try_from(value: ByteText) -> Result<Self, String> {
        match value {
            ByteText::Number(n) => Ok(Bytes(n)),
            ByteText::Text(text) => text.parse(),
        }
    }
}

impl std::str::FromStr for Bytes {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let (digits, shift) = match trimmed.char_indices().last() {
            Some((at, 'K' | 'k')) => (&trimmed[..at], 10),
            Some((at, 'M' | 'm')) => (&trimmed[..at], 20),
            Some((at, 'G' | 'g')) => (&trimmed[..at], 30),
            Some((at, 'T' | 't')) => (&trimmed[..at], 40),
            _ => (trimmed, 0),
        };
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(1u64 << shift))
            .map(Bytes)
            .ok_or_else(|| {
                format!("invalid size {text:?}: a byte count, or a number with K, M, G or T")
            })
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "T"),
            (1 << 30, "G"),
            (1 << 20, "M"),
            (1 << 10, "K"),
        ];
        for (size, unit) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// A CPU bandwidth limit as a percentage of one CPU (`"50%"`, `"200%"` for
/// two CPUs), systemd's `CPUQuota=`. Written to `cpu.max` as a quota per
/// 100 ms period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CpuMax {
    pub percent: u32,
}

impl CpuMax {
    /// The period `cpu.max` is written with (the kernel's default).
    pub const PERIOD_US: u64 = 100_000;

    /// The `cpu.max` line: quota and period in microseconds.
    pub fn cgroup_line(self) -> String {
        format!(
            "{} {}",
            u64::from(self.percent) * Self::PERIOD_US / 100,
            Self::PERIOD_US
        )
    }
}

impl From<CpuMax> for String {
    fn from(max: CpuMax) -> String {
        max.to_string()
    }
}

impl TryFrom<String> for CpuMax {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<u32>().ok())
            .filter(|&percent| (1..=100_000).contains(&percent))
            .map(|percent| CpuMax { percent })
            .ok_or_else(|| {
                format!(
                    "invalid cpu_max {text:?}: a percentage of one CPU like \"50%\" or \"200%\""
                )
            })
    }
}

impl fmt::Display for CpuMax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.percent)
    }
}

/// Limits enforced by the child's cgroup (cgroup containment only). Each
/// needs its controller (`memory`, `cpu`, `pids`) delegated to sgw's
/// subtree; a child whose limit cannot be enforced does not start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    /// `memory.max`: above it the kernel reclaims, then OOM-kills inside
    /// the child's cgroup only.
    pub memory_max: Option<Bytes>,
    /// `cpu.max`.
    pub cpu_max: Option<CpuMax>,
    /// `cpu.weight`, 1-10000 (default 100).
    pub cpu_weight: Option<u16>,
    /// `pids.max`: processes and threads.
    pub pids_max: Option<u64>,
}

impl CgroupLimits {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The controllers these limits need.
    pub fn controllers(&self) -> Vec<&'static str> {
        let mut needed = Vec::new();
        if self.memory_max.is_some() {
            needed.push("memory");
        }
        if self.cpu_max.is_some() || self.cpu_weight.is_some() {
            needed.push("cpu");
        }
        if self.pids_max.is_some() {
            needed.push("pids");
        }
        needed
    }
}

/// What a child's processes use, measured when a snapshot is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceUsage {
    /// CPU time (user + system). In cgroup mode, of every process the
    /// cgroup ever held (`cpu.stat`); otherwise of the live processes only.
    pub cpu_time: Duration,
    /// `memory.current` when the memory controller is delegated, else the
    /// sum of the live processes' resident set sizes.
    pub memory_bytes: u64,
    /// Live processes (the main process and every descendant contained).
    pub processes: u32,
    /// OOM kills inside the child's cgroup (`memory.events`); `None` where
    /// the kernel does not tell (no memory controller).
    pub oom_kills: Option<u64>,
}

/// How the supervisor keeps every descendant of a child contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainmentKind {
    /// One cgroup v2 per child: stops reach every process however it
    /// forked, leftovers are found by path after a crash.
    Cgroup,
    /// The supervisor is a child subreaper and tracks process groups and
    /// an environment marker; see the README for what escapes.
    Subreaper,
}

impl ContainmentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainmentKind::Cgroup => "cgroup",
            ContainmentKind::Subreaper => "subreaper",
        }
    }
}

impl fmt::Display for ContainmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which containment the operator asks for (`[supervisor] containment`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainmentPreference {
    /// cgroup v2 where the host delegates it, else subreaper.
    #[default]
    Auto,
    /// cgroup v2 or refuse to start, saying why.
    Cgroup,
    /// Subreaper even where cgroups are available.
    Subreaper,
}

/// The containment in force, as `GetInfo` and `sgw info` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainmentInfo {
    pub kind: ContainmentKind,
    /// The cgroup subtree (cgroup mode), or why cgroups are not used.
    pub detail: String,
    /// cgroup controllers available to children's limits.
    pub controllers: Vec<String>,
}

impl Default for ContainmentInfo {
    fn default() -> Self {
        Self {
            kind: ContainmentKind::Subreaper,
            detail: String::new(),
            controllers: Vec::new(),
        }
    }
}

impl fmt::Display for ContainmentInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind, self.detail)?;
        if !self.controllers.is_empty() {
            write!(f, ", controllers: {}", self.controllers.join(" "))?;
        }
        Ok(())
    }
}

/// A process of a previous sgw instance found still running at start and
/// killed before any child started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftoverProcess {
    pub pid: u32,
    /// Its command line (`/proc/PID/cmdline`, spaces between arguments).
    pub command: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_take_suffixes_and_refuse_overflow() {
        assert_eq!("512M".parse(), Ok(Bytes(512 << 20)));
        assert_eq!("64k".parse(), Ok(Bytes(64 << 10)));
        assert_eq!("1000".parse(), Ok(Bytes(1000)));
        assert!("99999999999T".parse::<Bytes>().is_err());
        assert!("12X".parse::<Bytes>().is_err());
        assert_eq!(Bytes(2 << 30).to_string(), "2G");
    }

    #[test]
    fn cpu_max_is_a_percentage() {
        let half = CpuMax::try_from("50%".to_owned()).expect("valid");
        assert_eq!(half.cgroup_line(), "50000 100000");
        assert!(CpuMax::try_from("0%".to_owned()).is_err());
        assert!(CpuMax::try_from("50".to_owned()).is_err());
    }
}
