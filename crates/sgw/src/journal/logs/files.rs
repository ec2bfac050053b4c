//! Per-child log files, `DIR/<child>.log` rotated by size into
//! `<child>.log.1` … `.N` (supervisord's `stdout_logfile_maxbytes` /
//! `_backups`).
//!
//! One thread owns every file, so no async worker ever waits on the disk:
//! records reach it through a bounded queue (a full queue makes capture
//! wait, which is the disk's back-pressure on the child, like a slow
//! terminal's). The thread writes through a buffer and flushes it whenever
//! the queue runs dry, and at least every [`FLUSH_EVERY`] under a steady
//! stream: a kill -9 of the daemon loses what sat in the queue and the
//! buffers, a fraction of a second of output. Nothing is fsynced: a power
//! loss can also lose what the kernel had not written back.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::format;
use crate::journal::Record;
use crate::model::{ChildId, LogLine};

/// Records waiting for the writer thread.
const QUEUE: usize = 8192;
/// Longest a written line waits in a buffer while output keeps coming.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
const BUFFER: usize = 64 * 1024;

/// Where a child's file rotates and how many rotated files it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// 0: no file.
    pub max_bytes: u64,
    pub backups: u32,
}

enum Op {
    Append(Arc<Record<LogLine>>),
    /// The lines of one pipe read: one message, not one per line.
    Batch(Vec<Arc<Record<LogLine>>>),
    Sync(oneshot::Sender<()>),
}

type Rotations = Arc<Mutex<HashMap<ChildId, Rotation>>>;

/// The handle publishers use; the writer thread ends when the last one is
/// dropped, after writing everything queued.
#[derive(Debug)]
pub struct Files {
    queue: mpsc::Sender<Op>,
    rotations: Rotations,
    /// Records a non-waiting publish could not queue.
    unwritten: AtomicU64,
}

