//! The TOML configuration file. Every table denies unknown keys, and every
//! error names the file, the line and the key, because a supervisor that
//! silently ignores a misspelled `restart_budget` is worse than one that
//! refuses to start.

mod demo;
mod gateway;
mod metrics;
mod registration;
mod reload;
mod security;
mod socket;
mod supervisor;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use demo::DEMO_CONFIG;
pub use gateway::{GatewayConfig, JournalConfig, LegacyMode};
pub use metrics::{MetricsConfig, MetricsListen};
pub use registration::RegistrationConfig;
pub use reload::ConfigFile;
pub use security::{
    AddChildConfig, AuditConfig, AuditFailure, IdempotencyConfig, Principals, RateLimitConfig,
    SecurityConfig,
};
pub use socket::{BindMode, SocketMode, SocketSettingError, default_socket_path};
pub use supervisor::{StateDir, SupervisorConfig, default_state_dir};

use crate::engine::{ChildSet, EngineConfig};
use crate::model::{ChildSpec, ContainmentPreference, SpecError};

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub gateway: GatewayConfig,
    pub journal: JournalConfig,
    pub metrics: MetricsConfig,
    pub registration: RegistrationConfig,
    pub security: SecurityConfig,
    pub supervisor: SupervisorConfig,
    pub children: ChildSet,
    /// What is legal but probably not meant (a dependency on an
    /// `autostart = false` child), located like errors. `check-config`
    /// prints them, `serve` logs them; neither refuses the file.
    pub warnings: Vec<ConfigError>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    gateway: GatewayConfig,
    #[serde(default)]
    journal: JournalConfig,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    registration: RegistrationConfig,
    #[serde(default)]
    security: SecurityConfig,
    #[serde(default)]
    supervisor: SupervisorConfig,
    #[serde(default, rename = "child")]
    children: Vec<toml::Spanned<ChildSpec>>,
}

