use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::socket::{BindMode, SocketMode};

/// Where the legacy `dashboard-ipc.v1` adapter is served.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LegacyMode {
    /// Detected per connection on the main socket.
    #[default]
    SameSocket,
    Off,
    /// On the main socket and on this dedicated one.
    Dedicated(PathBuf),
}

impl<'de> Deserialize<'de> for LegacyMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "same_socket" => Ok(LegacyMode::SameSocket),
            "off" => Ok(LegacyMode::Off),
            path if path.starts_with('/') => Ok(LegacyMode::Dedicated(PathBuf::from(path))),
            other => Err(serde::de::Error::custom(format!(
                "invalid legacy {other:?}: expected \"same_socket\", \"off\" or an absolute socket path"
            ))),
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::model::parse_duration(&text).map_err(serde::de::Error::custom)
}

/// `[gateway]`: the socket and the limits of the control plane.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub target_id: String,
    pub display_name: Option<String>,
    pub socket: Option<PathBuf>,
    pub socket_mode: SocketMode,
    pub bind: BindMode,
    pub legacy: LegacyMode,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    pub max_connections: usize,
    /// Connections one uid other than the daemon's and root's may hold
    /// (default: a quarter of `max_connections`).
    pub max_connections_per_uid: Option<usize>,
    /// Slots only the daemon's uid and root may take (default: an eighth
    /// of `max_connections`, at least one).
    pub reserved_connections: Option<usize>,
    /// From accept to the client's first frame, and from a HEADERS frame
    /// to the end of its header block.
    #[serde(deserialize_with = "duration")]
    pub handshake_timeout: Duration,
    /// How long a new connection may send nothing before it is closed
    /// (its protocol is told by its first byte).
    #[serde(deserialize_with = "duration")]
    pub first_byte_timeout: Duration,
    /// Unary calls answer within this; the command itself keeps running.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Open event/log streams per uid.
    pub max_streams_per_uid: usize,
    /// Most bytes of log text one TailLogs backlog replays.
    pub max_tail_bytes: usize,
    /// A connection with no request in flight for this long is closed.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// How long a write to a legacy client may wait for it to read. A
    /// client that stops reading would otherwise hold its connection (and
    /// a `max_connections` slot) forever; past this it is closed.
    #[serde(deserialize_with = "duration")]
    pub write_timeout: Duration,
    /// The longest legacy request line. Unset, it is `max_request_bytes`,
    /// so one setting bounds what a client can make the gateway buffer on
    /// either protocol.
    pub legacy_max_line_bytes: Option<usize>,
    /// How long a shutdown waits for in-flight calls and streams.
    #[serde(deserialize_with = "duration")]
    pub drain_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            target_id: "sgw".to_owned(),
            display_name: None,
            socket: None,
            socket_mode: SocketMode::default(),
            bind: BindMode::default(),
            legacy: LegacyMode::default(),
            max_request_bytes: 64 * 1024,
            max_response_bytes: 4 * 1024 * 1024,
            max_connections: 256,
            max_connections_per_uid: None,
            reserved_connections: None,
            handshake_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(60),
            max_streams_per_uid: 64,
            max_tail_bytes: 1024 * 1024,
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(10),
            legacy_max_line_bytes: None,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl GatewayConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.target_id.trim().is_empty() {
            return Err("target_id must not be empty".to_owned());
        }
        if self.max_request_bytes < 1024 {
            return Err("max_request_bytes must be at least 1024".to_owned());
        }
        if self.max_response_bytes < 1024 {
            return Err("max_response_bytes must be at least 1024".to_owned());
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".to_owned());
        }
        if self.max_connections_per_uid == Some(0) {
            return Err("max_connections_per_uid must be at least 1".to_owned());
        }
        if self
            .reserved_connections
            .is_some_and(|reserved| reserved >= self.max_connections)
        {
            return Err(format!(
                "reserved_connections must be below max_connections ({})",
                self.max_connections
            ));
        }
        if [
            self.handshake_timeout,
            self.first_byte_timeout,
            self.request_timeout,
        ]
        .iter()
        .any(Duration::is_zero)
        {
            return Err(
                "handshake_timeout, first_byte_timeout and request_timeout must be greater than zero"
                    .to_owned(),
            );
        }
        if self.max_streams_per_uid == 0 {
            return Err("max_streams_per_uid must be at least 1".to_owned());
        }
        if self.max_tail_bytes < 1024 {
            return Err("max_tail_bytes must be at least 1024".to_owned());
        }
        if self.idle_timeout.is_zero() {
            return Err("idle_timeout must be greater than zero".to_owned());
        }
        if self.write_timeout.is_zero() {
            return Err("write_timeout must be greater than zero".to_owned());
        }
        if self.legacy_max_line_bytes.is_some_and(|max| max < 1024) {
            return Err("legacy_max_line_bytes must be at least 1024".to_owned());
        }
        Ok(())
    }

    /// The bound on one legacy request line: `legacy_max_line_bytes`, else
    /// `max_request_bytes`.
    pub fn legacy_max_line_bytes(&self) -> usize {
        self.legacy_max_line_bytes.unwrap_or(self.max_request_bytes)
    }
}

