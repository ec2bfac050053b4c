//! End-to-end load against a real `sgw serve` over its Unix socket, with
//! reference servers measured in the same run, each in its own process, so
//! the gateway's overhead is a ratio, not a guess: a bare tonic
//! `grpc.health.v1.Health/Check` server (`--bare-server PATH`) for gRPC,
//! and a server reading one byte per syscall (`--byte-server PATH`, see
//! `legacy.rs`) for the legacy protocol.
//!
//! ```sh
//! cargo build --release --bin sgw --example load && ./target/release/examples/load   # full run
//! ./target/release/examples/load --quick                                             # smoke run
//! ```
//!
//! Series that are compared are sampled in alternating rounds (latency:
//! bare Check, sgw GetInfo, sgw Check, legacy `hello`; throughput: bare
//! Check, sgw GetInfo, sgw Check, and GetInfo on a second sgw with
//! `[metrics]` on), so drift on a shared machine hits them
//! alike; throughput rows also give each server's CPU time per call.
//! Prints one markdown table; BENCHMARKS.md quotes it.

mod legacy;
mod measure;
mod unary;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use supervisor_gateway::control::ControlPlane;
use supervisor_gateway::engine::{ChildSet, EngineConfig, Supervisor};
use supervisor_gateway::gateway::{self, Limits};
use supervisor_gateway::model::{ChildId, Event, EventKind};
use supervisor_gateway::pb;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Settings {
    unary_calls: usize,
    warmup: usize,
    duration: Duration,
    connections: usize,
    in_flight: usize,
    /// Alternating rounds of the unary latency and throughput runs.
    rounds: usize,
    events: u64,
    idle: usize,
    /// Connection counts of the pipelined legacy runs.
    legacy_connections: &'static [usize],
    /// Size of one pipelined legacy request line, newline included.
    legacy_request_bytes: usize,
    /// Length of each pipelined legacy run (a fifth of it warms up).
    legacy_duration: Duration,
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--bare-server") {
        let path = args.get(i + 1).ok_or("--bare-server needs a path")?;
        return bare_server(Path::new(path));
    }
    if let Some(i) = args.iter().position(|a| a == "--byte-server") {
        let path = args.get(i + 1).ok_or("--byte-server needs a path")?;
        return legacy::byte_server(Path::new(path));
    }
    raise_fd_limit();
    let quick = args.iter().any(|a| a == "--quick");
    let settings = if quick {
        Settings {
            unary_calls: 2_000,
            warmup: 200,
            duration: Duration::from_millis(500),
            connections: 4,
            in_flight: 16,
            rounds: 1,
            events: 200_000,
            idle: 200,
            legacy_connections: &[1],
            legacy_request_bytes: 1024,
            legacy_duration: Duration::from_millis(500),
        }
    } else {
        Settings {
            unary_calls: 20_000,
            warmup: 2_000,
            duration: Duration::from_secs(5),
            connections: 4,
            in_flight: 16,
            rounds: 3,
            events: 2_000_000,
            idle: 1_000,
            legacy_connections: &[1, 4],
            legacy_request_bytes: 1024,
            legacy_duration: Duration::from_secs(5),
        }
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(settings))
}

fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// A bare tonic server: health only, tonic's own UDS stream, nothing else.
fn bare_server(path: &Path) -> Result<(), Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = tokio::net::UnixListener::bind(path)?;
            let (_reporter, health) = tonic_health::server::health_reporter();
            println!("ready");
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                .await?;
            Ok(())
        })
}

fn sgw_binary() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).ok_or("no target dir")?;
    let sgw = dir.join("sgw");
    if sgw.exists() {
        Ok(sgw)
    } else {
        Err(format!("{} missing: cargo build --release first", sgw.display()).into())
    }
}

const CONFIG: &str = r#"
[gateway]
target_id = "bench"
max_connections = 8192
max_request_bytes = 65536
# One uid (this tool) opens every idle subscriber.
max_streams_per_uid = 100000

# The log stream run adds a child running `yes`.
[security.add_child]
allowed_commands = ["/usr/bin/yes"]
"#;