impl Files {
    /// Starts the writer for `dir` (created if missing); `default` applies
    /// to children never configured.
    pub fn start(dir: &Path, default: Rotation) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (queue, rx) = mpsc::channel(QUEUE);
        let rotations = Rotations::default();
        let writer = Writer {
            dir: dir.to_owned(),
            default,
            rotations: Arc::clone(&rotations),
            files: HashMap::new(),
            line: Vec::with_capacity(256),
        };
        std::thread::Builder::new()
            .name("sgw-logs".to_owned())
            .spawn(move || writer.run(rx))?;
        Ok(Self {
            queue,
            rotations,
            unwritten: AtomicU64::new(0),
        })
    }

    pub fn configure(&self, child: &ChildId, rotation: Rotation) {
        self.rotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(child.clone(), rotation);
    }

    /// Queues a record, waiting while the writer is behind.
    pub async fn append(&self, record: Arc<Record<LogLine>>) {
        if self.queue.send(Op::Append(record)).await.is_err() {
            self.unwritten.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues the records of one read, waiting while the writer is behind.
    pub async fn append_batch(&self, records: Vec<Arc<Record<LogLine>>>) {
        let count = records.len() as u64;
        if self.queue.send(Op::Batch(records)).await.is_err() {
            self.unwritten.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// Queues a record without waiting; a full queue loses it (counted).
    pub fn try_append(&self, record: Arc<Record<LogLine>>) {
        if self.queue.try_send(Op::Append(record)).is_err() {
            self.unwritten.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a non-waiting publish could not queue.
    pub fn unwritten(&self) -> u64 {
        self.unwritten.load(Ordering::Relaxed)
    }

    /// Resolves once everything queued before the call is written to the
    /// files (handed to the kernel, not fsynced).
    pub async fn sync(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Op::Sync(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// The path of `child`'s current file in `dir`.
pub fn current(dir: &Path, child: &ChildId) -> PathBuf {
    dir.join(format!("{child}.log"))
}

/// The path of `child`'s `n`th rotated file (1 is the newest).
pub fn rotated(dir: &Path, child: &ChildId, n: u32) -> PathBuf {
    dir.join(format!("{child}.log.{n}"))
}

struct Writer {
    dir: PathBuf,
    default: Rotation,
    rotations: Rotations,
    files: HashMap<ChildId, LogFile>,
    line: Vec<u8>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut flushed = Instant::now();
        loop {
            let op = match rx.try_recv() {
                Ok(op) => op,
                Err(mpsc::error::TryRecvError::Empty) => {
                    self.flush();
                    flushed = Instant::now();
                    match rx.blocking_recv() {
                        Some(op) => op,
                        None => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            match op {
                Op::Append(record) => self.append(&record),
                Op::Batch(records) => {
                    for record in &records {
                        self.append(record);
                    }
                }
                Op::Sync(done) => {
                    self.flush();
                    flushed = Instant::now();
                    let _ = done.send(());
                }
            }
            if flushed.elapsed() >= FLUSH_EVERY {
                self.flush();
                flushed = Instant::now();
            }
        }
        self.flush();
    }

    fn append(&mut self, record: &Record<LogLine>) {
        let child = &record.body.child_id;
        let rotation = self
            .rotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(child)
            .copied()
            .unwrap_or(self.default);
        if rotation.max_bytes == 0 {
            return;
        }
        self.line.clear();
        format::encode(record, &mut self.line);
        let file = self
            .files
            .entry(child.clone())
            .or_insert_with(|| LogFile::new(&self.dir, child));
        file.write(&self.line, rotation);
    }

    fn flush(&mut self) {
        for file in self.files.values_mut() {
            file.flush();
        }
    }
}

/// One child's current file, opened on first write.
struct LogFile {
    dir: PathBuf,
    child: ChildId,
    out: Option<BufWriter<File>>,
    size: u64,
    dirty: bool,
    /// An error was logged and nothing has succeeded since: do not log the
    /// same trouble once per line.
    failing: bool,
}

impl LogFile {
    fn new(dir: &Path, child: &ChildId) -> Self {
        Self {
            dir: dir.to_owned(),
            child: child.clone(),
            out: None,
            size: 0,
            dirty: false,
            failing: false,
        }
    }

    fn write(&mut self, line: &[u8], rotation: Rotation) {
        let result = self.try_write(line, rotation);
        self.outcome(result, "write");
    }

    fn try_write(&mut self, line: &[u8], rotation: Rotation) -> io::Result<()> {
        if self.out.is_none() {
            self.open()?;
        }
        if self.size > 0 && self.size + line.len() as u64 > rotation.max_bytes {
            self.rotate(rotation.backups)?;
            self.open()?;
        }
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        out.write_all(line)?;
        self.size += line.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Opens for appending. A last line torn by a crash is ended first,
    /// so the next record starts on a line of its own.
    fn open(&mut self) -> io::Result<()> {
        let path = current(&self.dir, &self.child);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o640)
            .open(&path)?;
        let mut size = file.metadata()?.len();
        let mut out = BufWriter::with_capacity(BUFFER, file);
        if size > 0 {
            let mut last = [0u8];
            out.get_ref().read_exact_at(&mut last, size - 1)?;
            if last[0] != b'\n' {
                out.write_all(b"\n")?;
                size += 1;
            }
        }
        self.size = size;
        self.out = Some(out);
        Ok(())
    }

    /// `.log` becomes `.log.1`, `.1` becomes `.2`, …; the oldest beyond
    /// `backups` is overwritten (or, with none kept, the file is removed).
    fn rotate(&mut self, backups: u32) -> io::Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush()?;
        }
        self.dirty = false;
        for n in (1..backups).rev() {
            let from = rotated(&self.dir, &self.child, n);
            match std::fs::rename(&from, rotated(&self.dir, &self.child, n + 1)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        let path = current(&self.dir, &self.child);
        if backups > 0 {
            std::fs::rename(&path, rotated(&self.dir, &self.child, 1))?;
        } else {
            std::fs::remove_file(&path)?;
        }
        self.size = 0;
        Ok(())
    }

    fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        if let Some(out) = self.out.as_mut() {
            let result = out.flush();
            self.outcome(result, "flush");
        }
    }

    fn outcome(&mut self, result: io::Result<()>, what: &str) {
        match result {
            Ok(()) => self.failing = false,
            Err(error) => {
                if !self.failing {
                    tracing::warn!(
                        child = %self.child,
                        dir = %self.dir.display(),
                        "cannot {what} the log file, lines are kept in memory only until it works again: {error}"
                    );
                }
                self.failing = true;
                // Reopen on the next line: the file may have been removed.
                self.out = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn record(sequence: u64, text: &str) -> Arc<Record<LogLine>> {
        Arc::new(Record {
            sequence,
            time: SystemTime::now(),
            body: super::super::test_line("web", text),
        })
    }

    /// Rotation keeps `backups` files of at most `max_bytes` each, the
    /// newest lines in `.log`; a torn last line is ended before appending.
    #[tokio::test]
    async fn rotation_keeps_bounded_backups_of_whole_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = ChildId::new("web").expect("id");
        std::fs::write(current(dir.path(), &child), b"torn").expect("seed");
        let files = Files::start(
            dir.path(),
            Rotation {
                max_bytes: 4096,
                backups: 2,
            },
        )
        .expect("start");
        for sequence in 1..=400 {
            files.append(record(sequence, &"x".repeat(50))).await;
        }
        files.sync().await;
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["web.log", "web.log.1", "web.log.2"]);
        for name in &names {
            let text = std::fs::read_to_string(dir.path().join(name)).expect("read");
            assert!(text.len() <= 4096, "{name}: {}", text.len());
            assert!(text.ends_with('\n'));
        }
        let newest = std::fs::read_to_string(current(dir.path(), &child)).expect("read");
        let last = newest.lines().last().expect("a line");
        assert!(last.contains(" 400 g1 stdout "), "{last}");
    }
}
