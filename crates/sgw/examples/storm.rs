//! The control plane during a crash storm: GetState latency over the real
//! socket while 100 children crash and are respawned every 10 ms, against
//! the same calls with the children idle, in one run (the ratio is the
//! figure; the absolute numbers depend on the machine), with the
//! supervisor's restart pacing off and at its default.
//!
//! ```sh
//! cargo run --release --example storm            # 1,000 calls each
//! cargo run --release --example storm -- --quick # 200 calls each
//! cargo run --release --example storm -- --restart-rate 200
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use supervisor_gateway::control::{Command, CommandMeta, CommandRequest, ControlPlane};
use supervisor_gateway::engine::{ChildSet, EngineConfig, RestartRate, Supervisor};
use supervisor_gateway::gateway::{self, Limits};
use supervisor_gateway::model::{ChildId, ChildSpec, RestartPolicy};
use supervisor_gateway::pb;

type Error = Box<dyn std::error::Error + Send + Sync>;

const CHILDREN: usize = 100;

/// How long the storm runs before it is measured.
const SETTLE: Duration = Duration::from_secs(3);

fn crasher(i: usize) -> Result<ChildSpec, Error> {
    let id = ChildId::new(&format!("crash-{i}"))?;
    let mut spec = ChildSpec::new(id, vec!["/bin/sh".into(), "-c".into(), "exit 1".into()]);
    spec.restart = RestartPolicy::Always;
    spec.backoff.initial = Duration::from_millis(10);
    spec.backoff.max = Duration::from_millis(10);
    spec.backoff.jitter = 0.0;
    spec.restart_budget.max = u32::MAX;
    spec.autostart = false;
    Ok(spec)
}

/// p50 and p99 of `calls` sequential GetState calls.
async fn get_state_latency(
    client: &mut pb::control_service_client::ControlServiceClient<tonic::transport::Channel>,
    calls: usize,
) -> Result<(Duration, Duration), Error> {
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        client.get_state(pb::GetStateRequest {}).await?;
        samples.push(started.elapsed());
    }
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    Ok((at(0.50), at(0.99)))
}

async fn command(sup: &Supervisor, command: Command) -> Result<(), Error> {
    let meta = CommandMeta {
        request_id: String::new(),
        requested_by: "storm".into(),
        reason: "storm benchmark".into(),
        confirm: true,
    };
    sup.execute(CommandRequest::new(command, meta)?).await?;
    Ok(())
}

/// One supervisor of [`CHILDREN`] crashers: GetState latency idle, then
/// during the storm once it has settled (past the first starts and the
/// pacer's burst), with the spawn rate over the measured window.
struct Run {
    idle: (Duration, Duration),
    storm: (Duration, Duration),
    spawns_per_second: f64,
}

async fn run(calls: usize, restart_rate: Option<RestartRate>) -> Result<Run, Error> {
    let specs = (0..CHILDREN).map(crasher).collect::<Result<Vec<_>, _>>()?;
    let config = EngineConfig {
        restart_rate,
        ..EngineConfig::default()
    };
    let sup = Supervisor::start(config, ChildSet::new(specs)?)?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sgw.sock");
    let listener = tokio::net::UnixListener::bind(&path)?;
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(gateway::serve(
        Arc::new(sup.clone()),
        listener,
        Limits::default(),
        stop.clone(),
    ));
    let mut client = supervisor_gateway::client::connect(&path).await?.control;

    eprintln!("storm: measuring idle");
    let idle = get_state_latency(&mut client, calls).await?;
    eprintln!("storm: starting the storm");
    for i in 0..CHILDREN {
        command(&sup, Command::Resume(ChildId::new(&format!("crash-{i}"))?)).await?;
    }
    // Settle: the first starts and the pacer's burst are not the storm.
    tokio::time::sleep(SETTLE).await;
    let generations = |snapshot: supervisor_gateway::control::StateSnapshot| -> u64 {
        snapshot.children.iter().map(|c| c.generation).sum()
    };
    eprintln!("storm: measuring during the storm");
    let spawned_before = generations(sup.state().await);
    let started = Instant::now();
    let storm = get_state_latency(&mut client, calls).await?;
    let elapsed = started.elapsed();
    let spawns = generations(sup.state().await) - spawned_before;
    eprintln!("storm: shutting down");
    stop.cancel();
    sup.shutdown("storm", "done").await?;
    let _ = server.await;
    Ok(Run {
        idle,
        storm,
        spawns_per_second: spawns as f64 / elapsed.as_secs_f64(),
    })
}

async fn compare(calls: usize, paced: RestartRate) -> Result<(), Error> {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "GetState over the socket, {calls} sequential calls, {CHILDREN} children crashing with a 10 ms backoff"
    );
    println!();
    println!(
        "| restart_rate | idle p50 / p99 | storm p50 / p99 | storm ÷ idle (p50 / p99) | spawns/s |"
    );
    println!("|---|---|---|---|---|");
    let label = if paced == RestartRate::default() {
        "default"
    } else {
        "paced"
    };
    for (label, rate) in [
        ("off (per_second = 0)".to_owned(), None),
        (
            format!("{label} ({}/s, burst {})", paced.per_second, paced.burst),
            Some(paced),
        ),
    ] {
        let run = run(calls, rate).await?;
        println!(
            "| {label} | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.1}× / {:.1}× | {:.0} |",
            ms(run.idle.0),
            ms(run.idle.1),
            ms(run.storm.0),
            ms(run.storm.1),
            ms(run.storm.0) / ms(run.idle.0),
            ms(run.storm.1) / ms(run.idle.1),
            run.spawns_per_second,
        );
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut paced = RestartRate::default();
    if let Some(at) = args.iter().position(|a| a == "--restart-rate") {
        let rate = args.get(at + 1).ok_or("--restart-rate needs a number")?;
        paced.per_second = rate.parse()?;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(compare(if quick { 200 } else { 1_000 }, paced))
}
