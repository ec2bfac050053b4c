//! The event journal on disk: SQLite in WAL mode, `state_dir/journal.sqlite3`.
//!
//! SQLite rather than a file format of our own: its commits are atomic
//! (a transaction torn by a crash is rolled back by SQLite itself and never
//! read as data), WAL lets one writer append while readers read, and an
//! operator can inspect the journal with the `sqlite3` shell. It is
//! compiled in (`bundled`), so no system library is needed.
//!
//! Publishing stays in memory: the ring hands each record to a channel
//! and one writer thread commits whatever has queued up in one
//! transaction (group commit), so the publish path never touches the disk.
//! What a `kill -9` can lose is what sat in that queue: the writer keeps a
//! *reservation* of sequences ahead of what it stored, and the next start
//! continues after the reservation, so a lost sequence is never handed out
//! again: subscribers see the hole as a `lost` gap.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use tokio::sync::oneshot;

use super::ring::{Persist, Record, Restore};
use super::writer::WriterThread;
use crate::model::Event;

/// The file under `state_dir`.
pub const FILE_NAME: &str = "journal.sqlite3";

/// Most records one transaction takes from the queue.
const MAX_BATCH: usize = 8192;
/// Smallest reservation kept ahead of the newest stored sequence.
const MIN_RESERVATION: u64 = 1024;
/// Pause after each commit so the next batch gathers in the queue: the
/// writer then finds records waiting instead of parking on an empty
/// queue, and publishers do not pay a thread wake-up per record.
const GATHER: Duration = Duration::from_millis(2);
/// How often retention runs (it also runs when the byte bound is passed).
const RETENTION_EVERY: Duration = Duration::from_secs(30);

/// How hard a commit is pushed to the disk (`[journal] sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncPolicy {
    /// `synchronous = NORMAL`: commits survive a crash of sgw (they are in
    /// the kernel's page cache); a power loss may take the last ones.
    #[default]
    Normal,
    /// `synchronous = FULL`: every commit is fsync'd; survives power loss.
    Full,
    /// `synchronous = OFF`: no fsync at all; a power loss may corrupt.
    Off,
}

impl SyncPolicy {
    fn pragma(self) -> &'static str {
        match self {
            SyncPolicy::Normal => "NORMAL",
            SyncPolicy::Full => "FULL",
            SyncPolicy::Off => "OFF",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SyncPolicy::Normal => "normal",
            SyncPolicy::Full => "full",
            SyncPolicy::Off => "off",
        }
    }
}

/// Where and how the journal is kept.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The directory (the state directory).
    pub dir: PathBuf,
    pub sync: SyncPolicy,
    /// Oldest events go once the stored bodies pass this many bytes.
    pub retain_bytes: u64,
    /// Events older than this go.
    pub retain_age: Duration,
}

/// Why the journal could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("event journal {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("event journal writer thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("could not set the damaged event journal aside: {0}")]
    SetAside(#[source] std::io::Error),
}

/// What a previous run left, as found at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Whether the previous run closed the journal (a clean shutdown).
    pub clean: bool,
    /// Sequences the previous run may have handed out but did not store.
    pub lost: Option<(u64, u64)>,
    /// Stored rows that could not be decoded (skipped, never served).
    pub undecodable: u64,
    /// Where a damaged journal file was moved (a new journal started).
    pub set_aside: Option<PathBuf>,
}

/// Counters the writer keeps (for benchmarks and state).
#[derive(Debug, Default)]
pub struct StoreStats {
    pub stored: AtomicU64,
    pub commits: AtomicU64,
    pub queued: AtomicU64,
    pub deleted: AtomicU64,
}

/// An open journal: its identity, what to restore the ring from, and the
/// writer.
pub struct Opened {
    pub journal_id: String,
    /// Where the log journal went on at the last clean shutdown (1 if
    /// never): its sequences start no lower, also without log files.
    pub log_next: u64,
    pub recovery: Recovery,
    pub restore: Restore<Event>,
    pub store: EventStore,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("journal_id", &self.journal_id)
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}

