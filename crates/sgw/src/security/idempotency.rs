//! Request ids remembered per uid: a retried command gets the first answer
//! again instead of running twice; the same id with another payload is a
//! conflict. Concurrent duplicates wait for the first to finish.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::control::{CommandReport, CommandRequest, ControlError};

pub type Outcome = Result<CommandReport, ControlError>;

enum State {
    InFlight(watch::Receiver<Option<Outcome>>),
    /// Boxed: an outcome carries a whole child record.
    Done(Box<Outcome>),
}

struct Entry {
    fingerprint: u64,
    created: Instant,
    state: State,
}

type Key = (u32, String);

/// What the store says about a request.
pub enum Claim {
    /// First time: run it, then call [`Ticket::finish`].
    Fresh(Ticket),
    /// Seen before with the same payload: this was the answer (boxed: it
    /// carries a whole child record).
    Replay(Box<Outcome>),
    /// Seen before with a different payload.
    Conflict,
}

/// The right (and duty) to record a request's outcome.
pub struct Ticket {
    key: Key,
    done: watch::Sender<Option<Outcome>>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    order: VecDeque<(Key, Instant)>,
}

pub struct Idempotency {
    inner: Mutex<Inner>,
    ttl: Duration,
    max_entries: usize,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency")
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// What makes two requests "the same": the command and everything the
/// caller said about it.
pub fn fingerprint(request: &CommandRequest) -> u64 {
    let mut hasher = DefaultHasher::new();
    format!("{:?}", request.command()).hash(&mut hasher);
    let meta = request.meta();
    (&meta.requested_by, &meta.reason, meta.confirm).hash(&mut hasher);
    hasher.finish()
}

impl Idempotency {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            ttl,
            max_entries: max_entries.max(1),
        }
    }

    /// Looks the request up; requests without an id are always fresh and
    /// never remembered.
    pub async fn claim(&self, uid: u32, request: &CommandRequest) -> Claim {
        let request_id = request.meta().request_id.clone();
        let fingerprint = fingerprint(request);
        let key = (uid, request_id);
        let mut waiting = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            self.expire(&mut inner);
            // An entry whose first caller vanished before finishing records
            // nothing: forget it so this request can run.
            if inner.entries.get(&key).is_some_and(
                |e| matches!(&e.state, State::InFlight(rx) if rx.has_changed().is_err()),
            ) {
                inner.entries.remove(&key);
            }
            match inner.entries.get(&key) {
                Some(entry) if entry.fingerprint != fingerprint => return Claim::Conflict,
                Some(Entry {
                    state: State::Done(outcome),
                    ..
                }) => return Claim::Replay(outcome.clone()),
                Some(Entry {
                    state: State::InFlight(rx),
                    ..
                }) => rx.clone(),
                None => {
                    let (done, rx) = watch::channel(None);
                    let now = Instant::now();
                    inner.entries.insert(
                        key.clone(),
                        Entry {
                            fingerprint,
                            created: now,
                            state: State::InFlight(rx),
                        },
                    );
                    inner.order.push_back((key.clone(), now));
                    while inner.entries.len() > self.max_entries {
                        match inner.order.pop_front() {
                            Some((old, _)) => {
                                inner.entries.remove(&old);
                            }
                            None => break,
                        }
                    }
                    return Claim::Fresh(Ticket { key, done });
                }
            }
        };
        // A duplicate arrived while the first is running: wait for it.
        loop {
            if let Some(outcome) = waiting.borrow_and_update().clone() {
                return Claim::Replay(Box::new(outcome));
            }
            if waiting.changed().await.is_err() {
                // The first attempt was abandoned before finishing; commands
                // run to completion in their own task, so this only happens
                // if that task panicked. Nothing is known: refuse.
                return Claim::Conflict;
            }
        }
    }

    /// Records the outcome of a fresh request.
    pub fn finish(&self, ticket: Ticket, outcome: &Outcome) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = inner.entries.get_mut(&ticket.key) {
            entry.state = State::Done(Box::new(outcome.clone()));
        }
        let _ = ticket.done.send(Some(outcome.clone()));
    }

    fn expire(&self, inner: &mut Inner) {
        let now = Instant::now();
        while let Some((key, created)) = inner.order.front().cloned() {
            if now.duration_since(created) < self.ttl {
                break;
            }
            inner.order.pop_front();
            if inner
                .entries
                .get(&key)
                .is_some_and(|e| e.created == created)
            {
                inner.entries.remove(&key);
            }
        }
    }
}
