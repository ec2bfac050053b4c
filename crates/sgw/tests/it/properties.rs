//! Property tests of the pure building blocks, through the public API only:
//! the journal ring, the legacy line codec, and the restart backoff.
//!
//! Each property runs a bounded number of cases (see [`CASES`]) so the whole
//! file takes well under a second in a debug build. A failing case is
//! shrunk, and proptest saves its seed in a `proptest-regressions` file
//! (the path is printed with the failure): commit it, so the case is
//! replayed first from then on.

use std::time::Duration;

use bytes::BytesMut;
use proptest::prelude::*;
use supervisor_gateway::engine::backoff_delay;
use supervisor_gateway::journal::{GapReason, Item, Journal, Start, Subscription};
use supervisor_gateway::model::Backoff;
use supervisor_gateway::transport::legacy::{FrameError, LineCodec};
use tokio_util::codec::Decoder;

/// Cases per property: enough to find the usual off-by-ones, few enough to
/// keep `cargo test` fast. Raise it locally with `PROPTEST_CASES`.
const CASES: u32 = 64;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    ProptestConfig::with_cases(cases)
}

// ---------------------------------------------------------------------------
// Journal ring
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum StartKind {
    Live,
    Oldest,
    /// `After(last_sequence - back)`, saturating at 0; a negative `back`
    /// starts past the head (see [`after_past_the_head_waits_for_it`]).
    After(i64),
}

