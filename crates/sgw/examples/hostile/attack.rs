//! Hostile clients: hand-built HTTP/2 bytes, connection loops, and the
//! other-uid attacker process (`--attack admission SOCKET MILLIS`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::Error;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const DATA: u8 = 0x0;
const SETTINGS: u8 = 0x4;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    assert!(payload.len() < 1 << 24, "frame length fits 24 bits");
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Preface, an empty SETTINGS frame and one HEADERS frame (stream 1,
/// END_HEADERS) whose block is `fields` times `00 80 80`: a literal field
/// without indexing whose name and value are both empty Huffman strings.
pub fn hpack_bomb(fields: usize) -> Vec<u8> {
    let block: Vec<u8> = [0x00, 0x80, 0x80].repeat(fields);
    let mut out = PREFACE.to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    frame(&mut out, HEADERS, END_HEADERS, 1, &block);
    out
}

/// HPACK integer with `prefix` bits and the bits above them clear.
fn put_int(out: &mut Vec<u8>, prefix: u8, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(value as u8);
        return;
    }
    out.push(max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0);
    put_int(out, 7, name.len());
    out.extend_from_slice(name);
    put_int(out, 7, value.len());
    out.extend_from_slice(value);
}

/// A plausible gRPC GetInfo call (preface, SETTINGS, HEADERS, an empty
/// message in a DATA frame with END_STREAM), padded with an `x-pad` header
/// to exactly `total` bytes.
pub fn grpc_call(total: usize) -> Vec<u8> {
    let build = |pad: usize| {
        let mut block = Vec::new();
        for (name, value) in [
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/supervisor.gateway.v1.ControlService/GetInfo"),
            (b":authority", b"localhost"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ] {
            literal(&mut block, name, value);
        }
        literal(&mut block, b"x-pad", &vec![b'a'; pad]);
        let mut out = PREFACE.to_vec();
        frame(&mut out, SETTINGS, 0, 0, &[]);
        frame(&mut out, HEADERS, END_HEADERS, 1, &block);
        frame(&mut out, DATA, END_STREAM, 1, &[0; 5]);
        out
    };
    (0..total)
        .map(build)
        .find(|bytes| bytes.len() >= total)
        .unwrap_or_else(|| build(0))
}

/// Totals of one attack.
#[derive(Debug, Default)]
pub struct Tally {
    pub connections: AtomicU64,
    pub failed_connects: AtomicU64,
    pub bytes: AtomicU64,
}

impl Tally {
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.connections.load(Ordering::Relaxed),
            self.failed_connects.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// Writes as much of `bytes` as the peer takes within `limit`; returns
/// how many bytes went out.
async fn write_some(stream: &mut UnixStream, bytes: &[u8], limit: Duration) -> usize {
    let mut sent = 0;
    let _ = tokio::time::timeout(limit, async {
        while sent < bytes.len() {
            match stream.write(&bytes[sent..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => sent += n,
            }
        }
    })
    .await;
    sent
}

/// Until `until` (and at most `max` connections): connect, send `bytes`,
/// half-close, read until the server closes (at most 5 s), again.
pub async fn send_and_drain(
    socket: PathBuf,
    bytes: Arc<Vec<u8>>,
    until: Instant,
    max: u64,
    tally: Arc<Tally>,
) {
    let mut sink = vec![0u8; 64 * 1024];
    for _ in 0..max {
        if Instant::now() >= until {
            break;
        }
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(1), UnixStream::connect(&socket)).await
        else {
            tally.failed_connects.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tally.connections.fetch_add(1, Ordering::Relaxed);
        let sent = write_some(&mut stream, &bytes, Duration::from_secs(5)).await;
        tally.bytes.fetch_add(sent as u64, Ordering::Relaxed);
        let _ = stream.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
}

/// Until `until` (and at most `max` connections): connect, send `bytes`,
/// close at once, again.
pub async fn hit_and_run(
    socket: PathBuf,
    bytes: Arc<Vec<u8>>,
    until: Instant,
    max: u64,
    tally: Arc<Tally>,
) {
    for _ in 0..max {
        if Instant::now() >= until {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(200), UnixStream::connect(&socket)).await {
            Ok(Ok(mut stream)) => {
                tally.connections.fetch_add(1, Ordering::Relaxed);
                if !bytes.is_empty() {
                    let sent = write_some(&mut stream, &bytes, Duration::from_millis(200)).await;
                    tally.bytes.fetch_add(sent as u64, Ordering::Relaxed);
                }
            }
            _ => {
                tally.failed_connects.fetch_add(1, Ordering::Relaxed);
                // EAGAIN from a full backlog comes back at once; do not spin.
                tokio::task::yield_now().await;
            }
        }
    }
}

/// `--attack admission SOCKET MILLIS`, run as another uid: 4 loops of
/// connect + 1 KiB of HTTP/2 + close; prints `connections failed bytes`.
pub fn admission_attacker(args: &[String]) -> Result<(), Error> {
    let [socket, millis] = args else {
        return Err("--attack admission SOCKET MILLIS".into());
    };
    let socket = PathBuf::from(socket);
    let until = Instant::now() + Duration::from_millis(millis.parse()?);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let tally = Arc::new(Tally::default());
            let bytes = Arc::new(grpc_call(1024));
            let loops: Vec<_> = (0..4)
                .map(|_| {
                    tokio::spawn(hit_and_run(
                        socket.clone(),
                        Arc::clone(&bytes),
                        until,
                        1_000_000,
                        Arc::clone(&tally),
                    ))
                })
                .collect();
            for task in loops {
                task.await?;
            }
            let (connections, failed, sent) = tally.get();
            println!("{connections} {failed} {sent}");
            Ok(())
        })
}

/// A copy of this executable that uid 65534 can run (as tests/security.rs'
/// `helper_executable`): a 0755 file in a 0755 temp dir.
pub fn world_executable() -> Result<(tempfile::TempDir, PathBuf), Error> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let exe = dir.path().join("hostile");
    std::fs::copy(std::env::current_exe()?, &exe)?;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))?;
    Ok((dir, exe))
}

/// Starts the admission attacker as uid/gid 65534.
pub fn spawn_nobody(exe: &Path, socket: &Path, millis: u64) -> Result<std::process::Child, Error> {
    use std::os::unix::process::CommandExt;
    let mut attempts = 0;
    loop {
        let spawned = std::process::Command::new(exe)
            .args(["--attack", "admission"])
            .arg(socket)
            .arg(millis.to_string())
            .current_dir("/")
            .uid(65534)
            .gid(65534)
            .stdout(std::process::Stdio::piped())
            .spawn();
        match spawned {
            // ETXTBSY: a thread that forked while the copy was open for
            // writing holds it until its exec; transient.
            Err(error) if error.raw_os_error() == Some(26) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}
