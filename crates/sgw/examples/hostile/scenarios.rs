//! The four measurements, each against its own fresh server.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use supervisor_gateway::pb;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use crate::attack::{self, Tally};
use crate::server::{Options, Server, cpu_time, quiesce};
use crate::{Error, Row, fmt_duration};

const BASELINE: Duration = Duration::from_secs(3);
const ATTACK_CPU: Duration = Duration::from_secs(2);
const ATTACK_LEGIT: Duration = Duration::from_secs(3);
const CALL_LIMIT: Duration = Duration::from_secs(10);

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples
        .get(((samples.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// Sequential GetInfo calls on one connection until `until`; the call in
/// flight at the deadline is finished and counted (each is bounded by
/// `CALL_LIMIT`, a call over it counts as taking the limit).
async fn getinfo_series(
    client: &mut supervisor_gateway::client::Client,
    until: Instant,
) -> Vec<Duration> {
    let mut samples = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let call = client.control.get_info(pb::GetInfoRequest {});
        match tokio::time::timeout(CALL_LIMIT, call).await {
            Ok(Ok(_)) => samples.push(started.elapsed()),
            Ok(Err(_)) => {}
            Err(_) => samples.push(CALL_LIMIT),
        }
    }
    samples
}

/// Why a fresh connect + GetInfo failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// `connect(2)` said EAGAIN: the listen backlog was full.
    Backlog,
    Timeout,
    Other,
}

/// A fresh connection and one GetInfo on it, within `limit`.
async fn fresh_getinfo(socket: &Path, limit: Duration) -> Result<Duration, Failure> {
    let started = Instant::now();
    let call = async {
        let mut client = supervisor_gateway::client::connect(socket)
            .await
            .map_err(|e| classify(&e))?;
        client
            .control
            .get_info(pb::GetInfoRequest {})
            .await
            .map_err(|e| classify(&e))
    };
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(_)) => Ok(started.elapsed()),
        Ok(Err(failure)) => Err(failure),
        Err(_) => Err(Failure::Timeout),
    }
}

fn classify(error: &(dyn std::error::Error + 'static)) -> Failure {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.raw_os_error() == Some(nix::libc::EAGAIN)
        {
            return Failure::Backlog;
        }
        source = e.source();
    }
    Failure::Other
}

/// Two attackers running `send_and_drain` with `bytes` until `until`;
/// returns their connections and bytes sent.
async fn hpack_attack(socket: &Path, bytes: &Arc<Vec<u8>>, until: Instant) -> (u64, u64) {
    let tally = Arc::new(Tally::default());
    let attackers: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(attack::send_and_drain(
                socket.to_path_buf(),
                Arc::clone(bytes),
                until,
                100_000,
                Arc::clone(&tally),
            ))
        })
        .collect();
    for attacker in attackers {
        let _ = attacker.await;
    }
    let (connections, _, sent) = tally.get();
    (connections, sent)
}

