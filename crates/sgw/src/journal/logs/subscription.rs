//! A cursor into the log journal, optionally limited to some children.
//!
//! The gap rule: a subscription reports a [`Gap`] only when a line of a
//! child it reads (every child, or the ones it was opened for) was evicted
//! at or after its position before it read it. Lines of other children are
//! never its concern, so a reader of a quiet child is not told about a
//! flooder's evictions. The gap runs from the subscription's position to
//! just before the next line it does receive (or to the newest loss): every
//! sequence in it is one the subscriber will never see, and at least one of
//! them was a line it wanted.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;

use super::Shared;
use super::store::Store;
use crate::journal::{Gap, GapReason, Item, Start};
use crate::model::{ChildId, LogLine};

/// How many records a subscription moves out of the journal per lock.
const BATCH: usize = 256;

/// Which children a subscription reads.
#[derive(Debug)]
enum Scope {
    All,
    /// The ids, with their tail index once that child has published.
    Children(Vec<(ChildId, Option<usize>)>),
}

impl Scope {
    fn tails(&mut self, store: &Store) -> Vec<usize> {
        match self {
            Scope::All => (0..store.tails.len()).collect(),
            Scope::Children(children) => children
                .iter_mut()
                .filter_map(|(id, at)| {
                    if at.is_none() {
                        *at = store.find(id);
                    }
                    *at
                })
                .collect(),
        }
    }
}

/// A cursor into a [`super::LogJournal`]: lines in sequence order, with a
/// [`Gap`] wherever lines it reads were lost to it, until the journal
/// closes.
pub struct LogSubscription {
    shared: Arc<Shared>,
    head: watch::Receiver<u64>,
    next: u64,
    /// Whether it has caught up once (decides the gap reason).
    following: bool,
    scope: Scope,
    /// Per tail, losses at or before this sequence are not reported: they
    /// happened before a `Start::Oldest` subscriber asked for what is
    /// retained.
    floors: Vec<(usize, u64)>,
    pending: VecDeque<Item<LogLine>>,
    done: bool,
}

impl fmt::Debug for LogSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogSubscription")
            .field("next", &self.next)
            .field("scope", &self.scope)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl LogSubscription {
    pub(super) fn new(shared: Arc<Shared>, start: Start, children: &[ChildId]) -> Self {
        // Mark the current head as seen before reading the store so that a
        // publish racing with this call is either read now or wakes us.
        let mut head = shared.head.subscribe();
        head.borrow_and_update();
        let mut scope = if children.is_empty() {
            Scope::All
        } else {
            Scope::Children(children.iter().map(|id| (id.clone(), None)).collect())
        };
        let (next, following, floors) = {
            let store = shared.lock();
            match start {
                Start::Live => (store.next_sequence, true, Vec::new()),
                Start::After(sequence) => (sequence.saturating_add(1), false, Vec::new()),
                Start::Oldest => {
                    let tails = scope.tails(&store);
                    let oldest = tails
                        .iter()
                        .filter_map(|&at| store.tails[at].records.front())
                        .map(|r| r.sequence)
                        .min()
                        .unwrap_or(store.next_sequence);
                    let floors = tails
                        .iter()
                        .map(|&at| (at, store.tails[at].lost_through))
                        .collect();
                    (oldest, false, floors)
                }
            }
        };
        Self {
            shared,
            head,
            next,
            following,
            scope,
            floors,
            pending: VecDeque::new(),
            done: false,
        }
    }

    /// Sequence of the next record this subscription expects.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The range of lines this subscription wants that were lost at or
    /// after its position: (first, last), possibly empty (first > last).
    fn losses(&self, store: &Store, tails: &[usize]) -> (u64, u64) {
        let mut first = u64::MAX;
        let mut last = 0;
        for &at in tails {
            let lost = store.tails[at].lost_through;
            let floor = self
                .floors
                .iter()
                .find(|(tail, _)| *tail == at)
                .map_or(0, |(_, floor)| *floor);
            let from = self.next.max(floor + 1);
            if lost >= from {
                first = first.min(from);
                last = last.max(lost);
            }
        }
        (first, last)
    }

    fn gap(&self, first_missing: u64, last_missing: u64) -> Item<LogLine> {
        Item::Gap(Gap {
            first_missing,
            last_missing,
            reason: if self.following {
                GapReason::Lagged
            } else {
                GapReason::Evicted
            },
        })
    }

    /// Moves what is available into `pending`. Returns false when the
    /// journal is closed and everything has been delivered.
    fn refill(&mut self) -> bool {
        let shared = Arc::clone(&self.shared);
        let store = shared.lock();
        let tails = self.scope.tails(&store);
        let (lost_from, lost_through) = self.losses(&store, &tails);
        let mut cursors: Vec<(usize, usize)> = tails
            .iter()
            .map(|&at| (at, store.tails[at].position(self.next)))
            .collect();
        // The merge of the tails in sequence order: each tail's next record
        // in a min-heap, so a subscription over every child costs log(N)
        // per line under the lock capture also takes, not N.
        let next_of = |slot: usize, (at, pos): (usize, usize)| {
            store.tails[at]
                .records
                .get(pos)
                .map(|record| Reverse((record.sequence, slot)))
        };
        let mut heads: BinaryHeap<Reverse<(u64, usize)>> = cursors
            .iter()
            .enumerate()
            .filter_map(|(slot, &cursor)| next_of(slot, cursor))
            .collect();
        let mut taken = 0;
        let exhausted = loop {
            if taken == BATCH {
                break false;
            }
            let Some(Reverse((_, slot))) = heads.pop() else {
                break true;
            };
            let (at, pos) = cursors[slot];
            let Some(record) = store.tails[at].records.get(pos) else {
                break true;
            };
            let from = lost_from.max(self.next);
            let until = lost_through.min(record.sequence - 1);
            if from <= until {
                let gap = self.gap(from, until);
                self.pending.push_back(gap);
            }
            self.pending.push_back(Item::Record(Arc::clone(record)));
            self.next = record.sequence + 1;
            cursors[slot].1 += 1;
            heads.extend(next_of(slot, cursors[slot]));
            taken += 1;
        };
        if exhausted {
            let from = lost_from.max(self.next);
            if from <= lost_through {
                let gap = self.gap(from, lost_through);
                self.pending.push_back(gap);
            }
            // Everything before the head is delivered, reported, or a line
            // of a child this subscription does not read. A start past the
            // head waits for that sequence.
            self.next = self.next.max(store.next_sequence);
            self.following = true;
        }
        !(store.closed && exhausted && self.pending.is_empty())
    }

    /// The next item without waiting, if one is available now.
    pub fn try_next(&mut self) -> Option<Item<LogLine>> {
        if self.pending.is_empty() && !self.done {
            self.head.borrow_and_update();
            self.done = !self.refill();
        }
        self.pending.pop_front()
    }

    /// The next item, waiting for a publish if needed. `None` once the
    /// journal is closed and drained.
    pub async fn next(&mut self) -> Option<Item<LogLine>> {
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
