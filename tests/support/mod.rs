//! Shared helpers for the integration tests: specs for real `/bin/sh`
//! children, and awaiting journal facts instead of sleeping.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use supervisor_gateway::engine::{ChildSet, EngineConfig, Supervisor};
use supervisor_gateway::journal::{Item, Record, Start, Subscription};
use supervisor_gateway::model::{ChildId, ChildSpec, Event, EventKind};

/// Upper bound for any single wait in a test: generous for a loaded CI
/// machine, small enough that a hang fails fast.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn id(s: &str) -> ChildId {
    ChildId::new(s).expect("valid test id")
}

/// A `/bin/sh -c script` child with fast, deterministic test settings.
pub fn sh(child: &str, script: &str) -> ChildSpec {
    let mut spec = ChildSpec::new(
        id(child),
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    );
    spec.backoff.initial = Duration::from_millis(10);
    spec.backoff.max = Duration::from_secs(1);
    spec.backoff.jitter = 0.0;
    spec.stop_timeout = Duration::from_secs(5);
    spec
}

pub fn start(specs: Vec<ChildSpec>) -> Supervisor {
    start_with(EngineConfig::default(), specs)
}

pub fn start_with(config: EngineConfig, specs: Vec<ChildSpec>) -> Supervisor {
    Supervisor::start(config, ChildSet::new(specs).expect("valid test tree"))
}

/// Waits for the next event matching `pred`, failing the test after
/// [`PATIENCE`]. Gaps are not expected in these tests and fail them.
pub async fn wait_event(
    sub: &mut Subscription<Event>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Arc<Record<Event>> {
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            match sub.next().await {
                Some(Item::Record(record)) if pred(&record.body) => return record,
                Some(Item::Record(_)) => {}
                Some(Item::Gap(gap)) => panic!("unexpected gap {gap:?} while waiting for {what}"),
                None => panic!("journal closed while waiting for {what}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Every event until (and including) the first one matching `pred`.
pub async fn events_until(
    sub: &mut Subscription<Event>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Vec<Arc<Record<Event>>> {
    let mut seen = Vec::new();
    loop {
        let record = wait_event(sub, what, |_| true).await;
        let done = pred(&record.body);
        seen.push(record);
        if done {
            return seen;
        }
    }
}

pub fn is(kind: fn(&EventKind) -> bool, child: &str) -> impl Fn(&Event) -> bool {
    let child = id(child);
    move |e: &Event| e.child_id.as_ref() == Some(&child) && kind(&e.kind)
}

pub fn subscribe(sup: &Supervisor) -> Subscription<Event> {
    use supervisor_gateway::control::ControlPlane;
    sup.events().subscribe(Start::Oldest)
}

/// Whether a process is gone (or a zombie nobody will run again).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// Waits until `pid` is gone. There is no event for the death of a process
/// we do not own (a grandchild), so this polls /proc with a deadline.
pub async fn wait_gone(pid: u32) -> bool {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if process_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