#[derive(Debug, Clone)]
enum Op {
    /// Publishes this many records (sometimes more than the 256 a
    /// subscription moves per lock).
    Publish(usize),
    /// Creates a subscriber; if `drain_now`, drains it at once.
    Subscribe { start: StartKind, drain_now: bool },
    /// Takes up to this many items from subscriber `index % len`.
    Drain { index: usize, max: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let start = prop_oneof![
        Just(StartKind::Live),
        Just(StartKind::Oldest),
        (-3i64..40).prop_map(StartKind::After),
    ];
    prop_oneof![
        6 => (1usize..8).prop_map(Op::Publish),
        1 => (250usize..300).prop_map(Op::Publish),
        2 => (start, any::<bool>()).prop_map(|(start, drain_now)| Op::Subscribe { start, drain_now }),
        4 => (any::<usize>(), 0usize..40).prop_map(|(index, max)| Op::Drain { index, max }),
    ]
}

/// What a subscriber has been shown so far, checked item by item.
struct Follower {
    sub: Subscription<u64>,
    /// The sequence the next item must start at.
    cursor: u64,
    live: bool,
    /// Items taken so far.
    items: usize,
    /// Whether the first item taken was a gap.
    first_was_gap: bool,
    last_was_gap: bool,
}

impl Follower {
    /// Takes up to `max` available items, checking each against the cursor:
    /// a record must be exactly the next sequence, a gap must start exactly
    /// at it and is never followed by another gap.
    fn drain(&mut self, max: usize) -> Result<(), TestCaseError> {
        for _ in 0..max {
            let Some(item) = self.sub.try_next() else {
                return Ok(());
            };
            self.items += 1;
            if self.items == 1 {
                self.first_was_gap = matches!(item, Item::Gap(_));
            }
            match item {
                Item::Record(record) => {
                    prop_assert_eq!(record.sequence, self.cursor, "records are gapless");
                    prop_assert_eq!(record.body, record.sequence, "the record published there");
                    self.cursor += 1;
                    self.last_was_gap = false;
                }
                Item::Gap(gap) => {
                    prop_assert!(!self.last_was_gap, "two gaps in a row: {:?}", gap);
                    prop_assert_eq!(gap.first_missing, self.cursor, "a gap starts at the hole");
                    prop_assert!(gap.last_missing >= gap.first_missing);
                    prop_assert_eq!(gap.len(), gap.last_missing - gap.first_missing + 1);
                    if self.live {
                        prop_assert_eq!(
                            gap.reason,
                            GapReason::Lagged,
                            "a live subscriber only lags"
                        );
                    }
                    self.cursor = gap.last_missing + 1;
                    self.last_was_gap = true;
                }
            }
        }
        Ok(())
    }
}

fn start_of(kind: &StartKind, journal: &Journal<u64>) -> (Start, u64) {
    let last = journal.last_sequence();
    match *kind {
        StartKind::Live => (Start::Live, last + 1),
        StartKind::Oldest => (Start::Oldest, journal.evicted() + 1),
        StartKind::After(back) => {
            let after = u64::try_from(i64::try_from(last).unwrap_or(i64::MAX) - back).unwrap_or(0);
            (Start::After(after), after + 1)
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Guards the journal's delivery contract: whatever the interleaving of
    /// publishes, subscriber starts and partial drains, every subscriber
    /// sees strictly increasing sequences from exactly where it started,
    /// every hole is reported as one gap covering exactly the missing
    /// range, live subscribers only ever lag, an `Oldest` start drained at
    /// once never begins with a gap, and after `close` each one drains to
    /// the head and ends.
    #[test]
    fn ring_delivers_in_order_with_exact_gaps(
        capacity in 1usize..16,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let journal: Journal<u64> = Journal::new(capacity);
        let mut followers: Vec<Follower> = Vec::new();
        for op in ops {
            match op {
                Op::Publish(n) => {
                    for _ in 0..n {
                        let expected = journal.last_sequence() + 1;
                        prop_assert_eq!(journal.publish(expected), expected);
                    }
                    let retained = journal.last_sequence() - journal.evicted();
                    prop_assert!(retained as usize <= capacity);
                }
                Op::Subscribe { start, drain_now } => {
                    let (start, cursor) = start_of(&start, &journal);
                    let mut follower = Follower {
                        sub: journal.subscribe(start),
                        cursor,
                        live: start == Start::Live,
                        items: 0,
                        first_was_gap: false,
                        last_was_gap: false,
                    };
                    if drain_now {
                        follower.drain(usize::MAX)?;
                        if start == Start::Oldest {
                            prop_assert!(!follower.first_was_gap, "Oldest reported a gap up front");
                        }
                    }
                    followers.push(follower);
                }
                Op::Drain { index, max } => {
                    if !followers.is_empty() {
                        let len = followers.len();
                        followers[index % len].drain(max)?;
                    }
                }
            }
        }
        journal.close();
        let head = journal.last_sequence();
        for follower in &mut followers {
            follower.drain(usize::MAX)?;
            prop_assert!(follower.sub.try_next().is_none(), "ended after close");
            // Everything up to the head was shown as a record or a gap
            // (a start beyond the head simply saw nothing).
            prop_assert_eq!(follower.cursor, follower.cursor.max(head + 1));
            if follower.cursor > head + 1 {
                prop_assert_eq!(follower.items, 0);
            }
        }
    }

    /// Guards the bound on a backlog reply: `start_for_last(n, max_bytes)`
    /// replays at most `n` matching records whose sizes add up to at most
    /// `max_bytes`, except that the newest match is always included alone;
    /// it starts at a match, and takes as many as the bounds allow (one
    /// older match more would break a bound).
    #[test]
    fn start_for_last_respects_count_and_bytes(
        capacity in 1usize..32,
        records in prop::collection::vec((0usize..64, any::<bool>()), 0..48),
        n in 0usize..12,
        max_bytes in 0usize..256,
    ) {
        let journal = Journal::new(capacity);
        for record in &records {
            journal.publish(*record);
        }
        let matches = |r: &(usize, bool)| r.1;
        let size = |r: &(usize, bool)| r.0;
        let start = journal.start_for_last(n, max_bytes, matches, size);
        let retained = journal.tail(capacity);
        let retained_matches: Vec<_> = retained.iter().filter(|r| matches(&r.body)).collect();
        let after = match start {
            Start::Live => {
                prop_assert!(n == 0 || retained_matches.is_empty(), "a match was left out");
                return Ok(());
            }
            Start::After(after) => after,
            Start::Oldest => return Err(TestCaseError::fail("never Oldest")),
        };
        prop_assert!(n > 0);
        let replayed: Vec<_> = retained.iter().filter(|r| r.sequence > after).collect();
        prop_assert!(!replayed.is_empty());
        prop_assert_eq!(replayed[0].sequence, after + 1, "starts inside the ring");
        prop_assert!(matches(&replayed[0].body), "starts at a match");
        let replayed_matches: Vec<_> = replayed.iter().filter(|r| matches(&r.body)).collect();
        let count = replayed_matches.len();
        let bytes: usize = replayed_matches.iter().map(|r| size(&r.body)).sum();
        prop_assert!(count <= n, "{} matches replayed for n = {}", count, n);
        prop_assert!(
            bytes <= max_bytes || count == 1,
            "{} bytes replayed for max_bytes = {}", bytes, max_bytes
        );
        prop_assert_eq!(
            replayed_matches.last().map(|r| r.sequence),
            retained_matches.last().map(|r| r.sequence),
            "the newest match is included"
        );
        // Maximal: the next older match would break a bound.
        if let Some(older) = retained_matches.iter().rev().nth(count) {
            prop_assert!(count == n || bytes + size(&older.body) > max_bytes);
        }
    }
}

/// Guards resuming past the head (a client's `after_sequence` beyond the
/// newest record, e.g. after the gateway restarted with a fresh journal):
/// per [`Start::After`] the subscriber gets the records after that
/// sequence once they exist, and nothing before.
///
/// Found by `ring_delivers_in_order_with_exact_gaps`: `Subscription::refill`
/// sliced the ring at an offset past its end and panicked, and both
/// transports pass a client's `after_sequence` straight through.
#[test]
fn after_past_the_head_waits_for_it() {
    let journal: Journal<u64> = Journal::new(4);
    journal.publish(1);
    let mut sub = journal.subscribe(Start::After(3));
    assert!(sub.try_next().is_none(), "nothing after 3 yet");
    for sequence in 2..=5 {
        journal.publish(sequence);
    }
    match sub.try_next() {
        Some(Item::Record(record)) => assert_eq!(record.sequence, 4),
        other => panic!("expected record 4, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Legacy line codec
// ---------------------------------------------------------------------------

/// Splits `bytes` at the given cut points (taken modulo the length).
fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| c % (bytes.len() + 1))
        .chain([0, bytes.len()])
        .collect();
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| bytes[w[0]..w[1]].to_vec())
        .collect()
}

/// What a connection's reader does: append each chunk, decode every frame
/// it completes, and `decode_eof` at the end. Stops at the first error and
/// returns it with the frames before it and the number of bytes fed when
/// it happened.
fn feed(codec: &mut LineCodec, chunks: &[Vec<u8>]) -> (Vec<String>, Option<(FrameError, usize)>) {
    let (mut buf, mut frames, mut fed) = (BytesMut::new(), Vec::new(), 0);
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error) => return (frames, Some((error, fed))),
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None),
            Err(error) => return (frames, Some((error, fed))),
        }
    }
}

