//! The audit trail: one JSON line per decision, written and flushed to disk
//! before the caller gets its answer, rotated by size, the most recent kept
//! in memory for the `GetAuditLog` read call.
//!
//! Denials of callers (may not connect, may not call that class, over the
//! rate) go to a second file, `<path>.denials`, with its own rotation: a
//! denied client can repeat its call as fast as it likes, and its records
//! must neither fill the disk nor rotate the command records away. Per uid
//! and code, the first denial of an interval is written at once and the
//! repeats become one record with a `count` when the interval ends.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::Serialize;
use tokio_util::task::TaskTracker;

use crate::config::{AuditConfig, AuditFailure};
use crate::transport::peer::Caller;

/// How many records `recent` can return.
const RECENT: usize = 1_000;
/// Distinct (uid, code) pairs aggregated at once; past it, further denials
/// of new pairs are only counted under [`OVERFLOW_UID`].
const MAX_PENDING: usize = 1_024;
const OVERFLOW_UID: u32 = u32::MAX;

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
    /// How many decisions this record stands for: 1, or for an aggregated
    /// denial the repeats of one interval (the other fields are the last's).
    pub count: u64,
}

impl AuditRecord {
    pub fn new(peer: &Caller, method: &str, decision: &'static str, outcome: &str) -> Self {
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
            count: 1,
        }
    }

    /// A record for a connection refused at accept, when only the kernel's
    /// credentials are known.
    pub fn at_accept(
        uid: u32,
        gid: u32,
        pid: Option<u32>,
        decision: &'static str,
        outcome: &str,
    ) -> Self {
        let peer = Caller {
            uid,
            gid,
            pid,
            user_name: None,
            connection_id: 0,
            executable: None,
            start_time: None,
        };
        let mut record = Self::new(&peer, "connect", decision, outcome);
        record.same_process = None;
        record
    }
}

/// Repeated denials of one uid and code, waiting for their interval to end.
struct Pending {
    repeats: u64,
    last: Option<AuditRecord>,
}

struct Sink {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    recent: VecDeque<AuditRecord>,
}

/// The audit writer. Cloning shares the files.
#[derive(Clone)]
pub struct Audit {
    sink: Option<Arc<Mutex<Sink>>>,
    denials: Option<Arc<Mutex<Sink>>>,
    pending: Arc<Mutex<HashMap<(u32, String), Pending>>>,
    /// Denial writes and interval flushes in flight.
    background: TaskTracker,
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
        let sink = config.path.as_deref().map(open_sink);
        let denials = config
            .path
            .as_deref()
            .map(|path| open_sink(&denials_path(path)));
        Self {
            sink,
            denials,
            pending: Arc::default(),
            background: TaskTracker::new(),
            config,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.sink.is_some()
    }

    pub fn fails_closed(&self) -> bool {
        self.config.on_failure == AuditFailure::Refuse
    }

    /// Appends and flushes one record (on a blocking thread: fdatasync may
    /// take milliseconds).
    pub async fn write(&self, record: AuditRecord) -> io::Result<()> {
        let Some(sink) = self.sink.clone() else {
            return Ok(());
        };
        write_to(sink, self.config.clone(), record, true).await
    }

    /// Records a denial in the denial trail, aggregated per uid and code:
    /// the first of an interval is written before this returns, repeats are
    /// only counted. Never fails the caller (a denial is answered anyway).
    pub async fn deny(&self, record: AuditRecord) {
        if let Some(first) = self.aggregate(record) {
            self.write_denial(first).await;
        }
    }

    /// [`deny`](Self::deny) for callers that must not wait (the accept
    /// loop): the first record of an interval is written in the background.
    pub fn deny_detached(&self, record: AuditRecord) {
        if let Some(first) = self.aggregate(record) {
            let audit = self.clone();
            self.background
                .spawn(async move { audit.write_denial(first).await });
        }
    }

    /// Counts a repeat, or opens an interval for a new (uid, code) and
    /// returns the record to write now.
    fn aggregate(&self, record: AuditRecord) -> Option<AuditRecord> {
        self.denials.as_ref()?;
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let mut key = (record.uid, record.outcome.clone());
        if !pending.contains_key(&key) && pending.len() >= MAX_PENDING {
            key.0 = OVERFLOW_UID;
        }
        if let Some(open) = pending.get_mut(&key) {
            open.repeats += 1;
            open.last = Some(record);
            return None;
        }
        pending.insert(
            key.clone(),
            Pending {
                repeats: 0,
                last: None,
            },
        );
        drop(pending);
        let audit = self.clone();
        let interval = self.config.denial_interval;
        self.background.spawn(async move {
            tokio::time::sleep(interval).await;
            audit.close_interval(&key).await;
        });
        Some(record)
    }

