//! The log journal: captured lines under one gapless sequence across all
//! children, each child's in-memory tail bounded in bytes (`store`), read
//! through cursors that report only their own children's losses
//! (`subscription`), written to per-child rotated files (`files`, in the
//! format of `format`) and read back from them at start (`history`).
//!
//! Publishing is one short critical section (append, maybe evict) and one
//! wake-up signal, whatever the number of subscribers, as in the event ring.

mod files;
mod format;
mod history;
mod store;
mod subscription;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use tokio::sync::watch;

pub use subscription::LogSubscription;

use files::{Files, Rotation};
use store::Store;

use super::{Record, Start};
use crate::model::{ChildId, LogLine, LogPolicy};

struct Shared {
    store: Mutex<Store>,
    /// Carries the last published sequence; its change notification is the
    /// only thing a publisher does for subscribers.
    head: watch::Sender<u64>,
    files: Option<Files>,
    dir: Option<PathBuf>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // Every mutation leaves the store consistent between statements
        // that can panic, so poisoning is ignored.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Captured output of every child. Cloning gives another handle to the
/// same journal.
#[derive(Clone)]
pub struct LogJournal {
    shared: Arc<Shared>,
}

impl fmt::Debug for LogJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = self.shared.lock();
        f.debug_struct("LogJournal")
            .field("capacity", &store.capacity())
            .field("retained", &store.retained())
            .field("next_sequence", &store.next_sequence)
            .field("dir", &self.shared.dir)
            .finish()
    }
}

fn limit(policy: &LogPolicy) -> usize {
    usize::try_from(policy.memory_bytes).unwrap_or(usize::MAX)
}

fn rotation(policy: &LogPolicy) -> Rotation {
    Rotation {
        max_bytes: policy.file_max_bytes,
        backups: policy.file_backups,
    }
}

impl LogJournal {
    /// A memory-only journal of at most `capacity` lines, each child's
    /// tail bounded by the default [`LogPolicy`].
    pub fn new(capacity: usize) -> Self {
        Self::in_memory(capacity, &LogPolicy::default(), 1)
    }

    /// A memory-only journal whose first line gets `first_sequence`.
    pub fn in_memory(capacity: usize, defaults: &LogPolicy, first_sequence: u64) -> Self {
        Self::build(
            Store::new(capacity, limit(defaults), first_sequence),
            None,
            None,
        )
    }

    /// A journal kept in `dir` as well: each child's newest lines are read
    /// back from its files (`policies` gives children their own bounds,
    /// others get `defaults`), new lines continue after the highest
    /// sequence found there (or at `first_sequence`, if higher), and every
    /// line is appended to its child's file.
    pub fn open(
        capacity: usize,
        defaults: &LogPolicy,
        policies: &[(ChildId, LogPolicy)],
        dir: &Path,
        first_sequence: u64,
    ) -> io::Result<Self> {
        let policy_of = |child: &ChildId| {
            policies
                .iter()
                .find(|(id, _)| id == child)
                .map_or(*defaults, |(_, policy)| *policy)
        };
        let files = Files::start(dir, rotation(defaults))?;
        let history = history::load(dir, |child| limit(&policy_of(child)))?;
        if history.skipped > 0 {
            tracing::warn!(
                dir = %dir.display(),
                skipped = history.skipped,
                "log files hold lines that are not records (torn writes or edits): skipped"
            );
        }
        let mut store = Store::new(capacity, limit(defaults), first_sequence);
        for (child, policy) in policies {
            store.set_limit(child, limit(policy));
            files.configure(child, rotation(policy));
        }
        for record in history.records {
            store.restore(record);
        }
        store.next_sequence = store
            .next_sequence
            .max(history.last_sequence.saturating_add(1));
        Ok(Self::build(store, Some(files), Some(dir.to_owned())))
    }

    fn build(store: Store, files: Option<Files>, dir: Option<PathBuf>) -> Self {
        let last = store.next_sequence - 1;
        let (head, _) = watch::channel(last);
        Self {
            shared: Arc::new(Shared {
                store: Mutex::new(store),
                head,
                files,
                dir,
            }),
        }
    }

