//! Runtime intent: what operators changed while sgw ran (a pause, a
//! quarantine, an added or a removed child, and a quarantine the restart
//! budget decided), kept in `state_dir/runtime.sqlite3` and applied again at
//! the next start, so a restart of sgw does not undo decisions.
//!
//! The rule against the config: each record keeps the spec it was made
//! under. A child whose config spec is no longer that spec was changed by
//! the operator since, and the config wins (its record is dropped and
//! reported as `overridden`); likewise an added child whose id the config
//! now declares. `sgw serve --reset-state` drops every record.
//!
//! Writes go through one thread in order, so a pause followed at once by a
//! resume is stored as resumed; callers never wait for the disk.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::channel;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use crate::journal::writer::WriterThread;
use crate::model::{ChildSpec, EventKind};

/// The file under `state_dir`.
pub const FILE_NAME: &str = "runtime.sqlite3";

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum IntentError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("writer thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("cannot set the damaged file aside: {0}")]
    SetAside(#[source] std::io::Error),
}

/// A state an operator (or the restart budget) put a child in that it
/// keeps until someone takes it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    Paused,
    Quarantined,
}

impl Hold {
    fn as_str(self) -> &'static str {
        match self {
            Hold::Paused => "paused",
            Hold::Quarantined => "quarantined",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "paused" => Some(Hold::Paused),
            "quarantined" => Some(Hold::Quarantined),
            _ => None,
        }
    }
}

/// One change to record.
#[derive(Debug)]
pub(crate) enum Change {
    /// The child's hold changed (`None`: it runs again).
    Hold(Arc<ChildSpec>, Option<Hold>),
    Added(Arc<ChildSpec>),
    Removed(Arc<ChildSpec>),
    /// The record no longer applies (the config overrides it).
    Forget(String),
}

enum Message {
    Change(Change),
    Close(oneshot::Sender<()>),
}

/// One child's record as stored.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    hold: Option<Hold>,
    added: bool,
    removed: bool,
    /// The spec (JSON) the record was made under.
    spec: String,
}

/// What the records say, read at start.
#[derive(Debug, Default)]
pub(crate) struct Intent {
    rows: BTreeMap<String, Row>,
}

/// The tree to start, with each child's hold, and the event that says
/// what was applied again (`None` when nothing was).
#[derive(Debug)]
pub(crate) struct Applied {
    pub children: Vec<(ChildSpec, Option<Hold>)>,
    pub event: Option<EventKind>,
}

fn spec_json(spec: &ChildSpec) -> String {
    serde_json::to_string(spec).unwrap_or_default()
}

impl Intent {
    /// Applies the records to the config's children (see the module's
    /// rule). Records that no longer apply are dropped from the store too.
    pub(crate) fn apply(&self, config: Vec<ChildSpec>, store: &IntentStore) -> Applied {
        let mut paused = Vec::new();
        let mut quarantined = Vec::new();
        let mut added = Vec::new();
        let mut removed = Vec::new();
        let mut overridden = Vec::new();
        let declared: BTreeSet<String> = config.iter().map(|s| s.id.to_string()).collect();
        let mut held = |spec: &ChildSpec, hold: Option<Hold>| match hold {
            Some(Hold::Paused) => paused.push(spec.id.clone()),
            Some(Hold::Quarantined) => quarantined.push(spec.id.clone()),
            None => {}
        };
        let mut children = Vec::new();
        for spec in config {
            let Some(row) = self.rows.get(spec.id.as_str()) else {
                children.push((spec, None));
                continue;
            };
            if row.added || row.spec != spec_json(&spec) {
                overridden.push(spec.id.clone());
                store.forget(spec.id.as_str());
                children.push((spec, None));
                continue;
            }
            if row.removed {
                removed.push(spec.id.clone());
                continue;
            }
            held(&spec, row.hold);
            children.push((spec, row.hold));
        }
        for (id, row) in &self.rows {
            if !row.added || row.removed || declared.contains(id) {
                continue;
            }
            let Ok(spec) = serde_json::from_str::<ChildSpec>(&row.spec) else {
                tracing::warn!(child = %id, "an added child's recorded spec no longer reads: dropped");
                store.forget(id);
                continue;
            };
            added.push(spec.id.clone());
            held(&spec, row.hold);
            children.push((spec, row.hold));
        }
        let nothing = paused.is_empty()
            && quarantined.is_empty()
            && added.is_empty()
            && removed.is_empty()
            && overridden.is_empty();
        Applied {
            children,
            event: (!nothing).then_some(EventKind::RuntimeRestored {
                paused,
                quarantined,
                added,
                removed,
                overridden,
            }),
        }
    }
}

/// The store's handle; `record` never waits.
pub(crate) struct IntentStore {
    writer: WriterThread<Message>,
}

impl std::fmt::Debug for IntentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IntentStore")
    }
}

