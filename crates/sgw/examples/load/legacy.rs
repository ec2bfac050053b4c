//! The legacy `dashboard-ipc.v1` measurements: `hello` round-trip latency
//! on one connection, pipelined throughput with ~1 KiB request lines, and
//! the reference they are compared with: a server that reads one byte per
//! syscall, as the original dashboard loop did (its `BoundedFrameReader::
//! read_frame`: `read_exact` into a one-byte buffer until `\n`).
//!
//! `throughput` runs the pipelined comparison; `Client` is used for the
//! latency rows (`unary.rs`). The client side is plain tokio: a `BufReader`
//! over the read half, one `write_all` per request (latency) or per batch of
//! requests (throughput).

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::measure::Load;
use crate::{Error, Reference, Row, Server, Settings};

/// A minimal `hello` request line.
pub const HELLO: &[u8] = b"{\"request_id\":\"h\",\"method\":\"hello\"}\n";

/// What the reference server answers to every line, whatever it was.
const FIXED_RESPONSE: &[u8] =
    b"{\"request_id\":\"p\",\"ok\":true,\"result\":{\"type\":\"hello\",\"protocol_version\":\"dashboard-ipc.v1\"}}\n";

/// Requests one connection keeps written ahead of their responses.
const WINDOW: usize = 64;
/// Requests written with one `write_all` (at most `WINDOW`).
const BATCH: usize = 16;

/// A `hello` request line of `size` bytes, newline included, padded in a
/// param `hello` ignores, so the server parses the whole line but the
/// response stays the ordinary one.
fn padded_hello(size: usize) -> Vec<u8> {
    let head = br#"{"request_id":"p","method":"hello","params":{"pad":""#;
    let tail = b"\"}}\n";
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut line = Vec::with_capacity(head.len() + pad + tail.len());
    line.extend_from_slice(head);
    line.extend(std::iter::repeat_n(b'x', pad));
    line.extend_from_slice(tail);
    line
}

/// Checks a response line without parsing it: an error response must not
/// count as a completed call.
fn check(response: &str) -> Result<(), Error> {
    if response.starts_with("{\"request_id\":") && response.contains("\"ok\":true") {
        Ok(())
    } else {
        Err(format!("unexpected legacy response: {}", response.trim_end()).into())
    }
}

/// One legacy connection used strictly request → response.
pub struct Client {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    line: String,
}

impl Client {
    pub async fn connect(path: &Path) -> io::Result<Self> {
        let (read, write) = UnixStream::connect(path).await?.into_split();
        Ok(Self {
            read: BufReader::new(read),
            write,
            line: String::new(),
        })
    }

    /// Writes one request line and reads its response line.
    pub async fn call(&mut self, request: &[u8]) -> Result<(), Error> {
        self.write.write_all(request).await?;
        self.line.clear();
        if self.read.read_line(&mut self.line).await? == 0 {
            return Err("legacy server closed the connection".into());
        }
        check(&self.line)
    }
}

/// Responses read over `connections` connections, each keeping `WINDOW`
/// copies of `request` written ahead of their responses, in `duration`.
/// Only responses read before the deadline count.
async fn pipelined(
    path: &Path,
    connections: usize,
    request: &[u8],
    duration: Duration,
) -> Result<u64, Error> {
    let batch: Arc<[u8]> = request.repeat(BATCH).into();
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        streams.push(UnixStream::connect(path).await?);
    }
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|stream| tokio::spawn(pipeline(stream, Arc::clone(&batch), deadline)))
        .collect();
    let mut responses = 0u64;
    for task in tasks {
        responses += task.await??;
    }
    Ok(responses)
}

/// One connection: a writer that refills the window in batches, and this
/// task reading responses and reopening the window, until the deadline.
async fn pipeline(stream: UnixStream, batch: Arc<[u8]>, deadline: Instant) -> Result<u64, Error> {
    let (read, mut write) = stream.into_split();
    let window = Arc::new(Semaphore::new(WINDOW));
    let writer = {
        let window = Arc::clone(&window);
        tokio::spawn(async move {
            // Ends when the reader closes the window, or the server goes away.
            while let Ok(permits) = window.acquire_many(BATCH as u32).await {
                permits.forget();
                if write.write_all(&batch).await.is_err() {
                    break;
                }
            }
        })
    };
    let mut read = BufReader::with_capacity(64 * 1024, read);
    let mut line = String::new();
    let mut responses = 0u64;
    let outcome = loop {
        line.clear();
        match read.read_line(&mut line).await {
            Ok(0) => break Err("legacy server closed the connection".into()),
            Ok(_) => {}
            Err(error) => break Err(error.into()),
        }
        if let Err(error) = check(&line) {
            break Err(error);
        }
        if Instant::now() >= deadline {
            break Ok(responses);
        }
        responses += 1;
        window.add_permits(1);
    };
    window.close();
    let _ = writer.await;
    outcome
}

/// Pipelined `hello` lines of `legacy_request_bytes` against sgw and against
/// the one-byte-per-syscall reference, spawned here in its own process.
pub async fn throughput(
    settings: &Settings,
    sgw: &Server,
    dir: &Path,
    rows: &mut Vec<Row>,
) -> Result<(), Error> {
    let byte_path = dir.join("byte.sock");
    let byte = Reference::spawn("--byte-server", &byte_path)?;
    let request = padded_hello(settings.legacy_request_bytes);
    // Warm both servers up (allocators, runtime threads) before counting.
    let warmup = settings.legacy_duration / 5;
    pipelined(&sgw.socket, 1, &request, warmup).await?;
    pipelined(&byte_path, 1, &request, warmup).await?;
    for &connections in settings.legacy_connections {
        let duration = settings.legacy_duration;
        let ours = Load::measure(
            sgw.child.id(),
            pipelined(&sgw.socket, connections, &request, duration),
        )
        .await?;
        let reference = Load::measure(
            byte.id(),
            pipelined(&byte_path, connections, &request, duration),
        )
        .await?;
        rows.push(Row(
            format!(
                "legacy pipelined throughput, {}-byte `hello` lines ({connections} conn × {} ahead): sgw vs one-byte-per-read server",
                request.len(),
                WINDOW
            ),
            format!("{:.0}/s vs {:.0}/s", ours.rate(), reference.rate()),
            format!(
                "ratio {:.0}×; target ≥ 50×; server CPU per request {:.1} µs vs {:.1} µs",
                ours.rate() / reference.rate(),
                ours.cpu_per_call(),
                reference.cpu_per_call()
            ),
        ));
    }
    Ok(())
}

/// `--byte-server PATH`: the reference server. Each connection reads with
/// `read_exact` into a one-byte buffer until `\n` (one `read(2)` per byte,
/// as the original loop did), checks the line is UTF-8, and writes a small
/// fixed response with one unbuffered `write_all`. It parses no JSON and
/// calls nothing, so the comparison flatters it.
pub fn byte_server(path: &Path) -> Result<(), Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = UnixListener::bind(path)?;
            loop {
                let (stream, _) = listener.accept().await?;
                tokio::spawn(async move {
                    let _ = byte_connection(stream).await;
                });
            }
        })
}

async fn byte_connection(mut stream: UnixStream) -> io::Result<()> {
    let mut frame = Vec::with_capacity(4096);
    loop {
        frame.clear();
        loop {
            let mut byte = [0u8; 1];
            match stream.read_exact(&mut byte).await {
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => frame.push(byte[0]),
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        if std::str::from_utf8(&frame).is_err() {
            return Ok(());
        }
        stream.write_all(FIXED_RESPONSE).await?;
    }
}
