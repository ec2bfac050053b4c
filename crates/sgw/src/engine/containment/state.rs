//! The state directory's record of what this instance started, so the next
//! start finds what a crash (or a SIGKILL of sgw) left behind.
//!
//! The record is written once, at start: every child's cgroup lives under
//! one subtree and every process carries the instance's marker, so the
//! subtree path and the instance id are enough to find all of them. A lock
//! on the directory keeps a second sgw from sharing it (and from taking a
//! live instance's processes for leftovers).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

const LOCK_FILE: &str = "lock";
const RECORD_FILE: &str = "containment.json";

/// What one instance recorded about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The marker value prefix its children carry (`SGW_UNIT`).
    pub instance: String,
    pub pid: u32,
    /// Its start time in clock ticks after boot: nothing it started can
    /// be older.
    pub start_ticks: u64,
    pub mode: String,
    /// Its cgroup subtree (cgroup mode).
    pub subtree: Option<PathBuf>,
}

/// The locked state directory.
#[derive(Debug)]
pub struct StateDir {
    pub dir: PathBuf,
    _lock: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state_dir {dir}: {error}")]
    Io { dir: PathBuf, error: io::Error },
    #[error(
        "state_dir {dir} is in use by another sgw (pid {holder}); give each instance its own state_dir"
    )]
    Locked { dir: PathBuf, holder: String },
}

impl StateDir {
    /// Creates (mode 0700) and locks the directory, and reads what the
    /// previous instance recorded.
    pub fn open(dir: &Path) -> Result<(Self, Option<Record>), StateError> {
        let io_error = |error| StateError::Io {
            dir: dir.to_owned(),
            error,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error)?;
        let lock_path = dir.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_error)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                let holder = fs::read_to_string(&lock_path)
                    .map(|pid| pid.trim().to_owned())
                    .unwrap_or_default();
                return Err(StateError::Locked {
                    dir: dir.to_owned(),
                    holder,
                });
            }
            Err((_, errno)) => return Err(io_error(io::Error::from(errno))),
        };
        lock.set_len(0).map_err(io_error)?;
        writeln!(lock, "{}", std::process::id()).map_err(io_error)?;
        let previous = fs::read(dir.join(RECORD_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        Ok((
            Self {
                dir: dir.to_owned(),
                _lock: lock,
            },
            previous,
        ))
    }

    /// Replaces the record atomically (write, fsync, rename).
    pub fn write(&self, record: &Record) -> io::Result<()> {
        let temporary = self.dir.join(format!("{RECORD_FILE}.tmp"));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(record).map_err(io::Error::other)?)?;
        file.sync_all()?;
        fs::rename(&temporary, self.dir.join(RECORD_FILE))
    }

    /// Clears the record after a clean shutdown: nothing is left to find.
    pub fn clear(&self) {
        let _ = fs::remove_file(self.dir.join(RECORD_FILE));
    }
}
