use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::transport::socket::{BindMode, SocketMode};

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
    /// A connection with no request in flight for this long is closed.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
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
            idle_timeout: Duration::from_secs(300),
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
        if self.idle_timeout.is_zero() {
            return Err("idle_timeout must be greater than zero".to_owned());
        }
        Ok(())
    }
}

/// `[journal]`: how much history the rings retain.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    pub events_capacity: usize,
    pub logs_capacity: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            events_capacity: 65_536,
            logs_capacity: 65_536,
        }
    }
}

impl JournalConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.events_capacity == 0 || self.logs_capacity == 0 {
            return Err("events_capacity and logs_capacity must be at least 1".to_owned());
        }
        Ok(())
    }
}