/// Where a configuration problem is and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `<builtin demo>` / `<inline>`.
    pub source: String,
    /// 1-based line and column, when the problem has a position.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.source, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_text(path).map(|(config, _)| config)
    }

    /// [`Self::load`], with the text it was parsed from (what a reload
    /// compares the file with later).
    pub fn load_with_text(path: &Path) -> Result<(Self, String), ConfigError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            source: source.clone(),
            position: None,
            message: format!("cannot read the file: {error}"),
        })?;
        Self::parse(&text, &source).map(|config| (config, text))
    }

    /// The built-in demo tree `sgw serve` runs without `--config`.
    pub fn demo() -> Result<Self, ConfigError> {
        Self::parse(DEMO_CONFIG, "<builtin demo>")
    }

    /// Parses configuration text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, ConfigError> {
        let at = |span: Option<Range<usize>>, message: String| ConfigError {
            source: source.to_owned(),
            position: span.map(|span| line_column(text, span.start)),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|error| {
            let message = error.message().trim();
            // A value its type refuses ("12X", 70000 for a u16) is named
            // by its key unless the message already says it.
            let message = match error.span().and_then(|span| key_of_value(text, span.start)) {
                Some(key) if !names(message, key) => format!("{key}: {message}"),
                _ => message.to_owned(),
            };
            at(error.span(), message)
        })?;
        raw.gateway
            .validate()
            .map_err(|message| at(None, format!("[gateway] {message}")))?;
        raw.journal
            .validate()
            .map_err(|message| at(None, format!("[journal] {message}")))?;
        raw.security
            .validate()
            .map_err(|message| at(None, format!("[security] {message}")))?;
        raw.registration
            .validate()
            .map_err(|message| at(None, format!("[registration] {message}")))?;
        raw.supervisor
            .validate()
            .map_err(|message| at(None, format!("[supervisor] {message}")))?;
        if raw.registration.relay_socket.is_some() && raw.gateway.legacy == LegacyMode::Off {
            return Err(at(
                None,
                "[registration] relay_socket announces the legacy adapter, but [gateway] legacy is \"off\"".to_owned(),
            ));
        }
        let spans: Vec<Range<usize>> = raw.children.iter().map(|c| c.span()).collect();
        let specs: Vec<ChildSpec> = raw
            .children
            .into_iter()
            .map(toml::Spanned::into_inner)
            .collect();
        let ids: Vec<String> = specs.iter().map(|s| s.id.to_string()).collect();
        // A child's problem is located at the key it is about when that key
        // is on a line of its own in the table, else at the table.
        let child_problem = |index: usize, problem: &SpecError| ConfigError {
            source: source.to_owned(),
            position: spans
                .get(index)
                .map(|span| line_column(text, key_offset(text, span, &problem.field))),
            message: format!(
                "[[child]] {:?}: {}: {}",
                ids.get(index).map_or("", String::as_str),
                problem.field,
                problem.message
            ),
        };
        let children = ChildSet::new(specs).map_err(|e| child_problem(e.index, &e.error))?;
        // A limit only a cgroup enforces, where cgroups are ruled out: the
        // child could never start.
        if raw.supervisor.containment == ContainmentPreference::Subreaper
            && let Some((index, field)) = children
                .specs()
                .iter()
                .enumerate()
                .find_map(|(index, spec)| first_limit(spec).map(|field| (index, field)))
        {
            return Err(child_problem(
                index,
                &SpecError::new(
                    field,
                    "needs cgroup containment, but [supervisor] containment is \"subreaper\"",
                ),
            ));
        }
        let warnings = children
            .warnings()
            .iter()
            .map(|w| child_problem(w.index, &w.warning))
            .collect();
        Ok(Config {
            gateway: raw.gateway,
            journal: raw.journal,
            metrics: raw.metrics,
            registration: raw.registration,
            security: raw.security,
            supervisor: raw.supervisor,
            children,
            warnings,
        })
    }

    /// The engine's settings; `state_dir` as resolved by [`Self::state_dir`].
    pub fn engine_config(&self, state_dir: Option<PathBuf>) -> EngineConfig {
        EngineConfig {
            target_id: self.gateway.target_id.clone(),
            display_name: self
                .gateway
                .display_name
                .clone()
                .unwrap_or_else(|| self.gateway.target_id.clone()),
            events_capacity: self.journal.events_capacity,
            logs_capacity: self.journal.logs_capacity,
            logs: self.journal.log_policy(),
            containment: self.supervisor.containment,
            state_dir,
            adopt_orphans: false,
            reset_state: false,
            restart_rate: self.supervisor.restart_rate.rate(),
            journal: crate::engine::JournalSettings {
                sync: self.journal.sync,
                retain_bytes: self.journal.retain_bytes.0,
                retain_age: self.journal.retain_age,
            },
            config_source: None,
        }
    }

    /// The state directory to use: none with `--ephemeral`; else
    /// `--state-dir` (or `$SGW_STATE_DIR`, which clap reads into `flag`;
    /// empty means none) made absolute against the current directory;
    /// else `[supervisor] state_dir` (`""`: none); else
    /// [`default_state_dir`] for the target.
    pub fn state_dir(
        &self,
        flag: Option<&Path>,
        ephemeral: bool,
    ) -> std::io::Result<Option<PathBuf>> {
        supervisor::resolve_state_dir(&self.supervisor, &self.gateway.target_id, flag, ephemeral)
    }

    /// The socket to serve on: `--socket`, else the config's, else the
    /// contract's default, made absolute against the current directory.
    /// Resolved once, at start: the same path is bound, printed and
    /// announced (`hello`, relay registration), and a relay refuses a
    /// relative `ipc_path` since it cannot know what it was relative to.
    pub fn socket_path(&self, flag: Option<PathBuf>) -> std::io::Result<PathBuf> {
        let path = flag
            .or_else(|| self.gateway.socket.clone())
            .unwrap_or_else(default_socket_path);
        std::path::absolute(path)
    }
}

