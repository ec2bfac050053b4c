//! `[security]`: who may connect, who may do what, how fast, and where the
//! audit trail goes. Unknown keys are errors, like everywhere else.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::model::parse_duration(&text).map_err(serde::de::Error::custom)
}

/// Who belongs to a rule: listed uids, or members of listed gids (primary
/// group as the kernel reports it for the connection).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Principals {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

impl Principals {
    pub fn is_empty(&self) -> bool {
        self.uids.is_empty() && self.gids.is_empty()
    }

    pub fn contains(&self, uid: u32, gid: u32) -> bool {
        self.uids.contains(&uid) || self.gids.contains(&gid)
    }
}

/// Per-uid token bucket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub per_second: u32,
    pub burst: u32,
    /// Uids never limited. Default: the daemon's own uid and root, who can
    /// stop the supervisor anyway; the limit protects against other users.
    pub exempt_uids: Option<Vec<u32>>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_second: 100,
            burst: 20,
            exempt_uids: None,
        }
    }
}

/// Replayed request ids.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    #[serde(deserialize_with = "duration")]
    pub ttl: Duration,
    pub max_entries: usize,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(60),
            max_entries: 10_000,
        }
    }
}

/// What to do when an audit record cannot be written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditFailure {
    /// Refuse write and destructive commands (reads still work).
    #[default]
    Refuse,
    /// Log the failure and carry on.
    Continue,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// JSON lines file; no audit trail when unset.
    pub path: Option<PathBuf>,
    pub on_failure: AuditFailure,
    /// Rotate when the file would grow past this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept (`audit.log.1` ... `audit.log.N`).
    pub keep: u32,
    /// Denials are written to `<path>.denials`: the first per uid and code
    /// at once, the repeats within this interval as one record with a count.
    #[serde(deserialize_with = "duration")]
    pub denial_interval: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: None,
            on_failure: AuditFailure::Refuse,
            max_bytes: 16 * 1024 * 1024,
            keep: 3,
            denial_interval: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AddChildConfig {
    /// Absolute paths of programs AddChild may start; empty: AddChild is
    /// refused.
    pub allowed_commands: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Who may connect besides the daemon's uid and root.
    pub allowed_uids: Vec<u32>,
    pub allowed_gids: Vec<u32>,
    /// Reads: default anyone who may connect.
    pub read: Principals,
    /// Restart, pause, resume, quarantine, add: default the daemon's uid and root.
    pub write: Principals,
    /// Remove, shutdown: default the daemon's uid and root.
    pub destructive: Principals,
    pub rate_limit: RateLimitConfig,
    pub idempotency: IdempotencyConfig,
    pub audit: AuditConfig,
    pub add_child: AddChildConfig,
}

impl SecurityConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.rate_limit.per_second == 0 || self.rate_limit.burst == 0 {
            return Err("rate_limit.per_second and rate_limit.burst must be at least 1".to_owned());
        }
        if let Some(relative) = self
            .add_child
            .allowed_commands
            .iter()
            .find(|p| !p.is_absolute())
        {
            return Err(format!(
                "add_child.allowed_commands: {} is not an absolute path",
                relative.display()
            ));
        }
        if self.audit.denial_interval.is_zero() {
            return Err("audit.denial_interval must be greater than zero".to_owned());
        }
        if self.idempotency.max_entries == 0 {
            return Err("idempotency.max_entries must be at least 1".to_owned());
        }
        Ok(())
    }
}
