//! Output capture: a child's stdout and stderr, split into lines, passed
//! through the child's rate limit and published to the log journal (which
//! keeps them in memory and in the child's log file).
//!
//! The pipes are always drained, so a child never blocks on a full pipe
//! because of its rate limit: while it is over the limit, what it writes is
//! only scanned for newlines and counted, never turned into lines. Only a
//! disk that cannot keep up with what does pass slows a child down.

mod gate;
mod split;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;
use tokio_util::codec::Decoder;

pub use split::MAX_LINE_BYTES;

use crate::journal::LogJournal;
use crate::model::{ChildId, ChildSpec, LogLine, LogPolicy, LogStream};
use gate::{RateGate, Verdict};
use split::{Chunk, LineSplitter};

/// Bytes asked of the pipe per read (a pipe holds 64 KiB by default).
const READ_BYTES: usize = 64 * 1024;

/// The log journal the engine starts with: memory only without a state
/// directory; else also kept in `STATE_DIR/logs`, with what the files hold
/// read back. A directory that cannot be used costs the files, not the
/// start (the reason is logged).
pub fn open_journal(
    capacity: usize,
    defaults: &LogPolicy,
    state_dir: Option<&Path>,
    specs: &[ChildSpec],
    first_sequence: u64,
) -> LogJournal {
    let Some(state_dir) = state_dir else {
        return LogJournal::in_memory(capacity, defaults, first_sequence);
    };
    let dir = state_dir.join("logs");
    let policies: Vec<(ChildId, LogPolicy)> = specs
        .iter()
        .map(|spec| (spec.id.clone(), defaults.for_child(&spec.logs)))
        .collect();
    match LogJournal::open(capacity, defaults, &policies, &dir, first_sequence) {
        Ok(journal) => journal,
        Err(error) => {
            tracing::warn!(
                dir = %dir.display(),
                "cannot keep captured output in files, memory only: {error}"
            );
            LogJournal::in_memory(capacity, defaults, first_sequence)
        }
    }
}

/// What capture keeps across a child's runs: the journal, the `[journal]`
/// defaults and each child's rate limit.
#[derive(Debug)]
pub struct Output {
    logs: LogJournal,
    defaults: LogPolicy,
    gates: Mutex<HashMap<ChildId, Arc<RateGate>>>,
}

impl Output {
    pub fn new(logs: LogJournal, defaults: LogPolicy) -> Self {
        Self {
            logs,
            defaults,
            gates: Mutex::new(HashMap::new()),
        }
    }

    /// Applies `spec`'s log settings and starts capturing a run's pipes.
    pub fn attach<O, E>(
        &self,
        spec: &ChildSpec,
        generation: u64,
        stdout: Option<O>,
        stderr: Option<E>,
    ) where
        O: AsyncRead + Unpin + Send + 'static,
        E: AsyncRead + Unpin + Send + 'static,
    {
        let policy = self.defaults.for_child(&spec.logs);
        self.logs.configure(&spec.id, &policy);
        let gate = self.gate(&spec.id, &policy);
        let capture = |stream| Capture {
            stream,
            child_id: spec.id.clone(),
            generation,
            logs: self.logs.clone(),
            gate: Arc::clone(&gate),
            splitter: LineSplitter::new(MAX_LINE_BYTES),
            mid_line: false,
        };
        if let Some(stdout) = stdout {
            tokio::spawn(capture(LogStream::Stdout).run(stdout));
        }
        if let Some(stderr) = stderr {
            tokio::spawn(capture(LogStream::Stderr).run(stderr));
        }
    }

    /// The child's gate: the same across runs unless its limit changed.
    fn gate(&self, child: &ChildId, policy: &LogPolicy) -> Arc<RateGate> {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        match gates.get(child) {
            Some(gate)
                if gate.burst == policy.rate_burst && gate.interval == policy.rate_interval =>
            {
                Arc::clone(gate)
            }
            _ => {
                let gate = Arc::new(RateGate::new(policy.rate_burst, policy.rate_interval));
                gates.insert(child.clone(), Arc::clone(&gate));
                gate
            }
        }
    }
}

