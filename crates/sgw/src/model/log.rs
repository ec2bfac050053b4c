use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::spec::{optional_duration, optional_duration_text};
use super::{Bytes, ChildId};

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One captured line of a child's output (without its newline), or the
/// notice that the rate limit dropped some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub child_id: ChildId,
    /// The process generation that wrote it.
    pub generation: u64,
    pub stream: LogStream,
    /// Invalid UTF-8 is replaced (lossy), never dropped.
    pub text: String,
    /// The line was longer than the capture limit and continues in the
    /// next record.
    pub truncated: bool,
    /// Non-zero: this record is not output but the notice that this many
    /// lines were dropped by the child's rate limit just before it, so a
    /// reader can tell a quiet child from a muted one.
    pub suppressed: u64,
}

impl LogLine {
    /// The notice for `count` lines dropped by a rate limit of `burst`
    /// lines per `interval`.
    pub fn suppression(
        child_id: ChildId,
        generation: u64,
        stream: LogStream,
        count: u64,
        burst: u32,
        interval: Duration,
    ) -> Self {
        let noun = if count == 1 { "line" } else { "lines" };
        LogLine {
            child_id,
            generation,
            stream,
            text: format!(
                "{count} {noun} suppressed (rate limit: {burst} lines per {})",
                humantime::format_duration(interval)
            ),
            truncated: false,
            suppressed: count,
        }
    }
}

/// A child's own log settings (`[[child]] logs = { ... }`); each unset key
/// takes its `[journal]` default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChildLogs {
    /// In-memory tail (`[journal] logs_child_bytes`).
    #[serde(default)]
    pub memory_bytes: Option<Bytes>,
    /// Size at which `<child>.log` is rotated (`[journal] log_max_bytes`);
    /// 0: no log file for this child.
    #[serde(default)]
    pub max_bytes: Option<Bytes>,
    /// Rotated files kept (`[journal] log_backups`).
    #[serde(default)]
    pub backups: Option<u32>,
    /// Lines per `rate_interval` before lines are dropped
    /// (`[journal] log_rate_burst`); 0: no rate limit.
    #[serde(default)]
    pub rate_burst: Option<u32>,
    /// `[journal] log_rate_interval`.
    #[serde(
        default,
        deserialize_with = "optional_duration",
        serialize_with = "optional_duration_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub rate_interval: Option<Duration>,
}

/// The log settings in force for one child: the `[journal]` defaults with
/// the child's own `logs` applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPolicy {
    /// Bytes of text (plus a fixed per-line overhead) kept in memory.
    pub memory_bytes: u64,
    /// Rotation size of the log file; 0: no file.
    pub file_max_bytes: u64,
    pub file_backups: u32,
    /// 0: no rate limit.
    pub rate_burst: u32,
    pub rate_interval: Duration,
}

impl Default for LogPolicy {
    /// journald's rate limit (10000 lines per 30 s); rotation smaller than
    /// supervisord's (50 MiB, 10 backups) so a child costs at most 60 MiB
    /// of disk by default.
    fn default() -> Self {
        Self {
            memory_bytes: 1 << 20,
            file_max_bytes: 10 << 20,
            file_backups: 5,
            rate_burst: 10_000,
            rate_interval: Duration::from_secs(30),
        }
    }
}

impl LogPolicy {
    /// The smallest in-memory tail: room for a few whole 16 KiB chunks.
    pub const MIN_MEMORY_BYTES: u64 = 64 << 10;
    /// The smallest rotation size, so rotation is not a per-line affair.
    pub const MIN_FILE_BYTES: u64 = 64 << 10;

    /// These defaults overridden by what `child` sets.
    pub fn for_child(&self, child: &ChildLogs) -> LogPolicy {
        LogPolicy {
            memory_bytes: child.memory_bytes.map_or(self.memory_bytes, |b| b.0),
            file_max_bytes: child.max_bytes.map_or(self.file_max_bytes, |b| b.0),
            file_backups: child.backups.unwrap_or(self.file_backups),
            rate_burst: child.rate_burst.unwrap_or(self.rate_burst),
            rate_interval: child.rate_interval.unwrap_or(self.rate_interval),
        }
    }

    /// The rules every policy obeys, named by the key that breaks them.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.memory_bytes < Self::MIN_MEMORY_BYTES {
            return Err(("memory_bytes", "must be at least 64K".to_owned()));
        }
        if self.file_max_bytes != 0 && self.file_max_bytes < Self::MIN_FILE_BYTES {
            return Err((
                "max_bytes",
                "must be 0 (no file) or at least 64K".to_owned(),
            ));
        }
        if self.file_backups > 100 {
            return Err(("backups", "must be at most 100".to_owned()));
        }
        if self.rate_burst != 0 && self.rate_interval.is_zero() {
            return Err(("rate_interval", "must be greater than zero".to_owned()));
        }
        Ok(())
    }
}
