//! A sequenced, bounded ring shared by one publisher side and any number of
//! subscribers.
//!
//! Subscribers do not own buffers: each one is a cursor into the shared ring,
//! so publishing is one short critical section plus one wake-up signal,
//! whatever the number of subscribers. A subscriber's "buffer" is its window
//! on the ring: if it falls more than `capacity` records behind, the records
//! it missed are reported to it as an explicit [`Gap`] and it continues from
//! the oldest retained record. Records are shared by `Arc`, never copied.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use tokio::sync::watch;

/// One published record: its position in the journal, when it was published,
/// and the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<T> {
    /// Gapless, strictly increasing, starting at 1.
    pub sequence: u64,
    /// Wall-clock time of publication.
    pub time: SystemTime,
    pub body: T,
}

/// Why a subscriber did not receive a range of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// The subscriber asked to resume from history the ring no longer holds.
    Evicted,
    /// The subscriber fell more than the ring's capacity behind while following.
    Lagged,
    /// Published by a previous run of the server that was killed before
    /// they reached the store: the next start skips them (sequences are
    /// never reused) and says so.
    Lost,
}

impl GapReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Evicted => "evicted",
            GapReason::Lagged => "lagged",
            GapReason::Lost => "lost",
        }
    }
}

/// Where published records go besides the ring (the persistent store).
/// Called under the ring's lock, in sequence order, so it must only hand
/// the record over (a channel send), never wait.
pub trait Persist<T>: Send + Sync {
    fn persist(&self, record: &Arc<Record<T>>);
}

/// What a journal starts from: records kept by a previous run, the next
/// sequence to hand out, and where its records go.
pub struct Restore<T> {
    /// Oldest first, strictly increasing sequences (holes allowed).
    pub history: Vec<Record<T>>,
    /// At least one past the last of `history`.
    pub next_sequence: u64,
    pub sink: Option<Box<dyn Persist<T>>>,
}

impl<T> fmt::Debug for Restore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restore")
            .field("history", &self.history.len())
            .field("next_sequence", &self.next_sequence)
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

impl<T> Default for Restore<T> {
    fn default() -> Self {
        Self {
            history: Vec::new(),
            next_sequence: 1,
            sink: None,
        }
    }
}

/// An inclusive range of sequences a subscriber will never see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub first_missing: u64,
    pub last_missing: u64,
    pub reason: GapReason,
}

impl Gap {
    /// Number of records lost.
    pub fn len(&self) -> u64 {
        self.last_missing - self.first_missing + 1
    }

    /// A gap always covers at least one record.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What a subscription yields: a record, or the explicit notice of a hole.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<T> {
    Record(Arc<Record<T>>),
    Gap(Gap),
}

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Only records published after the subscription is created.
    Live,
    /// Every record still retained, then live. Never reports a gap up front.
    Oldest,
    /// Records with a sequence strictly greater than this one; a gap is
    /// reported if some of them were already evicted.
    After(u64),
}

struct Ring<T> {
    entries: VecDeque<Arc<Record<T>>>,
    capacity: usize,
    /// Sequence the next published record will get.
    next_sequence: u64,
    closed: bool,
}

impl<T> Ring<T> {
    fn oldest_sequence(&self) -> u64 {
        self.entries
            .front()
            .map_or(self.next_sequence, |record| record.sequence)
    }
}

struct Shared<T> {
    ring: Mutex<Ring<T>>,
    sink: Option<Box<dyn Persist<T>>>,
    /// Carries the last published sequence; its change notification is the
    /// only thing a publisher does for subscribers.
    head: watch::Sender<u64>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Ring<T>> {
        // A panic while holding the lock cannot leave the ring inconsistent
        // (every mutation is a single push/pop), so poisoning is ignored.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A bounded, sequenced journal of `T`. Cloning gives another handle to the
/// same journal.
pub struct Journal<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Journal<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> fmt::Debug for Journal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.shared.lock();
        f.debug_struct("Journal")
            .field("capacity", &ring.capacity)
            .field("retained", &ring.entries.len())
            .field("next_sequence", &ring.next_sequence)
            .finish()
    }
}

/// How many records a subscription moves out of the ring per lock.
const BATCH: usize = 256;