/// Scenario 1, HPACK cost: a legit client's latency under header-block bombs, and
/// the server CPU the bombs cost per KiB.
pub async fn hpack(binary: &Path, rows: &mut Vec<Row>) -> Result<(), Error> {
    let server = Server::start(
        binary,
        Options {
            max_connections: 64,
            world: false,
            unread_stderr: false,
        },
    )?;
    let pid = server.pid();
    let mut client = supervisor_gateway::client::connect(&server.socket).await?;
    for _ in 0..200 {
        client.control.get_info(pb::GetInfoRequest {}).await?;
    }
    let mut baseline = getinfo_series(&mut client, Instant::now() + BASELINE).await;
    let base_p50 = percentile(&mut baseline, 0.5);
    let base_p99 = percentile(&mut baseline, 0.99);
    rows.push(Row::new(
        "legit GetInfo, no attack: p50 / p99 (one connection, sequential, 3 s)",
        format!(
            "{} / {} (n = {})",
            fmt_duration(base_p50),
            fmt_duration(base_p99),
            baseline.len()
        ),
        Some(base_p99.as_secs_f64()),
    ));
    for (name, fields) in [("16,380-byte", 5_460), ("114,000-byte", 38_000)] {
        let bytes = Arc::new(attack::hpack_bomb(fields));
        // Server CPU per KiB: attackers alone, then until the server idles.
        quiesce(pid, Duration::from_secs(10)).await;
        let cpu_before = cpu_time(pid);
        let (connections, sent) =
            hpack_attack(&server.socket, &bytes, Instant::now() + ATTACK_CPU).await;
        quiesce(pid, Duration::from_secs(10)).await;
        let cpu = cpu_time(pid).saturating_sub(cpu_before);
        let kib = sent as f64 / 1024.0;
        let per_kib = cpu.as_secs_f64() / kib.max(1e-9);
        rows.push(Row::new(
            format!(
                "HPACK, {name} HEADERS of `00 80 80`, 2 attackers × 2 s: server CPU per KiB sent"
            ),
            format!(
                "{} ({} CPU for {:.0} KiB, {connections} connections)",
                fmt_duration(Duration::from_secs_f64(per_kib)),
                fmt_duration(cpu),
                kib
            ),
            Some(per_kib),
        ));
        // The legit client's latency while the same attack runs.
        let until = Instant::now() + ATTACK_LEGIT;
        let attackers = tokio::spawn({
            let (socket, bytes) = (server.socket.clone(), Arc::clone(&bytes));
            async move { hpack_attack(&socket, &bytes, until).await }
        });
        let mut during = getinfo_series(&mut client, until).await;
        let _ = attackers.await;
        let p50 = percentile(&mut during, 0.5);
        let p99 = percentile(&mut during, 0.99);
        rows.push(Row::new(
            format!("HPACK, {name}: legit GetInfo p50 / p99 during the attack (3 s)"),
            format!(
                "{} / {} (n = {})",
                fmt_duration(p50),
                fmt_duration(p99),
                during.len()
            ),
            Some(p99.as_secs_f64()),
        ));
        let slowdown = p99.as_secs_f64() / base_p99.as_secs_f64();
        rows.push(Row::new(
            format!("HPACK, {name}: legit p99 during attack ÷ baseline p99"),
            format!("{slowdown:.1}×"),
            Some(slowdown),
        ));
        quiesce(pid, Duration::from_secs(10)).await;
    }
    Ok(())
}

/// Scenario 2, half handshakes: 16 connections that send half a preface and hold
/// every slot; how long until a legit client gets through.
pub async fn half_handshakes(binary: &Path, rows: &mut Vec<Row>) -> Result<(), Error> {
    let server = Server::start(
        binary,
        Options {
            max_connections: 16,
            world: false,
            unread_stderr: false,
        },
    )?;
    let mut holders = Vec::new();
    for _ in 0..16 {
        let mut stream = UnixStream::connect(&server.socket).await?;
        stream.write_all(b"PRI * HTTP/2.0\r\n").await?;
        holders.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut attempts = 0;
    let mut first = None;
    while started.elapsed() < Duration::from_secs(15) {
        let attempt = Instant::now();
        attempts += 1;
        if fresh_getinfo(&server.socket, Duration::from_secs(1))
            .await
            .is_ok()
        {
            first = Some(started.elapsed());
            break;
        }
        tokio::time::sleep_until((attempt + Duration::from_millis(100)).into()).await;
    }
    drop(holders);
    rows.push(Row::new(
        "half handshakes: 16 × `PRI * HTTP/2.0\\r\\n` held, max_connections 16: first legit connect + GetInfo (1 s timeout, every ≥ 100 ms)",
        match first {
            Some(t) => format!("after {} ({attempts} attempts)", fmt_duration(t)),
            None => format!("never within 15 s ({attempts} attempts)"),
        },
        first.map(|t| t.as_secs_f64()),
    ));
    Ok(())
}

/// Scenario 3, admission: uid 65534, which may not connect, reconnects in a tight
/// loop; a legit client connects fresh every 50 ms meanwhile.
pub async fn admission(binary: &Path, exe: &Path, rows: &mut Vec<Row>) -> Result<(), Error> {
    const WINDOW: Duration = Duration::from_secs(5);
    let server = Server::start(
        binary,
        Options {
            max_connections: 64,
            world: true,
            unread_stderr: false,
        },
    )?;
    let pid = server.pid();
    let cpu_before = cpu_time(pid);
    let mut attacker = attack::spawn_nobody(exe, &server.socket, WINDOW.as_millis() as u64)?;
    let started = Instant::now();
    let mut successes = Vec::new();
    let mut failures = Vec::new();
    let mut attempts = 0;
    while started.elapsed() < WINDOW {
        attempts += 1;
        match fresh_getinfo(&server.socket, Duration::from_secs(1)).await {
            Ok(t) => successes.push(t),
            Err(failure) => failures.push(failure),
        }
        tokio::time::sleep_until((started + Duration::from_millis(50) * attempts).into()).await;
    }
    let stdout = attacker.stdout.take().ok_or("no attacker stdout")?;
    let report = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        line
    });
    let report = tokio::time::timeout(Duration::from_secs(10), report)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let _ = attacker.kill();
    let _ = attacker.wait();
    let elapsed = started.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    let fields: Vec<u64> = report
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let (connected, failed) = (
        fields.first().copied().unwrap_or(0),
        fields.get(1).copied().unwrap_or(0),
    );
    let p99 = percentile(&mut successes, 0.99);
    let count = |f: Failure| failures.iter().filter(|&&x| x == f).count();
    rows.push(Row::new(
        "admission: uid 65534 reconnects for 5 s (4 loops × connect + 1 KiB + close); legit (root) connect + GetInfo every 50 ms (1 s timeout): succeeded, p99 of those",
        format!(
            "{}/{attempts}, p99 {} (legit failures: {} backlog full, {} timed out, {} other; attacker: {connected} connections, {failed} connects failed)",
            successes.len(),
            fmt_duration(p99),
            count(Failure::Backlog),
            count(Failure::Timeout),
            count(Failure::Other),
        ),
        Some(successes.len() as f64 / attempts as f64),
    ));
    rows.push(Row::new(
        "admission: server CPU during those 5 s",
        format!(
            "{} ({:.0} % of one core)",
            fmt_duration(cpu),
            100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64()
        ),
        Some(cpu.as_secs_f64()),
    ));
    Ok(())
}

