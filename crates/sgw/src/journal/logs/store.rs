//! Retention of captured lines: one tail per child, each bounded in bytes,
//! under one overall cap on lines. A flooding child only ever evicts its
//! own oldest lines, so a quiet neighbour's recent output stays.
//!
//! Each tail remembers the newest sequence it lost (`lost_through`): since
//! a tail always loses its oldest lines first, every line of that child up
//! to there is gone and every later one is retained. That single number is
//! what lets a subscription tell, per child, whether it missed something.

use std::collections::{HashMap, VecDeque};
use std::mem::size_of;
use std::sync::Arc;
use std::time::SystemTime;

use super::super::ring::Record;
use crate::model::{ChildId, LogLine};

/// What a retained line costs besides its text: the record, its `Arc`
/// counters and its slot in the tail. Counted so that a child printing
/// empty lines is bounded too.
pub const LINE_OVERHEAD: usize =
    size_of::<Record<LogLine>>() + 2 * size_of::<usize>() + size_of::<usize>();

/// The bytes a retained record is charged.
pub fn cost(record: &Record<LogLine>) -> usize {
    LINE_OVERHEAD + record.body.text.capacity()
}

/// One child's retained lines, oldest first.
#[derive(Debug)]
pub struct Tail {
    pub records: VecDeque<Arc<Record<LogLine>>>,
    pub bytes: usize,
    pub limit: usize,
    /// Newest sequence of this child's lines that is no longer retained
    /// (0: none lost).
    pub lost_through: u64,
}

impl Tail {
    fn new(limit: usize) -> Self {
        Self {
            records: VecDeque::new(),
            bytes: 0,
            limit,
            lost_through: 0,
        }
    }

    /// Index of the first retained record at or after `sequence`.
    pub fn position(&self, sequence: u64) -> usize {
        self.records.partition_point(|r| r.sequence < sequence)
    }
}

#[derive(Debug)]
pub struct Store {
    /// Never shrinks, so an index stays valid for a subscription's life.
    pub tails: Vec<Tail>,
    index: HashMap<ChildId, usize>,
    /// Lines retained over all tails.
    retained: usize,
    /// `logs_capacity`: most lines retained over all tails.
    capacity: usize,
    default_limit: usize,
    /// Sequence the next published line gets.
    pub next_sequence: u64,
    pub closed: bool,
}

