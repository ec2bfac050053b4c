//! The audit trail: one JSON line per decision, written and flushed to disk
//! before the caller gets its answer, rotated by size, the most recent kept
//! in memory for the `GetAuditLog` read call.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::Serialize;

use super::config::AuditConfig;
use crate::transport::peer::PeerIdentity;

/// How many records `recent` can return.
const RECENT: usize = 1_000;

/// One audit line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Unix time in milliseconds.
    pub time_ms: u64,
    pub connection_id: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<u32>,
    pub user_name: Option<String>,
    /// The caller's executable, read when it connected.
    pub executable: Option<String>,
    /// Whether the pid still belonged to the process that connected when
    /// this record was written (`None`: could not tell).
    pub same_process: Option<bool>,
    /// `grpc:/supervisor.gateway.v1.ControlService/RestartChild` or
    /// `legacy:command.restart_child`.
    pub method: String,
    pub request_id: String,
    pub requested_by: String,
    pub reason: String,
    /// `allow`, `deny`, or `replay`.
    pub decision: &'static str,
    /// `pending` (written before executing), `ok`, or an error code.
    pub outcome: String,
}

impl AuditRecord {
    pub fn new(peer: &PeerIdentity, method: &str, decision: &'static str, outcome: &str) -> Self {
        let time_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            time_ms,
            connection_id: peer.connection_id,
            uid: peer.uid,
            gid: peer.gid,
            pid: peer.pid,
            user_name: peer.user_name.clone(),
            executable: peer.executable.clone(),
            same_process: peer.still_same_process(),
            method: method.to_owned(),
            request_id: String::new(),
            requested_by: String::new(),
            reason: String::new(),
            decision,
            outcome: outcome.to_owned(),
        }
    }
}

struct Sink {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    recent: VecDeque<AuditRecord>,
}

/// The audit writer. Cloning shares the file.
#[derive(Clone)]
pub struct Audit {
    sink: Option<Arc<Mutex<Sink>>>,
    config: AuditConfig,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("path", &self.config.path)
            .finish()
    }
}

impl Audit {
    /// Opens (creating, mode 0600) the configured file. An unset path gives
    /// an audit that records nothing and never fails.
    pub fn new(config: AuditConfig) -> Self {
        let sink = config.path.as_ref().map(|path| {
            let (file, size) = match open(path) {
                Ok(opened) => (Some(opened.0), opened.1),
                Err(error) => {
                    tracing::error!(path = %path.display(), %error, "cannot open the audit file");
                    (None, 0)
                }
            };
            Arc::new(Mutex::new(Sink {
                path: path.clone(),
                file,
                size,
                recent: VecDeque::new(),
            }))
        });
        Self { sink, config }
    }

    pub fn is_enabled(&self) -> bool {
        self.sink.is_some()
    }

    pub fn fails_closed(&self) -> bool {
        self.config.on_failure == super::config::AuditFailure::Refuse
    }

    /// Appends and flushes one record (on a blocking thread: fdatasync may
    /// take milliseconds).
    pub async fn write(&self, record: AuditRecord) -> io::Result<()> {
        let Some(sink) = self.sink.clone() else {
            return Ok(());
        };
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || {
            let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
            let result = append(&mut sink, &config, &record);
            if sink.recent.len() == RECENT {
                sink.recent.pop_front();
            }
            sink.recent.push_back(record);
            result
        })
        .await
        .map_err(io::Error::other)?
    }

    /// The newest `n` records, oldest first (also those that failed to reach
    /// the disk).
    pub fn recent(&self, n: usize) -> Vec<AuditRecord> {
        let Some(sink) = &self.sink else {
            return Vec::new();
        };
        let sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
        let skip = sink.recent.len().saturating_sub(n);
        sink.recent.iter().skip(skip).cloned().collect()
    }
}

fn open(path: &Path) -> io::Result<(File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((file, size))
}

fn append(sink: &mut Sink, config: &AuditConfig, record: &AuditRecord) -> io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
    line.push(b'\n');
    let is_regular = sink.path.metadata().map(|m| m.is_file()).unwrap_or(false);
    if is_regular && sink.size > 0 && sink.size + line.len() as u64 > config.max_bytes {
        rotate(&sink.path, config.keep)?;
        sink.file = None;
    }
    if sink.file.is_none() {
        let (file, size) = open(&sink.path)?;
        sink.file = Some(file);
        sink.size = size;
    }
    let file = sink
        .file
        .as_mut()
        .ok_or_else(|| io::Error::other("audit file not open"))?;
    let written = file.write_all(&line).and_then(|()| file.sync_data());
    match written {
        Ok(()) => {
            sink.size += line.len() as u64;
            Ok(())
        }
        Err(error) => {
            // Reopen next time: the file may have been replaced or repaired.
            sink.file = None;
            Err(error)
        }
    }
}

/// `audit.log` → `audit.log.1` → ... → `audit.log.keep` (dropped).
fn rotate(path: &Path, keep: u32) -> io::Result<()> {
    let numbered = |n: u32| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    for n in (1..keep).rev() {
        let from = numbered(n);
        if from.exists() {
            std::fs::rename(&from, numbered(n + 1))?;
        }
    }
    std::fs::rename(path, numbered(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerIdentity {
        PeerIdentity {
            uid: 1000,
            gid: 1000,
            pid: None,
            user_name: Some("alice".into()),
            connection_id: 7,
            executable: Some("/usr/bin/sgw".into()),
            start_time: None,
        }
    }

    /// Records are JSON lines with the caller's identity; the file rotates
    /// by size and keeps `keep` old files.
    #[tokio::test]
    async fn writes_json_lines_and_rotates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let audit = Audit::new(AuditConfig {
            path: Some(path.clone()),
            max_bytes: 600,
            keep: 2,
            ..AuditConfig::default()
        });
        for i in 0..10 {
            let mut record = AuditRecord::new(&peer(), "grpc:/x/Y", "allow", "ok");
            record.request_id = format!("r-{i}");
            audit.write(record).await.expect("write");
        }
        let text = std::fs::read_to_string(&path).expect("current file");
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("a line")).expect("json");
        assert_eq!(first["uid"], 1000);
        assert_eq!(first["user_name"], "alice");
        assert_eq!(first["executable"], "/usr/bin/sgw");
        assert!(dir.path().join("audit.log.1").exists());
        assert!(dir.path().join("audit.log.2").exists());
        assert!(!dir.path().join("audit.log.3").exists());
        assert_eq!(audit.recent(3).len(), 3);
        assert_eq!(audit.recent(1)[0].request_id, "r-9");
    }

    /// A full disk is an error the caller sees (and can fail closed on).
    #[tokio::test]
    async fn full_disk_is_an_error() {
        let audit = Audit::new(AuditConfig {
            path: Some("/dev/full".into()),
            ..AuditConfig::default()
        });
        let result = audit
            .write(AuditRecord::new(&peer(), "m", "allow", "pending"))
            .await;
        assert!(result.is_err());
        assert!(audit.fails_closed());
    }
}