    /// Applies a child's settings: its in-memory bound (evicting at once if
    /// it shrank) and its file's rotation.
    pub fn configure(&self, child: &ChildId, policy: &LogPolicy) {
        self.shared.lock().set_limit(child, limit(policy));
        if let Some(files) = &self.shared.files {
            files.configure(child, rotation(policy));
        }
    }

    /// Where the log files are; `None` for a memory-only journal.
    pub fn directory(&self) -> Option<&Path> {
        self.shared.dir.as_deref()
    }

    fn append(&self, body: LogLine) -> Arc<Record<LogLine>> {
        let record = self.shared.lock().publish(body, SystemTime::now());
        self.shared.head.send_replace(record.sequence);
        record
    }

    /// Appends a line and returns its sequence. Never waits: for the file,
    /// a full queue loses the line (see [`LogJournal::unwritten`]).
    pub fn publish(&self, body: LogLine) -> u64 {
        let record = self.append(body);
        let sequence = record.sequence;
        if let Some(files) = &self.shared.files {
            files.try_append(record);
        }
        sequence
    }

    /// Appends a line, then waits for room in the file writer's queue: the
    /// path of captured output, on which a disk that falls behind slows the
    /// child down instead of losing its lines.
    pub async fn capture(&self, body: LogLine) -> u64 {
        let record = self.append(body);
        let sequence = record.sequence;
        if let Some(files) = &self.shared.files {
            files.append(record).await;
        }
        sequence
    }

    /// Appends the lines of one pipe read under one lock, with one wake-up
    /// for subscribers and one message to the file writer (waiting for
    /// room, as [`LogJournal::capture`] does).
    pub async fn capture_batch(&self, bodies: Vec<LogLine>) {
        if bodies.is_empty() {
            return;
        }
        let now = SystemTime::now();
        let records: Vec<Arc<Record<LogLine>>> = {
            let mut store = self.shared.lock();
            bodies
                .into_iter()
                .map(|body| store.publish(body, now))
                .collect()
        };
        if let Some(last) = records.last() {
            self.shared.head.send_replace(last.sequence);
        }
        if let Some(files) = &self.shared.files {
            files.append_batch(records).await;
        }
    }

    /// Resolves once every line published before is in its file (written
    /// to the kernel, not fsynced). At once without files.
    pub async fn sync(&self) {
        if let Some(files) = &self.shared.files {
            files.sync().await;
        }
    }

    /// Lines that never reached their file because a non-waiting publish
    /// found the writer's queue full.
    pub fn unwritten(&self) -> u64 {
        self.shared.files.as_ref().map_or(0, Files::unwritten)
    }

    /// Bytes `child` holds in memory: its text plus a fixed overhead a
    /// line (the record and its slot).
    pub fn retained_bytes(&self, child: &ChildId) -> usize {
        self.shared.lock().retained_bytes(child)
    }

    /// Sequence of the newest line (0 before the first).
    pub fn last_sequence(&self) -> u64 {
        self.shared.lock().next_sequence - 1
    }

    /// The oldest retained sequence and the newest published one (the
    /// oldest is one past the newest while nothing is retained).
    pub fn bounds(&self) -> (u64, u64) {
        let store = self.shared.lock();
        let oldest = store
            .tails
            .iter()
            .filter_map(|tail| tail.records.front())
            .map(|r| r.sequence)
            .min()
            .unwrap_or(store.next_sequence);
        (oldest, store.next_sequence - 1)
    }

    /// Sequences up to the newest that are not retained (evicted, or not
    /// read back after a restart).
    pub fn evicted(&self) -> u64 {
        let store = self.shared.lock();
        (store.next_sequence - 1).saturating_sub(store.retained() as u64)
    }

    /// `logs_capacity`: the most lines retained over all children.
    pub fn capacity(&self) -> usize {
        self.shared.lock().capacity()
    }

    /// The newest `n` retained lines of all children, oldest first.
    pub fn tail(&self, n: usize) -> Vec<Arc<Record<LogLine>>> {
        let store = self.shared.lock();
        let mut newest: Vec<Arc<Record<LogLine>>> = store
            .tails
            .iter()
            .flat_map(|tail| tail.records.iter().rev().take(n).cloned())
            .collect();
        newest.sort_unstable_by_key(|r| std::cmp::Reverse(r.sequence));
        newest.truncate(n);
        newest.reverse();
        newest
    }

