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
use supervisor_gateway::journal::{Item, Journal, Start};
use supervisor_gateway::model::{ChildId, Event, EventKind};
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

fn subscribe_with_backlog(c: &mut Criterion) {
    let journal: Journal<Event> = Journal::new(65_536);
    for _ in 0..65_536 {
        journal.publish(event());
    }
    c.bench_function("journal_replay_65536", |b| {
        b.iter(|| {
            let mut sub = journal.subscribe(Start::Oldest);
            let mut n = 0u32;
            while let Some(Item::Record(record)) = sub.try_next() {
                black_box(&record);
                n += 1;
            }
            assert_eq!(n, 65_536);
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
    subscribe_with_backlog,
    error_mapping
);
criterion_main!(benches);