/// The first cgroup limit `spec` sets, by key.
fn first_limit(spec: &ChildSpec) -> Option<&'static str> {
    let limits = spec.limits();
    [
        ("memory_max", limits.memory_max.is_some()),
        ("cpu_max", limits.cpu_max.is_some()),
        ("cpu_weight", limits.cpu_weight.is_some()),
        ("pids_max", limits.pids_max.is_some()),
    ]
    .into_iter()
    .find_map(|(key, set)| set.then_some(key))
}

/// Where `field` (`backoff.initial`: the line setting `backoff`, or its
/// `[child.backoff]` header) is set in the child table whose header is at
/// `header`; the header if no line of the table sets it.
fn key_offset(text: &str, header: &Range<usize>, field: &str) -> usize {
    let root = field.split('.').next().unwrap_or(field);
    // `root` followed by something that ends a bare key.
    let names_root = |rest: &str, ends: &[char]| {
        rest.strip_prefix(root)
            .is_some_and(|after| after.trim_start().starts_with(ends))
    };
    let mut offset = header.end;
    for line in text
        .get(header.end..)
        .unwrap_or_default()
        .split_inclusive('\n')
    {
        let key = line.trim_start();
        let indent = line.len() - key.len();
        if let Some(table) = key.strip_prefix('[') {
            // One of this child's sub-tables, or the end of the child.
            match table.trim_start().strip_prefix("child.") {
                Some(sub) if names_root(sub, &[']', '.']) => return offset + indent,
                Some(_) => {}
                None => break,
            }
        } else if names_root(key, &['=', '.']) {
            return offset + indent;
        }
        offset += line.len();
    }
    header.start
}

/// The key whose value starts at `offset`: `memory_max` in
/// `memory_max = "12X"`, `initial` in `backoff = { initial = "x" }`;
/// `None` when `offset` is not right after a key's `=` on its line (an
/// unknown key, an array element).
fn key_of_value(text: &str, offset: usize) -> Option<&str> {
    let before = text.get(..offset)?;
    let line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
    let (head, gap) = line.rsplit_once('=')?;
    if !gap.trim().is_empty() {
        return None;
    }
    let key = head
        .trim_end()
        .rsplit(|c: char| c == '{' || c == ',' || c.is_whitespace())
        .next()?;
    (!key.is_empty()).then_some(key)
}