struct Server {
    child: Child,
    socket: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// A reference server (`--bare-server`, `--byte-server`): this executable
/// again, in its own process, killed when dropped.
struct Reference(Child);

impl Reference {
    /// Spawns this executable with `mode PATH` and waits until it accepts.
    fn spawn(mode: &str, socket: &Path) -> Result<Self, Error> {
        let child = Command::new(std::env::current_exe()?)
            .arg(mode)
            .arg(socket)
            .stdout(Stdio::null())
            .spawn()?;
        let mut reference = Self(child);
        wait_accepting(socket, Instant::now(), &mut reference.0)?;
        Ok(reference)
    }

    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `sgw serve` and returns it with the time until its socket accepted.
fn spawn_sgw(dir: &Path, name: &str) -> Result<(Server, Duration), Error> {
    spawn_sgw_with(dir, name, "")
}

/// [`spawn_sgw`] with `extra` appended to the config.
fn spawn_sgw_with(dir: &Path, name: &str, extra: &str) -> Result<(Server, Duration), Error> {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, format!("{CONFIG}{extra}"))?;
    let socket = dir.join(name);
    let started = Instant::now();
    let child = Command::new(sgw_binary()?)
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .env("SGW_STATE_DIR", dir.join(format!("{name}.state")))
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()?;
    let mut server = Server { child, socket };
    let accepted = wait_accepting(&server.socket, started, &mut server.child)?;
    Ok((server, accepted))
}

fn wait_accepting(socket: &Path, started: Instant, server: &mut Child) -> Result<Duration, Error> {
    loop {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Ok(started.elapsed());
        }
        if let Some(status) = server.try_wait()? {
            return Err(format!("server exited ({status}) before accepting").into());
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err("server did not accept within 10 s".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Row(String, String, String);

async fn run(settings: Settings) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();

    // Startup: median of five cold starts.
    let mut starts = Vec::new();
    for i in 0..5 {
        let (server, accepted) = spawn_sgw(dir.path(), &format!("start{i}.sock"))?;
        starts.push(accepted);
        drop(server);
    }
    starts.sort();
    rows.push(Row(
        "process start → socket accepting (median of 5)".into(),
        format!("{:.1} ms", starts[2].as_secs_f64() * 1e3),
        "target < 50 ms".into(),
    ));

    let (sgw, _) = spawn_sgw(dir.path(), "sgw.sock")?;
    let bare_path = dir.path().join("bare.sock");
    let bare = Reference::spawn("--bare-server", &bare_path)?;

    unary::latency(&settings, &bare_path, &sgw.socket, &mut rows).await?;

    // The same server with the metrics endpoint on: every RPC also goes
    // through the metrics layer. It runs 50 idle children, so that a
    // scrape reads 50 records and their usage; it starts after the latency
    // run so that the latency figures are taken as before it existed.
    let scrape_path = dir.path().join("metrics-http.sock");
    let children: String = (0..50)
        .map(|i| format!("\n[[child]]\nid = \"idle-{i}\"\ncommand = [\"sleep\", \"3600\"]\n"))
        .collect();
    let (metered, _) = spawn_sgw_with(
        dir.path(),
        "metered.sock",
        &format!(
            "\n[metrics]\nlisten = {:?}\n{children}",
            scrape_path.display().to_string()
        ),
    )?;

    unary::throughput_rounds(
        &settings,
        (bare.id(), &bare_path),
        &sgw,
        &metered,
        &mut rows,
    )
    .await?;
    rows.push(scrape_time(&scrape_path, &metered.socket).await?);
    drop(metered);

    // Pipelined legacy throughput: sgw vs the one-byte-per-syscall server.
    legacy::throughput(&settings, &sgw, dir.path(), &mut rows).await?;

    // Idle connections and subscribers: RSS of the server process.
    let pid = sgw.child.id();
    let before = rss_kib(pid);
    let mut idle = Vec::new();
    for _ in 0..settings.idle {
        let mut c = supervisor_gateway::client::connect(&sgw.socket).await?;
        c.control.get_info(pb::GetInfoRequest {}).await?;
        idle.push(c);
    }
    let with_conns = rss_kib(pid);
    rows.push(Row(
        format!(
            "server RSS per idle connection ({} connections)",
            settings.idle
        ),
        format!(
            "{:.1} KiB",
            (with_conns.saturating_sub(before)) as f64 / settings.idle as f64
        ),
        format!("{before} → {with_conns} KiB; target ≤ 64 KiB"),
    ));
    let mut streams = Vec::new();
    for c in idle.iter_mut() {
        let stream = c
            .journal
            .subscribe_events(pb::SubscribeEventsRequest::default())
            .await?
            .into_inner();
        streams.push(stream);
    }
    let with_subs = rss_kib(pid);
    rows.push(Row(
        format!("server RSS per idle subscriber ({} streams)", settings.idle),
        format!(
            "{:.1} KiB",
            (with_subs.saturating_sub(with_conns)) as f64 / settings.idle as f64
        ),
        format!("{with_conns} → {with_subs} KiB"),
    ));
    drop(streams);
    drop(idle);

    // Log stream throughput from a child printing as fast as it can.
    let mut c = supervisor_gateway::client::connect(&sgw.socket).await?;
    let meta = Some(pb::CommandMeta {
        confirm: true,
        reason: "bench".into(),
        ..Default::default()
    });
    let mut tail = c
        .journal
        .tail_logs(pb::TailLogsRequest {
            child_ids: vec!["yes".into()],
            lines: 0,
            follow: true,
            after_sequence: 0,
            journal_id: String::new(),
        })
        .await?
        .into_inner();
    c.control
        .add_child(pb::AddChildRequest {
            spec: Some(pb::ChildSpec {
                id: "yes".into(),
                command: vec![
                    "/usr/bin/yes".into(),
                    "a log line of moderate length, 48 bytes long..".into(),
                ],
                // The capture path's throughput, not the rate limit's
                // (10,000 lines per 30 s by default).
                logs: Some(pb::ChildLogs {
                    rate_burst: Some(0),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            meta: meta.clone(),
        })
        .await?;
    let started = Instant::now();
    let (mut lines, mut lost) = (0u64, 0u64);
    while started.elapsed() < settings.duration {
        match tail.message().await? {
            Some(pb::TailLogsResponse {
                item: Some(pb::tail_logs_response::Item::Line(_)),
            }) => lines += 1,
            Some(pb::TailLogsResponse {
                item: Some(pb::tail_logs_response::Item::Gap(g)),
            }) => lost += g.last_missing - g.first_missing + 1,
            _ => {}
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    c.control
        .remove_child(pb::RemoveChildRequest {
            child_id: "yes".into(),
            meta,
        })
        .await?;
    rows.push(Row(
        "log stream: lines/s delivered to one TailLogs follower (child: `yes`)".into(),
        format!("{:.0}/s", lines as f64 / elapsed),
        format!(
            "{:.0}/s captured but lost to the follower (gaps)",
            lost as f64 / elapsed
        ),
    ));
    drop(tail);
    drop(sgw);
    drop(bare);

    // Event stream throughput: in-process gateway, synthetic events
    // published through the journal's API, delivered over the socket.
    for subscribers in [1usize, 16] {
        let rate = event_stream(&settings, dir.path(), subscribers).await?;
        rows.push(Row(
            format!("event stream: events/s to {subscribers} subscriber(s), aggregate"),
            format!("{rate:.0}/s"),
            "target ≥ 1,500,000/s".into(),
        ));
    }

    println!("| measurement | sgw | notes |\n|---|---|---|");
    for Row(a, b, c) in rows {
        println!("| {a} | {b} | {c} |");
    }
    Ok(())
}

/// The median time of one `GET /metrics` (a scrape reads a fresh
/// snapshot: state, usage of every child, journal heads), 50 scrapes.
async fn scrape_time(http_socket: &Path, sgw_socket: &Path) -> Result<Row, Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut client = supervisor_gateway::client::connect(sgw_socket).await?;
    let children = client
        .control
        .get_state(pb::GetStateRequest {})
        .await?
        .into_inner()
        .children
        .len();
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..50 {
        let started = Instant::now();
        let mut stream = tokio::net::UnixStream::connect(http_socket).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        times.push(started.elapsed());
        bytes = response.len();
    }
    times.sort();
    Ok(Row(
        format!("GET /metrics, median of 50 ({children} children)"),
        format!("{:.2} ms", times[25].as_secs_f64() * 1e3),
        format!("{bytes} bytes per scrape"),
    ))
}

async fn event_stream(settings: &Settings, dir: &Path, subscribers: usize) -> Result<f64, Error> {
    let socket = dir.join(format!("events{subscribers}.sock"));
    let listener = tokio::net::UnixListener::bind(&socket)?;
    let capacity = usize::try_from(settings.events)?;
    let supervisor = Supervisor::start(
        EngineConfig {
            target_id: "bench".into(),
            events_capacity: capacity,
            ..EngineConfig::default()
        },
        ChildSet::new(vec![])?,
    )?;
    let stop = tokio_util::sync::CancellationToken::new();
    // One uid opens every subscriber here: lift the per-uid stream cap.
    let limits = Limits {
        max_streams_per_uid: usize::MAX,
        ..Limits::with_max_connections(1024)
    };
    let server = tokio::spawn(gateway::serve(
        Arc::new(supervisor.clone()),
        listener,
        limits,
        stop.clone(),
    ));
    let id = ChildId::new("bench")?;
    for generation in 0..settings.events {
        supervisor.events().publish(Event::child(
            &id,
            EventKind::ChildRunning { generation, pid: 1 },
        ));
    }
    let last = supervisor.events().last_sequence();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..subscribers {
        let mut client = supervisor_gateway::client::connect(&socket).await?;
        tasks.push(tokio::spawn(async move {
            let mut stream = client
                .journal
                .subscribe_events(pb::SubscribeEventsRequest {
                    include_backlog: true,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let mut received = 0u64;
            while let Some(message) = stream.message().await? {
                if let Some(pb::subscribe_events_response::Item::Event(e)) = message.item {
                    received += 1;
                    if e.sequence == last {
                        break;
                    }
                }
            }
            Ok::<u64, Error>(received)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = supervisor.shutdown("bench", "done").await;
    let _ = server.await;
    Ok(rate)
}
