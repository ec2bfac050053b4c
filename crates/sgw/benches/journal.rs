//! In-process costs of the journal and the error mapping.
//!
//! `cargo bench --bench journal` prints criterion's figures. The publish
//! benches keep N subscriber tasks draining the ring on another runtime, so
//! the publisher pays for whatever waking them costs.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use supervisor_gateway::control::ControlError;
use supervisor_gateway::journal::{Item, Journal, LogJournal, Start};
use supervisor_gateway::model::{ChildId, Event, EventKind, LogLine, LogStream};
use supervisor_gateway::transport::grpc::status::to_status;

fn event() -> Event {
    Event::child(
        &ChildId::new("bench").expect("id"),
        EventKind::ChildRunning {
            generation: 1,
            pid: 42,
        },
    )
}

fn publish_with_subscribers(c: &mut Criterion) {
    let mut group = c.benchmark_group("journal_publish");
    group.measurement_time(Duration::from_secs(3));
    for subscribers in [0usize, 1, 64, 1000] {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let journal: Journal<Event> = Journal::new(65_536);
        for _ in 0..subscribers {
            let mut sub = journal.subscribe(Start::Live);
            runtime.spawn(async move {
                while let Some(item) = sub.next().await {
                    black_box(&item);
                }
            });
        }
        group.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &subscribers,
            |b, _| {
                b.iter(|| journal.publish(black_box(event())));
            },
        );
        journal.close();
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
    group.finish();
}

fn line(child: &ChildId) -> LogLine {
    LogLine {
        child_id: child.clone(),
        generation: 1,
        stream: LogStream::Stdout,
        text: "GET /index.html 200 0.002s".to_owned(),
        truncated: false,
        suppressed: 0,
    }
}

/// The log journal's publish (per-child byte bounds, a flooder evicting
/// its own lines at every publish) with draining subscribers, beside the
/// event ring's above.
fn log_publish_with_subscribers(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_journal_publish");
    group.measurement_time(Duration::from_secs(3));
    let children: Vec<ChildId> = (0..8)
        .map(|i| ChildId::new(&format!("child-{i}")).expect("id"))
        .collect();
    for subscribers in [0usize, 1, 64] {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let journal = LogJournal::new(65_536);
        for _ in 0..subscribers {
            let mut sub = journal.subscribe(Start::Live);
            runtime.spawn(async move {
                while let Some(item) = sub.next().await {
                    black_box(&item);
                }
            });
        }
        let mut next = 0usize;
        group.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &subscribers,
            |b, _| {
                b.iter(|| {
                    next = (next + 1) % children.len();
                    journal.publish(black_box(line(&children[next])))
                });
            },
        );
        journal.close();
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
    group.finish();
}

/// Replaying every child's retained output in sequence order (TailLogs
/// with no child filter), which merges one tail per child under the lock
/// capture also takes: the cost per line as the children grow.
fn log_replay_over_children(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_replay_all_children");
    group.measurement_time(Duration::from_secs(3));
    for count in [8usize, 200] {
        let journal = LogJournal::new(65_536);
        let children: Vec<ChildId> = (0..count)
            .map(|i| ChildId::new(&format!("child-{i}")).expect("id"))
            .collect();
        for i in 0..16_384 {
            journal.publish(line(&children[i % count]));
        }
        group.throughput(criterion::Throughput::Elements(16_384));
        group.bench_with_input(BenchmarkId::from_parameter(count), &count, |b, _| {
            b.iter(|| {
                let mut sub = journal.subscribe(Start::Oldest);
                assert_eq!(drain(|| sub.try_next()), 16_384);
            });
        });
    }
    group.finish();
}

/// Reads records until the first non-record; how many there were.
fn drain<T>(mut next: impl FnMut() -> Option<Item<T>>) -> u32 {
    let mut n = 0;
    while let Some(Item::Record(record)) = next() {
        black_box(&record);
        n += 1;
    }
    n
}

fn subscribe_with_backlog(c: &mut Criterion) {
    let journal: Journal<Event> = Journal::new(65_536);
    for _ in 0..65_536 {
        journal.publish(event());
    }
    c.bench_function("journal_replay_65536", |b| {
        b.iter(|| {
            let mut sub = journal.subscribe(Start::Oldest);
            assert_eq!(drain(|| sub.try_next()), 65_536);
        });
    });
}

fn error_mapping(c: &mut Criterion) {
    let error = ControlError::NotFound {
        id: "missing".into(),
        known: vec![
            ChildId::new("a").expect("id"),
            ChildId::new("b").expect("id"),
        ],
    };
    c.bench_function("control_error_to_status", |b| {
        b.iter(|| to_status(black_box(&error), "demo"))
    });
    let shared = Arc::new(error);
    c.bench_function("control_error_code", |b| {
        b.iter(|| black_box(&shared).code())
    });
}

criterion_group!(
    benches,
    publish_with_subscribers,
    log_publish_with_subscribers,
    log_replay_over_children,
    subscribe_with_backlog,
    error_mapping
);
criterion_main!(benches);