enum Message {
    Record(Arc<Record<Event>>),
    /// Store everything queued, mark the journal cleanly closed, answer.
    /// With the log journal's next sequence, kept for the next start.
    Close(oneshot::Sender<()>, u64),
}

/// The writer's handle: close it at a clean shutdown.
pub struct EventStore {
    writer: WriterThread<Message>,
    stats: Arc<StoreStats>,
    path: PathBuf,
}

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

struct Sink {
    sender: Sender<Message>,
    stats: Arc<StoreStats>,
}

impl Persist<Event> for Sink {
    fn persist(&self, record: &Arc<Record<Event>>) {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        // The writer only goes away with the process (or after close, when
        // late events are kept in memory only): nothing to do on error.
        let _ = self.sender.send(Message::Record(Arc::clone(record)));
    }
}

/// Opens (or creates) the journal in `config.dir`, reads the newest
/// `capacity` events back and starts the writer.
pub fn open(config: &StoreConfig, capacity: usize) -> Result<Opened, StoreError> {
    let path = config.dir.join(FILE_NAME);
    let failed = |source| StoreError::Sqlite {
        path: path.clone(),
        source,
    };
    // A file that is not a database (or is damaged beyond what SQLite's
    // own recovery handles) is set aside, not deleted, and a new journal
    // starts: the supervisor comes up, clients get a reset, and the old
    // file is there for whoever wants to look at it.
    let (mut conn, journal_id, (history, undecodable), set_aside) =
        match read(&path, config.sync, capacity) {
            Ok((conn, id, history)) => (conn, id, history, None),
            Err(error) if is_damaged(&error) => {
                let aside = set_aside(&path).map_err(StoreError::SetAside)?;
                tracing::error!(
                    %error,
                    set_aside = %aside.display(),
                    "the event journal is damaged: it was set aside and a new journal starts"
                );
                let (conn, id, history) = read(&path, config.sync, capacity).map_err(failed)?;
                (conn, id, history, Some(aside))
            }
            Err(error) => return Err(failed(error)),
        };
    let last_stored: u64 = conn
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| u64::try_from(n).unwrap_or(0))
        .map_err(failed)?;
    let reserved = meta_u64(&conn, "reserved").map_err(failed)?.unwrap_or(0);
    let clean = meta_u64(&conn, "clean").map_err(failed)? != Some(0);
    let log_next = meta_u64(&conn, "log_next").map_err(failed)?.unwrap_or(1);
    let lost = (!clean && reserved > last_stored).then_some((last_stored + 1, reserved));
    let next_sequence = last_stored.max(reserved) + 1;
    // From here on the journal is open: a crash before close is unclean,
    // and the sequences up to the reservation may be handed out.
    {
        let tx = conn.transaction().map_err(failed)?;
        set_meta(&tx, "clean", 0).map_err(failed)?;
        set_meta(&tx, "reserved", next_sequence - 1 + MIN_RESERVATION).map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    let stats = Arc::new(StoreStats::default());
    let (sender, receiver) = channel();
    let writer = Writer {
        conn,
        receiver,
        stats: Arc::clone(&stats),
        reserved: next_sequence - 1 + MIN_RESERVATION,
        last_stored,
        bytes: 0,
        retention: (config.retain_bytes, config.retain_age),
        last_retention: Instant::now(),
    };
    let thread = WriterThread::start("sgw-journal", sender.clone(), move || writer.run())
        .map_err(StoreError::Thread)?;
    Ok(Opened {
        journal_id,
        log_next,
        recovery: Recovery {
            clean,
            lost,
            undecodable,
            set_aside,
        },
        restore: Restore {
            history,
            next_sequence,
            sink: Some(Box::new(Sink {
                sender: sender.clone(),
                stats: Arc::clone(&stats),
            })),
        },
        store: EventStore {
            writer: thread,
            stats,
            path,
        },
    })
}

type Read = (Connection, String, (Vec<Record<Event>>, u64));

/// Opens the file and reads what the ring is restored from.
fn read(path: &Path, sync: SyncPolicy, capacity: usize) -> rusqlite::Result<Read> {
    let conn = Connection::open(path)?;
    prepare(&conn, sync)?;
    let id = identity(&conn)?;
    let history = history(&conn, capacity)?;
    Ok((conn, id, history))
}

