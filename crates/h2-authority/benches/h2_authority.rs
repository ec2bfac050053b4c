//! CPU cost of the `:authority` repair against h2's own, per KiB the client sends.
//!
//! `cargo bench --bench h2_authority` prints criterion's figures (throughput in bytes
//! of client input), then one summary line per input with the time per KiB of each
//! runner and the ratio "wrapper / h2". Inputs:
//! - `grpcio_unix`: a grpcio-like connection to a `unix:` target (Huffman-coded,
//!   indexed `%2Ftmp%2Fsgw.sock` authority, later requests as table references, one
//!   small DATA frame each): the wrapper repairs the first block and scans the rest.
//! - `grpcio_valid`: the same with `localhost`: the wrapper scans the first block
//!   and then passes through; bare h2 accepts it, so it is the h2 baseline.
//! - `attack_15k`: one HEADERS frame of `\x00\x80\x80` x 5000 (literals with empty
//!   Huffman-coded names and values), the block that cost the old decoder ~10 ms/KiB.
//!   h2 stops at the first field (an empty name is an error), and so does the scanner.
//! - `attack_114k`: the same pattern in one 114 KB frame, over h2's frame size.
//! - `names_16k`: `\x00\x81\x1f\x80` x 4096, header `a` (Huffman-coded) with an
//!   empty value: valid, so both h2 and the scanner walk all of it.
//! - `indexed_16k`: `\x82` x 16384, `:method GET` from the static table: one byte per
//!   field, the scanner's worst case per byte; h2 decodes all of it too.
//!
//! Runners: `wrapper` reads the input through `AuthorityRewrite` from memory;
//! `h2` is a bare `h2::server` over a `tokio::io::duplex`, accepting and answering
//! every request until the connection ends or fails; `wrapper+h2` is the two stacked,
//! as the gateway runs them.

use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf, duplex};
use tokio::runtime::Runtime;

use h2_authority::AuthorityRewrite;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const REQUESTS: usize = 200;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    [&len[1..], &[kind, flags], &stream.to_be_bytes(), payload].concat()
}

/// An HPACK integer with `flags` above its prefix.
fn int(out: &mut Vec<u8>, flags: u8, prefix_bits: u8, mut value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn huff(out: &mut Vec<u8>, s: &str) {
    let mut data = Vec::new();
    httlib_huffman::encode(s.as_bytes(), &mut data).expect("encodable");
    int(out, 0x80, 7, data.len());
    out.extend(data);
}

/// Preface, SETTINGS, WINDOW_UPDATE and `REQUESTS` unary calls encoded the way
/// grpcio's chttp2 does: the first block indexes every field, the others refer to them.
fn grpcio(authority: &str) -> Vec<u8> {
    let mut first = vec![0x86, 0x83]; // :scheme http, :method POST
    first.push(0x44); // :path, indexed name 4, with indexing
    huff(&mut first, "/supervisor.gateway.v1.ControlService/GetState");
    first.push(0x41);
    huff(&mut first, authority);
    first.push(0x40);
    huff(&mut first, "te");
    huff(&mut first, "trailers");
    first.push(0x5f); // content-type, 31
    huff(&mut first, "application/grpc");
    first.push(0x7a); // user-agent, 58
    huff(
        &mut first,
        "grpc-python/1.85.0 grpc-c/44.0.0 (linux; chttp2)",
    );
    first.push(0x40);
    huff(&mut first, "grpc-accept-encoding");
    huff(&mut first, "identity, deflate, gzip");
    // Table: grpc-accept-encoding (62), user-agent, content-type, te, :authority, :path (67).
    let again = [0x86, 0x83, 0xc3, 0xc2, 0xc1, 0xc0, 0xbf, 0xbe];
    let message = [&[0, 0, 0, 0, 16][..], &[0x0a; 16]].concat();
    let mut conn = [
        PREFACE,
        &frame(0x4, 0, 0, &[0, 2, 0, 0, 0, 0, 0, 4, 0, 0x40, 0, 0]),
        &frame(0x8, 0, 0, &[0, 0x3f, 0, 1]),
    ]
    .concat();
    for i in 0..REQUESTS {
        let stream = 1 + 2 * i as u32;
        let block = if i == 0 { &first[..] } else { &again[..] };
        conn.extend(frame(0x1, 0x4, stream, block));
        conn.extend(frame(0x0, 0x1, stream, &message));
    }
    conn
}

/// Preface, SETTINGS and `field` x `repeat` in one HEADERS frame.
fn one_block(field: &[u8], repeat: usize) -> Vec<u8> {
    let block = field.repeat(repeat);
    let settings = frame(0x4, 0, 0, &[]);
    [PREFACE, &settings, &frame(0x1, 0x4, 1, &block)].concat()
}

/// Reads `input` through the wrapper to its end (or error); returns the bytes out.
fn wrapper(input: &[u8]) -> usize {
    let mut rw = AuthorityRewrite::new(input);
    let mut cx = Context::from_waker(Waker::noop());
    let (mut buf, mut total) = (vec![0; 16 * 1024], 0);
    loop {
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut rw).poll_read(&mut cx, &mut rb) {
            Poll::Ready(Ok(())) if !rb.filled().is_empty() => total += rb.filled().len(),
            Poll::Ready(_) => return total,
            Poll::Pending => unreachable!("a slice never blocks"),
        }
    }
}