/// `[journal]`: how much history the rings retain.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    pub events_capacity: usize,
    pub logs_capacity: usize,
    /// Each child's in-memory tail of captured output.
    pub logs_child_bytes: crate::model::Bytes,
    /// Size at which a child's log file rotates; 0: no log files.
    pub log_max_bytes: crate::model::Bytes,
    /// Rotated log files kept per child.
    pub log_backups: u32,
    /// Lines a child may write per `log_rate_interval` before the rest are
    /// dropped and counted; 0: no limit.
    pub log_rate_burst: u32,
    #[serde(deserialize_with = "duration")]
    pub log_rate_interval: Duration,
    /// How hard each commit of the event journal (in `state_dir`) is
    /// pushed to the disk: `normal`, `full` or `off`.
    pub sync: crate::journal::store::SyncPolicy,
    /// Stored events go, oldest first, past this many bytes.
    pub retain_bytes: crate::model::Bytes,
    /// Stored events older than this go.
    #[serde(deserialize_with = "duration")]
    pub retain_age: Duration,
}

impl Default for JournalConfig {
    fn default() -> Self {
        let logs = crate::model::LogPolicy::default();
        let kept = crate::engine::JournalSettings::default();
        Self {
            events_capacity: 65_536,
            logs_capacity: 65_536,
            logs_child_bytes: crate::model::Bytes(logs.memory_bytes),
            log_max_bytes: crate::model::Bytes(logs.file_max_bytes),
            log_backups: logs.file_backups,
            log_rate_burst: logs.rate_burst,
            log_rate_interval: logs.rate_interval,
            sync: kept.sync,
            retain_bytes: crate::model::Bytes(kept.retain_bytes),
            retain_age: kept.retain_age,
        }
    }
}

impl JournalConfig {
    /// What every child's captured output gets unless it says otherwise.
    pub fn log_policy(&self) -> crate::model::LogPolicy {
        crate::model::LogPolicy {
            memory_bytes: self.logs_child_bytes.0,
            file_max_bytes: self.log_max_bytes.0,
            file_backups: self.log_backups,
            rate_burst: self.log_rate_burst,
            rate_interval: self.log_rate_interval,
        }
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if self.events_capacity == 0 || self.logs_capacity == 0 {
            return Err("events_capacity and logs_capacity must be at least 1".to_owned());
        }
        if let Err((key, message)) = self.log_policy().validate() {
            let key = match key {
                "memory_bytes" => "logs_child_bytes",
                "max_bytes" => "log_max_bytes",
                "backups" => "log_backups",
                _ => "log_rate_interval",
            };
            return Err(format!("{key} {message}"));
        }
        if self.retain_bytes.0 < 1 << 20 {
            return Err("retain_bytes must be at least 1M".to_owned());
        }
        if self.retain_age < Duration::from_secs(60) {
            return Err("retain_age must be at least 1m".to_owned());
        }
        Ok(())
    }
}