pub(crate) fn is_damaged(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

/// Moves a SQLite file (and its WAL and shared-memory files) to
/// `NAME.damaged-SECONDS` (unix time), kept for whoever wants to look.
pub(crate) fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = PathBuf::from(format!("{}.damaged-{stamp}", path.display()));
    std::fs::rename(path, &aside)?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            std::fs::rename(&side, format!("{}{suffix}", aside.display()))?;
        }
    }
    Ok(aside)
}

/// A fresh random journal id (also used for a journal that is not kept).
pub fn new_journal_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

fn prepare(conn: &Connection, sync: SyncPolicy) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS events (
             seq INTEGER PRIMARY KEY,
             time_ns INTEGER NOT NULL,
             body BLOB NOT NULL
         );
         CREATE INDEX IF NOT EXISTS events_time ON events (time_ns);",
    )
}

fn identity(conn: &Connection) -> rusqlite::Result<String> {
    let existing: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'journal_id'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let id = new_journal_id();
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('journal_id', ?1)",
        params![id],
    )?;
    Ok(id)
}

fn meta_u64(conn: &Connection, key: &str) -> rusqlite::Result<Option<u64>> {
    let value: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(value.and_then(|v| v.parse().ok()))
}

fn set_meta(conn: &Connection, key: &str, value: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value.to_string()],
    )?;
    Ok(())
}

