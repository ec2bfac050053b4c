//! In-process costs of the legacy `dashboard-ipc.v1` adapter.
//!
//! `cargo bench --bench legacy` prints criterion's figures:
//! - `legacy_frame/{decode,decode_parse}/{small,1KiB}`: split a buffer of
//!   64 pipelined request lines with the adapter's `LineCodec`, and (second
//!   variant) parse each into the protocol's `Request`; throughput is per
//!   line.
//! - `legacy_dispatch/{hello,state}`: one request line through the
//!   adapter's dispatch (parse, route, control plane, serialize), over a
//!   `Supervisor` with no children whose event journal holds 100 events, so
//!   `state` carries a full `recent_events` list.
//! - `legacy_connection/pipelined_1KiB_hello`: a whole connection over a
//!   socket pair, 64 requests written ahead then 64 responses read, per
//!   request: what the load tool's pipelined run costs without a second
//!   process.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::runtime::Runtime;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use supervisor_gateway::control::ControlPlane;
use supervisor_gateway::engine::{ChildSet, EngineConfig, Supervisor};
use supervisor_gateway::model::{ChildId, Event, EventKind};
use supervisor_gateway::security::{Guarded, Security};
use supervisor_gateway::transport::legacy::{Adapter, LegacyOptions, LineCodec, Request};
use supervisor_gateway::transport::peer::Caller;

/// Lines per buffer (and requests written ahead on a connection).
const LINES: usize = 64;

const HELLO: &str = r#"{"request_id":"h","method":"hello"}"#;
const STATE: &str = r#"{"request_id":"s","method":"state"}"#;

/// A `hello` line of `size` bytes with its newline, padded in a param
/// `hello` ignores (the load tool's pipelined request).
fn padded_hello(size: usize) -> String {
    let head = r#"{"request_id":"p","method":"hello","params":{"pad":""#;
    let tail = "\"}}\n";
    let pad = size.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(pad))
}

/// Splits `buffer` into frames, parsing each into a `Request` if `parse`.
fn decode_all(mut buffer: BytesMut, parse: bool) {
    let mut codec = LineCodec::new(LegacyOptions::new("").max_frame_bytes);
    let mut frames = 0;
    while let Some(frame) = codec.decode(&mut buffer).expect("valid frames") {
        if parse {
            let request: Request = serde_json::from_str(&frame).expect("a request");
            black_box(&request);
        } else {
            black_box(&frame);
        }
        frames += 1;
    }
    assert_eq!(frames, LINES);
}

fn frame_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("legacy_frame");
    group.throughput(Throughput::Elements(LINES as u64));
    for (label, line) in [
        ("small", format!("{HELLO}\n")),
        ("1KiB", padded_hello(1024)),
    ] {
        let buffer = BytesMut::from(line.repeat(LINES).as_bytes());
        for (stage, parse) in [("decode", false), ("decode_parse", true)] {
            group.bench_function(BenchmarkId::new(stage, label), |b| {
                b.iter_batched(
                    || buffer.clone(),
                    |buffer| decode_all(buffer, parse),
                    BatchSize::SmallInput,
                );
            });
        }
    }
    group.finish();
}

/// A supervisor with no children, 100 events in its journal, and the
/// adapter over it. Must be called inside the runtime.
fn adapter() -> Arc<Adapter<Supervisor>> {
    let supervisor = Supervisor::start(
        EngineConfig {
            target_id: "bench".into(),
            ..EngineConfig::default()
        },
        ChildSet::new(vec![]).expect("empty set"),
    )
    .expect("supervisor starts");
    let id = ChildId::new("bench").expect("id");
    for generation in 0..100 {
        supervisor.events().publish(Event::child(
            &id,
            EventKind::ChildRunning { generation, pid: 1 },
        ));
    }
    Adapter::new(
        Guarded::new(Arc::new(supervisor), Arc::new(Security::default())),
        &LegacyOptions::new("/run/bench.sock"),
    )
}

/// The identity the listener would have read from the kernel: the daemon's
/// own user, which the default security config admits and never rate-limits.
fn peer() -> Arc<Caller> {
    Arc::new(Caller {
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        pid: Some(std::process::id()),
        user_name: Some("bench".into()),
        connection_id: 1,
        executable: None,
        start_time: None,
    })
}

/// A bench of refused requests would measure the wrong thing.
fn assert_ok(response: &str) {
    assert!(
        response.starts_with("{\"request_id\":") && response.contains("\"ok\":true"),
        "not a successful response: {response}"
    );
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn dispatch(c: &mut Criterion) {
    let runtime = runtime();
    let adapter = runtime.block_on(async { adapter() });
    let peer = peer();
    let mut group = c.benchmark_group("legacy_dispatch");
    for (label, line) in [("hello", HELLO), ("state", STATE)] {
        let response = runtime.block_on(adapter.respond(line, Some(&peer)));
        assert_ok(&String::from_utf8_lossy(&response));
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        black_box(adapter.respond(black_box(line), Some(&peer)).await);
                    }
                    started.elapsed()
                })
            });
        });
    }
    group.finish();
}

fn connection(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let shutdown = CancellationToken::new();
    let client = runtime.block_on(async {
        let (client, server) = UnixStream::pair().expect("socket pair");
        tokio::spawn(adapter().serve_connection(server, Some(peer()), shutdown.clone()));
        client
    });
    let (read, mut write) = client.into_split();
    let mut read = BufReader::with_capacity(64 * 1024, read);
    let requests = padded_hello(1024).repeat(LINES);
    let mut line = String::new();
    runtime.block_on(async {
        write.write_all(HELLO.as_bytes()).await.expect("write");
        write.write_all(b"\n").await.expect("write");
        read.read_line(&mut line).await.expect("read");
    });
    assert_ok(&line);
    let mut group = c.benchmark_group("legacy_connection");
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("pipelined_1KiB_hello", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    write.write_all(requests.as_bytes()).await.expect("write");
                    for _ in 0..LINES {
                        line.clear();
                        read.read_line(&mut line).await.expect("read");
                    }
                }
                started.elapsed()
            })
        });
    });
    group.finish();
    shutdown.cancel();
    runtime.shutdown_timeout(Duration::from_secs(1));
}

criterion_group!(benches, frame_parse, dispatch, connection);
criterion_main!(benches);
