use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use nix::unistd::geteuid;
use serde::{Deserialize, Deserializer};

use crate::engine::RestartRate;
use crate::model::ContainmentPreference;

/// Where the record of what this instance started is kept (`state_dir`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StateDir {
    /// Not set: [`default_state_dir`] for the target.
    #[default]
    Default,
    /// `state_dir = ""`: nothing is recorded, so the leftovers of a crash
    /// are not found at the next start.
    Off,
    /// An absolute path (checked by `validate`).
    Path(PathBuf),
}

impl<'de> Deserialize<'de> for StateDir {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(if text.is_empty() {
            StateDir::Off
        } else {
            StateDir::Path(PathBuf::from(text))
        })
    }
}

/// `[supervisor]`: how children's descendants are contained, and where
/// this instance records what it started.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorConfig {
    /// `"auto"` (cgroup v2 where the host delegates it, else subreaper),
    /// `"cgroup"` (or refuse to start) or `"subreaper"`.
    pub containment: ContainmentPreference,
    pub state_dir: StateDir,
    /// Automatic restarts per second across all children.
    pub restart_rate: RestartRateConfig,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            containment: ContainmentPreference::Auto,
            state_dir: StateDir::Default,
            restart_rate: RestartRateConfig::default(),
        }
    }
}

/// `restart_rate = { per_second = 50, burst = 100 }`; `per_second = 0`
/// turns pacing off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartRateConfig {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RestartRateConfig {
    fn default() -> Self {
        let rate = RestartRate::default();
        Self {
            per_second: rate.per_second.get(),
            burst: rate.burst.get(),
        }
    }
}

impl RestartRateConfig {
    /// The engine's setting: `None` (unlimited) for `per_second = 0`.
    pub fn rate(&self) -> Option<RestartRate> {
        Some(RestartRate {
            per_second: NonZeroU32::new(self.per_second)?,
            burst: NonZeroU32::new(self.burst)?,
        })
    }
}

impl SupervisorConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.restart_rate.per_second > 0 && self.restart_rate.burst == 0 {
            return Err("restart_rate: burst must be at least 1".to_owned());
        }
        if let StateDir::Path(path) = &self.state_dir
            && !path.is_absolute()
        {
            return Err(format!(
                "state_dir {} must be an absolute path (or \"\" for none)",
                path.display()
            ));
        }
        Ok(())
    }

    /// The configured state directory, `None` for `state_dir = ""`;
    /// unset, the default for `target_id`.
    pub fn state_dir(&self, target_id: &str) -> Option<PathBuf> {
        match &self.state_dir {
            StateDir::Default => default_state_dir(target_id),
            StateDir::Off => None,
            StateDir::Path(path) => Some(path.clone()),
        }
    }
}

/// `$XDG_STATE_HOME/sgw/TARGET`, else `/var/lib/sgw/TARGET` for root, else
/// `$HOME/.local/state/sgw/TARGET`; `None` when none applies (not root, and
/// no absolute `XDG_STATE_HOME` or `HOME`).
pub fn default_state_dir(target_id: &str) -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).map(PathBuf::from);
    state_dir_from(
        var("XDG_STATE_HOME"),
        var("HOME"),
        geteuid().is_root(),
        target_id,
    )
}

fn state_dir_from(
    state_home: Option<PathBuf>,
    home: Option<PathBuf>,
    root: bool,
    target_id: &str,
) -> Option<PathBuf> {
    // The XDG spec: a relative (or empty) value is invalid and ignored.
    let absolute = |p: Option<PathBuf>| p.filter(|p| p.is_absolute());
    let base = match (absolute(state_home), root, absolute(home)) {
        (Some(state), _, _) => state.join("sgw"),
        (None, true, _) => PathBuf::from("/var/lib/sgw"),
        (None, false, Some(home)) => home.join(".local/state/sgw"),
        (None, false, None) => return None,
    };
    Some(base.join(path_component(target_id)))
}

