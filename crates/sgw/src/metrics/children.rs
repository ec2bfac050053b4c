//! Per-child and journal metrics. What a snapshot shows (state, restarts,
//! usage, journal positions) is read from it at scrape time, so nothing
//! is mirrored and nothing can go stale. What a snapshot cannot show (how
//! many times a child exited, and how, and when its current process
//! started) is learnt from the event journal by [`History::watch`].

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use nix::sys::signal::Signal;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use tokio_util::sync::CancellationToken;

use crate::control::StateSnapshot;
use crate::journal::{EventJournal, GapReason, Item, Start};
use crate::model::{ChildId, ChildState, Event, EventKind, Exit};

/// Every state, in the order `sgw_child_state` lists them.
const STATES: [ChildState; 8] = [
    ChildState::Starting,
    ChildState::Running,
    ChildState::Backoff,
    ChildState::Stopping,
    ChildState::Stopped,
    ChildState::Paused,
    ChildState::Quarantined,
    ChildState::Blocked,
];

/// Fails to compile when a state is added, so that [`STATES`] is updated
/// with it (a child in a missing state would show 0 everywhere).
const fn listed(state: ChildState) -> usize {
    match state {
        ChildState::Starting => 0,
        ChildState::Running => 1,
        ChildState::Backoff => 2,
        ChildState::Stopping => 3,
        ChildState::Stopped => 4,
        ChildState::Paused => 5,
        ChildState::Quarantined => 6,
        ChildState::Blocked => 7,
    }
}

/// One label is the exit code, the other the signal; the one that does
/// not apply is empty (which Prometheus treats as absent).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExitLabels {
    child: String,
    code: String,
    signal: String,
}

impl ExitLabels {
    fn new(child: &ChildId, exit: Exit) -> Self {
        let (code, signal) = match exit {
            Exit::Code(code) => (code.to_string(), String::new()),
            Exit::Signal(number) => (
                String::new(),
                Signal::try_from(number)
                    .map_or_else(|_| number.to_string(), |s| s.as_str().to_owned()),
            ),
        };
        Self {
            child: child.to_string(),
            code,
            signal,
        }
    }
}

/// The current process of a child: its generation and when it started.
type Started = HashMap<ChildId, (u64, SystemTime)>;

/// What the journal taught: exits by child and status, process starts.
#[derive(Debug, Default)]
pub(super) struct History {
    exits: Family<ExitLabels, Counter>,
    /// Journal events this watcher never read (it fell more than the
    /// ring's capacity behind): exits among them are not in `exits`.
    missed: Counter,
    started: Mutex<Started>,
}

impl History {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "child_exits",
            "Processes of a child that ended, by exit code or by signal, since sgw started",
            self.exits.clone(),
        );
        registry.register(
            "metrics_events_missed",
            "Journal events the exit counter could not read in time (exits among them are not counted)",
            self.missed.clone(),
        );
    }

    /// Reads the event journal from its oldest retained record until
    /// `stop`, learning from what was published at or after `since` (older
    /// records are a previous run's, restored from disk).
    pub(super) async fn watch(
        &self,
        events: EventJournal,
        since: SystemTime,
        stop: CancellationToken,
    ) {
        let mut subscription = events.subscribe(Start::Oldest);
        loop {
            let item = tokio::select! {
                () = stop.cancelled() => return,
                item = subscription.next() => item,
            };
            match item {
                None => return,
                // Lost sequences are a previous run's (a crash between
                // publish and store): nothing of this run is missing.
                Some(Item::Gap(gap)) if gap.reason != GapReason::Lost => {
                    self.missed.inc_by(gap.len());
                }
                Some(Item::Gap(_)) => {}
                Some(Item::Record(record)) if record.time >= since => {
                    self.learn(&record.body, record.time);
                }
                Some(Item::Record(_)) => {}
            }
        }
    }

    fn learn(&self, event: &Event, time: SystemTime) {
        let Some(child) = &event.child_id else {
            return;
        };
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        match &event.kind {
            EventKind::ChildStarting { generation, .. } => {
                started.insert(child.clone(), (*generation, time));
            }
            EventKind::ChildExited {
                exit, generation, ..
            } => {
                self.exits
                    .get_or_create(&ExitLabels::new(child, *exit))
                    .inc();
                if started.get(child).is_some_and(|(g, _)| g == generation) {
                    started.remove(child);
                }
            }
            EventKind::ChildRemoved => {
                started.remove(child);
            }
            _ => {}
        }
    }

    /// The scrape-time collector over `snapshot`.
    pub(super) fn collector(&self, snapshot: StateSnapshot) -> SnapshotCollector {
        SnapshotCollector {
            snapshot,
            started: self
                .started
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            now: SystemTime::now(),
        }
    }
}

/// One scrape's view of the children and the journal.
#[derive(Debug)]
pub(super) struct SnapshotCollector {
    snapshot: StateSnapshot,
    started: Started,
    now: SystemTime,
}

impl SnapshotCollector {
    /// Seconds the child's current process has been up; `None` without a
    /// process, or when its start was not seen (before `since`).
    fn uptime(&self, child: &crate::model::ChildRecord) -> Option<f64> {
        child.pid?;
        let (generation, at) = self.started.get(&child.id)?;
        (*generation == child.generation).then(|| {
            self.now
                .duration_since(*at)
                .unwrap_or_default()
                .as_secs_f64()
        })
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let children = &self.snapshot.children;
        {
            let mut family = encoder.encode_descriptor(
                "child_state",
                "1 for the state the child is in, 0 for the others",
                None,
                MetricType::Gauge,
            )?;
            for child in children {
                debug_assert_eq!(STATES[listed(child.state)], child.state);
                for state in STATES {
                    let labels = [("child", child.id.as_str()), ("state", state.as_str())];
                    ConstGauge::new(i64::from(child.state == state))
                        .encode(family.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "child_restarts",
                "Automatic and commanded restarts since the child was added",
                None,
                MetricType::Counter,
            )?;
            for child in children {
                let labels = [("child", child.id.as_str())];
                ConstCounter::new(child.restart_count).encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "child_uptime",
                "Time since the child's current process started (children with a process)",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for child in children {
                if let Some(uptime) = self.uptime(child) {
                    let labels = [("child", child.id.as_str())];
                    ConstGauge::new(uptime).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "child_cpu",
                "CPU time (user + system) of the child's processes (cgroup: every process it ever held)",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            for child in children {
                if let Some(usage) = &child.usage {
                    let labels = [("child", child.id.as_str())];
                    ConstCounter::new(usage.cpu_time.as_secs_f64())
                        .encode(family.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "child_memory",
                "Memory of the child's processes (cgroup memory.current, else the sum of their RSS)",
                Some(&Unit::Bytes),
                MetricType::Gauge,
            )?;
            for child in children {
                if let Some(usage) = &child.usage {
                    let labels = [("child", child.id.as_str())];
                    ConstGauge::new(usage.memory_bytes).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let snapshot = &self.snapshot;
        for (name, help, value) in [
            (
                "journal_last_event_sequence",
                "Sequence of the newest journal event",
                snapshot.last_event_sequence,
            ),
            (
                "journal_last_log_sequence",
                "Sequence of the newest captured log line",
                snapshot.last_log_sequence,
            ),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        for (name, help, value) in [
            (
                "journal_dropped_events",
                "Events published but no longer retained",
                snapshot.dropped_events,
            ),
            (
                "journal_dropped_logs",
                "Log lines captured but no longer retained",
                snapshot.dropped_logs,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        Ok(())
    }
}