/// One pipe of one run.
struct Capture {
    stream: LogStream,
    child_id: ChildId,
    generation: u64,
    logs: LogJournal,
    gate: Arc<RateGate>,
    splitter: LineSplitter,
    /// Inside a line that was already counted as suppressed: its rest is
    /// dropped too.
    mid_line: bool,
}

impl Capture {
    /// Reads the pipe to EOF (or a read error: the child side is gone).
    async fn run<R: AsyncRead + Unpin>(mut self, mut reader: R) {
        let mut buf = BytesMut::with_capacity(READ_BYTES);
        loop {
            buf.reserve(READ_BYTES);
            let due = self.gate.notice_due();
            let read = tokio::select! {
                read = reader.read_buf(&mut buf) => read,
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    // The window ended with the child silent: announce now.
                    if let Some(count) = self.gate.take_if_over(Instant::now()) {
                        self.announce(count).await;
                    }
                    continue;
                }
            };
            let eof = !matches!(read, Ok(n) if n > 0);
            self.process(&mut buf, eof).await;
            if eof {
                break;
            }
        }
        if let Some(count) = self.gate.take() {
            self.announce(count).await;
        }
    }

    /// Publishes, or drops and counts, every complete line in `buf` (and
    /// what is left at EOF).
    async fn process(&mut self, buf: &mut BytesMut, eof: bool) {
        let now = Instant::now();
        // The lines of this read go out together (one lock, one message
        // to the file writer), before any notice that follows them.
        let mut lines = Vec::new();
        loop {
            if self.gate.limited() {
                if self.gate.suppressing(now) {
                    self.drop_all(buf);
                    break;
                }
                if self.mid_line && !self.skip_rest_of_line(buf) {
                    break;
                }
                if let Some(count) = self.gate.take_if_over(now) {
                    self.logs.capture_batch(std::mem::take(&mut lines)).await;
                    self.announce(count).await;
                }
            }
            let chunk = if eof {
                self.splitter.decode_eof(buf)
            } else {
                self.splitter.decode(buf)
            };
            let Ok(Some(chunk)) = chunk else {
                break;
            };
            match self.gate.admit(now) {
                Verdict::Pass => lines.push(self.line(chunk)),
                Verdict::Drop => self.mid_line = chunk.continues,
            }
        }
        self.logs.capture_batch(lines).await;
    }

    /// Counts the lines in `buf` as suppressed and drops them: a scan for
    /// newlines, no line is made.
    fn drop_all(&mut self, buf: &mut BytesMut) {
        if buf.is_empty() {
            return;
        }
        let newlines = buf.iter().filter(|&&b| b == b'\n').count() as u64;
        let ends_inside = buf.last() != Some(&b'\n');
        // The first newline may end a line already counted; a line left
        // open at the end is counted now.
        let lines = if newlines == 0 {
            u64::from(!self.mid_line)
        } else {
            newlines - u64::from(self.mid_line) + u64::from(ends_inside)
        };
        self.gate.dropped(lines);
        self.mid_line = ends_inside;
        buf.clear();
        self.splitter.reset();
    }

    /// Drops the rest of a suppressed line; false if it goes on past `buf`.
    fn skip_rest_of_line(&mut self, buf: &mut BytesMut) -> bool {
        self.splitter.reset();
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) => {
                let _ = buf.split_to(end + 1);
                self.mid_line = false;
                true
            }
            None => {
                buf.clear();
                false
            }
        }
    }

    fn line(&self, chunk: Chunk) -> LogLine {
        LogLine {
            child_id: self.child_id.clone(),
            generation: self.generation,
            stream: self.stream,
            text: String::from_utf8_lossy(&chunk.bytes).into_owned(),
            truncated: chunk.continues,
            suppressed: 0,
        }
    }

    async fn announce(&self, count: u64) {
        self.logs
            .capture(LogLine::suppression(
                self.child_id.clone(),
                self.generation,
                self.stream,
                count,
                self.gate.burst,
                self.gate.interval,
            ))
            .await;
    }
}