/// `message` mentions `key` as a word of its own (`id` is not in `invalid`).
fn names(message: &str, key: &str) -> bool {
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .any(|word| word == key)
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_config_is_valid() {
        let config = Config::demo().expect("demo config parses");
        assert_eq!(config.gateway.target_id, "demo");
        assert!(config.children.specs().len() >= 3);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "[[child]]\nid = \"a\"\ncommand = [\"true\"]\nrestart_budgit = { max = 1 }\n";
        let error = Config::parse(text, "sgw.toml").expect_err("unknown key");
        assert_eq!(error.source, "sgw.toml");
        assert_eq!(error.position.map(|p| p.0), Some(4), "{error}");
        assert!(error.message.contains("restart_budgit"), "{error}");
    }

    #[test]
    fn nested_unknown_key_and_bad_values_are_located() {
        let text = "[[child]]\nid = \"a\"\ncommand = [\"true\"]\nbackoff = { initial = \"1s\", jiter = 0.1 }\n";
        let error = Config::parse(text, "x.toml").expect_err("unknown nested key");
        assert!(error.message.contains("jiter"), "{error}");
        assert_eq!(error.position.map(|p| p.0), Some(4));
        let text = "[[child]]\nid = \"a\"\ncommand = [\"true\"]\nstop_timeout = \"ten seconds\"\n";
        let error = Config::parse(text, "x.toml").expect_err("bad duration");
        assert!(error.to_string().starts_with("x.toml:4:"), "{error}");
        let error =
            Config::parse("[gateway]\nsocket_mode = \"0999\"\n", "x.toml").expect_err("mode");
        assert!(error.to_string().starts_with("x.toml:2:"), "{error}");
    }

    #[test]
    fn registration_table_is_checked() {
        let ok = "[registration]\nrelay_socket = \"/run/relay.sock\"\nlease_seconds = 30\nheartbeat_interval_seconds = 0.5\n";
        let config = Config::parse(ok, "x.toml").expect("valid registration");
        assert_eq!(
            config.registration.heartbeat_interval,
            std::time::Duration::from_millis(500)
        );
        let legacy_name = "[registration]\nregistration_heartbeat_interval_seconds = 10\n";
        assert!(Config::parse(legacy_name, "x.toml").is_ok());
        for (text, needle) in [
            ("[registration]\nlease = 3\n", "lease"),
            (
                "[registration]\nlease_seconds = 10\nheartbeat_interval_seconds = 10\n",
                "less than",
            ),
            (
                "[registration]\nrelay_socket = \"relay.sock\"\n",
                "absolute",
            ),
            (
                "[gateway]\nlegacy = \"off\"\n[registration]\nrelay_socket = \"/r.sock\"\n",
                "off",
            ),
        ] {
            let error = Config::parse(text, "x.toml").expect_err(text);
            assert!(error.to_string().contains(needle), "{error}");
        }
    }

    #[test]
    fn dependency_errors_point_at_the_child() {
        let text = "[[child]]\nid = \"a\"\ncommand = [\"true\"]\n\n[[child]]\nid = \"b\"\ncommand = [\"true\"]\ndepends_on = [\"c\"]\n";
        let error = Config::parse(text, "x.toml").expect_err("unknown dep");
        assert_eq!(error.position, Some((8, 1)), "at the key: {error}");
        assert!(
            error.message.contains("depends_on") && error.message.contains("\"b\""),
            "{error}"
        );
        let cycle = "[[child]]\nid = \"a\"\ncommand = [\"true\"]\ndepends_on = [\"b\"]\n[[child]]\nid = \"b\"\ncommand = [\"true\"]\ndepends_on = [\"a\"]\n";
        let error = Config::parse(cycle, "x.toml").expect_err("cycle");
        assert!(error.message.contains("cycle"), "{error}");
    }

    #[test]
    fn backoff_under_a_millisecond_is_refused_at_its_key() {
        let text =
            "[[child]]\nid = \"a\"\ncommand = [\"true\"]\nbackoff = { initial = \"500us\" }\n";
        let error = Config::parse(text, "x.toml").expect_err("backoff under 1ms");
        assert_eq!(error.position, Some((4, 1)), "{error}");
        assert!(
            error
                .message
                .contains("backoff.initial: must be at least 1ms"),
            "{error}"
        );
        let text = "[[child]]\nid = \"a\"\ncommand = [\"true\"]\nbackoff.initial = \"1ms\"\n";
        assert!(Config::parse(text, "x.toml").is_ok());
    }

    #[test]
    fn dependency_on_a_child_without_autostart_is_a_warning() {
        let text = "[[child]]\nid = \"db\"\ncommand = [\"true\"]\nautostart = false\n\n[[child]]\nid = \"web\"\ncommand = [\"true\"]\ndepends_on = [\"db\"]\n";
        let config = Config::parse(text, "x.toml").expect("only a warning");
        assert_eq!(config.warnings.len(), 1);
        let warning = config.warnings[0].to_string();
        assert!(
            warning
                .starts_with("x.toml:9:1: [[child]] \"web\": depends_on: db has autostart = false"),
            "{warning}"
        );
        assert!(Config::demo().expect("demo").warnings.is_empty());
    }

    #[test]
    fn supervisor_table_is_checked() {
        let config = Config::parse(
            "[supervisor]\ncontainment = \"cgroup\"\nstate_dir = \"/srv/sgw/state\"\n",
            "x.toml",
        )
        .expect("valid supervisor");
        assert_eq!(
            config.supervisor.containment,
            crate::model::ContainmentPreference::Cgroup
        );
        assert_eq!(
            config.state_dir(None, false).expect("resolves"),
            Some(PathBuf::from("/srv/sgw/state"))
        );
        assert_eq!(
            config.engine_config(Some("/x".into())).containment,
            crate::model::ContainmentPreference::Cgroup
        );
        let off = Config::parse("[supervisor]\nstate_dir = \"\"\n", "x.toml").expect("none");
        assert_eq!(off.supervisor.state_dir, StateDir::Off);
        assert_eq!(off.state_dir(None, false).expect("resolves"), None);
        let defaults = Config::parse("", "x.toml").expect("empty file");
        assert_eq!(defaults.supervisor, SupervisorConfig::default());
        assert_eq!(
            defaults.supervisor.containment,
            crate::model::ContainmentPreference::Auto
        );
        for (text, line, needle) in [
            (
                "[supervisor]\ncontainment = \"jail\"\n",
                Some(2),
                "containment: unknown variant `jail`",
            ),
            (
                "[supervisor]\nstate_dir = 3\n",
                Some(2),
                "state_dir: invalid type",
            ),
            ("[supervisor]\nstate_dr = \"/x\"\n", Some(2), "state_dr"),
            (
                "[supervisor]\nstate_dir = \"state\"\n",
                None,
                "[supervisor] state_dir state must be an absolute path",
            ),
        ] {
            let error = Config::parse(text, "x.toml").expect_err(text);
            assert_eq!(error.position.map(|p| p.0), line, "{error}");
            assert!(error.to_string().contains(needle), "{error}");
        }
    }

    #[test]
    fn cgroup_limits_of_a_child_are_parsed() {
        let text = "[[child]]\nid = \"a\"\ncommand = [\"true\"]\nmemory_max = \"512M\"\ncpu_max = \"150%\"\ncpu_weight = 200\npids_max = 64\n\n[[child]]\nid = \"b\"\ncommand = [\"true\"]\nmemory_max = 1073741824\n";
        let config = Config::parse(text, "x.toml").expect("valid limits");
        let specs = config.children.specs();
        assert_eq!(specs[0].memory_max, Some(crate::model::Bytes(512 << 20)));
        assert_eq!(specs[0].cpu_max.map(|c| c.percent), Some(150));
        assert_eq!(specs[0].cpu_weight, Some(200));
        assert_eq!(specs[0].pids_max, Some(64));
        assert_eq!(specs[0].limits().controllers(), ["memory", "cpu", "pids"]);
        assert_eq!(specs[1].memory_max, Some(crate::model::Bytes(1 << 30)));
        assert!(specs[1].limits().cpu_max.is_none());
    }

    /// A limit that does not parse, or is out of range, is refused at its
    /// line, naming the key.
    #[test]
    fn bad_cgroup_limits_name_the_key_and_line() {
        let head = "[[child]]\nid = \"a\"\ncommand = [\"true\"]\n";
        for (key_line, needle) in [
            ("memory_max = \"12X\"", "memory_max: invalid size \"12X\""),
            ("memory_max = \"512K\"", "memory_max: must be at least 1M"),
            ("cpu_max = \"50\"", "invalid cpu_max \"50\""),
            ("cpu_max = \"0%\"", "invalid cpu_max \"0%\""),
            ("cpu_weight = 0", "cpu_weight: must be between 1 and 10000"),
            (
                "cpu_weight = 20000",
                "cpu_weight: must be between 1 and 10000",
            ),
            ("cpu_weight = 70000", "cpu_weight: invalid value"),
            ("pids_max = 0", "pids_max: must be at least 1"),
            ("pids_max = -1", "pids_max: invalid value"),
        ] {
            let text = format!("{head}{key_line}\n");
            let error = Config::parse(&text, "x.toml").expect_err(key_line);
            let shown = error.to_string();
            assert!(shown.starts_with("x.toml:4:"), "{key_line}: {shown}");
            assert!(shown.contains(needle), "{key_line}: {shown}");
        }
    }

    /// With containment ruled to subreaper, a cgroup limit could never be
    /// enforced: refused at its key.
    #[test]
    fn cgroup_limits_under_subreaper_are_refused_at_the_key() {
        let text = "[supervisor]\ncontainment = \"subreaper\"\n\n[[child]]\nid = \"a\"\ncommand = [\"true\"]\n\n[[child]]\nid = \"b\"\ncommand = [\"true\"]\npids_max = 10\n";
        let error = Config::parse(text, "x.toml").expect_err("limit under subreaper");
        assert_eq!(error.position, Some((11, 1)), "{error}");
        assert!(
            error
                .message
                .starts_with("[[child]] \"b\": pids_max: needs cgroup containment"),
            "{error}"
        );
        let auto = text.replace("subreaper", "auto");
        assert!(Config::parse(&auto, "x.toml").is_ok());
    }

    #[test]
    fn value_errors_are_named_by_their_key() {
        let text = "[[child]]\nid = \"a\"\ncommand = [\"true\"]\nbackoff = { initial = 5 }\n";
        let error = Config::parse(text, "x.toml").expect_err("not a duration");
        assert!(error.message.starts_with("initial: "), "{error}");
        assert_eq!(key_of_value("a = 1", 4), Some("a"));
        assert_eq!(key_of_value("x = { b.c = 1", 12), Some("b.c"));
        assert_eq!(key_of_value("x = [1, 2]", 8), None);
        assert!(!names("invalid type", "id"));
        assert!(names("invalid cpu_max \"5\"", "cpu_max"));
    }

    /// `[journal]` log keys and a child's `logs` table reach the engine;
    /// a bad value is refused at its key.
    #[test]
    fn log_settings_are_parsed_and_checked() {
        let text = "[journal]\nlogs_child_bytes = \"2M\"\nlog_max_bytes = 0\nlog_backups = 3\nlog_rate_burst = 50\nlog_rate_interval = \"5s\"\n\n[[child]]\nid = \"a\"\ncommand = [\"true\"]\nlogs = { max_bytes = \"1M\", rate_burst = 0 }\n";
        let config = Config::parse(text, "x.toml").expect("valid log settings");
        let defaults = config.engine_config(None).logs;
        assert_eq!(defaults.memory_bytes, 2 << 20);
        assert_eq!(defaults.file_max_bytes, 0);
        assert_eq!(defaults.file_backups, 3);
        assert_eq!(defaults.rate_interval, std::time::Duration::from_secs(5));
        let child = defaults.for_child(&config.children.specs()[0].logs);
        assert_eq!((child.file_max_bytes, child.rate_burst), (1 << 20, 0));
        assert_eq!(child.memory_bytes, 2 << 20);
        let bad = "[[child]]\nid = \"a\"\ncommand = [\"true\"]\nlogs = { memory_bytes = \"1K\" }\n";
        let error = Config::parse(bad, "x.toml").expect_err("tiny tail");
        assert!(
            error.to_string().starts_with("x.toml:4:")
                && error
                    .message
                    .contains("logs.memory_bytes: must be at least 64K"),
            "{error}"
        );
        let error =
            Config::parse("[journal]\nlog_max_bytes = \"1K\"\n", "x.toml").expect_err("tiny file");
        assert!(error.message.contains("log_max_bytes"), "{error}");
    }

    #[test]
    fn security_table_is_checked() {
        let ok = "[security]\nallowed_uids = [1000]\n[security.write]\nuids = [1000]\n[security.rate_limit]\nper_second = 5\nburst = 2\n[security.audit]\npath = \"/var/log/sgw-audit.log\"\non_failure = \"continue\"\n[security.add_child]\nallowed_commands = [\"/usr/bin/python3\"]\n";
        let config = Config::parse(ok, "x.toml").expect("valid security");
        assert_eq!(config.security.allowed_uids, [1000]);
        assert_eq!(config.security.rate_limit.burst, 2);
        let unknown =
            Config::parse("[security.write]\nusers = [1]\n", "x.toml").expect_err("unknown key");
        assert!(unknown.message.contains("users"), "{unknown}");
        let relative = Config::parse(
            "[security.add_child]\nallowed_commands = [\"sh\"]\n",
            "x.toml",
        )
        .expect_err("relative path");
        assert!(relative.message.contains("absolute"), "{relative}");
    }
}
