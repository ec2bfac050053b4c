//! Who gets a connection slot, decided at accept from the kernel's peer
//! credentials before a byte is read, and how refusals are reported
//! without letting a flood of them cost more than the connections do.
//!
//! `max_connections` is one budget for both protocols and both sockets. A
//! single uid may hold at most its share (`max_connections_per_uid`), and
//! the last `reserved_connections` slots are only for the daemon's own uid
//! and root: whatever other local users do, the owner can still get in to
//! look and to stop things.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The shares of the connection budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shares {
    pub max_connections: usize,
    /// The most connections one uid other than the owner's may hold.
    pub per_uid: usize,
    /// Slots only the owner (the daemon's uid, root) may take.
    pub reserved: usize,
}

impl Shares {
    /// The defaults for a budget: a quarter per uid, an eighth reserved
    /// (each at least one, and never the whole budget).
    pub fn for_budget(max_connections: usize) -> Self {
        let max_connections = max_connections.max(1);
        Self {
            max_connections,
            per_uid: max_connections.div_ceil(4),
            reserved: (max_connections / 8).clamp(1, max_connections.saturating_sub(1).max(1)),
        }
    }
}

/// Why a connection got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The uid may not use the socket at all (`[security] allowed_uids/gids`).
    NotAllowed { uid: u32 },
    /// Every slot this caller may use is taken.
    Full,
    /// This uid already holds its share.
    UidShare { uid: u32 },
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::NotAllowed { .. } => "peer not allowed",
            Refused::Full => "max_connections reached",
            Refused::UidShare { .. } => "per-uid share reached",
        }
    }
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_uid: HashMap<u32, usize>,
}

/// The connection budget. Shared by every accept loop.
#[derive(Debug)]
pub struct Budget {
    shares: Shares,
    owner_uid: u32,
    held: Mutex<Held>,
    /// Slots ever given: the metrics' accepted-connections counter.
    granted: AtomicU64,
}

impl Budget {
    pub fn new(shares: Shares, owner_uid: u32) -> Arc<Self> {
        Arc::new(Self {
            shares,
            owner_uid,
            held: Mutex::new(Held::default()),
            granted: AtomicU64::new(0),
        })
    }

    pub fn shares(&self) -> Shares {
        self.shares
    }

    fn is_owner(&self, uid: u32) -> bool {
        uid == self.owner_uid || uid == 0
    }

    /// A slot for a connection from `uid` (`None`: the kernel gave no
    /// credentials; such a connection only gets unreserved slots).
    pub fn take(self: &Arc<Self>, uid: Option<u32>) -> Result<Slot, Refused> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let owner = uid.is_some_and(|uid| self.is_owner(uid));
        let limit = if owner {
            self.shares.max_connections
        } else {
            self.shares.max_connections - self.shares.reserved
        };
        if held.total >= limit {
            return Err(Refused::Full);
        }
        if let Some(uid) = uid.filter(|_| !owner) {
            let count = held.by_uid.entry(uid).or_default();
            if *count >= self.shares.per_uid {
                return Err(Refused::UidShare { uid });
            }
            *count += 1;
        }
        held.total += 1;
        self.granted.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            budget: Arc::clone(self),
            uid: uid.filter(|_| !owner),
        })
    }

    /// Connections admitted since the budget was made.
    pub fn granted(&self) -> u64 {
        self.granted.load(Ordering::Relaxed)
    }

    /// Connections held now (for tests, diagnostics and metrics).
    pub fn held(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

/// One connection's place in the budget, given back on drop.
#[derive(Debug)]
pub struct Slot {
    budget: Arc<Budget>,
    /// The uid charged, if its share counts.
    uid: Option<u32>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self
            .budget
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.total -= 1;
        if let Some(uid) = self.uid {
            release(&mut held.by_uid, uid);
        }
    }
}

/// A per-uid count of something long-lived (open streams), with a cap
/// that applies to every uid alike.
#[derive(Debug)]
pub struct PerUid {
    max: usize,
    held: Mutex<HashMap<u32, usize>>,
}

impl PerUid {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            held: Mutex::default(),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// One more for `uid`, or `None` if it holds `max` already.
    pub fn take(self: &Arc<Self>, uid: u32) -> Option<UidSlot> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(uid).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(UidSlot {
            owner: Arc::clone(self),
            uid,
        })
    }
}

/// One unit of a [`PerUid`] count, given back on drop.
#[derive(Debug)]
pub struct UidSlot {
    owner: Arc<PerUid>,
    uid: u32,
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        let mut held = self
            .owner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        release(&mut held, self.uid);
    }
}