impl Store {
    pub fn new(capacity: usize, default_limit: usize, first_sequence: u64) -> Self {
        Self {
            tails: Vec::new(),
            index: HashMap::new(),
            retained: 0,
            capacity: capacity.max(1),
            default_limit,
            next_sequence: first_sequence.max(1),
            closed: false,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn retained(&self) -> usize {
        self.retained
    }

    pub fn find(&self, id: &ChildId) -> Option<usize> {
        self.index.get(id).copied()
    }

    fn tail_of(&mut self, id: &ChildId) -> usize {
        if let Some(&at) = self.index.get(id) {
            return at;
        }
        self.tails.push(Tail::new(self.default_limit));
        let at = self.tails.len() - 1;
        self.index.insert(id.clone(), at);
        at
    }

    /// Bytes retained for `id` (text plus [`LINE_OVERHEAD`] per line).
    pub fn retained_bytes(&self, id: &ChildId) -> usize {
        self.find(id).map_or(0, |at| self.tails[at].bytes)
    }

    /// Sets a child's byte bound, evicting at once if it shrank.
    pub fn set_limit(&mut self, id: &ChildId, limit: usize) {
        let at = self.tail_of(id);
        self.tails[at].limit = limit;
        self.trim(at);
    }

    /// Appends a new line with the next sequence.
    pub fn publish(&mut self, body: LogLine, time: SystemTime) -> Arc<Record<LogLine>> {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let record = Arc::new(Record {
            sequence,
            time,
            body,
        });
        self.insert(Arc::clone(&record));
        record
    }

    /// Appends a record that already has its sequence (history read back
    /// at start). Records must come in increasing sequence order.
    pub fn restore(&mut self, record: Record<LogLine>) {
        self.next_sequence = self.next_sequence.max(record.sequence + 1);
        self.insert(Arc::new(record));
    }

    fn insert(&mut self, record: Arc<Record<LogLine>>) {
        let at = self.tail_of(&record.body.child_id);
        let tail = &mut self.tails[at];
        tail.bytes += cost(&record);
        tail.records.push_back(record);
        self.retained += 1;
        self.trim(at);
        while self.retained > self.capacity {
            // Over the overall cap, the child holding the most lines pays.
            let Some(biggest) = (0..self.tails.len()).max_by_key(|&i| self.tails[i].records.len())
            else {
                break;
            };
            if !self.evict_oldest(biggest) {
                break;
            }
        }
    }

    /// Evicts a child's oldest lines until it is within its bound; its
    /// newest line always stays (one chunk is at most 16 KiB).
    fn trim(&mut self, at: usize) {
        while self.tails[at].bytes > self.tails[at].limit && self.tails[at].records.len() > 1 {
            self.evict_oldest(at);
        }
    }

    fn evict_oldest(&mut self, at: usize) -> bool {
        let tail = &mut self.tails[at];
        let Some(record) = tail.records.pop_front() else {
            return false;
        };
        tail.bytes -= cost(&record);
        tail.lost_through = tail.lost_through.max(record.sequence);
        self.retained -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_line as line;
    use super::*;

    /// A flooder over its byte bound loses only its own oldest lines; the
    /// quiet child's lines all stay and it has lost nothing.
    #[test]
    fn a_flooder_evicts_only_its_own_lines() {
        let limit = 10 * (LINE_OVERHEAD + 100);
        let mut store = Store::new(1_000_000, limit, 1);
        let quiet = ChildId::new("quiet").expect("id");
        let noisy = ChildId::new("noisy").expect("id");
        store.publish(line("quiet", &"q".repeat(100)), SystemTime::now());
        for _ in 0..1000 {
            store.publish(line("noisy", &"n".repeat(100)), SystemTime::now());
        }
        store.publish(line("quiet", &"q".repeat(100)), SystemTime::now());
        let q = &store.tails[store.find(&quiet).expect("quiet")];
        assert_eq!(q.records.len(), 2);
        assert_eq!(q.lost_through, 0);
        let n = &store.tails[store.find(&noisy).expect("noisy")];
        assert_eq!(n.records.len(), 10);
        assert!(n.bytes <= limit);
        assert_eq!(
            n.lost_through, 991,
            "its 990 oldest lines, sequences 2..=991"
        );
        assert_eq!(store.retained_bytes(&noisy), n.bytes);
    }

    /// Over the overall line cap, the child with the most lines loses its
    /// oldest; a child with few lines keeps them.
    #[test]
    fn the_overall_cap_takes_from_the_biggest_child() {
        let mut store = Store::new(10, usize::MAX, 1);
        store.publish(line("quiet", "a"), SystemTime::now());
        for _ in 0..20 {
            store.publish(line("noisy", "b"), SystemTime::now());
        }
        assert_eq!(store.retained(), 10);
        let quiet = store.find(&ChildId::new("quiet").expect("id")).expect("q");
        assert_eq!(store.tails[quiet].records.len(), 1);
        assert_eq!(store.next_sequence, 22);
    }

    /// Shrinking a bound evicts at once; a single line larger than the
    /// bound stays (the newest line is always kept).
    #[test]
    fn limits_apply_when_set_and_keep_the_newest_line() {
        let mut store = Store::new(100, usize::MAX, 5);
        let id = ChildId::new("a").expect("id");
        for _ in 0..5 {
            store.publish(line("a", &"x".repeat(1000)), SystemTime::now());
        }
        store.set_limit(&id, 10);
        let tail = &store.tails[store.find(&id).expect("a")];
        assert_eq!(tail.records.len(), 1);
        assert_eq!(tail.records[0].sequence, 9);
        assert_eq!(tail.lost_through, 8);
    }
}