    /// Ends every subscription once it has drained what is retained.
    /// Lines published after close are still kept and written; the owner
    /// awaits [`Self::sync`] for them to reach the files.
    pub fn close(&self) {
        let last = {
            let mut store = self.shared.lock();
            store.closed = true;
            store.next_sequence - 1
        };
        self.shared.head.send_replace(last);
    }

    /// A start point that replays the last `n` retained lines matching
    /// `pred` (all retained ones if there are fewer), as long as their
    /// `size` adds up to at most `max_bytes`: a reply's cost is bounded by
    /// the server, not by what the request asks for. The newest match is
    /// always included.
    pub fn start_for_last(
        &self,
        n: usize,
        max_bytes: usize,
        pred: impl Fn(&LogLine) -> bool,
        size: impl Fn(&LogLine) -> usize,
    ) -> Start {
        let store = self.shared.lock();
        // Each child's newest matches, as many as could make the cut; the
        // cut itself is made over all of them, newest first.
        let mut matches: Vec<(u64, usize)> = Vec::new();
        for tail in &store.tails {
            let mut bytes = 0usize;
            for record in tail.records.iter().rev().filter(|r| pred(&r.body)).take(n) {
                let cost = size(&record.body);
                matches.push((record.sequence, cost));
                bytes = bytes.saturating_add(cost);
                if bytes > max_bytes {
                    break;
                }
            }
        }
        drop(store);
        matches.sort_unstable_by_key(|&(sequence, _)| std::cmp::Reverse(sequence));
        let mut bytes = 0usize;
        let mut oldest = None;
        for (sequence, cost) in matches.into_iter().take(n) {
            bytes = bytes.saturating_add(cost);
            if bytes > max_bytes && oldest.is_some() {
                break;
            }
            oldest = Some(sequence);
        }
        oldest.map_or(Start::Live, |sequence| Start::After(sequence - 1))
    }

    /// Every child's lines from `start`.
    pub fn subscribe(&self, start: Start) -> LogSubscription {
        LogSubscription::new(Arc::clone(&self.shared), start, &[])
    }

    /// Only these children's lines from `start` (all children if empty):
    /// gaps report only their losses.
    pub fn subscribe_children(&self, start: Start, children: &[ChildId]) -> LogSubscription {
        LogSubscription::new(Arc::clone(&self.shared), start, children)
    }
}