/// Gives back one of `uid`'s count, forgetting uids that hold none (the map
/// stays as small as the set of uids holding something).
fn release(counts: &mut HashMap<u32, usize>, uid: u32) {
    if let Some(count) = counts.get_mut(&uid) {
        *count -= 1;
        if *count == 0 {
            counts.remove(&uid);
        }
    }
}

/// How often a burst of refusals is summed up in the log.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    counts: HashMap<&'static str, u64>,
    uids: Vec<u32>,
}

/// Refused connections as log lines: the first of a burst at once, the
/// rest as one "refused N connections" line per interval. A local client
/// can refuse-loop far faster than anyone reads a log.
#[derive(Debug, Default)]
pub struct RefusalLog {
    window: Mutex<Window>,
}

/// How many distinct uids a summary line names.
const UIDS_NAMED: usize = 8;

impl RefusalLog {
    /// Records one refusal; logs it only if it opens a new interval.
    pub fn note(&self, refused: Refused) {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let uid = match refused {
            Refused::NotAllowed { uid } | Refused::UidShare { uid } => Some(uid),
            Refused::Full => None,
        };
        if window.started.is_none() {
            window.started = Some(Instant::now());
            drop(window);
            tracing::warn!(reason = refused.as_str(), uid, "connection refused");
            return;
        }
        *window.counts.entry(refused.as_str()).or_default() += 1;
        if let Some(uid) = uid
            && window.uids.len() < UIDS_NAMED
            && !window.uids.contains(&uid)
        {
            window.uids.push(uid);
        }
    }

    /// Logs the refusals counted since the first of the interval, once the
    /// interval is over; call it periodically.
    pub fn flush(&self) {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(started) = window.started else {
            return;
        };
        if started.elapsed() < REFUSAL_LOG_INTERVAL {
            return;
        }
        let done = std::mem::take(&mut *window);
        drop(window);
        let total: u64 = done.counts.values().sum();
        if total > 0 {
            let mut by_reason: Vec<_> = done.counts.into_iter().collect();
            by_reason.sort_unstable();
            let by_reason = by_reason
                .iter()
                .map(|(reason, n)| format!("{n} {reason}"))
                .collect::<Vec<_>>()
                .join(", ");
            tracing::warn!(
                refused = total,
                uids = ?done.uids,
                "refused {total} more connections in the last {:?}: {by_reason}",
                started.elapsed()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: u32 = 1000;

    /// Other uids get at most their share and never the reserved slots;
    /// the owner and root may use every slot; slots come back on drop.
    #[test]
    fn shares_and_reserve() {
        let budget = Budget::new(
            Shares {
                max_connections: 6,
                per_uid: 2,
                reserved: 2,
            },
            OWNER,
        );
        let a: Vec<_> = (0..2)
            .map(|_| budget.take(Some(7)).expect("share"))
            .collect();
        assert_eq!(
            budget.take(Some(7)).err(),
            Some(Refused::UidShare { uid: 7 })
        );
        let b: Vec<_> = (0..2)
            .map(|_| budget.take(Some(8)).expect("share"))
            .collect();
        assert_eq!(budget.take(Some(9)).err(), Some(Refused::Full), "reserve");
        assert_eq!(budget.take(None).err(), Some(Refused::Full), "reserve");
        let owner = budget.take(Some(OWNER)).expect("reserved slot");
        let root = budget.take(Some(0)).expect("reserved slot");
        assert_eq!(budget.take(Some(OWNER)).err(), Some(Refused::Full));
        assert_eq!(budget.held(), 6);
        drop((a, owner, root));
        assert_eq!(budget.held(), 2);
        let again: Vec<_> = (0..2)
            .map(|_| budget.take(Some(7)).expect("freed"))
            .collect();
        drop((again, b));
        assert_eq!(budget.held(), 0);
        assert_eq!(budget.granted(), 8, "slots given, refusals not counted");
    }

    /// A uid's count stops at the cap and recovers as slots drop; other
    /// uids are unaffected.
    #[test]
    fn per_uid_caps_each_uid() {
        let streams = PerUid::new(2);
        let held: Vec<_> = (0..2)
            .map(|_| streams.take(5).expect("under cap"))
            .collect();
        assert!(streams.take(5).is_none());
        assert!(streams.take(6).is_some());
        drop(held);
        assert!(streams.take(5).is_some());
    }

    /// Defaults leave at least one slot for others and one for the owner.
    #[test]
    fn default_shares_are_usable_at_any_size() {
        for max in [1, 2, 3, 16, 256] {
            let shares = Shares::for_budget(max);
            assert!(shares.per_uid >= 1);
            assert!(shares.reserved >= 1);
            assert!(shares.reserved < max || max == 1, "{shares:?}");
        }
        assert_eq!(
            Shares::for_budget(256),
            Shares {
                max_connections: 256,
                per_uid: 64,
                reserved: 32
            }
        );
    }
}