/// Scenario 4, log flood: refused connections logged to a stderr nobody reads.
pub async fn log_flood(binary: &Path, rows: &mut Vec<Row>) -> Result<(), Error> {
    let server = Server::start(
        binary,
        Options {
            max_connections: 2,
            world: false,
            unread_stderr: true,
        },
    )?;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = UnixStream::connect(&server.socket).await?;
        stream.write_all(b"{").await?;
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let tally = Arc::new(Tally::default());
    let flood_started = Instant::now();
    let until = flood_started + Duration::from_secs(15);
    let loops: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(attack::hit_and_run(
                PathBuf::from(&server.socket),
                Arc::new(Vec::new()),
                until,
                5_000,
                Arc::clone(&tally),
            ))
        })
        .collect();
    for task in loops {
        let _ = task.await;
    }
    let flood = flood_started.elapsed();
    let (connected, failed, _) = tally.get();
    drop(held);
    let started = Instant::now();
    let mut attempts = 0;
    let mut answered = None;
    while started.elapsed() < Duration::from_secs(10) {
        let attempt = Instant::now();
        attempts += 1;
        let left = Duration::from_secs(10).saturating_sub(started.elapsed());
        if let Ok(call) = fresh_getinfo(&server.socket, left).await {
            answered = Some((started.elapsed(), call));
            break;
        }
        tokio::time::sleep_until((attempt + Duration::from_millis(10)).into()).await;
    }
    rows.push(Row::new(
        "log flood: stderr an unread pipe, max_connections 2, 2 held legacy connections, 20,000 connection attempts; then the held ones close: does a fresh connect + GetInfo answer within 10 s (tried every ≥ 10 ms)?",
        match answered {
            Some((t, call)) => format!(
                "yes, {} after they closed, that call {} ({attempts} attempt(s); flood: {connected} accepted by the kernel, {failed} not, {})",
                fmt_duration(t),
                fmt_duration(call),
                fmt_duration(flood)
            ),
            None => format!(
                "no ({attempts} attempt(s); flood: {connected} accepted by the kernel, {failed} not, {})",
                fmt_duration(flood)
            ),
        },
        answered.map(|(t, _)| t.as_secs_f64()),
    ));
    Ok(())
}
