//! The journal under concurrency: several producers, several subscribers
//! starting at random points, over 100k+ events, with a ring small enough
//! that subscribers fall behind and resume points are evicted.

use std::sync::Arc;

use supervisor_gateway::journal::{GapReason, Item, Journal, Start};

const PRODUCERS: u64 = 4;
const PER_PRODUCER: u64 = 30_000;

/// Every subscriber sees strictly increasing sequences, and its holes are
/// exactly the ranges its gap records name: nothing silently lost, nothing
/// duplicated. Each producer's own records arrive in the order it published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_see_every_record_or_an_exact_gap() {
    let journal: Journal<(u64, u64)> = Journal::new(2048);
    // Some history so that random resume points can land before, inside
    // and after what is retained.
    for i in 0..5_000 {
        journal.publish((PRODUCERS, i));
    }
    let mut rng = fastrand::Rng::with_seed(7);
    let mut subscribers = Vec::new();
    for index in 0..8 {
        let start = match index {
            0 => Start::Oldest,
            1 => Start::Live,
            _ => Start::After(rng.u64(0..6_000)),
        };
        let mut sub = journal.subscribe(start);
        let slow = index % 3 == 0;
        let mut expected = match start {
            Start::Oldest => journal.last_sequence() - 2047,
            Start::Live => sub.position(),
            Start::After(after) => after + 1,
        };
        subscribers.push(tokio::spawn(async move {
            let mut last_per_producer = [None::<u64>; PRODUCERS as usize + 1];
            let (mut records, mut gaps) = (0u64, 0u64);
            while let Some(item) = sub.next().await {
                match item {
                    Item::Record(record) => {
                        assert_eq!(record.sequence, expected, "hole without a gap record");
                        let (producer, n) = record.body;
                        let last = &mut last_per_producer[producer as usize];
                        assert!(last.is_none_or(|l| n > l), "producer order broken");
                        *last = Some(n);
                        expected += 1;
                        records += 1;
                    }
                    Item::Gap(gap) => {
                        assert_eq!(
                            gap.first_missing, expected,
                            "gap does not start at the hole"
                        );
                        assert!(gap.last_missing >= gap.first_missing);
                        expected = gap.last_missing + 1;
                        gaps += gap.len();
                    }
                }
                if slow && records % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            (expected, records, gaps)
        }));
    }
    let journal = Arc::new(journal);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let journal = Arc::clone(&journal);
            tokio::spawn(async move {
                for n in 0..PER_PRODUCER {
                    journal.publish((p, n));
                    if n % 1000 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.expect("producer");
    }
    journal.close();
    let end = journal.last_sequence() + 1;
    assert_eq!(end, 5_000 + PRODUCERS * PER_PRODUCER + 1);
    for subscriber in subscribers {
        let (expected, records, gaps) = subscriber.await.expect("subscriber");
        assert_eq!(expected, end, "subscriber stopped early");
        assert!(records > 0 && records + gaps > 0);
    }
}

/// Resuming from evicted history yields one `evicted` gap up front, then
/// the retained records.
#[tokio::test]
async fn resume_from_evicted_history_reports_the_hole() {
    let journal: Journal<u32> = Journal::new(10);
    for i in 0..25 {
        journal.publish(i);
    }
    let mut sub = journal.subscribe(Start::After(3));
    match sub.try_next() {
        Some(Item::Gap(gap)) => {
            assert_eq!(
                (gap.first_missing, gap.last_missing, gap.reason),
                (4, 15, GapReason::Evicted)
            );
        }
        other => panic!("expected a gap, got {other:?}"),
    }
    let sequences: Vec<u64> = std::iter::from_fn(|| match sub.try_next() {
        Some(Item::Record(r)) => Some(r.sequence),
        _ => None,
    })
    .collect();
    assert_eq!(sequences, (16..=25).collect::<Vec<_>>());
    // A live subscriber that falls more than the capacity behind gets a
    // `lagged` gap and continues.
    let mut live = journal.subscribe(Start::Live);
    for i in 0..30 {
        journal.publish(i);
    }
    match live.try_next() {
        Some(Item::Gap(gap)) => assert_eq!(
            (gap.first_missing, gap.last_missing, gap.reason),
            (26, 45, GapReason::Lagged)
        ),
        other => panic!("expected a lag gap, got {other:?}"),
    }
    assert!(matches!(live.try_next(), Some(Item::Record(r)) if r.sequence == 46));
}

/// The replay-to-live switch has no hole and no duplicate even when
/// publishing races with subscribing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_races_publish_without_duplicates() {
    let journal: Journal<u64> = Journal::new(100_000);
    let publisher = {
        let journal = journal.clone();
        tokio::spawn(async move {
            for i in 0..50_000 {
                journal.publish(i);
            }
            journal.close();
        })
    };
    let mut subs = Vec::new();
    for _ in 0..20 {
        tokio::task::yield_now().await;
        let at = journal.last_sequence();
        subs.push((at, journal.subscribe(Start::After(at))));
    }
    publisher.await.expect("publisher");
    for (at, mut sub) in subs {
        let mut expected = at + 1;
        while let Some(item) = sub.next().await {
            let Item::Record(r) = item else {
                panic!("unexpected gap")
            };
            assert_eq!(r.sequence, expected);
            expected += 1;
        }
        assert_eq!(expected, 50_001);
    }
}