/// A stdout line of generation 1, for the tests of this module's parts.
#[cfg(test)]
fn test_line(child: &str, text: &str) -> LogLine {
    LogLine {
        child_id: ChildId::new(child).expect("id"),
        generation: 1,
        stream: crate::model::LogStream::Stdout,
        text: text.to_owned(),
        truncated: false,
        suppressed: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::store::LINE_OVERHEAD;
    use super::test_line as line;
    use super::*;
    use crate::journal::{Gap, GapReason, Item};

    fn drain(sub: &mut LogSubscription) -> Vec<Item<LogLine>> {
        std::iter::from_fn(|| sub.try_next()).collect()
    }

    fn small() -> LogPolicy {
        LogPolicy {
            memory_bytes: 10 * (LINE_OVERHEAD as u64 + 100),
            ..LogPolicy::default()
        }
    }

    /// A reader of the quiet child gets all its lines and no gap although
    /// the flooder lost most of its own; a reader of everything is told
    /// about the flooder's losses, in-band, between the lines it gets.
    #[test]
    fn gaps_report_only_the_children_read() {
        let journal = LogJournal::in_memory(1_000_000, &small(), 1);
        let quiet = ChildId::new("quiet").expect("id");
        journal.publish(line("quiet", "first"));
        for _ in 0..100 {
            journal.publish(line("noisy", &"n".repeat(100)));
        }
        journal.publish(line("quiet", "second"));
        let mut only_quiet = journal.subscribe_children(Start::After(0), &[quiet]);
        let items = drain(&mut only_quiet);
        let texts: Vec<&str> = items
            .iter()
            .map(|item| match item {
                Item::Record(r) => r.body.text.as_str(),
                Item::Gap(gap) => panic!("a gap for lines it never wanted: {gap:?}"),
            })
            .collect();
        assert_eq!(texts, ["first", "second"]);
        assert_eq!(only_quiet.position(), 103);

        let mut everything = journal.subscribe(Start::After(0));
        let items = drain(&mut everything);
        assert!(matches!(&items[0], Item::Record(r) if r.sequence == 1));
        assert_eq!(
            items[1],
            Item::Gap(Gap {
                first_missing: 2,
                last_missing: 91,
                reason: GapReason::Evicted
            })
        );
        let sequences: Vec<u64> = items[2..]
            .iter()
            .map(|item| match item {
                Item::Record(r) => r.sequence,
                Item::Gap(gap) => panic!("one gap only: {gap:?}"),
            })
            .collect();
        assert_eq!(sequences, (92..=102).collect::<Vec<_>>());
    }

    /// A follower that falls behind a flooder's bound is told `lagged`;
    /// `Start::Oldest` does not report what was lost before it asked.
    #[test]
    fn following_losses_are_lagged_and_oldest_starts_clean() {
        let journal = LogJournal::in_memory(1_000_000, &small(), 1);
        for _ in 0..50 {
            journal.publish(line("noisy", &"n".repeat(100)));
        }
        let mut oldest = journal.subscribe(Start::Oldest);
        let mut live = journal.subscribe(Start::Live);
        assert!(drain(&mut live).is_empty());
        let first = drain(&mut oldest);
        assert_eq!(first.len(), 10);
        assert!(first.iter().all(|i| matches!(i, Item::Record(_))));
        for _ in 0..50 {
            journal.publish(line("noisy", &"n".repeat(100)));
        }
        let items = drain(&mut live);
        assert_eq!(
            items[0],
            Item::Gap(Gap {
                first_missing: 51,
                last_missing: 90,
                reason: GapReason::Lagged
            })
        );
        assert_eq!(items.len(), 11);
        assert_eq!(drain(&mut oldest)[0], items[0]);
    }

    /// The backlog start honours the count and the byte budget across
    /// children, and keeps at least the newest match.
    #[test]
    fn start_for_last_is_bounded_by_count_and_bytes() {
        let journal = LogJournal::in_memory(100, &LogPolicy::default(), 1);
        for i in 0..10 {
            let child = if i % 2 == 0 { "even" } else { "odd" };
            journal.publish(line(child, &format!("{i}{}", "x".repeat(99))));
        }
        let all = |_: &LogLine| true;
        let len = |l: &LogLine| l.text.len();
        assert_eq!(
            journal.start_for_last(3, usize::MAX, all, len),
            Start::After(7)
        );
        assert_eq!(journal.start_for_last(10, 250, all, len), Start::After(8));
        assert_eq!(journal.start_for_last(5, 1, all, len), Start::After(9));
        assert_eq!(journal.start_for_last(0, usize::MAX, all, len), Start::Live);
        let odd = |l: &LogLine| l.child_id.as_str() == "odd";
        assert_eq!(
            journal.start_for_last(2, usize::MAX, odd, len),
            Start::After(7)
        );
        let tail: Vec<u64> = journal.tail(3).iter().map(|r| r.sequence).collect();
        assert_eq!(tail, [8, 9, 10]);
        assert_eq!(journal.evicted(), 0);
    }

    /// Lines written to files come back in a new journal on the same
    /// directory, and sequences continue after them.
    #[tokio::test]
    async fn history_survives_a_new_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let defaults = LogPolicy::default();
        let journal = LogJournal::open(100, &defaults, &[], dir.path(), 1).expect("open");
        for i in 0..5 {
            journal.capture(line("web", &format!("line {i}"))).await;
        }
        journal.sync().await;
        drop(journal);
        let again = LogJournal::open(100, &defaults, &[], dir.path(), 1).expect("reopen");
        assert_eq!(again.last_sequence(), 5);
        let texts: Vec<String> = again.tail(10).iter().map(|r| r.body.text.clone()).collect();
        assert_eq!(texts, ["line 0", "line 1", "line 2", "line 3", "line 4"]);
        assert_eq!(again.publish(line("web", "after")), 6);
        let later = LogJournal::open(100, &defaults, &[], dir.path(), 50).expect("reopen");
        assert_eq!(later.last_sequence(), 49, "a higher first sequence wins");
    }
}
