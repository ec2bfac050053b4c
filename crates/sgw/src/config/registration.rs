use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// `[registration]`: the relay a legacy dashboard finds this gateway
/// through. Without `relay_socket` nothing is sent; `lease_seconds` is still
/// announced in the legacy `hello`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// The relay's registration socket; the heartbeat runs only when set.
    pub relay_socket: Option<PathBuf>,
    /// How long the relay keeps the registration without a heartbeat.
    pub lease_seconds: u64,
    /// Time between upserts; must be shorter than the lease, or the lease
    /// lapses between two heartbeats. Fractions are allowed ("0.5").
    #[serde(
        rename = "heartbeat_interval_seconds",
        alias = "registration_heartbeat_interval_seconds",
        deserialize_with = "seconds"
    )]
    pub heartbeat_interval: Duration,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            relay_socket: None,
            lease_seconds: 45,
            heartbeat_interval: Duration::from_secs(15),
        }
    }
}

fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let value = f64::deserialize(deserializer)?;
    Duration::try_from_secs_f64(value).map_err(|_| {
        serde::de::Error::custom(format!(
            "invalid heartbeat_interval_seconds {value}: expected a positive number of seconds"
        ))
    })
}

impl RegistrationConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.lease_seconds == 0 {
            return Err("lease_seconds must be at least 1".to_owned());
        }
        if self.heartbeat_interval.is_zero() {
            return Err("heartbeat_interval_seconds must be greater than zero".to_owned());
        }
        if self.heartbeat_interval >= Duration::from_secs(self.lease_seconds) {
            return Err(format!(
                "heartbeat_interval_seconds ({}) must be less than lease_seconds ({})",
                self.heartbeat_interval.as_secs_f64(),
                self.lease_seconds
            ));
        }
        if let Some(path) = &self.relay_socket
            && !path.is_absolute()
        {
            return Err(format!(
                "relay_socket {} must be an absolute path",
                path.display()
            ));
        }
        Ok(())
    }
}
