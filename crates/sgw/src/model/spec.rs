//! A child's specification: what the config's `[[child]]` tables and
//! `AddChild` describe. Deserialization checks each field; [`ChildSpec::validate`]
//! checks the rules that span fields.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::probe::{Check, Probe, Ready};
use super::{Bytes, CgroupLimits, ChildId, ChildLogs, CpuMax};

/// What happens when a child's process exits on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Restart after every exit, clean or not.
    Always,
    /// Restart unless the exit code is one of `success_codes`.
    #[default]
    OnFailure,
    /// Never restart; the child stays STOPPED with its last exit recorded.
    Never,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on_failure",
            RestartPolicy::Never => "never",
        }
    }
}

/// How important a child is to the operator. Reported to clients so
/// dashboards can rank alerts; the engine treats all children alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Criticality {
    Critical,
    #[default]
    Standard,
    BestEffort,
}

impl Criticality {
    pub fn as_str(self) -> &'static str {
        match self {
            Criticality::Critical => "critical",
            Criticality::Standard => "standard",
            Criticality::BestEffort => "best_effort",
        }
    }
}

/// Exponential backoff between automatic restarts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub initial: Duration,
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub max: Duration,
    pub multiplier: f64,
    /// Fraction of the delay randomly added or removed (0 to 1), so that
    /// children crashing together do not restart in lockstep.
    pub jitter: f64,
    /// Uptime after which the next failure starts again from `initial`.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
            reset_after: Duration::from_secs(10),
        }
    }
}

/// At most `max` automatic restarts within any `window`; one more
/// quarantines the child.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartBudget {
    pub max: u32,
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub window: Duration,
}

impl Default for RestartBudget {
    fn default() -> Self {
        Self {
            max: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// The signal sent to a child's process group to ask it to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopSignal(pub Signal);

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal(Signal::SIGTERM)
    }
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl FromStr for StopSignal {
    type Err = String;
    /// Accepts `SIGTERM`, `TERM` or `15`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let signal = if let Ok(number) = trimmed.parse::<i32>() {
            Signal::try_from(number).ok()
        } else {
            let upper = trimmed.to_ascii_uppercase();
            let name = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            Signal::from_str(&name).ok()
        };
        match signal {
            Some(Signal::SIGKILL | Signal::SIGSTOP) | None => Err(format!(
                "invalid stop_signal {s:?}: expected a catchable signal name such as \"SIGTERM\", \"SIGINT\" or \"SIGQUIT\""
            )),
            Some(signal) => Ok(StopSignal(signal)),
        }
    }
}