impl IntentStore {
    /// Opens (or creates) the store in `dir` and reads it; with `reset`,
    /// every record is dropped first.
    ///
    /// A file that is not a database is set aside (as the event journal
    /// does) and the config alone starts: what operators changed before is
    /// lost, and said so, but the supervisor comes up.
    pub(crate) fn open(dir: &Path, reset: bool) -> Result<(Self, Intent), IntentError> {
        let path = dir.join(FILE_NAME);
        let (conn, intent) = match connect(&path, reset) {
            Err(error) if crate::journal::store::is_damaged(&error) => {
                let aside =
                    crate::journal::store::set_aside(&path).map_err(IntentError::SetAside)?;
                tracing::error!(
                    %error,
                    set_aside = %aside.display(),
                    "the runtime state is damaged: it was set aside, and runtime changes \
                     from before (pauses, quarantines, added and removed children) are not \
                     applied again"
                );
                connect(&path, reset)?
            }
            opened => opened?,
        };
        Self::start(conn, intent)
    }

    fn start(conn: Connection, intent: Intent) -> Result<(Self, Intent), IntentError> {
        let (sender, receiver) = channel::<Message>();
        let writer = WriterThread::start("sgw-intent", sender, move || {
            while let Ok(message) = receiver.recv() {
                match message {
                    Message::Change(change) => {
                        if let Err(error) = write(&conn, &change) {
                            tracing::error!(%error, ?change, "could not record runtime intent");
                        }
                    }
                    Message::Close(done) => {
                        let _ = done.send(());
                        return;
                    }
                }
            }
        })
        .map_err(IntentError::Thread)?;
        Ok((Self { writer }, intent))
    }

    pub(crate) fn record(&self, change: Change) {
        self.writer.send(Message::Change(change));
    }

    /// Drops a record that no longer applies.
    fn forget(&self, id: &str) {
        self.record(Change::Forget(id.to_owned()));
    }

    /// Writes what is queued and stops the writer.
    pub(crate) async fn close(&self) {
        self.writer.close(Message::Close).await;
    }
}

fn read(conn: &Connection) -> rusqlite::Result<Intent> {
    let mut statement = conn.prepare("SELECT child_id, hold, added, removed, spec FROM intent")?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, Option<String>>(1)?,
            row.get::<_, bool>(2)?,
            row.get::<_, bool>(3)?,
            row.get::<_, String>(4)?,
        ))
    })?;
    let mut intent = Intent::default();
    for row in rows {
        let (id, hold, added, removed, spec) = row?;
        intent.rows.insert(
            id,
            Row {
                hold: hold.as_deref().and_then(Hold::parse),
                added,
                removed,
                spec,
            },
        );
    }
    Ok(intent)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Opens the store at `path` and reads it (every record dropped first
/// with `reset`).
fn connect(path: &Path, reset: bool) -> rusqlite::Result<(Connection, Intent)> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS intent (
             child_id TEXT PRIMARY KEY,
             hold TEXT,
             added INTEGER NOT NULL,
             removed INTEGER NOT NULL,
             spec TEXT NOT NULL,
             updated_ns INTEGER NOT NULL
         );",
    )?;
    if reset {
        conn.execute("DELETE FROM intent", [])?;
    }
    let intent = read(&conn)?;
    Ok((conn, intent))
}

/// One change. A record that says nothing any more (no hold, not added,
/// not removed) is deleted.
fn write(conn: &Connection, change: &Change) -> rusqlite::Result<()> {
    match change {
        Change::Forget(id) => delete(conn, id),
        Change::Hold(spec, None) if !added(conn, spec.id.as_str())? => {
            delete(conn, spec.id.as_str())
        }
        Change::Hold(spec, hold) => {
            let added = added(conn, spec.id.as_str())?;
            upsert(conn, spec, hold.map(Hold::as_str), added, false)
        }
        Change::Added(spec) => upsert(conn, spec, None, true, false),
        // An added child removed again: nothing left to re-apply.
        Change::Removed(spec) if added(conn, spec.id.as_str())? => delete(conn, spec.id.as_str()),
        Change::Removed(spec) => upsert(conn, spec, None, false, true),
    }
}

fn delete(conn: &Connection, id: &str) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM intent WHERE child_id = ?1", params![id])
        .map(drop)
}

/// Whether the child's record says it was added at runtime.
fn added(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached("SELECT added FROM intent WHERE child_id = ?1")?
        .query_row(params![id], |row| row.get(0))
        .optional()
        .map(|added| added.unwrap_or(false))
}

fn upsert(
    conn: &Connection,
    spec: &ChildSpec,
    hold: Option<&str>,
    added: bool,
    removed: bool,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO intent (child_id, hold, added, removed, spec, updated_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (child_id) DO UPDATE SET hold = excluded.hold, added = excluded.added,
             removed = excluded.removed, spec = excluded.spec, updated_ns = excluded.updated_ns",
        params![
            spec.id.as_str(),
            hold,
            added,
            removed,
            spec_json(spec),
            now_ns()
        ],
    )?;
    Ok(())
}
