//! The configuration file as a reload reads it again.
//!
//! Only the children can change while sgw runs. Every other setting is
//! compared with the file sgw started with, and each key that differs is
//! reported as not applied (it takes effect at the next start) rather
//! than silently ignored.

use std::path::PathBuf;

use crate::control::{ConfigSource, Reloaded};

use super::{Config, ConfigError};

/// The file `sgw serve --config` started from.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    /// The text sgw started with: the settings that are live.
    started_with: toml::Table,
}

impl ConfigFile {
    /// Loads the configuration sgw starts with, and keeps what the file
    /// said for the reloads to come.
    pub fn open(path: PathBuf) -> Result<(Config, Self), ConfigError> {
        let (config, text) = Config::load_with_text(&path)?;
        let file = Self {
            path,
            // It parsed as a configuration a moment ago.
            started_with: text.parse().unwrap_or_default(),
        };
        Ok((config, file))
    }
}

impl ConfigSource for ConfigFile {
    fn load(&self) -> Result<Reloaded, String> {
        let (config, text) = Config::load_with_text(&self.path).map_err(|e| e.to_string())?;
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        let now: toml::Table = text.parse().unwrap_or_default();
        Ok(Reloaded {
            children: config.children,
            not_applied: changed_settings(&self.started_with, &now),
        })
    }
}

/// `section.key: ...` for every setting outside `[[child]]` that differs.
fn changed_settings(before: &toml::Table, after: &toml::Table) -> Vec<String> {
    let mut changed = Vec::new();
    let empty = toml::Table::new();
    let mut sections: Vec<&String> = before.keys().chain(after.keys()).collect();
    sections.sort();
    sections.dedup();
    for section in sections.into_iter().filter(|s| *s != "child") {
        match (before.get(section), after.get(section)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => {
                let a = a.and_then(toml::Value::as_table).unwrap_or(&empty);
                let b = b.and_then(toml::Value::as_table).unwrap_or(&empty);
                let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
                keys.sort();
                keys.dedup();
                for key in keys {
                    if a.get(key) != b.get(key) {
                        changed.push(format!("{section}.{key}: takes effect when sgw restarts"));
                    }
                }
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_outside_children_are_listed_by_key() {
        let before: toml::Table = "[gateway]\nmax_connections = 10\n[journal]\nsync = \"normal\"\n[[child]]\nid = \"a\"\ncommand = [\"x\"]\n"
            .parse()
            .expect("toml");
        let after: toml::Table = "[gateway]\nmax_connections = 20\n[supervisor]\nrestart_rate = \"off\"\n[[child]]\nid = \"b\"\ncommand = [\"y\"]\n"
            .parse()
            .expect("toml");
        assert_eq!(
            changed_settings(&before, &after),
            [
                "gateway.max_connections: takes effect when sgw restarts",
                "journal.sync: takes effect when sgw restarts",
                "supervisor.restart_rate: takes effect when sgw restarts",
            ]
        );
        assert!(changed_settings(&before, &before).is_empty());
    }
}