impl Serialize for StopSignal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for StopSignal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Parses `"100ms"`, `"30s"`, `"5m"`, `"1h 30m"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|error| {
        format!("invalid duration {text:?} ({error}): use e.g. \"250ms\", \"10s\", \"5m\"")
    })
}

/// Durations are written back the way the config writes them (`"1m 30s"`),
/// so a serialized spec reads back as the same spec.
pub(super) fn duration_text<S: Serializer>(
    value: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*value).to_string())
}

/// An optional duration, as text when present (`"250ms"`).
pub(super) fn optional_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|text| parse_duration(&text).map_err(serde::de::Error::custom))
        .transpose()
}

/// An optional duration written back as text, like every duration of a
/// spec.
pub(super) fn optional_duration_text<S: Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => duration_text(d, serializer),
        None => serializer.serialize_none(),
    }
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

fn default_stop_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_start_timeout() -> Duration {
    Duration::from_secs(60)
}

/// systemd's `TimeoutStartSec=` default.
fn default_ready_timeout() -> Duration {
    Duration::from_secs(90)
}

/// The shortest `backoff.initial`: below it a crash loop is a busy loop.
pub const MIN_BACKOFF: Duration = Duration::from_millis(1);

fn default_true() -> bool {
    true
}

fn default_success_codes() -> Vec<i32> {
    vec![0]
}

/// One supervised child.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChildSpec {
    pub id: ChildId,
    /// Program and arguments; the program is looked up in `PATH`.
    pub command: Vec<String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub backoff: Backoff,
    #[serde(default)]
    pub restart_budget: RestartBudget,
    #[serde(default)]
    pub stop_signal: StopSignal,
    #[serde(
        default = "default_stop_timeout",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub stop_timeout: Duration,
    /// Added to the supervisor's own environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Started only once all of these are RUNNING; stopped before them.
    #[serde(default)]
    pub depends_on: Vec<ChildId>,
    #[serde(default)]
    pub criticality: Criticality,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Start with the supervisor (or on add); otherwise stay STOPPED until
    /// resumed or restarted.
    #[serde(default = "default_true")]
    pub autostart: bool,
    /// How long a process must stay up before it counts as RUNNING (and
    /// before its dependents start). Zero: RUNNING as soon as it is spawned.
    #[serde(
        default,
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub ready_after: Duration,
    /// How long the child may wait for its dependencies before it is
    /// reported BLOCKED (it keeps waiting, and starts once they are up).
    #[serde(
        default = "default_start_timeout",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub start_timeout: Duration,
    /// Exit codes that count as success for `restart = "on_failure"`.
    #[serde(default = "default_success_codes")]
    pub success_codes: Vec<i32>,
    /// Run as this user (name or numeric uid); its primary group unless
    /// `group` says otherwise. Needs the supervisor to be root.
    #[serde(default)]
    pub user: Option<String>,
    /// Run with this group (name or numeric gid).
    #[serde(default)]
    pub group: Option<String>,
    /// File mode creation mask, octal (`"0027"`); inherited when unset.
    #[serde(default)]
    pub umask: Option<Umask>,
    /// Resource limits set before exec (soft = hard), e.g.
    /// `rlimits = { nofile = 4096, core = 0 }`.
    #[serde(default)]
    pub rlimits: BTreeMap<Rlimit, u64>,
    /// cgroup `memory.max` (`"512M"`); cgroup containment only.
    #[serde(default)]
    pub memory_max: Option<Bytes>,
    /// cgroup `cpu.max` as a percentage of one CPU (`"50%"`).
    #[serde(default)]
    pub cpu_max: Option<CpuMax>,
    /// cgroup `cpu.weight`, 1-10000.
    #[serde(default)]
    pub cpu_weight: Option<u16>,
    /// cgroup `pids.max`: processes and threads of the child together.
    #[serde(default)]
    pub pids_max: Option<u64>,
    /// Captured output: in-memory tail, log file rotation, rate limit;
    /// unset keys take the `[journal]` defaults.
    #[serde(default)]
    pub logs: ChildLogs,
    /// What RUNNING waits for besides `ready_after` (both must hold):
    /// `READY=1` on the child's `NOTIFY_SOCKET`, or a probe's successes.
    #[serde(default)]
    pub ready: Option<Ready>,
    /// A liveness probe run while RUNNING; `threshold` failures in a row
    /// end the run, which the restart policy and budget then handle.
    #[serde(default)]
    pub health: Option<Probe>,
    /// The longest gap allowed between `WATCHDOG=1` pings (sd_notify);
    /// the child gets `WATCHDOG_USEC` and a `NOTIFY_SOCKET`.
    #[serde(
        default,
        deserialize_with = "optional_duration",
        serialize_with = "optional_duration_text"
    )]
    pub watchdog: Option<Duration>,
    /// How long a child with `ready` may take to become ready before the
    /// run counts as failed.
    #[serde(
        default = "default_ready_timeout",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub ready_timeout: Duration,
    /// `instances = N`: this table is a template for N children,
    /// `ID-0` to `ID-(N-1)`, with `{instance}` replaced by the index in
    /// `command`, `env` values and `cwd` (supervisord's `numprocs`).
    /// `sgw scale ID N` changes N at runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
}

/// The most instances one `[[child]]` table may expand to.
pub const MAX_INSTANCES: u32 = 1000;

/// What `{instance}` is replaced with in an instance's spec.
const INSTANCE_PLACEHOLDER: &str = "{instance}";

/// A file mode creation mask: octal permission bits, at most `0777`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Umask(u32);

impl From<Umask> for String {
    fn from(umask: Umask) -> String {
        umask.to_string()
    }
}

impl Umask {
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl TryFrom<String> for Umask {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let digits = text.strip_prefix("0o").unwrap_or(&text);
        match u32::from_str_radix(digits, 8) {
            Ok(bits) if !digits.is_empty() && digits.len() <= 4 && bits <= 0o777 => Ok(Self(bits)),
            _ => Err(format!(
                "invalid umask {text:?}: octal bits like \"0022\" (at most 0777)"
            )),
        }
    }
}

impl fmt::Display for Umask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// The resource limits a child can be given (setrlimit(2) names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rlimit {
    /// Open file descriptors (RLIMIT_NOFILE).
    Nofile,
    /// Processes of the user (RLIMIT_NPROC).
    Nproc,
    /// Core dump size in bytes (RLIMIT_CORE).
    Core,
    /// Address space in bytes (RLIMIT_AS).
    As,
    /// Largest file in bytes (RLIMIT_FSIZE).
    Fsize,
    /// Locked memory in bytes (RLIMIT_MEMLOCK).
    Memlock,
    /// Stack size in bytes (RLIMIT_STACK).
    Stack,
    /// CPU seconds (RLIMIT_CPU).
    Cpu,
}

impl Rlimit {
    pub const ALL: [Rlimit; 8] = [
        Rlimit::Nofile,
        Rlimit::Nproc,
        Rlimit::Core,
        Rlimit::As,
        Rlimit::Fsize,
        Rlimit::Memlock,
        Rlimit::Stack,
        Rlimit::Cpu,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rlimit::Nofile => "nofile",
            Rlimit::Nproc => "nproc",
            Rlimit::Core => "core",
            Rlimit::As => "as",
            Rlimit::Fsize => "fsize",
            Rlimit::Memlock => "memlock",
            Rlimit::Stack => "stack",
            Rlimit::Cpu => "cpu",
        }
    }
}

/// A field that breaks a rule, and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

impl SpecError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl ChildSpec {
    /// A spec with every optional field at its default.
    pub fn new(id: ChildId, command: Vec<String>) -> Self {
        Self {
            id,
            command,
            restart: RestartPolicy::default(),
            backoff: Backoff::default(),
            restart_budget: RestartBudget::default(),
            stop_signal: StopSignal::default(),
            stop_timeout: default_stop_timeout(),
            env: BTreeMap::new(),
            cwd: None,
            depends_on: Vec::new(),
            criticality: Criticality::default(),
            tags: Vec::new(),
            autostart: true,
            ready_after: Duration::ZERO,
            start_timeout: default_start_timeout(),
            success_codes: default_success_codes(),
            user: None,
            group: None,
            umask: None,
            rlimits: BTreeMap::new(),
            memory_max: None,
            cpu_max: None,
            cpu_weight: None,
            pids_max: None,
            logs: ChildLogs::default(),
            ready: None,
            health: None,
            watchdog: None,
            ready_timeout: default_ready_timeout(),
            instances: None,
        }
    }

    /// Instance `index` of this template: id `ID-index`, `{instance}`
    /// replaced by the index in the command, the env values and cwd. The
    /// result is a plain child (no `instances`).
    pub fn instance(&self, index: u32) -> Result<ChildSpec, SpecError> {
        let id = ChildId::new(&format!("{}-{index}", self.id)).map_err(|error| {
            SpecError::new("id", format!("instance {index} cannot be named: {error}"))
        })?;
        let number = index.to_string();
        let fill = |text: &str| text.replace(INSTANCE_PLACEHOLDER, &number);
        let mut spec = self.clone();
        spec.id = id;
        spec.instances = None;
        spec.command = self.command.iter().map(|arg| fill(arg)).collect();
        for value in spec.env.values_mut() {
            *value = fill(value);
        }
        spec.cwd = self
            .cwd
            .as_ref()
            .map(|cwd| PathBuf::from(fill(&cwd.to_string_lossy())));
        Ok(spec)
    }

    /// The spec keys whose values differ from `other`'s, as the config
    /// names them. Compared through the serialized form, so a key added
    /// to the spec is compared without being listed here.
    pub fn changed_keys(&self, other: &ChildSpec) -> Vec<String> {
        let (Ok(serde_json::Value::Object(mine)), Ok(serde_json::Value::Object(theirs))) =
            (serde_json::to_value(self), serde_json::to_value(other))
        else {
            return vec!["*".to_owned()];
        };
        let mut keys: Vec<String> = mine
            .iter()
            .filter(|(key, value)| theirs.get(*key) != Some(*value))
            .map(|(key, _)| key.clone())
            .chain(
                theirs
                    .keys()
                    .filter(|key| !mine.contains_key(*key))
                    .cloned(),
            )
            .collect();
        keys.sort();
        keys
    }

    /// Whether a change of these keys needs the running process restarted.
    /// The restart policy and the stop settings are read when they are
    /// used, so they apply to the process already running; anything that
    /// shapes the process itself (command, env, limits, readiness, ...)
    /// needs a new one.
    pub fn change_needs_restart(keys: &[String]) -> bool {
        const LIVE: [&str; 10] = [
            "restart",
            "backoff",
            "restart_budget",
            "stop_signal",
            "stop_timeout",
            "criticality",
            "tags",
            "autostart",
            "start_timeout",
            "success_codes",
        ];
        keys.iter().any(|key| !LIVE.contains(&key.as_str()))
    }

    /// Whether the child speaks sd_notify: it gets a `NOTIFY_SOCKET`.
    pub fn uses_notify(&self) -> bool {
        self.ready == Some(Ready::Notify) || self.watchdog.is_some()
    }

    /// The limits the child's cgroup enforces.
    pub fn limits(&self) -> CgroupLimits {
        CgroupLimits {
            memory_max: self.memory_max,
            cpu_max: self.cpu_max,
            cpu_weight: self.cpu_weight,
            pids_max: self.pids_max,
        }
    }

    /// Checks the rules that involve more than one field. Rules involving
    /// other children (unique ids, known dependencies, cycles) are checked
    /// where the set of children is known.
    pub fn validate(&self) -> Result<(), SpecError> {
        match self.command.first() {
            None => return Err(SpecError::new("command", "must name a program")),
            Some(program) if program.trim().is_empty() => {
                return Err(SpecError::new("command", "program must not be empty"));
            }
            Some(_) => {}
        }
        if self.command.iter().any(|arg| arg.contains('\0')) {
            return Err(SpecError::new("command", "must not contain NUL bytes"));
        }
        let b = &self.backoff;
        if b.initial < MIN_BACKOFF {
            return Err(SpecError::new(
                "backoff.initial",
                format!(
                    "must be at least {} (got {})",
                    humantime::format_duration(MIN_BACKOFF),
                    humantime::format_duration(b.initial)
                ),
            ));
        }
        if b.max < b.initial {
            return Err(SpecError::new(
                "backoff.max",
                "must be at least backoff.initial",
            ));
        }
        if !(b.multiplier.is_finite() && b.multiplier >= 1.0) {
            return Err(SpecError::new(
                "backoff.multiplier",
                "must be a number >= 1.0",
            ));
        }
        if !(0.0..=1.0).contains(&b.jitter) {
            return Err(SpecError::new(
                "backoff.jitter",
                "must be between 0.0 and 1.0",
            ));
        }
        if self.restart_budget.max == 0 {
            return Err(SpecError::new("restart_budget.max", "must be at least 1"));
        }
        if self.restart_budget.window.is_zero() {
            return Err(SpecError::new(
                "restart_budget.window",
                "must be greater than zero",
            ));
        }
        if self.start_timeout.is_zero() {
            return Err(SpecError::new("start_timeout", "must be greater than zero"));
        }
        if self.depends_on.contains(&self.id) {
            return Err(SpecError::new(
                "depends_on",
                "a child cannot depend on itself",
            ));
        }
        for (index, dep) in self.depends_on.iter().enumerate() {
            if self.depends_on[..index].contains(dep) {
                return Err(SpecError::new(
                    "depends_on",
                    format!("{dep} is listed twice"),
                ));
            }
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
                return Err(SpecError::new(
                    format!("env.{key}"),
                    "names must be non-empty without '=' and values without NUL bytes",
                ));
            }
        }
        if self.cpu_weight.is_some_and(|w| !(1..=10_000).contains(&w)) {
            return Err(SpecError::new("cpu_weight", "must be between 1 and 10000"));
        }
        if let Some(n) = self.instances
            && !(1..=MAX_INSTANCES).contains(&n)
        {
            return Err(SpecError::new(
                "instances",
                format!("must be between 1 and {MAX_INSTANCES} (got {n})"),
            ));
        }
        if self.pids_max == Some(0) {
            return Err(SpecError::new("pids_max", "must be at least 1"));
        }
        if self.memory_max.is_some_and(|m| m.0 < 1 << 20) {
            return Err(SpecError::new("memory_max", "must be at least 1M"));
        }
        // The child's own keys, checked against valid defaults so that only
        // what it sets can fail.
        if let Err((key, message)) = super::LogPolicy::default().for_child(&self.logs).validate() {
            return Err(SpecError::new(format!("logs.{key}"), message));
        }
        self.validate_readiness()?;
        if let Some(tag) = self
            .tags
            .iter()
            .find(|tag| tag.is_empty() || tag.len() > 64)
        {
            return Err(SpecError::new(
                "tags",
                format!("tag {tag:?} must be 1-64 characters"),
            ));
        }
        Ok(())
    }
}

impl ChildSpec {
    fn validate_readiness(&self) -> Result<(), SpecError> {
        if self.ready_timeout.is_zero() {
            return Err(SpecError::new("ready_timeout", "must be greater than zero"));
        }
        if self.watchdog.is_some_and(|w| w.is_zero()) {
            return Err(SpecError::new(
                "watchdog",
                "must be greater than zero (leave it unset for no watchdog)",
            ));
        }
        if let Some(Ready::Probe(probe)) = &self.ready {
            validate_probe("ready", probe)?;
        }
        if let Some(probe) = &self.health {
            validate_probe("health", probe)?;
        }
        Ok(())
    }
}

fn validate_probe(key: &str, probe: &Probe) -> Result<(), SpecError> {
    let field = |name: &str| format!("{key}.{name}");
    if probe.interval.is_zero() {
        return Err(SpecError::new(
            field("interval"),
            "must be greater than zero",
        ));
    }
    if probe.timeout.is_zero() {
        return Err(SpecError::new(
            field("timeout"),
            "must be greater than zero",
        ));
    }
    if probe.threshold == Some(0) {
        return Err(SpecError::new(field("threshold"), "must be at least 1"));
    }
    if let Check::Exec(command) = &probe.check {
        if command.first().is_none_or(|p| p.trim().is_empty()) {
            return Err(SpecError::new(field("exec"), "must name a program"));
        }
        if command.iter().any(|arg| arg.contains('\0')) {
            return Err(SpecError::new(field("exec"), "must not contain NUL bytes"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spec written out (to keep an added child across restarts) reads
    /// back as the same spec through the config's own parser.
    #[test]
    fn a_serialized_spec_reads_back_unchanged() {
        let text = r#"
            id = "web"
            command = ["/usr/bin/python3", "-m", "http.server"]
            restart = "always"
            backoff = { initial = "150ms", max = "1m 30s", multiplier = 1.5, jitter = 0.1, reset_after = "20s" }
            restart_budget = { max = 7, window = "2m" }
            stop_signal = "SIGINT"
            stop_timeout = "3s"
            env = { A = "1" }
            cwd = "/srv"
            depends_on = ["db"]
            criticality = "critical"
            tags = ["http"]
            autostart = false
            ready_after = "250ms"
            start_timeout = "45s"
            success_codes = [0, 3]
            user = "nobody"
            umask = "0027"
            rlimits = { nofile = 4096, core = 0 }
            memory_max = "512M"
            cpu_max = "50%"
            cpu_weight = 200
            pids_max = 64
            logs = { memory_bytes = "2M", rate_interval = "10s" }
            ready = { http = "http://127.0.0.1:8080/healthz", interval = "50ms", threshold = 2 }
            health = { exec = ["/bin/check", "--quick"], timeout = "2s" }
            watchdog = "10s"
            ready_timeout = "30s"
        "#;
        let notify = r#"
            id = "n"
            command = ["/bin/true"]
            ready = "notify"
            health = { tcp = "[::1]:5432" }
        "#;
        let minimal = r#"
            id = "min"
            command = ["/bin/true"]
        "#;
        for text in [text, minimal, notify] {
            let spec: ChildSpec = toml::from_str(text).expect("config shape");
            let json = serde_json::to_string(&spec).expect("serialize");
            let back: ChildSpec = serde_json::from_str(&json).expect("reads back");
            assert_eq!(back, spec, "{json}");
        }
    }

    #[test]
    fn stop_signal_accepts_common_spellings() {
        for text in ["SIGTERM", "TERM", "term", "15"] {
            assert_eq!(text.parse::<StopSignal>(), Ok(StopSignal(Signal::SIGTERM)));
        }
        assert!(
            "SIGKILL".parse::<StopSignal>().is_err(),
            "SIGKILL cannot be a polite stop"
        );
        assert!("SIGNOPE".parse::<StopSignal>().is_err());
    }

    #[test]
    fn validate_rejects_inconsistent_backoff() {
        let id = ChildId::new("a").expect("valid id");
        let mut spec = ChildSpec::new(id.clone(), vec!["true".into()]);
        assert_eq!(spec.validate(), Ok(()));
        spec.backoff.max = Duration::from_millis(1);
        assert_eq!(
            spec.validate().map_err(|e| e.field),
            Err("backoff.max".to_owned())
        );
        spec.backoff.initial = Duration::from_micros(500);
        let error = spec.validate().expect_err("backoff under 1ms");
        assert_eq!(error.field, "backoff.initial");
        assert!(error.message.contains("at least 1ms"), "{error}");
        spec.backoff.initial = Duration::from_millis(1);
        spec.start_timeout = Duration::ZERO;
        assert_eq!(
            spec.validate().map_err(|e| e.field),
            Err("start_timeout".to_owned())
        );
        let mut spec = ChildSpec::new(id.clone(), vec![]);
        assert_eq!(
            spec.validate().map_err(|e| e.field),
            Err("command".to_owned())
        );
        spec.command = vec!["x".into()];
        spec.depends_on = vec![id];
        assert_eq!(
            spec.validate().map_err(|e| e.field),
            Err("depends_on".to_owned())
        );
    }
}