    /// Ends one (uid, code) interval, writing its repeats as one record.
    async fn close_interval(&self, key: &(u32, String)) {
        let closed = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        if let Some(Pending {
            repeats,
            last: Some(mut record),
        }) = closed
        {
            record.count = repeats;
            self.write_denial(record).await;
        }
    }

    async fn write_denial(&self, record: AuditRecord) {
        let Some(sink) = self.denials.clone() else {
            return;
        };
        if let Err(error) = write_to(sink, self.config.clone(), record, false).await {
            tracing::warn!(%error, "audit write failed for a denial");
        }
    }

    /// Writes every open interval's repeats now and waits for all denial
    /// writes: at shutdown, so no count is lost.
    pub async fn flush_denials(&self) {
        let keys: Vec<_> = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        for key in keys {
            self.close_interval(&key).await;
        }
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

/// `audit.log` → `audit.log.denials`.
pub fn denials_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".denials");
    PathBuf::from(name)
}

fn open_sink(path: &Path) -> Arc<Mutex<Sink>> {
    let (file, size) = match open(path) {
        Ok(opened) => (Some(opened.0), opened.1),
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "cannot open the audit file");
            (None, 0)
        }
    };
    Arc::new(Mutex::new(Sink {
        path: path.to_owned(),
        file,
        size,
        recent: VecDeque::new(),
    }))
}

/// Appends one record on a blocking thread; `remember` keeps it for
/// `recent` (command records only).
async fn write_to(
    sink: Arc<Mutex<Sink>>,
    config: AuditConfig,
    record: AuditRecord,
    remember: bool,
) -> io::Result<()> {
    tokio::task::spawn_blocking(move || {
        let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
        let result = append(&mut sink, &config, &record);
        if remember {
            if sink.recent.len() == RECENT {
                sink.recent.pop_front();
            }
            sink.recent.push_back(record);
        }
        result
    })
    .await
    .map_err(io::Error::other)?
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

    fn peer() -> Caller {
        Caller {
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

    /// 10,000 denials of one uid become two records in the denial trail
    /// (the first, then one with the count), and none of them touches the
    /// command trail or its rotation.
    #[tokio::test(start_paused = true)]
    async fn denial_floods_are_aggregated_apart_from_commands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let audit = Audit::new(AuditConfig {
            path: Some(path.clone()),
            max_bytes: 2_000,
            keep: 1,
            ..AuditConfig::default()
        });
        audit
            .write(AuditRecord::new(&peer(), "grpc:/x/Restart", "allow", "ok"))
            .await
            .expect("command record");
        let mut denied = peer();
        denied.uid = 4242;
        for i in 0..10_000 {
            let record = AuditRecord::new(&denied, "grpc:/x/Restart", "deny", "permission_denied");
            if i % 2 == 0 {
                audit.deny(record).await;
            } else {
                audit.deny_detached(record);
            }
        }
        audit
            .deny(AuditRecord::new(&peer(), "m", "deny", "rate_limited"))
            .await;
        // The interval ends (paused clock: advanced, not waited for).
        tokio::time::sleep(AuditConfig::default().denial_interval * 2).await;
        audit.flush_denials().await;
        let lines = |p: &Path| -> Vec<serde_json::Value> {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).expect("json"))
                .collect()
        };
        let commands = lines(&path);
        assert_eq!(commands.len(), 1, "only the command record: {commands:?}");
        assert!(!dir.path().join("audit.log.1").exists(), "nothing rotated");
        let denials = lines(&denials_path(&path));
        let of_4242: Vec<u64> = denials
            .iter()
            .filter(|r| r["uid"] == 4242)
            .map(|r| r["count"].as_u64().expect("count"))
            .collect();
        assert_eq!(of_4242, [1, 9_999]);
        assert!(denials.iter().any(|r| r["outcome"] == "rate_limited"));
        assert_eq!(audit.recent(10).len(), 1, "recent holds commands only");
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