/// A line of at most `max` bytes of arbitrary text without a newline.
fn line(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        any::<char>().prop_filter("no newline", |c| *c != '\n'),
        0..=max,
    )
    .prop_map(move |chars| {
        let mut line = String::new();
        for c in chars {
            if line.len() + c.len_utf8() > max {
                break;
            }
            line.push(c);
        }
        line
    })
}

fn joined(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| [l.as_bytes(), b"\n"].concat())
        .collect()
}

proptest! {
    #![proptest_config(config())]

    /// Guards framing under arbitrary reads: however a valid stream (lines
    /// of at most `max` bytes, any Unicode, empty lines included) is split
    /// into reads, the same lines come out, in order, with no error.
    #[test]
    fn codec_any_split_decodes_the_same_lines(
        (max, lines) in (1usize..48).prop_flat_map(|max| (Just(max), prop::collection::vec(line(max), 0..12))),
        cuts in prop::collection::vec(any::<usize>(), 0..24),
    ) {
        let stream = joined(&lines);
        let (frames, error) = feed(&mut LineCodec::new(max), &split(&stream, &cuts));
        prop_assert!(error.is_none(), "{:?}", error.map(|e| e.0.to_string()));
        prop_assert_eq!(frames, lines);
    }

    /// Guards the size bound: a line longer than `max` yields
    /// `FrameError::TooLarge` as soon as `max + 1` of its bytes were read
    /// (the buffer cannot grow past the bound), after exactly the complete
    /// lines before it, and never any part of it as a frame.
    #[test]
    fn codec_oversize_line_is_an_error_not_a_partial_frame(
        (max, before) in (1usize..32).prop_flat_map(|max| (Just(max), prop::collection::vec(line(max), 0..6))),
        excess in 1usize..40,
        newline_after in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let mut stream = joined(&before);
        let oversize_at = stream.len();
        stream.extend(std::iter::repeat_n(b'a', max + excess));
        if newline_after {
            stream.extend_from_slice(b"\nafter\n");
        }
        let chunks = split(&stream, &cuts);
        let (frames, error) = feed(&mut LineCodec::new(max), &chunks);
        prop_assert_eq!(&frames, &before, "only the complete lines before it");
        let Some((error, fed)) = error else {
            return Err(TestCaseError::fail("an oversize line was accepted"));
        };
        prop_assert!(matches!(error, FrameError::TooLarge { max: m } if m == max), "{}", error);
        // The error came with the read that brought byte `max + 1` of the line.
        let mut first_fed_past = 0;
        for chunk in &chunks {
            first_fed_past += chunk.len();
            if first_fed_past > oversize_at + max {
                break;
            }
        }
        prop_assert_eq!(fed, first_fed_past);
    }

    /// Guards the decoder against hostile input: arbitrary bytes in
    /// arbitrary reads never panic; every frame is at most `max` bytes of
    /// UTF-8 without a newline and is exactly the next line of the input;
    /// and `Truncated` only ever comes at the end of the stream.
    #[test]
    fn codec_never_panics_on_arbitrary_bytes(
        max in 0usize..64,
        bytes in prop::collection::vec(
            prop_oneof![4 => any::<u8>(), 1 => Just(b'\n')], 0..256),
        cuts in prop::collection::vec(any::<usize>(), 0..32),
    ) {
        let (frames, error) = feed(&mut LineCodec::new(max), &split(&bytes, &cuts));
        let mut rest = &bytes[..];
        for frame in &frames {
            prop_assert!(frame.len() <= max && !frame.contains('\n'));
            prop_assert!(rest.starts_with(frame.as_bytes()));
            prop_assert_eq!(rest.get(frame.len()), Some(&b'\n'));
            rest = &rest[frame.len() + 1..];
        }
        match error {
            None => prop_assert!(rest.is_empty()),
            Some((FrameError::Truncated { pending }, fed)) => {
                prop_assert_eq!(fed, bytes.len());
                prop_assert_eq!(pending, rest.len());
                prop_assert!(!rest.contains(&b'\n') && rest.len() <= max);
            }
            Some((FrameError::InvalidUtf8 { valid_up_to }, _)) => {
                let end = rest.iter().position(|&b| b == b'\n');
                prop_assert!(end.is_some_and(|end| end <= max && valid_up_to < end));
            }
            Some((FrameError::TooLarge { max: m }, _)) => {
                prop_assert_eq!(m, max);
                let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
                prop_assert!(end > max);
            }
            Some((FrameError::Io(error), _)) => {
                return Err(TestCaseError::fail(format!("no I/O here: {error}")));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Restart backoff
// ---------------------------------------------------------------------------

/// Backoff settings `ChildSpec::validate` accepts: initial > 0, max >=
/// initial, multiplier >= 1, jitter in [0, 1].
fn backoff() -> impl Strategy<Value = Backoff> {
    (
        1u64..10_000,
        0u64..600_000,
        1.0f64..10.0,
        prop_oneof![Just(0.0), Just(1.0), 0.0f64..=1.0],
    )
        .prop_map(|(initial, extra, multiplier, jitter)| Backoff {
            initial: Duration::from_millis(initial),
            max: Duration::from_millis(initial + extra),
            multiplier,
            jitter,
            ..Backoff::default()
        })
}

/// The un-jittered delay: `initial * multiplier^(attempt - 1)`, capped.
fn base(b: &Backoff, attempt: u32) -> f64 {
    let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    (b.initial.as_secs_f64() * b.multiplier.powi(exponent)).min(b.max.as_secs_f64())
}

/// Float rounding allowance when comparing with `Duration`s (1 µs).
const SLACK: f64 = 1e-6;

proptest! {
    #![proptest_config(config())]

    /// Guards the backoff shape: for the same jitter draw, delays never
    /// shrink as attempts grow, never exceed `max`, and reach `max` once
    /// the exponential passes it (at the midpoint draw, which is no jitter).
    #[test]
    fn backoff_is_monotone_and_capped(b in backoff(), unit in 0.0f64..1.0) {
        let mut previous = Duration::ZERO;
        for attempt in (1..=64).chain([1000, u32::MAX - 1, u32::MAX]) {
            let delay = backoff_delay(&b, attempt, unit);
            prop_assert!(delay >= previous, "attempt {}: {:?} < {:?}", attempt, delay, previous);
            prop_assert!(delay <= b.max, "attempt {}: {:?} > max {:?}", attempt, delay, b.max);
            previous = delay;
        }
        let plain = backoff_delay(&b, 1, 0.5);
        prop_assert!((plain.as_secs_f64() - b.initial.as_secs_f64()).abs() < SLACK);
        if base(&b, u32::MAX) >= b.max.as_secs_f64() {
            let at_cap = backoff_delay(&b, u32::MAX, 0.5);
            prop_assert!((at_cap.as_secs_f64() - b.max.as_secs_f64()).abs() < SLACK);
        }
    }

    /// Guards the jitter bounds: each delay is the capped exponential
    /// scaled by a factor in `[1 - jitter, 1 + jitter]`, then capped at
    /// `max` again; draws outside `[0, 1)` are clamped, never amplified.
    #[test]
    fn backoff_jitter_stays_within_bounds(
        b in backoff(),
        attempt in prop_oneof![1u32..40, any::<u32>()],
        unit in prop_oneof![4 => 0.0f64..1.0, 1 => -1e9f64..1e9],
    ) {
        let delay = backoff_delay(&b, attempt, unit).as_secs_f64();
        let base = base(&b, attempt);
        let max = b.max.as_secs_f64();
        let low = base * (1.0 - b.jitter);
        let high = (base * (1.0 + b.jitter)).min(max);
        prop_assert!(
            delay >= low - SLACK && delay <= high + SLACK,
            "delay {} outside [{}, {}] (base {}, jitter {}, unit {})",
            delay, low, high, base, b.jitter, unit
        );
        prop_assert!(delay <= max + SLACK);
    }
}