/// The newest `capacity` events, oldest first, and how many rows could
/// not be decoded.
fn history(conn: &Connection, capacity: usize) -> rusqlite::Result<(Vec<Record<Event>>, u64)> {
    let mut statement =
        conn.prepare("SELECT seq, time_ns, body FROM events ORDER BY seq DESC LIMIT ?1")?;
    let limit = i64::try_from(capacity).unwrap_or(i64::MAX);
    let rows = statement.query_map(params![limit], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut records = Vec::new();
    let mut undecodable = 0;
    for row in rows {
        let (seq, time_ns, body) = row?;
        match serde_json::from_slice::<Event>(&body) {
            Ok(body) => records.push(Record {
                sequence: u64::try_from(seq).unwrap_or(0),
                time: UNIX_EPOCH + Duration::from_nanos(u64::try_from(time_ns).unwrap_or(0)),
                body,
            }),
            Err(error) => {
                undecodable += 1;
                tracing::warn!(seq, %error, "skipping an undecodable event in the journal");
            }
        }
    }
    records.reverse();
    Ok((records, undecodable))
}

impl EventStore {
    /// Stores what is queued, marks the journal cleanly closed and stops
    /// the writer. Events published afterwards stay in memory only.
    pub async fn close(&self, log_next: u64) {
        self.writer
            .close(|done| Message::Close(done, log_next))
            .await;
    }

    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

struct Writer {
    conn: Connection,
    receiver: Receiver<Message>,
    stats: Arc<StoreStats>,
    /// Highest sequence the store has promised not to reuse.
    reserved: u64,
    last_stored: u64,
    /// Body bytes stored (0 until retention has counted them).
    bytes: u64,
    retention: (u64, Duration),
    last_retention: Instant,
}

impl Writer {
    fn run(mut self) {
        self.bytes = self
            .conn
            .query_row(
                "SELECT COALESCE(SUM(length(body)), 0) FROM events",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| u64::try_from(n).unwrap_or(0))
            .unwrap_or(0);
        while let Ok(first) = self.receiver.recv() {
            let mut batch = vec![first];
            let mut disconnected = false;
            while batch.len() < MAX_BATCH {
                match self.receiver.try_recv() {
                    Ok(message) => batch.push(message),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
            let mut close = None;
            let records: Vec<Arc<Record<Event>>> = batch
                .into_iter()
                .filter_map(|message| match message {
                    Message::Record(record) => Some(record),
                    Message::Close(done, log_next) => {
                        close = Some((done, log_next));
                        None
                    }
                })
                .collect();
            if let Err(error) = self.commit(&records, close.as_ref().map(|(_, next)| *next)) {
                tracing::error!(%error, records = records.len(), "could not store events");
            }
            if let Some((done, _)) = close {
                let _ = done.send(());
                return;
            }
            if disconnected {
                return;
            }
            self.retain();
            std::thread::sleep(GATHER);
        }
    }

    /// One transaction: the records, and the reservation moved ahead of
    /// them (or, at close, down to them with the journal marked clean).
    /// `close`: the log journal's next sequence at a clean shutdown.
    fn commit(
        &mut self,
        records: &[Arc<Record<Event>>],
        close: Option<u64>,
    ) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO events (seq, time_ns, body) VALUES (?1, ?2, ?3)",
            )?;
            for record in records {
                let body = match serde_json::to_vec(&record.body) {
                    Ok(body) => body,
                    Err(error) => {
                        tracing::error!(seq = record.sequence, %error, "unencodable event");
                        continue;
                    }
                };
                let time_ns = record
                    .time
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
                self.bytes += body.len() as u64;
                insert.execute(params![
                    i64::try_from(record.sequence).unwrap_or(i64::MAX),
                    time_ns,
                    body
                ])?;
                self.last_stored = self.last_stored.max(record.sequence);
            }
        }
        let backlog = self
            .stats
            .queued
            .load(Ordering::Relaxed)
            .saturating_sub(self.stats.stored.load(Ordering::Relaxed) + records.len() as u64);
        if let Some(log_next) = close {
            set_meta(&tx, "reserved", self.last_stored)?;
            set_meta(&tx, "clean", 1)?;
            set_meta(&tx, "log_next", log_next)?;
        } else {
            // Keep at least twice the current backlog (and a floor) ahead,
            // so a burst cannot outrun the promise before the next commit.
            let ahead = MIN_RESERVATION.max(backlog.saturating_mul(2));
            if self.last_stored + ahead / 2 > self.reserved {
                self.reserved = self.last_stored + ahead;
                set_meta(&tx, "reserved", self.reserved)?;
            }
        }
        tx.commit()?;
        self.stats
            .stored
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes what is older than `retain_age`, then the oldest events
    /// while the stored bodies exceed `retain_bytes`.
    fn retain(&mut self) {
        let (max_bytes, max_age) = self.retention;
        let due = self.last_retention.elapsed() >= RETENTION_EVERY;
        if !due && self.bytes <= max_bytes {
            return;
        }
        self.last_retention = Instant::now();
        let result = (|| -> rusqlite::Result<u64> {
            let mut deleted = 0u64;
            if due {
                let cutoff = SystemTime::now()
                    .checked_sub(max_age)
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
                deleted += self
                    .conn
                    .execute("DELETE FROM events WHERE time_ns < ?1", params![cutoff])?
                    as u64;
                self.bytes = self.conn.query_row(
                    "SELECT COALESCE(SUM(length(body)), 0) FROM events",
                    [],
                    |r| r.get::<_, i64>(0).map(|n| u64::try_from(n).unwrap_or(0)),
                )?;
            }
            while self.bytes > max_bytes {
                // Oldest first, a thousand at a time: find where the
                // excess ends, delete up to there.
                let mut statement = self.conn.prepare_cached(
                    "SELECT seq, length(body) FROM events ORDER BY seq LIMIT 1000",
                )?;
                let rows: Vec<(i64, i64)> = statement
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let Some(&(last_seq, _)) = rows.last() else {
                    self.bytes = 0;
                    break;
                };
                let mut cut = last_seq;
                let mut freed = 0u64;
                for (seq, len) in &rows {
                    freed += u64::try_from(*len).unwrap_or(0);
                    cut = *seq;
                    if self.bytes.saturating_sub(freed) <= max_bytes {
                        break;
                    }
                }
                deleted += self
                    .conn
                    .execute("DELETE FROM events WHERE seq <= ?1", params![cut])?
                    as u64;
                self.bytes = self.bytes.saturating_sub(freed);
            }
            Ok(deleted)
        })();
        match result {
            Ok(deleted) => {
                self.stats.deleted.fetch_add(deleted, Ordering::Relaxed);
            }
            Err(error) => tracing::error!(%error, "journal retention failed"),
        }
    }
}
