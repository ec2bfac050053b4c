//! A child waiting for its dependencies. It watches their records, each on
//! the dependency's own channel, so only a change of one of its own
//! dependencies wakes it: a change of any other child costs it nothing.

use std::time::{Duration, Instant};

use futures_util::future::select_all;
use tokio::sync::watch;

use super::Context;
use crate::model::{ChildId, ChildRecord, ChildState, DependencyStatus, PendingDependency};

/// One dependency's record channel; `None` once the dependency is gone.
#[derive(Debug)]
struct Watched {
    id: ChildId,
    record: Option<watch::Receiver<ChildRecord>>,
}

/// The wait of one start for its dependencies.
#[derive(Debug)]
pub(super) struct DependencyWait {
    watched: Vec<Watched>,
    /// When the wait began.
    pub started: Instant,
    /// `started + start_timeout`: from then on the child is BLOCKED.
    pub deadline: Instant,
    pub blocked: bool,
    /// The dependencies not RUNNING at the last evaluation.
    pending: Vec<PendingDependency>,
    /// Dependencies already announced as unavailable, with the status
    /// announced: each is announced once per status.
    announced: Vec<PendingDependency>,
}

impl DependencyWait {
    pub fn new(ctx: &Context, deps: &[ChildId], start_timeout: Duration) -> Self {
        let registry = ctx.read();
        let watched = deps
            .iter()
            .map(|id| Watched {
                id: id.clone(),
                record: registry.children.get(id).map(|h| h.record.clone()),
            })
            .collect();
        let started = Instant::now();
        Self {
            watched,
            started,
            deadline: started + start_timeout,
            blocked: false,
            pending: Vec::new(),
            announced: Vec::new(),
        }
    }

    /// Reads every dependency's current record (marking it seen) and
    /// returns those that are not RUNNING; empty: time to spawn.
    pub fn evaluate(&mut self) -> &[PendingDependency] {
        self.pending = self
            .watched
            .iter_mut()
            .filter_map(|watched| {
                if watched
                    .record
                    .as_ref()
                    .is_some_and(|record| record.has_changed().is_err())
                {
                    // Its task ended: the child is no longer supervised.
                    watched.record = None;
                }
                let status = match &mut watched.record {
                    None => DependencyStatus::Removed,
                    Some(record) => {
                        let record = record.borrow_and_update();
                        if record.state == ChildState::Running {
                            return None;
                        }
                        status_of(&record)
                    }
                };
                Some(PendingDependency {
                    id: watched.id.clone(),
                    status,
                })
            })
            .collect();
        &self.pending
    }

    /// The dependencies not RUNNING at the last evaluation.
    pub fn pending(&self) -> &[PendingDependency] {
        &self.pending
    }

    /// Dependencies that cannot become RUNNING without an operator and
    /// were not announced with their current status yet. A dependency that
    /// recovers is forgotten, so a relapse is announced again.
    pub fn newly_unavailable(&mut self) -> Vec<PendingDependency> {
        let pending = &self.pending;
        self.announced.retain(|seen| pending.contains(seen));
        let new: Vec<PendingDependency> = pending
            .iter()
            .filter(|p| !p.status.can_become_ready() && !self.announced.contains(p))
            .cloned()
            .collect();
        self.announced.extend(new.iter().cloned());
        new
    }

    /// For people: `waiting for db: autostart = false; cache: backoff`,
    /// prefixed with `blocked after 1m: ` once BLOCKED.
    pub fn describe(&self, start_timeout: Duration) -> String {
        let list = self
            .pending
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if self.blocked {
            format!(
                "blocked after {}: waiting for {list}",
                humantime::format_duration(start_timeout)
            )
        } else {
            format!("waiting for {list}")
        }
    }

    /// Resolves when the record of one of the dependencies changed, or one
    /// of them went away. Cancel-safe: a change that happens while nobody
    /// waits is seen by the next call.
    pub async fn changed(&mut self) {
        let changes: Vec<_> = self
            .watched
            .iter_mut()
            .filter_map(|watched| watched.record.as_mut())
            .map(|record| Box::pin(record.changed()))
            .collect();
        if changes.is_empty() {
            return std::future::pending().await;
        }
        let _ = select_all(changes).await;
    }
}

/// Why `record`'s child is not RUNNING, as a dependent sees it.
fn status_of(record: &ChildRecord) -> DependencyStatus {
    match record.state {
        ChildState::Stopped if !record.spec.autostart && record.generation == 0 => {
            DependencyStatus::AutostartOff
        }
        state => DependencyStatus::State(state),
    }
}