/// A real h2 server, answering every request, until it has seen `REQUESTS` of them or
/// the connection ends or fails; returns the number accepted.
async fn serve<I: AsyncRead + tokio::io::AsyncWrite + Unpin>(io: I) -> usize {
    let Ok(mut conn) = h2::server::handshake(io).await else {
        return 0;
    };
    let mut seen = 0;
    while seen < REQUESTS {
        let Some(Ok((_, mut respond))) = conn.accept().await else {
            break;
        };
        let _ = respond.send_response(http::Response::new(()), true);
        seen += 1;
    }
    seen
}

/// Feeds `input` and a PING to an h2 server, wrapped or not, over an in-memory duplex;
/// closes once the PING is answered (h2 has then read everything before it), the server
/// closed, or has seen all requests.
async fn h2(input: &[u8], wrapped: bool) -> usize {
    let (mut client, server) = duplex(1 << 20);
    let client = async move {
        let ping = frame(0x6, 0, 0, &[0; 8]);
        if client.write_all(input).await.is_err() || client.write_all(&ping).await.is_err() {
            return;
        }
        let (mut got, mut chunk) = (Vec::new(), [0; 4096]);
        let mut at = 0;
        while let Ok(n @ 1..) = client.read(&mut chunk).await {
            got.extend_from_slice(&chunk[..n]);
            while let Some(&[a, b, c, kind, flags, ..]) = got.get(at..at + 9) {
                if (kind, flags) == (0x6, 0x1) {
                    return;
                }
                at += 9 + (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c));
            }
        }
    };
    let server = async {
        if wrapped {
            serve(AuthorityRewrite::new(server)).await
        } else {
            serve(server).await
        }
    };
    tokio::join!(client, server).1
}

struct Input {
    name: &'static str,
    bytes: Vec<u8>,
}

fn inputs() -> Vec<Input> {
    vec![
        Input {
            name: "grpcio_unix",
            bytes: grpcio("%2Ftmp%2Fsgw.sock"),
        },
        Input {
            name: "grpcio_valid",
            bytes: grpcio("localhost"),
        },
        Input {
            name: "attack_15k",
            bytes: one_block(b"\x00\x80\x80", 5000),
        },
        Input {
            name: "attack_114k",
            bytes: one_block(b"\x00\x80\x80", 38_000),
        },
        Input {
            name: "names_16k",
            bytes: one_block(b"\x00\x81\x1f\x80", 4096),
        },
        Input {
            name: "indexed_16k",
            bytes: one_block(b"\x82", 16_384),
        },
    ]
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    for input in inputs() {
        let mut group = c.benchmark_group(format!("h2_authority/{}", input.name));
        group.throughput(Throughput::Bytes(input.bytes.len() as u64));
        group.measurement_time(Duration::from_secs(3));
        let bytes = &input.bytes[..];
        group.bench_function("wrapper", |b| b.iter(|| wrapper(black_box(bytes))));
        group.bench_function("h2", |b| {
            b.iter(|| rt.block_on(h2(black_box(bytes), false)))
        });
        group.bench_function("wrapper+h2", |b| {
            b.iter(|| rt.block_on(h2(black_box(bytes), true)))
        });
        group.finish();
    }
}

/// Median time per KiB of input over `runs` runs of `f`.
fn per_kib(len: usize, runs: usize, mut f: impl FnMut() -> usize) -> Duration {
    let mut times: Vec<_> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2].mul_f64(1024.0 / len as f64)
}

/// One line per input: µs per KiB for each runner and the ratio wrapper / h2, where
/// h2 is bare h2 on the same input (on `grpcio_valid` for `grpcio_unix`, which bare h2
/// refuses). Also the old decoder (loona-hpack) on the attack block, for scale.
fn summary() {
    let rt = runtime();
    let inputs = inputs();
    let h2_base = |name: &str| {
        let base = if name == "grpcio_unix" {
            "grpcio_valid"
        } else {
            name
        };
        let input = inputs.iter().find(|i| i.name == base).expect("input");
        per_kib(input.bytes.len(), 201, || {
            rt.block_on(h2(&input.bytes, false))
        })
    };
    println!();
    for input in &inputs {
        let len = input.bytes.len();
        let ours = per_kib(len, 201, || wrapper(&input.bytes));
        let stacked = per_kib(len, 201, || rt.block_on(h2(&input.bytes, true)));
        let bare = h2_base(input.name);
        println!(
            "summary {:<13} {:>7} B: wrapper {:>8.3} µs/KiB, h2 {:>8.3} µs/KiB, \
             wrapper+h2 {:>8.3} µs/KiB; wrapper / h2 = {:.2}",
            input.name,
            len,
            micros(ours),
            micros(bare),
            micros(stacked),
            ours.as_secs_f64() / bare.as_secs_f64(),
        );
    }
    let block = b"\x00\x80\x80".repeat(5000);
    let old = per_kib(block.len(), 3, || {
        let mut decoder = loona_hpack::Decoder::new();
        let _ = decoder.decode_with_cb(&block, |_, _| {});
        0
    });
    println!(
        "summary old decoder (loona-hpack) on attack_15k: {:.1} µs/KiB",
        micros(old)
    );
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    // Only under `cargo bench`, not in criterion's test or list modes.
    let args: Vec<_> = std::env::args().collect();
    let quick = ["--test", "--list"]
        .iter()
        .any(|m| args.iter().any(|a| a == m));
    if args.iter().any(|a| a == "--bench") && !quick {
        summary();
    }
}