impl<T> Journal<T> {
    /// A journal retaining at most `capacity` records (at least one).
    pub fn new(capacity: usize) -> Self {
        Self::restore(capacity, Restore::default())
    }

    /// A journal that continues a previous run's: its newest `capacity`
    /// records retained, sequences going on from `next_sequence` (a hole
    /// between the two is reported to subscribers as a `Lost` gap).
    pub fn restore(capacity: usize, restore: Restore<T>) -> Self {
        let capacity = capacity.max(1);
        let mut entries = VecDeque::with_capacity(capacity.min(4096));
        let skip = restore.history.len().saturating_sub(capacity);
        entries.extend(restore.history.into_iter().skip(skip).map(Arc::new));
        let last = entries.back().map_or(0, |r: &Arc<Record<T>>| r.sequence);
        let next_sequence = restore.next_sequence.max(last + 1).max(1);
        let (head, _) = watch::channel(next_sequence - 1);
        Self {
            shared: Arc::new(Shared {
                ring: Mutex::new(Ring {
                    entries,
                    capacity,
                    next_sequence,
                    closed: false,
                }),
                sink: restore.sink,
                head,
            }),
        }
    }

    /// Appends a record and returns its sequence. Never waits for
    /// subscribers; evicts the oldest record when full.
    pub fn publish(&self, body: T) -> u64 {
        let sequence = {
            let mut ring = self.shared.lock();
            let sequence = ring.next_sequence;
            ring.next_sequence += 1;
            if ring.entries.len() == ring.capacity {
                ring.entries.pop_front();
            }
            let record = Arc::new(Record {
                sequence,
                time: SystemTime::now(),
                body,
            });
            if let Some(sink) = &self.shared.sink {
                sink.persist(&record);
            }
            ring.entries.push_back(record);
            sequence
        };
        self.shared.head.send_replace(sequence);
        sequence
    }

    /// Sequence of the newest record (0 before the first publish).
    pub fn last_sequence(&self) -> u64 {
        self.shared.lock().next_sequence - 1
    }

    /// Number of records evicted so far (published but no longer retained).
    pub fn evicted(&self) -> u64 {
        self.shared.lock().oldest_sequence() - 1
    }

    /// The oldest retained sequence and the newest published one (the
    /// oldest is one past the newest while nothing is retained).
    pub fn bounds(&self) -> (u64, u64) {
        let ring = self.shared.lock();
        (ring.oldest_sequence(), ring.next_sequence - 1)
    }

    pub fn capacity(&self) -> usize {
        self.shared.lock().capacity
    }

    /// The newest `n` retained records, oldest first.
    pub fn tail(&self, n: usize) -> Vec<Arc<Record<T>>> {
        let ring = self.shared.lock();
        let skip = ring.entries.len().saturating_sub(n);
        ring.entries.iter().skip(skip).cloned().collect()
    }

    /// Ends every subscription once it has drained what is retained.
    /// Publishing after close still records (late facts are kept for
    /// `tail`); a subscriber ends when it has caught up with the ring.
    pub fn close(&self) {
        let last = {
            let mut ring = self.shared.lock();
            ring.closed = true;
            ring.next_sequence - 1
        };
        self.shared.head.send_replace(last);
    }

    /// A start point that replays the last `n` retained records matching
    /// `pred` (all retained ones if there are fewer), as long as their
    /// `size` adds up to at most `max_bytes`: a reply's cost is bounded by
    /// the server, not by what the request asks for. The newest match is
    /// always included.
    pub fn start_for_last(
        &self,
        n: usize,
        max_bytes: usize,
        pred: impl Fn(&T) -> bool,
        size: impl Fn(&T) -> usize,
    ) -> Start {
        let ring = self.shared.lock();
        let mut bytes = 0usize;
        let mut oldest = None;
        for record in ring
            .entries
            .iter()
            .rev()
            .filter(|record| pred(&record.body))
            .take(n)
        {
            bytes = bytes.saturating_add(size(&record.body));
            if bytes > max_bytes && oldest.is_some() {
                break;
            }
            oldest = Some(record.sequence);
        }
        oldest.map_or(Start::Live, |sequence| Start::After(sequence - 1))
    }

