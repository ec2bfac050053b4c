//! The control plane during a crash storm: GetState latency over the real
//! socket while 100 children crash and are respawned every 10 ms, against
//! the same calls with the children idle, in one run (the ratio is the
//! figure; the absolute numbers depend on the machine).
//!
//! ```sh
//! cargo run --release --example storm            # 1,000 calls each
//! cargo run --release --example storm -- --quick # 200 calls each
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use supervisor_gateway::control::{Command, CommandMeta, CommandRequest, ControlPlane};
use supervisor_gateway::engine::{ChildSet, EngineConfig, Supervisor};
use supervisor_gateway::gateway::{self, Limits};
use supervisor_gateway::model::{ChildId, ChildSpec, RestartPolicy};
use supervisor_gateway::pb;

type Error = Box<dyn std::error::Error + Send + Sync>;

const CHILDREN: usize = 100;

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

async fn run(calls: usize) -> Result<(), Error> {
    let specs = (0..CHILDREN).map(crasher).collect::<Result<Vec<_>, _>>()?;
    let sup = Supervisor::start(EngineConfig::default(), ChildSet::new(specs)?)?;
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
    let generations = |snapshot: supervisor_gateway::control::StateSnapshot| -> u64 {
        snapshot.children.iter().map(|c| c.generation).sum()
    };
    let spawned_before = generations(sup.state().await);
    for i in 0..CHILDREN {
        command(&sup, Command::Resume(ChildId::new(&format!("crash-{i}"))?)).await?;
    }
    eprintln!("storm: measuring during the storm");
    let started = Instant::now();
    let storm = get_state_latency(&mut client, calls).await?;
    let elapsed = started.elapsed();
    let spawns = generations(sup.state().await) - spawned_before;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("| GetState over the socket ({calls} sequential calls) | p50 | p99 |");
    println!("|---|---|---|");
    println!(
        "| idle ({CHILDREN} children stopped) | {:.3} ms | {:.3} ms |",
        ms(idle.0),
        ms(idle.1)
    );
    println!(
        "| crash storm ({CHILDREN} children, 10 ms backoff, {:.0} spawns/s) | {:.3} ms | {:.3} ms |",
        spawns as f64 / elapsed.as_secs_f64(),
        ms(storm.0),
        ms(storm.1)
    );
    println!(
        "| storm ÷ idle | {:.1}× | {:.1}× |",
        ms(storm.0) / ms(idle.0),
        ms(storm.1) / ms(idle.1)
    );
    eprintln!("storm: shutting down");
    stop.cancel();
    sup.shutdown("storm", "done").await?;
    let _ = server.await;
    Ok(())
}

fn main() -> Result<(), Error> {
    let quick = std::env::args().any(|a| a == "--quick");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(if quick { 200 } else { 1_000 }))
}
