//! The event journal kept on disk: how many events a second reach SQLite
//! under each `[journal] sync` policy, and what the publish path costs
//! with the store attached compared with the memory-only ring, in one run.
//!
//! ```sh
//! cargo run --release --example durable            # 200,000 events per policy
//! cargo run --release --example durable -- --quick # 20,000
//! ```
//!
//! Publishing hands each record to the writer thread; the writer commits
//! whatever queued up in one transaction. "durable" is the rate from the
//! first publish until the last record is committed (`close` waits for
//! it); "publish" is the rate of the publish calls alone.

use std::time::{Duration, Instant};

use supervisor_gateway::journal::store::{self, StoreConfig, SyncPolicy};
use supervisor_gateway::journal::{EventJournal, Journal};
use supervisor_gateway::model::{ChildId, Event, EventKind};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn event(id: &ChildId, i: u64) -> Event {
    Event::child(
        id,
        EventKind::ChildStarting {
            generation: i,
            pid: 4242,
        },
    )
}

struct Figures {
    publish_per_second: f64,
    durable_per_second: Option<f64>,
    commits: u64,
}

async fn run(events: u64, sync: Option<SyncPolicy>) -> Result<Figures, Error> {
    let id = ChildId::new("web")?;
    let dir = tempfile::tempdir()?;
    let (journal, store): (EventJournal, _) = match sync {
        Some(sync) => {
            let opened = store::open(
                &StoreConfig {
                    dir: dir.path().to_owned(),
                    sync,
                    retain_bytes: u64::MAX,
                    retain_age: Duration::from_secs(3600),
                },
                65_536,
            )?;
            (Journal::restore(65_536, opened.restore), Some(opened.store))
        }
        None => (Journal::new(65_536), None),
    };
    let started = Instant::now();
    for i in 0..events {
        journal.publish(event(&id, i));
    }
    let published = started.elapsed();
    let (durable, commits) = match &store {
        Some(store) => {
            store.close(1).await;
            let commits = store
                .stats()
                .commits
                .load(std::sync::atomic::Ordering::Relaxed);
            (Some(started.elapsed()), commits)
        }
        None => (None, 0),
    };
    Ok(Figures {
        publish_per_second: events as f64 / published.as_secs_f64(),
        durable_per_second: durable.map(|d| events as f64 / d.as_secs_f64()),
        commits,
    })
}

async fn compare(events: u64) -> Result<(), Error> {
    println!("{events} events published back to back, one run per row");
    println!();
    println!("| journal | publish calls/s | durable events/s | commits (group size) |");
    println!("|---|---|---|---|");
    for (label, sync) in [
        ("memory only (state_dir = \"\")", None),
        ("sync = \"off\"", Some(SyncPolicy::Off)),
        ("sync = \"normal\" (default)", Some(SyncPolicy::Normal)),
        ("sync = \"full\"", Some(SyncPolicy::Full)),
    ] {
        let figures = run(events, sync).await?;
        let group = if figures.commits > 0 {
            format!(
                "{} ({:.0})",
                figures.commits,
                events as f64 / figures.commits as f64
            )
        } else {
            "-".to_owned()
        };
        println!(
            "| {label} | {:.2} M | {} | {group} |",
            figures.publish_per_second / 1e6,
            figures
                .durable_per_second
                .map_or("-".to_owned(), |r| format!("{:.0} k", r / 1e3)),
        );
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let quick = std::env::args().any(|a| a == "--quick");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(compare(if quick { 20_000 } else { 200_000 }))
}