/// The target id as one path component: a `target_id` of `"../x"` or
/// `"a/b"` must not pick a directory outside the base.
fn path_component(target_id: &str) -> String {
    let safe: String = target_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    match safe.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None => safe,
    }
}

/// The state directory `serve` hands the engine: none with `--ephemeral`;
/// else `--state-dir` / `$SGW_STATE_DIR` (`flag`; empty means none), made
/// absolute against the current directory; else the config's.
pub(super) fn resolve_state_dir(
    config: &SupervisorConfig,
    target_id: &str,
    flag: Option<&Path>,
    ephemeral: bool,
) -> std::io::Result<Option<PathBuf>> {
    if ephemeral {
        return Ok(None);
    }
    match flag {
        Some(path) if path.as_os_str().is_empty() => Ok(None),
        Some(path) => std::path::absolute(path).map(Some),
        None => Ok(config.state_dir(target_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default follows XDG for users and the FHS for root, one
    /// directory per target.
    #[test]
    fn default_state_dir_precedence() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            state_dir_from(p("/xdg"), p("/home/u"), false, "demo"),
            p("/xdg/sgw/demo")
        );
        assert_eq!(
            state_dir_from(p("/xdg"), None, true, "demo"),
            p("/xdg/sgw/demo")
        );
        assert_eq!(
            state_dir_from(None, p("/root"), true, "demo"),
            p("/var/lib/sgw/demo")
        );
        assert_eq!(
            state_dir_from(p("relative"), p("/home/u"), false, "demo"),
            p("/home/u/.local/state/sgw/demo")
        );
        assert_eq!(state_dir_from(p(""), p(""), false, "demo"), None);
        assert_eq!(
            state_dir_from(None, None, true, "../etc"),
            p("/var/lib/sgw/_._etc")
        );
    }

    /// `--ephemeral` beats everything, then the flag (an empty one means
    /// none), then the config.
    #[test]
    fn flag_and_ephemeral_override_the_config() {
        let config = SupervisorConfig {
            state_dir: StateDir::Path("/srv/state".into()),
            ..SupervisorConfig::default()
        };
        let resolve = |flag: Option<&str>, ephemeral| {
            resolve_state_dir(&config, "demo", flag.map(Path::new), ephemeral).expect("resolves")
        };
        assert_eq!(resolve(None, false), Some("/srv/state".into()));
        assert_eq!(resolve(Some("/flag"), false), Some("/flag".into()));
        assert_eq!(resolve(Some(""), false), None);
        assert_eq!(resolve(Some("/flag"), true), None);
        let relative = resolve(Some("state"), false).expect("a path");
        assert!(relative.is_absolute() && relative.ends_with("state"));
        let off = SupervisorConfig {
            state_dir: StateDir::Off,
            ..SupervisorConfig::default()
        };
        assert_eq!(off.state_dir("demo"), None);
    }

    /// `per_second = 0` turns pacing off; a zero burst is refused rather
    /// than read as "no restart ever".
    #[test]
    fn restart_rate_off_and_bad_burst() {
        let parse = |text: &str| crate::config::Config::parse(text, "t.toml");
        let engine = |text: &str| {
            parse(text)
                .expect("valid")
                .engine_config(None)
                .restart_rate
                .map(|r| (r.per_second.get(), r.burst.get()))
        };
        assert_eq!(engine(""), Some((50, 100)));
        assert_eq!(
            engine("[supervisor]\nrestart_rate = { per_second = 7, burst = 3 }\n"),
            Some((7, 3))
        );
        assert_eq!(
            engine("[supervisor]\nrestart_rate = { per_second = 0 }\n"),
            None
        );
        let error = parse("[supervisor]\nrestart_rate = { per_second = 5, burst = 0 }\n")
            .expect_err("zero burst")
            .to_string();
        assert!(error.contains("burst"), "{error}");
    }
}