    pub fn subscribe(&self, start: Start) -> Subscription<T> {
        // Mark the current head as seen before reading the ring so that a
        // publish racing with this call is either read now or wakes us.
        let mut head = self.shared.head.subscribe();
        head.borrow_and_update();
        let (next, following) = {
            let ring = self.shared.lock();
            match start {
                Start::Live => (ring.next_sequence, true),
                Start::Oldest => (ring.oldest_sequence(), false),
                Start::After(sequence) => (sequence.saturating_add(1), false),
            }
        };
        Subscription {
            shared: Arc::clone(&self.shared),
            head,
            next,
            following,
            pending: VecDeque::new(),
            done: false,
        }
    }
}

/// A cursor into a [`Journal`]. Yields records in sequence order, with a
/// [`Gap`] wherever records were lost to it, until the journal closes.
pub struct Subscription<T> {
    shared: Arc<Shared<T>>,
    head: watch::Receiver<u64>,
    /// Sequence of the next record this subscriber expects.
    next: u64,
    /// Whether the subscriber has caught up once (decides the gap reason).
    following: bool,
    pending: VecDeque<Item<T>>,
    done: bool,
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("next", &self.next)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<T> Subscription<T> {
    /// Sequence of the next record this subscription expects.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Moves what is available from the ring into `pending`. Returns false
    /// when the journal is closed and everything has been delivered.
    fn refill(&mut self) -> bool {
        let ring = self.shared.lock();
        let oldest = ring.oldest_sequence();
        if self.next < oldest {
            self.pending.push_back(Item::Gap(Gap {
                first_missing: self.next,
                last_missing: oldest - 1,
                reason: if self.following {
                    GapReason::Lagged
                } else {
                    GapReason::Evicted
                },
            }));
            self.next = oldest;
        }
        // A start past the head (a client resuming after `after_sequence`
        // it cannot have seen) waits for that sequence: nothing to take yet.
        // Sequences are increasing but not contiguous across a restart
        // that lost records, so the position is searched, not computed.
        let offset = ring.entries.partition_point(|r| r.sequence < self.next);
        let available = ring.entries.len() - offset;
        let take = available.min(BATCH);
        for record in ring.entries.range(offset..offset + take) {
            if record.sequence > self.next {
                self.pending.push_back(Item::Gap(Gap {
                    first_missing: self.next,
                    last_missing: record.sequence - 1,
                    reason: GapReason::Lost,
                }));
            }
            self.pending.push_back(Item::Record(Arc::clone(record)));
            self.next = record.sequence + 1;
        }
        if take == available {
            self.following = true;
        }
        !(ring.closed && take == available && self.pending.is_empty())
    }

    /// The next item without waiting, if one is available now.
    pub fn try_next(&mut self) -> Option<Item<T>> {
        if self.pending.is_empty() && !self.done {
            self.head.borrow_and_update();
            self.done = !self.refill();
        }
        self.pending.pop_front()
    }

    /// The next item, waiting for a publish if needed. `None` once the
    /// journal is closed and drained.
    pub async fn next(&mut self) -> Option<Item<T>> {
        loop {
            if let Some(item) = self.try_next() {
                return Some(item);
            }
            if self.done || self.head.changed().await.is_err() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backlog start honours both the count and the byte budget, keeps
    /// at least the newest match, and skips records the filter rejects.
    #[test]
    fn start_for_last_is_bounded_by_count_and_bytes() {
        let journal: Journal<String> = Journal::new(100);
        for i in 0..10 {
            journal.publish(format!("{i}{}", "x".repeat(99)));
        }
        let all = |_: &String| true;
        let len = |s: &String| s.len();
        assert!(matches!(
            journal.start_for_last(3, usize::MAX, all, len),
            Start::After(7)
        ));
        assert!(matches!(
            journal.start_for_last(10, 250, all, len),
            Start::After(8)
        ));
        assert!(matches!(
            journal.start_for_last(5, 1, all, len),
            Start::After(9)
        ));
        assert!(matches!(
            journal.start_for_last(0, usize::MAX, all, len),
            Start::Live
        ));
        let odd = |s: &String| s.starts_with(['1', '3', '5', '7', '9']);
        assert!(matches!(
            journal.start_for_last(2, usize::MAX, odd, len),
            Start::After(7)
        ));
        assert!(matches!(
            journal.start_for_last(1, usize::MAX, |_: &String| false, len),
            Start::Live
        ));
    }
}
